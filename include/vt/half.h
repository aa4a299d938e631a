// half.h: bf16 and f16, the 16-bit float types of vt, and their conversions to and from f32/f64,
// bit for bit as PyTorch (CPU, x86) converts a contiguous tensor with `.to(dtype)`.
//
// The scalar conversions are integer bit manipulation, so they give the same bits on the host, on
// the device and under any FTZ/DAZ setting. tests/test_half.cpp checks them against torch on a
// million generated values (tools/gen_half_fixtures.py) and on all 65536 16-bit patterns.
//
// The rules, as torch 2.x applies them:
//   f32 -> bf16  round to nearest even on the top 16 bits; f32 subnormals stay bf16 subnormals,
//                overflow carries into the exponent and gives +-inf. Every NaN becomes 0xFFFF.
//                That is ATen's AVX2/AVX-512 Vectorized<BFloat16> cast (it blends in 0xffff where
//                the input is unordered), which every contiguous CPU cast goes through, even of one
//                element. torch's other paths disagree: the scalar c10::BFloat16(float) (fill_,
//                torch.full, strided copies, ATEN_CPU_CAPABILITY=default) gives 0x7FC0, and CUDA's
//                __float2bfloat16 gives 0x7FFF. vt picks one rule, the contiguous CPU one, for all
//                of its devices.
//   f32 -> f16   round to nearest even, f16 subnormals, |x| >= 65520 gives +-inf. A NaN keeps its
//                sign and the top 10 payload bits and is made quiet: sign | 0x7E00 | (m >> 13), as
//                the F16C instruction vcvtps2ph does (torch uses it on both its paths).
//   bf16 -> f32  the bits shifted left by 16 (a signalling NaN stays signalling).
//   f16 -> f32   exact; a NaN keeps sign and payload and is made quiet (vcvtph2ps).
//   f64 -> 16    torch rounds twice: f64 -> f32 (nearest even) and then f32 -> 16 bits, so
//                1 + 2^-8 + 2^-40 gives bf16 1.0 where one rounding would give 1.0078125. vt
//                reproduces the double rounding. An f64 NaN loses its low payload bits in the
//                first step (x86 cvtsd2ss keeps the top 23 and sets the quiet bit). torch's f64 ->
//                bf16 cast gives NaNs 0xFFFF in its 16-wide vector body but 0x7FC0 in the tail;
//                vt gives 0xFFFF everywhere, as torch's f64 -> f32 -> bf16 does.
//   16 -> f64    exact, through f32; a NaN is made quiet (x86 cvtss2sd), payload kept.
#pragma once
#include <bit>
#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#define VT_HOST_DEVICE __host__ __device__
#else
#define VT_HOST_DEVICE
#endif

namespace vt {

// ---- bit casts that work on host and device ---------------------------------------------------
VT_HOST_DEVICE inline uint32_t f32_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  return std::bit_cast<uint32_t>(f);
#endif
}
VT_HOST_DEVICE inline float f32_from_bits(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  return std::bit_cast<float>(u);
#endif
}
VT_HOST_DEVICE inline uint64_t f64_bits(double d) {
#if defined(__CUDA_ARCH__)
  return static_cast<uint64_t>(__double_as_longlong(d));
#else
  return std::bit_cast<uint64_t>(d);
#endif
}
VT_HOST_DEVICE inline double f64_from_bits(uint64_t u) {
#if defined(__CUDA_ARCH__)
  return __longlong_as_double(static_cast<long long>(u));
#else
  return std::bit_cast<double>(u);
#endif
}

// The NaN every f32 -> bf16 conversion produces (see the rules above).
inline constexpr uint16_t kBF16NaNBits = 0xFFFF;

// ---- f32 <-> bf16 ------------------------------------------------------------------------------
VT_HOST_DEVICE inline uint16_t float_to_bf16_bits(float f) {
  const uint32_t u = f32_bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return kBF16NaNBits;
  // Adding 0x7FFF rounds up exactly when the low half is above the tie; the lowest kept bit breaks
  // the tie towards even. A carry out of the mantissa bumps the exponent, up to inf.
  const uint32_t rounding_bias = 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>((u + rounding_bias) >> 16);
}

VT_HOST_DEVICE inline float bf16_bits_to_float(uint16_t b) {
  return f32_from_bits(static_cast<uint32_t>(b) << 16);
}

// ---- f32 <-> f16 -------------------------------------------------------------------------------
// f16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. Largest finite 65504 (0x7BFF), smallest
// normal 2^-14 (0x0400), smallest subnormal 2^-24 (0x0001).
VT_HOST_DEVICE inline uint16_t float_to_f16_bits(float f) {
  const uint32_t u = f32_bits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return sign | 0x7E00u | static_cast<uint16_t>((a >> 13) & 0x3FFu);
  if (a >= 0x477FF000u) return sign | 0x7C00u;  // >= 65520, the tie above 65504, and inf
  if (a >= 0x38800000u) {                       // f16 normal: rebias 127 -> 15, round 13 bits
    const uint32_t rebiased = a - 0x38000000u;
    const uint32_t rounding_bias = 0x0FFFu + ((rebiased >> 13) & 1u);
    return sign | static_cast<uint16_t>((rebiased + rounding_bias) >> 13);
  }
  // f16 subnormal or zero: the result counts units of 2^-24. With the implicit bit, the value is
  // m * 2^(e - 150) = m * 2^-24 / 2^(126 - e), so shift m right by 126 - e, rounding to even.
  const uint32_t e = a >> 23;
  const uint32_t shift = 126u - e;  // >= 14 here
  if (shift > 24u) return sign;     // below 2^-25 (or an f32 subnormal): rounds to zero
  const uint32_t m = (a & 0x7FFFFFu) | 0x800000u;
  uint32_t q = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (q & 1u))) q += 1u;  // may carry into 0x0400, the min normal
  return sign | static_cast<uint16_t>(q);
}

VT_HOST_DEVICE inline float f16_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu;
  if (exp == 0x1Fu) return f32_from_bits(sign | 0x7F800000u | (mant ? 0x400000u | (mant << 13) : 0u));
  if (exp != 0u) return f32_from_bits(sign | ((exp + 112u) << 23) | (mant << 13));
  // zero or subnormal mant * 2^-24: normalise so the leading one becomes the implicit bit
  if (mant == 0u) return f32_from_bits(sign);
  uint32_t e = 113u;  // f32 biased exponent of 2^-14, lowered once per shift
  uint32_t m = mant;
  while (!(m & 0x400u)) { m <<= 1; --e; }
  return f32_from_bits(sign | (e << 23) | ((m & 0x3FFu) << 13));
}

// ---- f64 -> 16 bits (double rounding through f32, as torch does) ------------------------------
// The cast rounds to nearest even on host (default rounding mode) and device (cvt.rn.f32.f64) and
// gives +-inf past the float range (IEEE 754 / C++ Annex F behaviour on every target vt builds for).
VT_HOST_DEVICE inline uint16_t double_to_bf16_bits(double d) {
  return float_to_bf16_bits(static_cast<float>(d));  // every NaN -> kBF16NaNBits anyway
}

VT_HOST_DEVICE inline uint16_t double_to_f16_bits(double d) {
  const uint64_t u = f64_bits(d);
  if ((u & 0x7FFFFFFFFFFFFFFFull) > 0x7FF0000000000000ull)  // NaN: top 10 payload bits, quieted
    return static_cast<uint16_t>(((u >> 48) & 0x8000u) | 0x7E00u | ((u >> 42) & 0x3FFu));
  return float_to_f16_bits(static_cast<float>(d));
}

// ---- 16 bits -> f64 (exact; NaNs quieted with payload kept, as x86's float -> double) ---------
VT_HOST_DEVICE inline double float_to_double_quieting(float f) {
  const uint32_t u = f32_bits(f);
  if ((u & 0x7FFFFFFFu) <= 0x7F800000u) return static_cast<double>(f);
  return f64_from_bits((static_cast<uint64_t>(u & 0x80000000u) << 32) | 0x7FF8000000000000ull |
                       (static_cast<uint64_t>(u & 0x7FFFFFu) << 29));
}
VT_HOST_DEVICE inline double bf16_bits_to_double(uint16_t b) {
  return float_to_double_quieting(bf16_bits_to_float(b));
}
VT_HOST_DEVICE inline double f16_bits_to_double(uint16_t h) {
  return float_to_double_quieting(f16_bits_to_float(h));
}

// ---- the value types ---------------------------------------------------------------------------
// Trivial 2-byte wrappers around the bits: no arithmetic (compute in f32), explicit conversions.
struct bf16 {
  uint16_t bits;
  bf16() = default;
  VT_HOST_DEVICE explicit bf16(float f) : bits(float_to_bf16_bits(f)) {}
  VT_HOST_DEVICE explicit bf16(double d) : bits(double_to_bf16_bits(d)) {}
  VT_HOST_DEVICE static bf16 from_bits(uint16_t b) { bf16 r; r.bits = b; return r; }
  VT_HOST_DEVICE explicit operator float() const { return bf16_bits_to_float(bits); }
  VT_HOST_DEVICE explicit operator double() const { return bf16_bits_to_double(bits); }
};

struct f16 {
  uint16_t bits;
  f16() = default;
  VT_HOST_DEVICE explicit f16(float f) : bits(float_to_f16_bits(f)) {}
  VT_HOST_DEVICE explicit f16(double d) : bits(double_to_f16_bits(d)) {}
  VT_HOST_DEVICE static f16 from_bits(uint16_t b) { f16 r; r.bits = b; return r; }
  VT_HOST_DEVICE explicit operator float() const { return f16_bits_to_float(bits); }
  VT_HOST_DEVICE explicit operator double() const { return f16_bits_to_double(bits); }
};

static_assert(sizeof(bf16) == 2 && sizeof(f16) == 2, "bf16/f16 must be 2 bytes");

// ---- bulk CPU converters (src/half.cpp): same bits as the scalar functions ---------------------
// AVX2/F16C where the build targets it, scalar otherwise. Single-threaded: callers split big
// tensors into chunks across threads. src and dst may not overlap.
void convert_f32_to_bf16(const float* src, uint16_t* dst, size_t n);
void convert_bf16_to_f32(const uint16_t* src, float* dst, size_t n);
void convert_f32_to_f16(const float* src, uint16_t* dst, size_t n);
void convert_f16_to_f32(const uint16_t* src, float* dst, size_t n);
void convert_f64_to_bf16(const double* src, uint16_t* dst, size_t n);
void convert_f64_to_f16(const double* src, uint16_t* dst, size_t n);

}  // namespace vt
