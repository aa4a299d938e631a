// math.cuh: the scalar math the elementwise functors share (unary.cu, binary.cu, compare.cu):
// libdevice functions picked by compute type (f32 or f64), integer power by squaring with the CPU's
// rule for negative exponents, and op parameters converted to the compute type without UB.
#pragma once
#include <cstdint>
#include <type_traits>

#include "backend.h"
#include "map.cuh"

namespace vt::cuda {

// ---- math in the compute type -------------------------------------------------------------------
#define VT_MATH1(name, ffn, dfn)                                              \
  template <class C>                                                          \
  __device__ __forceinline__ C name(C v) {                                    \
    if constexpr (std::is_same_v<C, float>) return ffn(v);                    \
    else return dfn(v);                                                       \
  }
VT_MATH1(m_exp, expf, exp)
VT_MATH1(m_log, logf, log)
VT_MATH1(m_sqrt, sqrtf, sqrt)
VT_MATH1(m_sin, sinf, sin)
VT_MATH1(m_cos, cosf, cos)
VT_MATH1(m_tanh, tanhf, tanh)
#undef VT_MATH1
template <class C>
__device__ __forceinline__ C m_pow(C x, C y) {
  if constexpr (std::is_same_v<C, float>) return powf(x, y);
  else return pow(x, y);
}

using scalar::int_pow;  // vt/scalar.h: x^y for integers by squaring, the CPU's rule

// Converts a double parameter to the compute type, saturating for integers (no UB on +-inf).
template <class C>
inline C param(double p) {
  if constexpr (std::is_floating_point_v<C>) {
    return static_cast<C>(p);
  } else {
    if (p != p) return 0;
    if (p <= -9223372036854775808.0) return INT64_MIN;
    if (p >= 9223372036854775808.0) return INT64_MAX;
    return static_cast<C>(p);
  }
}

// Comparisons and logical ops (Eq .. Or) of binary(), defined in compare.cu.
void binary_compare(kernels::BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out);

}  // namespace vt::cuda
