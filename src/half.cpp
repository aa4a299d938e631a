// half.cpp: bulk CPU conversions between f32/f64 and bf16/f16, bit-exact with the scalar rules in
// include/vt/half.h (and so with PyTorch).
//
// x86 with AVX2 + F16C (any build with -march=native on a post-2013 CPU) converts 8 or 16 values per
// step; everything else, and the tails, use the scalar functions.
//  - f32 -> bf16 is the integer round-to-nearest-even of half.h done lane-wise, with NaN lanes
//    blended to 0xFFFF. AVX-512 BF16's vcvtneps2bf16 is not used: it flushes f32 subnormals to
//    zero and keeps NaN payloads, so it disagrees with torch on both.
//  - f32 <-> f16 is vcvtps2ph / vcvtph2ps (F16C) with the rounding fixed to nearest even in the
//    immediate: the same instructions torch uses, and the same bits as the scalar code (tested).
//  - f64 -> 16 bits rounds to f32 first (vcvtpd2ps, which follows MXCSR: nearest even unless
//    someone changed it) and then as f32, the double rounding torch does.
#include "vt/half.h"

#if defined(__AVX2__) && defined(__F16C__)
#include <immintrin.h>
#define VT_HALF_AVX2 1
#endif

namespace vt {

#if defined(VT_HALF_AVX2)
namespace {

// 8 f32 lanes -> 8 bf16 values in the low 16 bits of 32-bit lanes.
inline __m256i bf16_round_lanes(__m256 x) {
  const __m256i u = _mm256_castps_si256(x);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i bias = _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF));
  const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, bias), 16);
  const __m256i is_nan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
  return _mm256_blendv_epi8(rounded, _mm256_set1_epi32(kBF16NaNBits), is_nan);
}

// Two groups of 8 values in 32-bit lanes -> 16 uint16 in order. packus interleaves 128-bit halves
// (a0-3 b0-3 a4-7 b4-7); the 64-bit permute puts them back (a0-7 b0-7). Values are <= 0xFFFF, so
// the unsigned saturation never bites.
inline void store_16_lanes(uint16_t* dst, __m256i a, __m256i b) {
  const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xD8);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), packed);
}

inline __m256 load_8_doubles_as_floats(const double* src) {
  const __m128 lo = _mm256_cvtpd_ps(_mm256_loadu_pd(src));
  const __m128 hi = _mm256_cvtpd_ps(_mm256_loadu_pd(src + 4));
  return _mm256_set_m128(hi, lo);
}

constexpr int kF16Round = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

}  // namespace
#endif

void convert_f32_to_bf16(const float* src, uint16_t* dst, size_t n) {
  size_t i = 0;
#if defined(VT_HALF_AVX2)
  for (; i + 16 <= n; i += 16)
    store_16_lanes(dst + i, bf16_round_lanes(_mm256_loadu_ps(src + i)),
                   bf16_round_lanes(_mm256_loadu_ps(src + i + 8)));
#endif
  for (; i < n; ++i) dst[i] = float_to_bf16_bits(src[i]);
}

void convert_bf16_to_f32(const uint16_t* src, float* dst, size_t n) {
  size_t i = 0;
#if defined(VT_HALF_AVX2)
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    const __m256i u = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
    _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(u));
  }
#endif
  for (; i < n; ++i) dst[i] = bf16_bits_to_float(src[i]);
}

void convert_f32_to_f16(const float* src, uint16_t* dst, size_t n) {
  size_t i = 0;
#if defined(VT_HALF_AVX2)
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), kF16Round));
#endif
  for (; i < n; ++i) dst[i] = float_to_f16_bits(src[i]);
}

void convert_f16_to_f32(const uint16_t* src, float* dst, size_t n) {
  size_t i = 0;
#if defined(VT_HALF_AVX2)
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
#endif
  for (; i < n; ++i) dst[i] = f16_bits_to_float(src[i]);
}

void convert_f64_to_bf16(const double* src, uint16_t* dst, size_t n) {
  size_t i = 0;
#if defined(VT_HALF_AVX2)
  for (; i + 16 <= n; i += 16)
    store_16_lanes(dst + i, bf16_round_lanes(load_8_doubles_as_floats(src + i)),
                   bf16_round_lanes(load_8_doubles_as_floats(src + i + 8)));
#endif
  for (; i < n; ++i) dst[i] = double_to_bf16_bits(src[i]);
}

void convert_f64_to_f16(const double* src, uint16_t* dst, size_t n) {
  size_t i = 0;
#if defined(VT_HALF_AVX2)
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(load_8_doubles_as_floats(src + i), kF16Round));
#endif
  for (; i < n; ++i) dst[i] = double_to_f16_bits(src[i]);
}

}  // namespace vt
