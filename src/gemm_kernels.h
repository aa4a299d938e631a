// gemm_kernels.h: the register-blocked micro-kernels behind vt::cpu::gemm_* (internal to libvt).
//
// A micro-kernel multiplies one packed A micro-panel by one packed B micro-panel:
//   a: (kc, MR) k-major, a[k*MR + r] = A(i0 + r, k0 + k)      (zero-padded past the matrix edge)
//   b: (kc, NR) k-major, b[k*NR + c] = B(k0 + k, j0 + c)
//   c: (MR, NR) row-major with row stride ldc, column stride 1; updated as
//      c = alpha * (a . b) + beta * c, where beta == 0 does not read c.
// The accumulator of every c element is one FMA chain over k in increasing order, so the result of
// an element does not depend on which tile or thread computed it.
#pragma once
#include <cstdint>

namespace vt::cpu::detail {

template <class T>
using MicroKernel = void (*)(int64_t kc, const T* a, const T* b, T* c, int64_t ldc, T alpha, T beta);

// Packing helper: the transpose of a 16 x 16 block, out[j][i] = in[i][j].
//   in row i < rows: 16 elements at src + i*lds, of which the first `cols` are read (the rest
//   and rows >= rows count as 0); out row j < cols: the first `width` (<= 16) elements are
//   written at dst + j*ldd.
// It turns the k-contiguous rows of a row-major A, or of W in B = W^T, into k-major panels.
template <class T>
using Transpose16 = void (*)(const T* src, int64_t lds, int rows, int cols, T* dst, int64_t ldd,
                             int width);

// One micro-kernel with the cache blocking tuned for it (all sizes in elements).
//   MC rows of A: the packed A block (MC, KC) stays in L3, shared by the threads' reads.
//   KC: depth of one pass; one A micro-panel (KC, MR) stays in L1 while the B block streams past.
//   NC columns of B: the packed B block (KC, NC) stays in the core's private L2.
template <class T>
struct KernelSet {
  MicroKernel<T> kernel;
  Transpose16<T> transpose16;  // nullptr: pack with scalar loops
  int mr, nr;
  int64_t mc, kc, nc;
  const char* name;
};

// Kernels compiled for an ISA; each returns a valid set (the caller checks the CPU first).
KernelSet<float> avx512_kernel_f32();
KernelSet<double> avx512_kernel_f64();
KernelSet<float> avx2_kernel_f32();
KernelSet<double> avx2_kernel_f64();
KernelSet<float> portable_kernel_f32();
KernelSet<double> portable_kernel_f64();

// Micro-kernels with B read in place (micro_kernel_offsets in gemm_microkernel.inc): c (rows, nr)
// (+)= a (kc, rows) k-major . B, where row k of B is the nr floats at b + b_off[k]. by_rows[m] takes
// m = 1..mr rows, so a matrix whose row count is not a multiple of mr is not padded with zero rows.
// conv2d's implicit GEMM over phase planes uses them (nn_conv_planes.cpp).
using MicroKernelOffsets = void (*)(int64_t kc, const float* a, const float* b, const int64_t* b_off, float* c,
                                    int64_t ldc, bool accumulate);
struct OffsetKernelsF32 {
  MicroKernelOffsets by_rows[8];  // [1..mr]
  int mr, nr;
  const char* name;
};
// AVX2 (6 x 16) where the CPU has it, else plain C++ (4 x 8).
const OffsetKernelsF32& offset_kernels_f32();

// The set gemm uses, picked once by CPU features. Tests and benchmarks may override it (the
// override is process-wide and not thread-safe; set it before calling gemm).
KernelSet<float>& active_kernel_f32();
KernelSet<double>& active_kernel_f64();

}  // namespace vt::cpu::detail
