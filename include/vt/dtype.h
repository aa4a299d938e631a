// dtype.h: the element types of vt tensors, their sizes and names.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "vt/error.h"

namespace vt {

enum class DType : uint8_t { F32, F64, BF16, F16, I32, I64, U8, Bool };

inline constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::F64: case DType::I64: return 8;
    case DType::F32: case DType::I32: return 4;
    case DType::BF16: case DType::F16: return 2;
    case DType::U8: case DType::Bool: return 1;
  }
  return 0;
}

// Names as PyTorch prints them (torch.float32 ...), without the "torch." prefix.
inline constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "float32";
    case DType::F64: return "float64";
    case DType::BF16: return "bfloat16";
    case DType::F16: return "float16";
    case DType::I32: return "int32";
    case DType::I64: return "int64";
    case DType::U8: return "uint8";
    case DType::Bool: return "bool";
  }
  return "?";
}

inline constexpr bool is_floating(DType t) {
  return t == DType::F32 || t == DType::F64 || t == DType::BF16 || t == DType::F16;
}
inline constexpr bool is_integral(DType t) { return !is_floating(t); }

// safetensors dtype strings ("F32", "BF16", "BOOL", ...).
inline constexpr std::string_view safetensors_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::BF16: return "BF16";
    case DType::F16: return "F16";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
    case DType::U8: return "U8";
    case DType::Bool: return "BOOL";
  }
  return "?";
}

// Returns false when the string names no dtype vt supports.
inline bool dtype_from_safetensors(std::string_view s, DType& out) {
  for (DType t : {DType::F32, DType::F64, DType::BF16, DType::F16, DType::I32, DType::I64, DType::U8,
                  DType::Bool})
    if (safetensors_name(t) == s) { out = t; return true; }
  return false;
}

}  // namespace vt
