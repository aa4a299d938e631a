// nn_cpu_math.h: the scalar helpers shared by the CPU kernels of the nn layers and losses
// (src/nn_functional.cpp, src/nn_norm.cpp, src/nn_loss.cpp).
//
// - acc_t<T>: the precision a kernel holds values in: f32 for f32/bf16/f16 storage, f64 for f64.
// - ld / st: element <-> accumulator, rounding once (round-to-nearest-even) on the way back.
// - exp_f32: an exp that GCC vectorises inside `#pragma omp simd` loops (libm's expf is a call,
//   which stops vectorisation). Range reduction x = n ln2 + r with |r| <= ln2/2 (ln2 split in a
//   hi part exact in f32 and a lo part), then the Taylor series of e^r to degree 7: the truncation
//   error |r|^8/8! < 6e-9 is below a tenth of an f32 ulp, so the result is within ~1 ulp of expf.
//   Inputs below -87.3 give exactly 0 (so exp(-inf) = 0 in masked softmax rows, and no subnormal
//   results); inputs above 88.03 (= 127 ln2, where 2^n would need a biased exponent of 255) give
//   +inf, slightly before expf overflows at 88.72; NaN stays NaN.
// - dispatch_float: calls f(T{}) for the four float dtypes.
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "vt/half.h"
#include "vt/tensor.h"

namespace vt::cpu {

template <class T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <class T>
[[gnu::always_inline]] inline acc_t<T> ld(T v) {
  if constexpr (std::is_same_v<T, bf16>) return bf16_bits_to_float(v.bits);
  else if constexpr (std::is_same_v<T, f16>) return f16_bits_to_float(v.bits);
  else return v;
}

template <class T>
[[gnu::always_inline]] inline T st(acc_t<T> v) {
  if constexpr (std::is_same_v<T, bf16>) return bf16::from_bits(float_to_bf16_bits(v));
  else if constexpr (std::is_same_v<T, f16>) return f16::from_bits(float_to_f16_bits(v));
  else return v;
}

// Rounds v through storage type T and back (the cast in Qwen2's RMSNorm rule).
template <class T>
[[gnu::always_inline]] inline acc_t<T> round_to(acc_t<T> v) {
  return ld<T>(st<T>(v));
}

// always_inline: a call left in a loop (GCC's inliner gives up in large OpenMP-outlined bodies)
// stops vectorisation of the whole loop.
[[gnu::always_inline]] inline float exp_f32(float x) {
  const float kLog2e = 1.44269504088896341f, kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  // Clamp with compares: std::fmin/fmax are libm calls (their NaN rule differs from minps), which
  // would stop vectorisation. A NaN passes through here and is returned at the end.
  float xc = x < -87.33654f ? -87.33654f : x;
  xc = xc > 88.02969f ? 88.02969f : xc;
  // n = round(x / ln2) by the 1.5 * 2^23 trick (valid for |n| < 2^22).
  float n = (xc * kLog2e + 12582912.0f) - 12582912.0f;
  float r = std::fma(n, -kLn2Lo, std::fma(n, -kLn2Hi, xc));
  float p = 1.0f / 5040;
  p = std::fma(p, r, 1.0f / 720);
  p = std::fma(p, r, 1.0f / 120);
  p = std::fma(p, r, 1.0f / 24);
  p = std::fma(p, r, 1.0f / 6);
  p = std::fma(p, r, 0.5f);
  p = std::fma(p, r, 1.0f);
  p = std::fma(p, r, 1.0f);
  float scale = std::bit_cast<float>(static_cast<int32_t>(n + 127.0f) << 23);
  float y = p * scale;
  y = x < -87.33654f ? 0.0f : y;
  y = x > 88.02969f ? INFINITY : y;
  return x != x ? x : y;
}

template <class C>
[[gnu::always_inline]] inline C exp_acc(C x) {
  if constexpr (std::is_same_v<C, float>) return exp_f32(x);
  else return std::exp(x);
}

template <class F>
decltype(auto) dispatch_float(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::F32: return f(float{});
    case DType::F64: return f(double{});
    case DType::BF16: return f(bf16{});
    case DType::F16: return f(f16{});
    default: VT_FAIL(op, ": needs a floating-point tensor, got ", dtype_name(t));
  }
}

}  // namespace vt::cpu
