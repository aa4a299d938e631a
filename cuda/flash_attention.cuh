// flash_attention.cuh: what the tensor-core flash-attention kernels (flash_attention_fwd.cu,
// flash_attention_bwd.cu) share: the tile sizes, the warp-level matrix instructions (mma.sync
// m16n8k16 bf16/f16 -> f32, ldmatrix, cp.async), the swizzled shared-memory tile layout, and the
// per-call mask plan (per-row key ranges plus per-tile bounds, int32 on the device).
//
// Fragment layouts (PTX ISA, "mma.m16n8k16"), with g = lane / 4, t = lane % 4:
//   A 16x16 (row-major)  a0 (g, 2t..2t+1)  a1 (g+8, 2t..)  a2 (g, 2t+8..)  a3 (g+8, 2t+8..)
//   B 16x8  (k x n)      b0 (k 2t..2t+1, n g)  b1 (k 2t+8.., n g)
//   C 16x8  (f32)        c0 c1 (g, 2t..2t+1)   c2 c3 (g+8, 2t..2t+1)
// A C fragment pair of two adjacent n8 tiles is exactly the A fragment of the next product (the
// probabilities P feed P V without leaving registers).
//
// Shared-memory tiles are row-major (rows, D) in 16-byte chunks; chunk c of row r is stored at
// chunk c ^ (r % 8), so the 8 row addresses of one ldmatrix 8x8 matrix hit 8 different bank groups.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "check.h"
#include "vt/half.h"
#include "vt/nn/attention.h"
#include "vt/tensor.h"

namespace vt::cuda::flash {

constexpr int kBlockM = 64;  // query rows per tile of the dQ kernel (16 per warp)
constexpr int kBlockN = 64;  // keys per tile (16 per warp in the dK dV kernel)
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kFwdRB = 2;                     // m16 row blocks per warp in the forward kernel
constexpr int kFwdM = kWarps * 16 * kFwdRB;  // query rows per tile of the forward kernel (128)

// ---- host side -------------------------------------------------------------------------------------
// Whether the flash kernels take this call: bf16/f16, D == Dv in {64, 128}, no dense mask, 16-byte
// aligned rows, and VT_ATTENTION_FALLBACK off (device.h). `extra` (dout) is checked like q, k, v when given.
bool flash_supports(const Tensor& q, const Tensor& k, const Tensor& v, const nn::AttentionRows& rows,
                    const Tensor* extra = nullptr);

void flash_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const nn::AttentionRows& rows,
                             double scale, const Tensor& out, const Tensor& lse);
void flash_attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                              const Tensor& lse, const Tensor& dout, const nn::AttentionRows& rows, double scale,
                              const Tensor& dq, const Tensor& dk, const Tensor& dv);

// The mask plan of one call, int32 on the device (one buffer). For query tiles of `q_tile` rows:
//   lo, hi (Tq)          the visible key range of each row, clamped to [0, Tk] (empty: lo = hi = 0)
//   qt_lo, qt_hi (nqt)   the union of the tile's non-empty ranges (lo = hi = 0 when all are empty)
//   qt_in_lo, qt_in_hi   the intersection: keys every row of the tile sees ([0, -1) for a tail
//                        tile past Tq), so key tile [j0, j0 + kBlockN) needs no per-element test
//                        when qt_in_lo <= j0 and j0 + kBlockN <= qt_in_hi
//   kt_first, kt_last (nkt)  for key tiles of kBlockN keys: the query tiles [first, last) whose
//                        union meets the key tile (first = last when none)
struct PlanView {
  const int *lo, *hi, *qt_lo, *qt_hi, *qt_in_lo, *qt_in_hi, *kt_first, *kt_last;
};
struct Plan {
  Tensor buf;  // keeps the device memory alive
  PlanView view;
};
Plan make_plan(const nn::AttentionRows& rows, int64_t Tq, int64_t Tk, int q_tile, Device dev);

// Strides in elements of dims 0..2 of a (B, H, T, E) tensor with a contiguous last dim.
struct Strides {
  int64_t s0, s1, s2;
};

// Raises a kernel's dynamic shared-memory limit past the default 48 KB. Set before every launch: the
// attribute belongs to the current device, and it costs about a microsecond of host time.
template <class K>
void allow_dynamic_smem(K* kernel, int bytes) {
  if (bytes > 48 * 1024)
    VT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
}

// ---- device side -----------------------------------------------------------------------------------
#ifdef __CUDACC__
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Element of a swizzled (rows, D) tile: row r, column c (c a multiple of 8 where a chunk is meant).
template <int D>
__device__ __forceinline__ int swz(int r, int c) {
  return r * D + ((((c >> 3) ^ (r & 7))) << 3) + (c & 7);
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, zero-filled when !valid (src must still be a mapped address).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async4(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(valid ? 4 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

// Four 8x8 b16 matrices; lane l gives the row address of matrix l / 8.
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

// c += a b on the tensor cores; T is bf16 or f16 (vt's 2-byte types).
template <class T>
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same_v<T, bf16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// Two floats rounded (to nearest even) into one register, x in the low half.
template <class T>
__device__ __forceinline__ uint32_t pack2(float x, float y) {
  if constexpr (std::is_same_v<T, bf16>) {
    __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
    return *reinterpret_cast<uint32_t*>(&h);
  } else {
    __half2 h = __floats2half2_rn(x, y);
    return *reinterpret_cast<uint32_t*>(&h);
  }
}
template <class T>
__device__ __forceinline__ float to_float(uint16_t bits) {
  if constexpr (std::is_same_v<T, bf16>) return __uint_as_float(static_cast<uint32_t>(bits) << 16);
  else return __half2float(__ushort_as_half(bits));
}

// Rows [row0, row0 + rows) of one head (row stride rs elements) into a swizzled (R, D) tile; rows
// past `valid` are zero-filled. All kThreads threads take part; the copies are left in flight.
template <int R, int D, class T>
__device__ __forceinline__ void load_tile(T* __restrict__ dst, const T* __restrict__ head, int64_t rs, int64_t row0,
                                          int64_t valid) {
  constexpr int kChunks = R * D / 8, kPerRow = D / 8;
  static_assert(kChunks % kThreads == 0, "tile chunks must split evenly over the threads");
#pragma unroll
  for (int x = 0; x < kChunks / kThreads; ++x) {
    const int c = x * kThreads + threadIdx.x, r = c / kPerRow, col = (c % kPerRow) * 8;
    const bool ok = row0 + r < valid;
    cp_async16(dst + swz<D>(r, col), ok ? head + (row0 + r) * rs + col : head, ok);
  }
}

// load_tile for loads inside a main loop: the source pointer is hidden from the optimizer, so the
// compiler recomputes the few addresses at each call instead of keeping per-chunk pointers live
// across the loop (tens of registers that the forward kernel cannot spare). Same copies as load_tile.
template <int R, int D, class T>
__device__ __forceinline__ void load_tile_lean(T* __restrict__ dst, const T* head, int64_t rs, int64_t row0,
                                               int64_t valid) {
  constexpr int kPerRow = D / 8, kRowsPerPass = kThreads / kPerRow, kPasses = R / kRowsPerPass;
  static_assert(kThreads % kPerRow == 0 && R % kRowsPerPass == 0 && kRowsPerPass % 8 == 0, "tile split");
  asm volatile("" : "+l"(head));
  const int r = static_cast<int>(threadIdx.x) / kPerRow, col = (static_cast<int>(threadIdx.x) % kPerRow) * 8;
  T* d = dst + swz<D>(r, col);  // rows r + x * kRowsPerPass keep r % 8, so the swizzle is the same
  const T* src = head + (row0 + r) * rs + col;
  const int64_t step = kRowsPerPass * rs;
#pragma unroll
  for (int x = 0; x < kPasses; ++x) {
    const bool ok = row0 + r + x * kRowsPerPass < valid;
    cp_async16(d + x * kRowsPerPass * D, ok ? src : head, ok);
    src += step;
  }
}

// Reduce over the 4 lanes of a quad (the lanes that hold one row of a C fragment).
__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}
#endif

}  // namespace vt::cuda::flash
