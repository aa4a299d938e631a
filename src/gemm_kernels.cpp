// gemm_kernels.cpp: the micro-kernels of vt::cpu::gemm_* for AVX-512, AVX2 and plain C++, the
// AVX-512 transpose used by packing, and the choice among them by CPU features at first use.
//
// Tile shapes (MR rows of C x NR columns; vectors run along a row of C so stores are contiguous):
//   AVX-512 f32: 14 x 32 = 28 zmm accumulators + 2 B vectors + 1 broadcast = 31 of 32 registers.
//                Per k: 2 loads + 14 broadcasts feed 28 independent FMAs (Zen 4 retires one zmm
//                FMA a cycle with 4 cycles latency, so 28 chains keep it busy). Measured on L2-
//                resident panels: 96-98% of the FMA peak of this 2-core AMD EPYC (117 GFLOP/s/core).
//   AVX-512 f64: 14 x 16, the same register plan with 8 doubles a vector.
//   AVX2 f32/f64: 6 x 16 / 6 x 8 = 12 ymm accumulators of 16 registers.
// Blocking for AMD EPYC Zen 4 (32 KiB L1d and 1 MiB L2 per core, 32 MiB L3 shared): KC = 384
// (a 14 x 384 A micro-panel is 21 KiB), the B block KC x NC = 384 x 320 (480 KiB) stays in L2
// while A micro-panels take turns, and the A block MC x KC = 2016 x 384 (3 MiB) sits in L3, so
// B is packed once per MC = 2016 rows. The driver shrinks each to equal blocks that cover the
// problem (K = 896 runs as 3 x 299). Numbers from bench_matmul and a sweep of MC, KC, NC.
// The file compiles without -march=native: kernels carry their own target attributes and run
// only after __builtin_cpu_supports says the CPU has the instructions.
#include "gemm_kernels.h"

#include <immintrin.h>

namespace vt::cpu::detail {

namespace avx512 {
#define VT_KERNEL_TARGET __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,fma")))
#define VT_INLINE VT_KERNEL_TARGET __attribute__((always_inline)) static inline
struct F32 {
  using T = float;
  using V = __m512;
  static constexpr int L = 16;
  static constexpr int kPrefetchB = 8;  // B rows ahead
  VT_INLINE V zero() { return _mm512_setzero_ps(); }
  VT_INLINE V set1(T x) { return _mm512_set1_ps(x); }
  VT_INLINE V load(const T* p) { return _mm512_loadu_ps(p); }
  VT_INLINE V broadcast(const T* p) { return _mm512_set1_ps(*p); }
  VT_INLINE V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  VT_INLINE V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  VT_INLINE void store(T* p, V x) { _mm512_storeu_ps(p, x); }
  VT_INLINE void prefetch(const T* p) { _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0); }
};
struct F64 {
  using T = double;
  using V = __m512d;
  static constexpr int L = 8;
  static constexpr int kPrefetchB = 8;
  VT_INLINE V zero() { return _mm512_setzero_pd(); }
  VT_INLINE V set1(T x) { return _mm512_set1_pd(x); }
  VT_INLINE V load(const T* p) { return _mm512_loadu_pd(p); }
  VT_INLINE V broadcast(const T* p) { return _mm512_set1_pd(*p); }
  VT_INLINE V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  VT_INLINE V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  VT_INLINE void store(T* p, V x) { _mm512_storeu_pd(p, x); }
  VT_INLINE void prefetch(const T* p) { _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0); }
};
#include "gemm_microkernel.inc"

// GCC 12 warns that _mm512_undefined_ps() inside the shuffle intrinsics is uninitialized.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// 16 x 16 f32 transpose in registers: 32 in-lane unpacks/shuffles, then 32 shuffles of 128-bit
// lanes; masked loads and stores handle partial blocks without touching memory past them.
VT_KERNEL_TARGET void transpose16_f32(const float* src, int64_t lds, int rows, int cols,
                                      float* dst, int64_t ldd, int width) {
  const __mmask16 load_mask = __mmask16((1u << cols) - 1), store_mask = __mmask16((1u << width) - 1);
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i)
    r[i] = i < rows ? _mm512_maskz_loadu_ps(load_mask, src + i * lds) : _mm512_setzero_ps();
  // Within each 128-bit lane, 4 x 4 transposes of rows (4g .. 4g+3).
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int g = 0; g < 16; g += 4) {  // r[g + c]: column 4j + c of rows 4g.., in lane j
    r[g + 0] = _mm512_shuffle_ps(t[g], t[g + 2], 0x44);
    r[g + 1] = _mm512_shuffle_ps(t[g], t[g + 2], 0xEE);
    r[g + 2] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0x44);
    r[g + 3] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
  }
  // Then a 4 x 4 transpose of 128-bit lanes across the four row groups, for each c.
  for (int c = 0; c < 4; ++c) {
    const __m512 v0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x44);
    const __m512 v1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xEE);
    const __m512 v2 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x44);
    const __m512 v3 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xEE);
    t[0 + c] = _mm512_shuffle_f32x4(v0, v2, 0x88);
    t[4 + c] = _mm512_shuffle_f32x4(v0, v2, 0xDD);
    t[8 + c] = _mm512_shuffle_f32x4(v1, v3, 0x88);
    t[12 + c] = _mm512_shuffle_f32x4(v1, v3, 0xDD);
  }
  for (int j = 0; j < cols; ++j) _mm512_mask_storeu_ps(dst + j * ldd, store_mask, t[j]);
}
#pragma GCC diagnostic pop
#undef VT_INLINE
#undef VT_KERNEL_TARGET
}  // namespace avx512

namespace avx2 {
#define VT_KERNEL_TARGET __attribute__((target("avx2,fma")))
#define VT_INLINE VT_KERNEL_TARGET __attribute__((always_inline)) static inline
struct F32 {
  using T = float;
  using V = __m256;
  static constexpr int L = 8;
  static constexpr int kPrefetchB = 8;
  VT_INLINE V zero() { return _mm256_setzero_ps(); }
  VT_INLINE V set1(T x) { return _mm256_set1_ps(x); }
  VT_INLINE V load(const T* p) { return _mm256_loadu_ps(p); }
  VT_INLINE V broadcast(const T* p) { return _mm256_broadcast_ss(p); }
  VT_INLINE V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  VT_INLINE V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  VT_INLINE void store(T* p, V x) { _mm256_storeu_ps(p, x); }
  VT_INLINE void prefetch(const T* p) { _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0); }
};
struct F64 {
  using T = double;
  using V = __m256d;
  static constexpr int L = 4;
  static constexpr int kPrefetchB = 8;
  VT_INLINE V zero() { return _mm256_setzero_pd(); }
  VT_INLINE V set1(T x) { return _mm256_set1_pd(x); }
  VT_INLINE V load(const T* p) { return _mm256_loadu_pd(p); }
  VT_INLINE V broadcast(const T* p) { return _mm256_broadcast_sd(p); }
  VT_INLINE V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  VT_INLINE V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  VT_INLINE void store(T* p, V x) { _mm256_storeu_pd(p, x); }
  VT_INLINE void prefetch(const T* p) { _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0); }
};
#include "gemm_microkernel.inc"
#undef VT_INLINE
#undef VT_KERNEL_TARGET
}  // namespace avx2

// Plain C++ for CPUs without AVX2 (and as the readable statement of what the kernels compute).
// Multiply and add are written as one std::fma-free expression: with FMA hardware the compiler
// contracts it, without it stays two roundings; either way one build gives one answer.
namespace portable {
#define VT_KERNEL_TARGET
#define VT_INLINE __attribute__((always_inline)) static inline
template <class Scalar>
struct Scalar1 {
  using T = Scalar;
  using V = Scalar;
  static constexpr int L = 1;
  static constexpr int kPrefetchB = 8;
  VT_INLINE V zero() { return 0; }
  VT_INLINE V set1(T x) { return x; }
  VT_INLINE V load(const T* p) { return *p; }
  VT_INLINE V broadcast(const T* p) { return *p; }
  VT_INLINE V fma(V a, V b, V c) { return a * b + c; }
  VT_INLINE V mul(V a, V b) { return a * b; }
  VT_INLINE void store(T* p, V x) { *p = x; }
  VT_INLINE void prefetch(const T*) {}
};
#include "gemm_microkernel.inc"
#undef VT_INLINE
#undef VT_KERNEL_TARGET
}  // namespace portable

KernelSet<float> avx512_kernel_f32() {
  return {avx512::micro_kernel<avx512::F32, 14, 2>, avx512::transpose16_f32, 14, 32, 2016, 384, 320, "avx512 f32 14x32"};
}
KernelSet<double> avx512_kernel_f64() {
  return {avx512::micro_kernel<avx512::F64, 14, 2>, nullptr, 14, 16, 504, 256, 256, "avx512 f64 14x16"};
}
KernelSet<float> avx2_kernel_f32() {
  return {avx2::micro_kernel<avx2::F32, 6, 2>, nullptr, 6, 16, 576, 256, 512, "avx2 f32 6x16"};
}
KernelSet<double> avx2_kernel_f64() {
  return {avx2::micro_kernel<avx2::F64, 6, 2>, nullptr, 6, 8, 288, 256, 512, "avx2 f64 6x8"};
}
KernelSet<float> portable_kernel_f32() {
  return {portable::micro_kernel<portable::Scalar1<float>, 4, 8>, nullptr, 4, 8, 256, 256, 1024,
          "portable f32 4x8"};
}
KernelSet<double> portable_kernel_f64() {
  return {portable::micro_kernel<portable::Scalar1<double>, 4, 8>, nullptr, 4, 8, 128, 256, 1024,
          "portable f64 4x8"};
}

static bool has_avx512() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw");
}
static bool has_avx2() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }

KernelSet<float>& active_kernel_f32() {
  static KernelSet<float> set = has_avx512() ? avx512_kernel_f32()
                                : has_avx2() ? avx2_kernel_f32()
                                             : portable_kernel_f32();
  return set;
}
KernelSet<double>& active_kernel_f64() {
  static KernelSet<double> set = has_avx512() ? avx512_kernel_f64()
                                 : has_avx2() ? avx2_kernel_f64()
                                              : portable_kernel_f64();
  return set;
}

const OffsetKernelsF32& offset_kernels_f32() {
  static const OffsetKernelsF32 avx2_set{{nullptr, avx2::micro_kernel_offsets<avx2::F32, 1, 2>,
                                          avx2::micro_kernel_offsets<avx2::F32, 2, 2>,
                                          avx2::micro_kernel_offsets<avx2::F32, 3, 2>,
                                          avx2::micro_kernel_offsets<avx2::F32, 4, 2>,
                                          avx2::micro_kernel_offsets<avx2::F32, 5, 2>,
                                          avx2::micro_kernel_offsets<avx2::F32, 6, 2>},
                                         6, 16, "avx2 f32 6x16, B in place"};
  using S = portable::Scalar1<float>;
  static const OffsetKernelsF32 portable_set{{nullptr, portable::micro_kernel_offsets<S, 1, 8>,
                                              portable::micro_kernel_offsets<S, 2, 8>,
                                              portable::micro_kernel_offsets<S, 3, 8>,
                                              portable::micro_kernel_offsets<S, 4, 8>},
                                             4, 8, "portable f32 4x8, B in place"};
  return has_avx2() ? avx2_set : portable_set;
}

}  // namespace vt::cpu::detail
