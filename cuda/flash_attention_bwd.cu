// flash_attention_bwd.cu: the tensor-core flash-attention backward (FlashAttention-2, Dao 2023,
// Algorithm 2) for bf16/f16 with head dim 64 or 128, deterministic, behind the CUDA
// attention_backward kernel (nn_attention.cu dispatches; flash_attention_fwd.cu saved lse).
//
// What the forward saved: the output O (q's dtype) and lse (f32, natural log). P is recomputed as
// exp2(S * scale * log2 e - lse * log2 e); a row that saw nothing has lse = -inf and is masked in
// every tile it meets (its key range is empty, so no tile is "fully visible" to its query tile).
//
//   delta   Delta_i = rowsum(dO_i * O_i) in f32 from the rounded output (as PyTorch), a warp per row.
//   dK dV   one CTA per (64 keys, batch, KV head); 4 warps, each 16 keys. The CTA loops over the
//           query heads of its GQA group and, per head, the query tiles whose rows see its keys (the
//           plan's kt_first/kt_last), with Q, dO, lse and Delta double-buffered by cp.async. Per
//           tile, transposed so the warp's keys are the rows: S^T = K Q^T, dP^T = V dO^T,
//           P^T = exp2(...), dS^T = P^T (dP^T - Delta), then dV += P^T dO and dK += dS^T Q with
//           P^T and dS^T as A fragments straight from the accumulators. dK, dV stay in f32
//           registers for the whole loop; dK is scaled once at the end.
//   dQ      one CTA per (64 query rows, batch, query head), forward-like: loops its key tiles,
//           recomputes S and dP, dQ += dS K in f32 registers, scaled once at the end.
// No atomics: every gradient element is summed by one thread in a fixed order (GQA heads in
// order inside the dK dV CTA), so two runs give the same bits. The price is the recomputation of
// S and dP in the dQ kernel (7 instead of 5 matrix products per tile pair).
//   VT_FLASH_BWD=atomic  the FlashAttention-2 alternative: the dK dV kernel also adds each tile
//           pair's dQ share into an f32 buffer with atomics, and a small kernel scales and rounds
//           it; 5 products per tile pair, no dQ kernel, dQ's last bits vary run to run. Correct
//           (test_cuda_flash_attention) but slower on an H100 (bench_cuda_ops: 142 against 184
//           TFLOP/s causal, 113 against 184 block-causal; 32 scalar atomics per lane and tile),
//           so it stays opt-in.
// Precision: P and dS are rounded to q's dtype before their products, as in FA2; everything else
// is f32.
#include <algorithm>

#include "backend.h"
#include "device.h"
#include "flash_attention.cuh"

namespace vt::cuda::flash {

// Query rows per tile of the dK dV kernel (16 keys x kBwdM queries of S^T and dP^T per warp). With
// D = 128 the f32 dK, dV accumulators already take 128 registers a thread; 64 rows spilled.
template <int D>
constexpr int kBwdM = D == 128 ? 32 : 64;

// ---- delta = rowsum(dO * O) ------------------------------------------------------------------------------
// dout (B, Hq, Tq, D) strided rows, o contiguous -> delta (B, Hq, Tq) f32. One warp per row.
template <class T, int D>
__global__ void __launch_bounds__(256) flash_delta_kernel(const T* __restrict__ dout, Strides sd,
                                                           const T* __restrict__ o, int Hq, int Tq, int64_t n_rows,
                                                           float* __restrict__ delta) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * 8 + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= n_rows) return;
  const int64_t bh = row / Tq, i = row % Tq, b = bh / Hq, h = bh % Hq;
  const uint16_t* dr = reinterpret_cast<const uint16_t*>(dout + b * sd.s0 + h * sd.s1 + i * sd.s2);
  const uint16_t* orow = reinterpret_cast<const uint16_t*>(o + row * D);
  float s = 0.f;
#pragma unroll
  for (int e = lane; e < D; e += 32) s += to_float<T>(dr[e]) * to_float<T>(orow[e]);
#pragma unroll
  for (int x = 16; x > 0; x >>= 1) s += __shfl_xor_sync(0xffffffffu, s, x);
  if (lane == 0) delta[row] = s;
}

// ---- dS^T staging for the fused dQ (kFusedDq) ----------------------------------------------------------------
// dS^T of one tile pair as a (kBlockN keys, Q queries) b16 tile in shared memory, row-major in 16-byte
// chunks, swizzled so that the 8 rows an ldmatrix reads (and the 8 rows a warp's fragment stores
// write) fall in 8 different bank groups: Q = 64 has 8 chunks a row (chunk ^ row % 8, as swz); Q = 32
// has 4 (64-byte rows, two to a 128-byte line: chunk ^ (row / 2) % 4).
template <int Q>
__device__ __forceinline__ int swz_ds(int r, int c) {
  static_assert(Q == 32 || Q == 64, "dS tile width");
  if constexpr (Q == 64) return swz<64>(r, c);
  else return r * 32 + ((((c >> 3) ^ ((r >> 1) & 3))) << 3) + (c & 7);
}

// ---- dK, dV (and, with kFusedDq, dQ) ------------------------------------------------------------------------
// Grid (B * Hkv, key tiles). Shared: sK, sV (64, D); sQ, sdO (2, kBwdM<D>, D); sL, sDl (2, kBwdM<D>) f32;
// with kFusedDq also sdS (64, kBwdM<D>).
// kFusedDq (VT_FLASH_BWD=atomic): each tile pair also adds its dQ share, dS K over the CTA's 64 keys,
// into an f32 (B, Hq, Tq, D) buffer with atomics (FlashAttention-2's scheme): 5 matrix products per
// tile pair instead of 7 and no dQ kernel, but the order of the additions, hence dQ's last bits,
// varies run to run. dS^T goes through shared memory (sdS) because the product needs it with the
// queries as rows; warp w then owns 16 queries x (D / (4 / (kBwdM / 16))) columns of the share.
template <class T, int D, bool kFusedDq>
__global__ void __launch_bounds__(kThreads) flash_dkdv_kernel(
    const T* __restrict__ q, Strides sq, const T* __restrict__ k, Strides sk, const T* __restrict__ v, Strides sv,
    const T* __restrict__ dout, Strides sd, const float* __restrict__ lse, const float* __restrict__ delta, int Hq,
    int Hkv, int group, int Tq, int Tk, PlanView pl, float scale, float scale_log2, T* __restrict__ dk,
    T* __restrict__ dv, float* __restrict__ dq_acc) {
  extern __shared__ __align__(128) unsigned char smem[];
  T* sK = reinterpret_cast<T*>(smem);
  T* sV = sK + kBlockN * D;
  T* sQ = sV + kBlockN * D;
  T* sdO = sQ + 2 * kBwdM<D> * D;
  float* sL = reinterpret_cast<float*>(sdO + 2 * kBwdM<D> * D);
  float* sDl = sL + 2 * kBwdM<D>;
  T* sdS = reinterpret_cast<T*>(sDl + 2 * kBwdM<D>);  // kFusedDq only

  const int n = blockIdx.y;  // causal: the low key tiles, seen by the most queries, start first
  const int bg = blockIdx.x, b = bg / Hkv, g = bg % Hkv;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gr = lane >> 2, tq = lane & 3;
  const int j0 = n * kBlockN;
  const int qt_first = pl.kt_first[n], nq = pl.kt_last[n] - qt_first, total = group * nq;
  const int key_a = j0 + warp * 16 + gr, key_b = key_a + 8;  // this thread's two key rows

  // Stage the Q, dO, lse, Delta tile of iteration `it` (head g * group + it / nq, tile qt_first + it % nq).
  auto load_q_tile = [&](int it, int buf) {
    const int h = g * group + it / nq, i0 = (qt_first + it % nq) * kBwdM<D>;
    load_tile<kBwdM<D>, D>(sQ + buf * kBwdM<D> * D, q + b * sq.s0 + h * sq.s1, sq.s2, i0, Tq);
    load_tile<kBwdM<D>, D>(sdO + buf * kBwdM<D> * D, dout + b * sd.s0 + h * sd.s1, sd.s2, i0, Tq);
    const int64_t r0 = (static_cast<int64_t>(b) * Hq + h) * Tq;
    for (int x = threadIdx.x; x < 2 * kBwdM<D>; x += kThreads) {
      const int c = x % kBwdM<D>;
      const bool ok = i0 + c < Tq;
      const float* src = x < kBwdM<D> ? lse : delta;
      cp_async4((x < kBwdM<D> ? sL : sDl) + buf * kBwdM<D> + c, ok ? src + r0 + i0 + c : src, ok);
    }
  };

  float dka[D / 8][4], dva[D / 8][4];
#pragma unroll
  for (int d = 0; d < D / 8; ++d)
#pragma unroll
    for (int e = 0; e < 4; ++e) dka[d][e] = dva[d][e] = 0.f;

  if (total > 0) {
    load_tile<kBlockN, D>(sK, k + b * sk.s0 + g * sk.s1, sk.s2, j0, Tk);
    load_tile<kBlockN, D>(sV, v + b * sv.s0 + g * sv.s1, sv.s2, j0, Tk);
    load_q_tile(0, 0);
    cp_async_commit();
  }
  for (int it = 0; it < total; ++it) {
    const int st = it & 1, m = qt_first + it % nq, i0 = m * kBwdM<D>;
    cp_async_wait_all();
    __syncthreads();  // tile `it` is in; every warp is done with the buffers of tile it - 1
    if (it + 1 < total) {
      load_q_tile(it + 1, st ^ 1);
      cp_async_commit();
    }
    const T* cQ = sQ + st * kBwdM<D> * D;
    const T* cdO = sdO + st * kBwdM<D> * D;
    const float* cL = sL + st * kBwdM<D>;
    const float* cDl = sDl + st * kBwdM<D>;

    // S^T = K Q^T and dP^T = V dO^T: (16 keys, kBwdM<D> queries) per warp.
    float s[kBwdM<D> / 8][4], dp[kBwdM<D> / 8][4];
#pragma unroll
    for (int nt = 0; nt < kBwdM<D> / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[nt][e] = dp[nt][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t ka[4], va[4];
      ldsm_x4(ka, sK + swz<D>(warp * 16 + (lane & 15), kk * 16 + (lane >> 4) * 8));
      ldsm_x4(va, sV + swz<D>(warp * 16 + (lane & 15), kk * 16 + (lane >> 4) * 8));
#pragma unroll
      for (int np = 0; np < kBwdM<D> / 16; ++np) {
        const int r = np * 16 + (lane & 7) + (lane >> 4) * 8, c = kk * 16 + ((lane >> 3) & 1) * 8;
        uint32_t bq[4], bo[4];
        ldsm_x4(bq, cQ + swz<D>(r, c));
        ldsm_x4(bo, cdO + swz<D>(r, c));
        mma16816<T>(s[2 * np], ka, bq[0], bq[1]);
        mma16816<T>(s[2 * np + 1], ka, bq[2], bq[3]);
        mma16816<T>(dp[2 * np], va, bo[0], bo[1]);
        mma16816<T>(dp[2 * np + 1], va, bo[2], bo[3]);
      }
    }

    // P^T and dS^T (in place of S^T and dP^T); element (key, query i0 + col).
    const bool full = pl.qt_in_lo[m] <= j0 && j0 + kBlockN <= pl.qt_in_hi[m];
#pragma unroll
    for (int nt = 0; nt < kBwdM<D> / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int col = nt * 8 + 2 * tq + (e & 1);
        float p = exp2f(s[nt][e] * scale_log2 - cL[col] * kLog2e);
        if (!full) {
          const int i = i0 + col, key = e < 2 ? key_a : key_b;
          const bool vis = i < Tq && key >= pl.lo[i] && key < pl.hi[i];
          p = vis ? p : 0.f;
        }
        s[nt][e] = p;
        dp[nt][e] = p * (dp[nt][e] - cDl[col]);
      }
    }

    // dV += P^T dO, then dK += dS^T Q (one product at a time keeps fewer fragments live); dO and Q
    // (queries, D) are read transposed.
#pragma unroll
    for (int kk = 0; kk < kBwdM<D> / 16; ++kk) {
      const uint32_t pa[4] = {pack2<T>(s[2 * kk][0], s[2 * kk][1]), pack2<T>(s[2 * kk][2], s[2 * kk][3]),
                              pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                              pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int d = 0; d < D / 16; ++d) {
        uint32_t bo[4];
        ldsm_x4_trans(bo, cdO + swz<D>(kk * 16 + (lane & 15), d * 16 + (lane >> 4) * 8));
        mma16816<T>(dva[2 * d], pa, bo[0], bo[1]);
        mma16816<T>(dva[2 * d + 1], pa, bo[2], bo[3]);
      }
    }
#pragma unroll
    for (int kk = 0; kk < kBwdM<D> / 16; ++kk) {
      const uint32_t da[4] = {pack2<T>(dp[2 * kk][0], dp[2 * kk][1]), pack2<T>(dp[2 * kk][2], dp[2 * kk][3]),
                              pack2<T>(dp[2 * kk + 1][0], dp[2 * kk + 1][1]),
                              pack2<T>(dp[2 * kk + 1][2], dp[2 * kk + 1][3])};
      if constexpr (kFusedDq) {  // the same rounded dS^T: rows key (warp * 16 + gr, + 8), queries kk * 16 + ...
        uint32_t* r0 = reinterpret_cast<uint32_t*>(sdS + swz_ds<kBwdM<D>>(warp * 16 + gr, kk * 16 + 2 * tq));
        uint32_t* r1 = reinterpret_cast<uint32_t*>(sdS + swz_ds<kBwdM<D>>(warp * 16 + gr + 8, kk * 16 + 2 * tq));
        uint32_t* r2 = reinterpret_cast<uint32_t*>(sdS + swz_ds<kBwdM<D>>(warp * 16 + gr, kk * 16 + 8 + 2 * tq));
        uint32_t* r3 = reinterpret_cast<uint32_t*>(sdS + swz_ds<kBwdM<D>>(warp * 16 + gr + 8, kk * 16 + 8 + 2 * tq));
        *r0 = da[0], *r1 = da[1], *r2 = da[2], *r3 = da[3];
      }
#pragma unroll
      for (int d = 0; d < D / 16; ++d) {
        uint32_t bq[4];
        ldsm_x4_trans(bq, cQ + swz<D>(kk * 16 + (lane & 15), d * 16 + (lane >> 4) * 8));
        mma16816<T>(dka[2 * d], da, bq[0], bq[1]);
        mma16816<T>(dka[2 * d + 1], da, bq[2], bq[3]);
      }
    }

    if constexpr (kFusedDq) {
      // dQ[i0 .., :] += dS (kBwdM queries, 64 keys) K (64 keys, D), warp w: query block w % RB, columns
      // (w / RB) * DW ..; dS read transposed from sdS, K transposed from sK (as in the dQ kernel).
      constexpr int RB = kBwdM<D> / 16, DW = D / (kWarps / RB);
      const int rb = warp % RB, c0 = (warp / RB) * DW;
      __syncthreads();  // every warp's dS^T is in sdS
      float acc[DW / 8][4];
#pragma unroll
      for (int nt = 0; nt < DW / 8; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < kBlockN / 16; ++kk) {
        uint32_t a[4];
        ldsm_x4_trans(a, sdS + swz_ds<kBwdM<D>>(kk * 16 + (lane & 7) + ((lane >> 4) << 3),
                                                 rb * 16 + ((lane >> 3) & 1) * 8));
#pragma unroll
        for (int d = 0; d < DW / 16; ++d) {
          uint32_t bk[4];
          ldsm_x4_trans(bk, sK + swz<D>(kk * 16 + (lane & 15), c0 + d * 16 + (lane >> 4) * 8));
          mma16816<T>(acc[2 * d], a, bk[0], bk[1]);
          mma16816<T>(acc[2 * d + 1], a, bk[2], bk[3]);
        }
      }
      const int h = g * group + it / nq;
      const int ia = i0 + rb * 16 + gr, ib = ia + 8;
      float* base = dq_acc + (static_cast<int64_t>(b) * Hq + h) * Tq * D + c0 + 2 * tq;
#pragma unroll
      for (int nt = 0; nt < DW / 8; ++nt) {
        if (ia < Tq) {
          atomicAdd(base + static_cast<int64_t>(ia) * D + nt * 8, acc[nt][0]);
          atomicAdd(base + static_cast<int64_t>(ia) * D + nt * 8 + 1, acc[nt][1]);
        }
        if (ib < Tq) {
          atomicAdd(base + static_cast<int64_t>(ib) * D + nt * 8, acc[nt][2]);
          atomicAdd(base + static_cast<int64_t>(ib) * D + nt * 8 + 1, acc[nt][3]);
        }
      }
    }
  }

  // Every key row of the tile is written (0 where no query sees it).
  const int64_t row0 = static_cast<int64_t>(bg) * Tk;
  if (key_a < Tk) {
    uint32_t* pk = reinterpret_cast<uint32_t*>(dk + (row0 + key_a) * D + 2 * tq);
    uint32_t* pv = reinterpret_cast<uint32_t*>(dv + (row0 + key_a) * D + 2 * tq);
#pragma unroll
    for (int d = 0; d < D / 8; ++d) {
      pk[d * 4] = pack2<T>(dka[d][0] * scale, dka[d][1] * scale);
      pv[d * 4] = pack2<T>(dva[d][0], dva[d][1]);
    }
  }
  if (key_b < Tk) {
    uint32_t* pk = reinterpret_cast<uint32_t*>(dk + (row0 + key_b) * D + 2 * tq);
    uint32_t* pv = reinterpret_cast<uint32_t*>(dv + (row0 + key_b) * D + 2 * tq);
#pragma unroll
    for (int d = 0; d < D / 8; ++d) {
      pk[d * 4] = pack2<T>(dka[d][2] * scale, dka[d][3] * scale);
      pv[d * 4] = pack2<T>(dva[d][2], dva[d][3]);
    }
  }
}

// ---- dQ -----------------------------------------------------------------------------------------------------
// Grid (B * Hq, query tiles). Shared: sQ, sdO (64, D); sK, sV (2, 64, D).
template <class T, int D>
__global__ void __launch_bounds__(kThreads) flash_dq_kernel(
    const T* __restrict__ q, Strides sq, const T* __restrict__ k, Strides sk, const T* __restrict__ v, Strides sv,
    const T* __restrict__ dout, Strides sd, const float* __restrict__ lse, const float* __restrict__ delta, int Hq,
    int group, int Tq, int Tk, PlanView pl, float scale, float scale_log2, T* __restrict__ dq) {
  extern __shared__ __align__(128) unsigned char smem[];
  T* sQ = reinterpret_cast<T*>(smem);
  T* sdO = sQ + kBlockM * D;
  T* sK = sdO + kBlockM * D;
  T* sV = sK + 2 * kBlockN * D;

  const int m = gridDim.y - 1 - blockIdx.y;
  const int bh = blockIdx.x, b = bh / Hq, h = bh % Hq, g = h / group;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gr = lane >> 2, tq = lane & 3;
  const int i0 = m * kBlockM;
  const int jlo = pl.qt_lo[m], jhi = pl.qt_hi[m], in_lo = pl.qt_in_lo[m], in_hi = pl.qt_in_hi[m];
  const int ntiles = jhi > jlo ? (jhi - jlo + kBlockN - 1) / kBlockN : 0;
  const T* kh = k + b * sk.s0 + g * sk.s1;
  const T* vh = v + b * sv.s0 + g * sv.s1;
  const int64_t row0 = static_cast<int64_t>(bh) * Tq;

  const int ra = i0 + warp * 16 + gr, rb = ra + 8;
  const int lo_a = ra < Tq ? pl.lo[ra] : 0, hi_a = ra < Tq ? pl.hi[ra] : 0;
  const int lo_b = rb < Tq ? pl.lo[rb] : 0, hi_b = rb < Tq ? pl.hi[rb] : 0;
  // lse in base 2 and Delta of the two rows (rows past Tq are masked everywhere; any finite value).
  const float L_a = ra < Tq ? lse[row0 + ra] * kLog2e : 0.f, L_b = rb < Tq ? lse[row0 + rb] * kLog2e : 0.f;
  const float dl_a = ra < Tq ? delta[row0 + ra] : 0.f, dl_b = rb < Tq ? delta[row0 + rb] : 0.f;

  float acc[D / 8][4];
#pragma unroll
  for (int d = 0; d < D / 8; ++d) acc[d][0] = acc[d][1] = acc[d][2] = acc[d][3] = 0.f;

  if (ntiles > 0) {
    load_tile<kBlockM, D>(sQ, q + b * sq.s0 + h * sq.s1, sq.s2, i0, Tq);
    load_tile<kBlockM, D>(sdO, dout + b * sd.s0 + h * sd.s1, sd.s2, i0, Tq);
    load_tile<kBlockN, D>(sK, kh, sk.s2, jlo, Tk);
    load_tile<kBlockN, D>(sV, vh, sv.s2, jlo, Tk);
    cp_async_commit();
  }
  for (int it = 0; it < ntiles; ++it) {
    const int j0 = jlo + it * kBlockN, st = it & 1;
    cp_async_wait_all();
    __syncthreads();
    if (it + 1 < ntiles) {
      load_tile<kBlockN, D>(sK + (st ^ 1) * kBlockN * D, kh, sk.s2, j0 + kBlockN, Tk);
      load_tile<kBlockN, D>(sV + (st ^ 1) * kBlockN * D, vh, sv.s2, j0 + kBlockN, Tk);
      cp_async_commit();
    }
    const T* cK = sK + st * kBlockN * D;
    const T* cV = sV + st * kBlockN * D;

    // S = Q K^T and dP = dO V^T: (16 rows, 64 keys) per warp.
    float s[kBlockN / 8][4], dp[kBlockN / 8][4];
#pragma unroll
    for (int nt = 0; nt < kBlockN / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[nt][e] = dp[nt][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t qa[4], oa[4];
      ldsm_x4(qa, sQ + swz<D>(warp * 16 + (lane & 15), kk * 16 + (lane >> 4) * 8));
      ldsm_x4(oa, sdO + swz<D>(warp * 16 + (lane & 15), kk * 16 + (lane >> 4) * 8));
#pragma unroll
      for (int np = 0; np < kBlockN / 16; ++np) {
        const int r = np * 16 + (lane & 7) + (lane >> 4) * 8, c = kk * 16 + ((lane >> 3) & 1) * 8;
        uint32_t bk[4], bv[4];
        ldsm_x4(bk, cK + swz<D>(r, c));
        ldsm_x4(bv, cV + swz<D>(r, c));
        mma16816<T>(s[2 * np], qa, bk[0], bk[1]);
        mma16816<T>(s[2 * np + 1], qa, bk[2], bk[3]);
        mma16816<T>(dp[2 * np], oa, bv[0], bv[1]);
        mma16816<T>(dp[2 * np + 1], oa, bv[2], bv[3]);
      }
    }

    // dS = P (dP - Delta), P = exp2(S scale log2 e - lse log2 e), masked.
    const bool full = in_lo <= j0 && j0 + kBlockN <= in_hi;
#pragma unroll
    for (int nt = 0; nt < kBlockN / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const bool row_b = e >= 2;
        float p = exp2f(s[nt][e] * scale_log2 - (row_b ? L_b : L_a));
        if (!full) {
          const int j = j0 + nt * 8 + 2 * tq + (e & 1);
          const bool vis = row_b ? (j >= lo_b && j < hi_b) : (j >= lo_a && j < hi_a);
          p = vis ? p : 0.f;
        }
        dp[nt][e] = p * (dp[nt][e] - (row_b ? dl_b : dl_a));
      }
    }

    // dQ += dS K; K (keys, D) is read transposed.
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk) {
      const uint32_t da[4] = {pack2<T>(dp[2 * kk][0], dp[2 * kk][1]), pack2<T>(dp[2 * kk][2], dp[2 * kk][3]),
                              pack2<T>(dp[2 * kk + 1][0], dp[2 * kk + 1][1]),
                              pack2<T>(dp[2 * kk + 1][2], dp[2 * kk + 1][3])};
#pragma unroll
      for (int d = 0; d < D / 16; ++d) {
        uint32_t bk[4];
        ldsm_x4_trans(bk, cK + swz<D>(kk * 16 + (lane & 15), d * 16 + (lane >> 4) * 8));
        mma16816<T>(acc[2 * d], da, bk[0], bk[1]);
        mma16816<T>(acc[2 * d + 1], da, bk[2], bk[3]);
      }
    }
  }

  if (ra < Tq) {
    uint32_t* dst = reinterpret_cast<uint32_t*>(dq + (row0 + ra) * D + 2 * tq);
#pragma unroll
    for (int d = 0; d < D / 8; ++d) dst[d * 4] = pack2<T>(acc[d][0] * scale, acc[d][1] * scale);
  }
  if (rb < Tq) {
    uint32_t* dst = reinterpret_cast<uint32_t*>(dq + (row0 + rb) * D + 2 * tq);
#pragma unroll
    for (int d = 0; d < D / 8; ++d) dst[d * 4] = pack2<T>(acc[d][2] * scale, acc[d][3] * scale);
  }
}

// dq = scale * dq_acc, rounded to T once (the fused path's f32 accumulator -> the gradient); pairs of
// elements (n2 = n / 2, n is a multiple of D).
template <class T>
__global__ void flash_dq_convert_kernel(const float2* __restrict__ acc, float scale, int64_t n2, T* __restrict__ dq) {
  uint32_t* out = reinterpret_cast<uint32_t*>(dq);
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n2;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float2 a = acc[i];
    out[i] = pack2<T>(a.x * scale, a.y * scale);
  }
}

// ---- host ----------------------------------------------------------------------------------------------------
namespace {
Strides strides_of(const Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2)}; }

template <class T, int D>
void launch_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                     const Tensor& dout, const nn::AttentionRows& rows, double scale, const Tensor& dq,
                     const Tensor& dk, const Tensor& dv, bool fused_dq, cudaStream_t stream) {
  const int B = static_cast<int>(q.size(0)), Hq = static_cast<int>(q.size(1)), Hkv = static_cast<int>(k.size(1));
  const int Tq = static_cast<int>(q.size(2)), Tk = static_cast<int>(k.size(2)), group = Hq / Hkv;
  const Device dev = q.device();
  const T *qp = static_cast<const T*>(q.raw_data()), *kp = static_cast<const T*>(k.raw_data());
  const T *vp = static_cast<const T*>(v.raw_data()), *dop = static_cast<const T*>(dout.raw_data());
  const float* lp = static_cast<const float*>(lse.raw_data());
  const float sc = static_cast<float>(scale), sc2 = static_cast<float>(scale * 1.4426950408889634);

  // delta (B, Hq, Tq)
  const int64_t n_rows = static_cast<int64_t>(B) * Hq * Tq;
  Tensor delta = empty({B, Hq, Tq}, {DType::F32, dev});
  float* dl = static_cast<float*>(delta.raw_data());
  flash_delta_kernel<T, D><<<static_cast<unsigned>((n_rows + 7) / 8), 256, 0, stream>>>(
      dop, strides_of(dout), static_cast<const T*>(out.raw_data()), Hq, Tq, n_rows, dl);
  VT_CUDA_CHECK_LAUNCH();

  const Plan plan = fused_dq && kBwdM<D> != kBlockM ? Plan{} : make_plan(rows, Tq, Tk, kBlockM, dev);
  const Plan plan_kv = kBwdM<D> == kBlockM ? Plan{} : make_plan(rows, Tq, Tk, kBwdM<D>, dev);
  const PlanView& pkv = kBwdM<D> == kBlockM ? plan.view : plan_kv.view;

  T* dqp = static_cast<T*>(dq.raw_data());
  T *dkp = static_cast<T*>(dk.raw_data()), *dvp = static_cast<T*>(dv.raw_data());
  const dim3 kv_grid(B * Hkv, (Tk + kBlockN - 1) / kBlockN);
  constexpr int kv_bytes = (2 * kBlockN + 4 * kBwdM<D>) * D * static_cast<int>(sizeof(T)) + 4 * kBwdM<D> * 4;
  if (fused_dq) {
    // dK, dV and dQ in one pass; dQ through an f32 accumulator, then scaled and rounded.
    const int64_t n = static_cast<int64_t>(B) * Hq * Tq * D;
    Tensor acc = empty({n}, {DType::F32, dev});
    float* ap = static_cast<float*>(acc.raw_data());
    VT_CUDA_CHECK(cudaMemsetAsync(ap, 0, n * sizeof(float), stream));
    constexpr int bytes = kv_bytes + kBlockN * kBwdM<D> * static_cast<int>(sizeof(T));
    allow_dynamic_smem(flash_dkdv_kernel<T, D, true>, bytes);
    flash_dkdv_kernel<T, D, true><<<kv_grid, kThreads, bytes, stream>>>(
        qp, strides_of(q), kp, strides_of(k), vp, strides_of(v), dop, strides_of(dout), lp, dl, Hq, Hkv, group, Tq,
        Tk, pkv, sc, sc2, dkp, dvp, ap);
    VT_CUDA_CHECK_LAUNCH();
    flash_dq_convert_kernel<T><<<grid_for(n / 2, 256, context(dev.index)), 256, 0, stream>>>(
        reinterpret_cast<const float2*>(ap), sc, n / 2, dqp);
    VT_CUDA_CHECK_LAUNCH();
    return;
  }
  // dK, dV (B, Hkv, Tk, D)
  allow_dynamic_smem(flash_dkdv_kernel<T, D, false>, kv_bytes);
  flash_dkdv_kernel<T, D, false><<<kv_grid, kThreads, kv_bytes, stream>>>(
      qp, strides_of(q), kp, strides_of(k), vp, strides_of(v), dop, strides_of(dout), lp, dl, Hq, Hkv, group, Tq, Tk,
      pkv, sc, sc2, dkp, dvp, nullptr);
  VT_CUDA_CHECK_LAUNCH();
  // dQ (B, Hq, Tq, D)
  {
    constexpr int bytes = (2 * kBlockM + 4 * kBlockN) * D * static_cast<int>(sizeof(T));
    allow_dynamic_smem(flash_dq_kernel<T, D>, bytes);
    const dim3 grid(B * Hq, (Tq + kBlockM - 1) / kBlockM);
    flash_dq_kernel<T, D><<<grid, kThreads, bytes, stream>>>(qp, strides_of(q), kp, strides_of(k), vp, strides_of(v),
                                                             dop, strides_of(dout), lp, dl, Hq, group, Tq, Tk,
                                                             plan.view, sc, sc2, dqp);
    VT_CUDA_CHECK_LAUNCH();
  }
}
}  // namespace

void flash_attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                              const Tensor& lse, const Tensor& dout, const nn::AttentionRows& rows, double scale,
                              const Tensor& dq, const Tensor& dk, const Tensor& dv) {
  VT_CHECK(out.is_contiguous() && lse.is_contiguous() && dq.is_contiguous() && dk.is_contiguous() &&
               dv.is_contiguous() && lse.dtype() == DType::F32,
           "cuda flash attention backward: out, lse, dq, dk, dv must be contiguous, lse f32");
  const cudaStream_t stream = context(q.device().index).stream();
  if (q.numel() == 0 || k.numel() == 0) {  // no query or no key: every gradient is 0
    for (const Tensor* t : {&dq, &dk, &dv})
      if (t->nbytes() > 0) VT_CUDA_CHECK(cudaMemsetAsync(t->raw_data(), 0, t->nbytes(), stream));
    return;
  }
  const bool is_bf16 = q.dtype() == DType::BF16;
  const bool fused = env_is("VT_FLASH_BWD", "atomic");
  if (q.size(3) == 64) {
    if (is_bf16) launch_backward<bf16, 64>(q, k, v, out, lse, dout, rows, scale, dq, dk, dv, fused, stream);
    else launch_backward<f16, 64>(q, k, v, out, lse, dout, rows, scale, dq, dk, dv, fused, stream);
  } else {
    if (is_bf16) launch_backward<bf16, 128>(q, k, v, out, lse, dout, rows, scale, dq, dk, dv, fused, stream);
    else launch_backward<f16, 128>(q, k, v, out, lse, dout, rows, scale, dq, dk, dv, fused, stream);
  }
}

}  // namespace vt::cuda::flash
