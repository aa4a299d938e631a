// scalar.h: the scalar rules both backends follow, written once for the host (src/) and the device
// (cuda/): the compute type of each dtype, the accumulator of sums and scans, NaN-propagating
// maximum and minimum, and integer power by squaring.
#pragma once
#include <cstdint>
#include <type_traits>

#include "vt/half.h"  // bf16, f16 and VT_HOST_DEVICE

namespace vt::scalar {

// Elementwise math runs in: f32 for bf16/f16/f32, f64 for f64, int64 for every integer and bool.
template <class T> struct compute_type { using type = T; };
template <> struct compute_type<bf16> { using type = float; };
template <> struct compute_type<f16> { using type = float; };
template <> struct compute_type<int32_t> { using type = int64_t; };
template <> struct compute_type<uint8_t> { using type = int64_t; };
template <> struct compute_type<bool> { using type = int64_t; };
template <class T> using compute_t = typename compute_type<T>::type;

// Sums and cumulative sums accumulate in double for floating types (PyTorch's CPU rule), int64 else.
template <class C> using sum_acc_t = std::conditional_t<std::is_floating_point_v<C>, double, int64_t>;

// maximum/minimum propagate NaN from either side (torch.maximum, torch.minimum).
template <class C>
VT_HOST_DEVICE inline C maximum(C x, C y) { return x != x ? x : (y != y ? y : (x > y ? x : y)); }
template <class C>
VT_HOST_DEVICE inline C minimum(C x, C y) { return x != x ? x : (y != y ? y : (x < y ? x : y)); }

// x^y for integers by squaring; a negative exponent gives what integer division would (1 for x = 1,
// +-1 for x = -1 by parity, 0 otherwise).
VT_HOST_DEVICE inline int64_t int_pow(int64_t x, int64_t y) {
  if (y < 0) return x == 1 ? 1 : (x == -1 ? ((y & 1) ? -1 : 1) : 0);
  int64_t r = 1;
  for (int64_t k = y, base = x; k > 0; k >>= 1, base *= base)
    if (k & 1) r *= base;
  return r;
}

}  // namespace vt::scalar
