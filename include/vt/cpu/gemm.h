// gemm.h: CPU matrix multiply on strided operands, the one kernel behind matmul, linear, bmm and
// attention on the CPU backend.
//
//   C[i,j] = alpha * sum_k A(i,k) * B(k,j) + beta * C[i,j]      for i < M, j < N, k < K
//
// with A(i,k) = A[i*rsA + k*csA], B(k,j) = B[k*rsB + j*csB], C[i,j] = C[i*rsC + j*csC] (strides in
// elements, any sign or value, zero included for A and B). A transposed operand is read in place:
// X^T of a row-major X (R, S) is {ptr, rs = 1, cs = S}. beta == 0 means C is not read, so it may
// hold NaN. K == 0 (or alpha == 0) gives C = beta * C.
//
// Precision: f32 and f64 accumulate in their own type; bf16 and f16 operands (raw uint16_t bit
// patterns) are widened exactly to f32 and accumulate in f32 into an f32 C.
//
// Determinism: threads split C into blocks, never K, so every C element is summed in the same
// order with any thread count: results are bitwise identical with 1, 2 or N OpenMP threads.
// Calls from inside an OpenMP parallel region run on the calling thread.
#pragma once
#include <cstdint>
#include <functional>

namespace vt::cpu {

void gemm_f32(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t rsA, int64_t csA,
              const float* B, int64_t rsB, int64_t csB, float beta, float* C, int64_t rsC,
              int64_t csC);

void gemm_f64(int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t rsA,
              int64_t csA, const double* B, int64_t rsB, int64_t csB, double beta, double* C,
              int64_t rsC, int64_t csC);

// The same product with B supplied by its packing: pack_b(k0, kc, n0, nc, nr, dst) writes the
// (kc, nc) block of B at row k0, column n0 as ceil(nc / nr) panels of (kc, nr) floats, k-major
// (dst[panel * kc * nr + k * nr + q] = B(k0 + k, n0 + panel * nr + q)), columns past nc zero. It
// is called from the GEMM's threads, with blocks that fit the cache, so B never exists in memory
// as a matrix: conv2d's grad-weight packs its im2col columns from the input this way. C is row-major.
using PackBFn = std::function<void(int64_t k0, int64_t kc, int64_t n0, int64_t nc, int nr, float* dst)>;
void gemm_f32_pack_b(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t rsA, int64_t csA,
                     const PackBFn& pack_b, float beta, float* C, int64_t rsC);

// A and B hold bfloat16 bits; accumulation and C are f32.
void gemm_bf16_f32acc(int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A, int64_t rsA,
                      int64_t csA, const uint16_t* B, int64_t rsB, int64_t csB, float beta,
                      float* C, int64_t rsC, int64_t csC);

// A and B hold IEEE binary16 bits; accumulation and C are f32.
void gemm_f16_f32acc(int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A, int64_t rsA,
                     int64_t csA, const uint16_t* B, int64_t rsB, int64_t csB, float beta,
                     float* C, int64_t rsC, int64_t csC);

// Exact widening of one 16-bit float to f32 (shared with the elementwise kernels and tests).
inline float bf16_bits_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}
float f16_bits_to_f32(uint16_t h);

}  // namespace vt::cpu
