// loop.cuh: the pieces every CUDA kernel of the core backend shares: element loads and stores in
// compute precision (the same rules and bits as src/cpu_loop.h), dtype dispatch, and the strided
// N-operand iteration space.
//
// Precision: bf16/f16 compute in f32, f32 in f32, f64 in f64, integers and bool in int64; a result
// is rounded once when stored, with half.h's bit-exact conversions (so a CUDA cast gives the same
// bits as the CPU's, NaNs included).
//
// Strided iteration: operands are broadcast views of one shape. Size-1 dims are dropped and dims
// that are jointly contiguous for every operand merged (as on the CPU), leaving at most 8 dims.
// A flat index is turned into per-operand element offsets by div/mod over those dims, in 32-bit
// arithmetic (map.cuh splits larger spaces into pieces that fit).
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <type_traits>

#include "device.h"
#include "vt/half.h"
#include "vt/scalar.h"
#include "vt/tensor.h"

namespace vt::cuda {

// ---- compute types, loads and stores -----------------------------------------------------------
using scalar::compute_t;  // vt/scalar.h, shared with the CPU backend

template <class T>
__device__ __forceinline__ compute_t<T> load(const T* p) {
  if constexpr (std::is_same_v<T, bf16>) return bf16_bits_to_float(p->bits);
  else if constexpr (std::is_same_v<T, f16>) return f16_bits_to_float(p->bits);
  else if constexpr (std::is_same_v<T, bool>) return *reinterpret_cast<const uint8_t*>(p) != 0;
  else return static_cast<compute_t<T>>(*p);
}
template <class T>
__device__ __forceinline__ compute_t<T> from_storage(T v) { return load(&v); }

template <class T, class C>
__device__ __forceinline__ T to_storage(C v) {
  if constexpr (std::is_same_v<T, bf16>) return bf16::from_bits(float_to_bf16_bits(static_cast<float>(v)));
  else if constexpr (std::is_same_v<T, f16>) return f16::from_bits(float_to_f16_bits(static_cast<float>(v)));
  else if constexpr (std::is_same_v<T, bool>) return v != C(0);
  else return static_cast<T>(v);
}

template <class T> struct type_tag { using type = T; };

// Calls f(type_tag<T>{}) for the C++ type of `t` (bool is stored as one byte, 0 or 1).
template <class F>
decltype(auto) visit_dtype(DType t, F&& f) {
  switch (t) {
    case DType::F32: return f(type_tag<float>{});
    case DType::F64: return f(type_tag<double>{});
    case DType::BF16: return f(type_tag<bf16>{});
    case DType::F16: return f(type_tag<f16>{});
    case DType::I32: return f(type_tag<int32_t>{});
    case DType::I64: return f(type_tag<int64_t>{});
    case DType::U8: return f(type_tag<uint8_t>{});
    case DType::Bool: return f(type_tag<bool>{});
  }
  VT_FAIL("cuda: bad dtype");
}

// ---- strided iteration space -------------------------------------------------------------------
template <int N>
struct StridedPlan {
  int ndim = 0;
  int64_t shape[kMaxDims];
  int64_t strides[N][kMaxDims];  // elements
};

template <int N>
StridedPlan<N> make_plan(const Shape& shape, const std::array<const Tensor*, N>& ops) {
  StridedPlan<N> p;
  for (int d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    p.shape[p.ndim] = shape[d];
    for (int k = 0; k < N; ++k) p.strides[k][p.ndim] = ops[k]->strides()[d];
    ++p.ndim;
  }
  int w = 0;
  for (int d = 0; d < p.ndim; ++d) {
    if (w > 0) {
      bool merge = true;
      for (int k = 0; k < N; ++k)
        if (p.strides[k][w - 1] != p.strides[k][d] * p.shape[d]) merge = false;
      if (merge) {
        p.shape[w - 1] *= p.shape[d];
        for (int k = 0; k < N; ++k) p.strides[k][w - 1] = p.strides[k][d];
        continue;
      }
    }
    p.shape[w] = p.shape[d];
    for (int k = 0; k < N; ++k) p.strides[k][w] = p.strides[k][d];
    ++w;
  }
  p.ndim = w;
  if (p.ndim == 0) {
    p.ndim = 1;
    p.shape[0] = 1;
    for (int k = 0; k < N; ++k) p.strides[k][0] = 0;
  }
  return p;
}

// True when every flat index and every operand offset of the plan fits in 31 bits.
template <int N>
bool fits_32bit(const StridedPlan<N>& p) {
  int64_t numel = 1;
  for (int d = 0; d < p.ndim; ++d) numel *= p.shape[d];
  if (numel >= (int64_t(1) << 31)) return false;
  for (int k = 0; k < N; ++k) {
    int64_t hi = 0;
    for (int d = 0; d < p.ndim; ++d) {
      if (p.strides[k][d] < 0) return false;
      hi += (p.shape[d] - 1) * p.strides[k][d];
    }
    if (hi >= (int64_t(1) << 31)) return false;
  }
  return true;
}

// Dense when the plan is one run of unit stride for operands not broadcast (stride 0 allowed).
template <int N>
bool plan_dense(const StridedPlan<N>& p) {
  if (p.ndim != 1) return false;
  for (int k = 0; k < N; ++k)
    if (p.strides[k][0] != 1 && !(p.strides[k][0] == 0 && k > 0)) return false;
  return true;
}

// Per-operand element offsets of flat index i.
template <int N, class IndexT>
__device__ __forceinline__ void plan_offsets(const StridedPlan<N>& p, IndexT i, IndexT (&off)[N]) {
#pragma unroll
  for (int k = 0; k < N; ++k) off[k] = 0;
  for (int d = p.ndim - 1; d >= 1; --d) {
    const IndexT size = static_cast<IndexT>(p.shape[d]);
    const IndexT c = i % size;
    i /= size;
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] += c * static_cast<IndexT>(p.strides[k][d]);
  }
#pragma unroll
  for (int k = 0; k < N; ++k) off[k] += i * static_cast<IndexT>(p.strides[k][0]);
}

// ---- 128-bit vectors for the dense paths -------------------------------------------------------
template <class T, int V>
struct alignas(sizeof(T) * V) Vec {
  T v[V];
};

// Elements per 16-byte access for the widest of the types.
template <class... Ts>
constexpr int vec_width() {
  constexpr size_t widest = std::max({sizeof(Ts)...});
  return static_cast<int>(16 / widest);
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

}  // namespace vt::cuda
