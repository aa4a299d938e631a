// nn_attention.cu: scaled dot-product attention forward and backward on CUDA, registered under the
// CPU kernels' names attention_forward / attention_backward (include/vt/nn/attention.h holds the
// contract: AttentionRows, the saved logsumexp, GQA; src/nn_attention_kernel.cpp the CPU version).
//
// bf16/f16 calls with head dim 64 or 128 and no dense mask go to the tensor-core kernels of
// flash_attention_{fwd,bwd}.cu (flash_supports says which; VT_ATTENTION_FALLBACK=1 forces the
// kernels here), or, opted into with VT_ATTENTION_CUDNN and for no mask or top-left causal, to
// cuDNN's fused SDPA (attention_cudnn.h). The kernels in this file are the reference for every other call:
// a plain tiled flash-attention (no tensor cores):
//   forward   one block per (batch, query head, 8 query rows), one warp per query row. Key tiles of
//             up to 32 keys (only the block's visible range [min key_begin, max key_end)) are staged
//             in shared memory; lane c scores key c, then the warp does the online softmax
//             (m, l in registers) and lane e updates the output elements e, e + 32, ... (in shared
//             memory). out = O / l, lse = m + log l (a row that sees nothing: 0 and -inf).
//   backward  Delta = rowsum(dO * O) from the rounded output (as PyTorch does), then two kernels
//             that recompute P = exp(S - lse) from the saved lse:
//               dQ     one block per (batch, query head, 8 query rows), warp per row, looping key
//                      tiles: dS = P * (dO V^T - Delta), dQ = scale dS K;
//               dK dV  one block per (batch, KV head, 8 keys), warp per key, looping the query
//                      heads of its GQA group and query tiles of up to 32 rows (lane per row):
//                      dV = P^T dO, dK = scale dS^T Q.
//             Every gradient element is owned by one thread and summed in a fixed order: no
//             atomics, bitwise the same run to run.
// Precision: q, k, v, dO are widened once into shared memory in the compute type (f32 for
// f32/bf16/f16, f64 for f64), every score, statistic and accumulation is in it, and results are
// rounded once into the output dtype. Shared-memory rows that a warp's lanes read across (one row
// per lane) are padded by one element against bank conflicts.
#include <algorithm>
#include <vector>

#include "backend.h"
#include "math.cuh"  // before any vt op header: its m_exp must see ::exp, not vt::exp(Tensor)
#include "nn_kernels.h"
#include "attention_cudnn.h"
#include "flash_attention.cuh"
#include "vt/nn/attention.h"

namespace vt::cuda {
namespace {

using nnk::visit_float;
using nnk::warp_max;
using nnk::warp_sum;

template <class T>
using acc = compute_t<T>;

constexpr int kWarps = 8;  // query rows (forward, dQ) or keys (dK dV) per block, one warp each
constexpr int kThreads = kWarps * 32;
constexpr size_t kDefaultSmem = 48 * 1024;

__host__ __device__ __forceinline__ int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
__host__ __device__ __forceinline__ int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

// Strides (elements) of dims 0..2 of a (B, H, T, E) tensor whose last dim is contiguous.
struct Str {
  int64_t s0, s1, s2;
  // Row i of head h of batch b in the tensor at p.
  template <class T>
  __device__ __forceinline__ const T* at(const T* p, int64_t b, int64_t h, int64_t i = 0) const {
    return p + b * s0 + h * s1 + i * s2;
  }
};
Str str_of(const Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2)}; }

struct Dims {
  int64_t B, Hq, Hkv, group, Tq, Tk, D, Dv;
};

// A half-open range of key indices [lo, hi).
struct Span {
  int64_t lo, hi;
};

// The mask as the kernels read it: per-row key ranges (device copies of AttentionRows' vectors,
// null: every key) and the optional dense (B, Hq, Tq, Tk) view, Bool or additive in A.
template <class A>
struct Mask {
  const int64_t *lo = nullptr, *hi = nullptr;
  const uint8_t* dense_bool = nullptr;
  const A* dense_add = nullptr;
  int64_t ds0 = 0, ds1 = 0, ds2 = 0, ds3 = 0;

  __device__ __forceinline__ int64_t row_lo(int64_t i) const { return lo ? lo[i] : 0; }
  __device__ __forceinline__ int64_t row_hi(int64_t i, int64_t Tk) const { return lo ? hi[i] : Tk; }
  // The keys row i may see; empty for a row past the end (ok false).
  __device__ __forceinline__ Span row_keys(int64_t i, int64_t Tk, bool ok) const {
    return {ok ? row_lo(i) : 0, ok ? row_hi(i, Tk) : 0};
  }
  // The scaled score s of (b, h, i, j) after masking: -inf where hidden.
  __device__ __forceinline__ A apply(A s, int64_t b, int64_t h, int64_t i, int64_t j) const {
    if (lo && (j < lo[i] || j >= hi[i])) return A(-INFINITY);
    const int64_t off = b * ds0 + h * ds1 + i * ds2 + j * ds3;
    if (dense_bool) return dense_bool[off] ? s : A(-INFINITY);
    if (dense_add) return s + dense_add[off];
    return s;
  }
};

// The tile of kWarps rows (of T) of one (batch, head) pair (of H heads) that block blockIdx.x owns,
// and the row of it this thread's warp owns. The kernels bind the fields in this order.
struct BlockTile {
  int64_t bh, b, h;  // bh = b * H + h
  int64_t r0, r, n;  // the tile's first row, the warp's row r0 + warp, rows in the tile (<= 8)
  int warp, lane;
  bool ok;  // r < T: the warp has a row
};
__device__ __forceinline__ BlockTile block_tile(int64_t T, int64_t H) {
  const int64_t nt = (T + kWarps - 1) / kWarps;
  const int64_t bh = blockIdx.x / nt, r0 = (blockIdx.x % nt) * kWarps;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t r = r0 + warp;
  return {bh, bh / H, bh % H, r0, r, imin(kWarps, T - r0), warp, lane, r < T};
}

// The keys some row of query rows [i0, i0 + nq) may see: [min key_begin, max key_end) clipped to
// [0, Tk), so a block stages only the key tiles one of its rows needs. Thread 0 finds it; the
// barrier publishes it (and whatever the block staged before the call).
template <class A>
__device__ __forceinline__ Span tile_keys(const Mask<A>& mk, int64_t i0, int64_t nq, int64_t Tk) {
  __shared__ int64_t range[2];
  if (threadIdx.x == 0) {
    int64_t a = Tk, e = 0;
    for (int64_t r = i0; r < i0 + nq; ++r) a = imin(a, mk.row_lo(r)), e = imax(e, mk.row_hi(r, Tk));
    range[0] = imax(a, 0), range[1] = imin(e, Tk);
  }
  __syncthreads();
  return {range[0], range[1]};
}

// dst[0, n) = 0; all threads of the block take part.
template <class A>
__device__ __forceinline__ void zero_shared(A* dst, int64_t n) {
  for (int64_t x = threadIdx.x; x < n; x += blockDim.x) dst[x] = A(0);
}

// Row r (< rows) of one head of a (B, H, T, E) tensor widened into shared memory at dst + r * ld;
// rows past `rows` are zeroed. All threads of the block take part.
template <class T, class A>
__device__ __forceinline__ void stage_rows(const T* __restrict__ src, int64_t rs, int64_t rows, int64_t max_rows,
                                           int64_t E, A* dst, int64_t ld) {
  for (int64_t x = threadIdx.x; x < max_rows * E; x += blockDim.x) {
    const int64_t r = x / E, e = x % E;
    dst[r * ld + e] = r < rows ? load(src + r * rs + e) : A(0);
  }
}

// Keys [j0, j0 + nk) of KV head (b, g): k into sK (nk, ldk), v into sV (nk, ldv). The first barrier
// waits until every warp is done with the previous tile, the second publishes this one.
template <class T, class A>
__device__ __forceinline__ void stage_key_tile(const T* k, Str sk, const T* v, Str sv, int64_t b, int64_t g,
                                               int64_t j0, int nk, const Dims& dm, A* sK, int64_t ldk, A* sV,
                                               int64_t ldv) {
  __syncthreads();
  stage_rows(sk.at(k, b, g, j0), sk.s2, nk, nk, dm.D, sK, ldk);
  stage_rows(sv.at(v, b, g, j0), sv.s2, nk, nk, dm.Dv, sV, ldv);
  __syncthreads();
}

// sum_d a[d] * b[d] over d < n, in d order.
template <class A>
__device__ __forceinline__ A row_dot(const A* a, const A* b, int64_t n) {
  A s = 0;
  for (int64_t d = 0; d < n; ++d) s += a[d] * b[d];
  return s;
}

// One warp's row of E accumulators in shared memory, lane e owning e, e + 32, ...:
// acc[e] = acc[e] * alpha + sum_{c < n} w[c] * rows[c * ld + e], summed in c order. With alpha = 1
// (every caller but the forward's online-softmax rescale) the multiply folds away.
template <class A>
__device__ __forceinline__ void accumulate_rows(A* acc, int64_t E, A alpha, const A* w, int64_t n, const A* rows,
                                                int64_t ld, int lane) {
  for (int64_t e = lane; e < E; e += 32) {
    A a = acc[e] * alpha;
    for (int64_t c = 0; c < n; ++c) a += w[c] * rows[c * ld + e];
    acc[e] = a;
  }
}

// dst[e] = src[e] * factor rounded to T, for one warp's row of E (lane e owning e, e + 32, ...).
template <class T, class A>
__device__ __forceinline__ void store_row(T* dst, const A* src, int64_t E, A factor, int lane) {
  for (int64_t e = lane; e < E; e += 32) dst[e] = to_storage<T>(src[e] * factor);
}

// ==== forward ======================================================================================
// q (B, Hq, Tq, D), k (B, Hkv, Tk, D), v (B, Hkv, Tk, Dv) -> out (B, Hq, Tq, Dv), lse (B, Hq, Tq).
// kt keys per tile (<= 32). Shared: sQ (8, D), sO (8, Dv), sP (8, 32), sK (kt, D + 1), sV (kt, Dv).
template <class T>
__global__ void __launch_bounds__(kThreads) attention_forward_kernel(const T* __restrict__ q, Str sq,
                                                                      const T* __restrict__ k, Str sk,
                                                                      const T* __restrict__ v, Str sv, Dims dm,
                                                                      Mask<acc<T>> mk, acc<T> scale, int kt,
                                                                      T* __restrict__ out, acc<T>* __restrict__ lse) {
  using A = acc<T>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int64_t D = dm.D, Dv = dm.Dv, Tq = dm.Tq, Tk = dm.Tk, ldk = D + 1;
  A* sQ = reinterpret_cast<A*>(smem_raw);
  A* sO = sQ + kWarps * D;
  A* sP = sO + kWarps * Dv;
  A* sK = sP + kWarps * 32;
  A* sV = sK + kt * ldk;

  const auto [bh, b, h, i0, i, nq, warp, lane, row_ok] = block_tile(Tq, dm.Hq);
  const int64_t g = h / dm.group;
  stage_rows(sq.at(q, b, h, i0), sq.s2, nq, kWarps, D, sQ, D);
  zero_shared(sO, kWarps * Dv);
  const auto [jlo, jhi] = tile_keys(mk, i0, nq, Tk);
  const auto [rlo, rhi] = mk.row_keys(i, Tk, row_ok);
  const A* qr = sQ + warp * D;
  A* orow = sO + warp * Dv;
  A* prow = sP + warp * 32;
  A m = A(-INFINITY), l = A(0);

  for (int64_t j0 = jlo; j0 < jhi; j0 += kt) {
    const int nk = static_cast<int>(imin(kt, jhi - j0));
    stage_key_tile(k, sk, v, sv, b, g, j0, nk, dm, sK, ldk, sV, Dv);
    if (!row_ok || j0 >= rhi || j0 + nk <= rlo) continue;  // warp-uniform
    A s = A(-INFINITY);
    if (lane < nk) s = mk.apply(row_dot(qr, sK + lane * ldk, D) * scale, b, h, i, j0 + lane);
    const A mx = warp_max(s), m_new = mx > m ? mx : m;
    if (m_new == A(-INFINITY)) continue;  // nothing visible to this row yet (warp-uniform)
    const A p = s == A(-INFINITY) ? A(0) : m_exp(s - m_new);
    const A alpha = m_exp(m - m_new);  // 0 when m was -inf
    l = l * alpha + warp_sum(p);
    m = m_new;
    prow[lane] = p;
    __syncwarp();
    accumulate_rows(orow, Dv, alpha, prow, nk, sV, Dv, lane);  // O = O * alpha + P V
    __syncwarp();
  }
  if (!row_ok) return;
  const A inv = l > A(0) ? A(1) / l : A(0);
  store_row(out + (bh * Tq + i) * Dv, orow, Dv, inv, lane);
  if (lane == 0) lse[bh * Tq + i] = l > A(0) ? m + m_log(l) : A(-INFINITY);
}

// ==== backward =====================================================================================
// delta (B, Hq, Tq) = rowsum(dO * O); one warp per row. dO strided, O contiguous.
template <class T>
__global__ void __launch_bounds__(kThreads) attention_delta_kernel(const T* __restrict__ dout, Str sd,
                                                                    const T* __restrict__ o, Dims dm,
                                                                    acc<T>* __restrict__ delta) {
  using A = acc<T>;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= dm.B * dm.Hq * dm.Tq) return;
  const int64_t bh = row / dm.Tq, i = row % dm.Tq, b = bh / dm.Hq, h = bh % dm.Hq;
  const T* dr = sd.at(dout, b, h, i);
  const T* orow = o + row * dm.Dv;
  A s = 0;
  for (int64_t e = lane; e < dm.Dv; e += 32) s += load(dr + e) * load(orow + e);
  s = warp_sum(s);
  if (lane == 0) delta[row] = s;
}

// dQ (B, Hq, Tq, D). kt keys per tile. Shared: sQ (8, D), sdO (8, Dv), sdQ (8, D), sS (8, 32),
// sK (kt, D + 1), sV (kt, Dv + 1).
template <class T>
__global__ void __launch_bounds__(kThreads) attention_dq_kernel(const T* __restrict__ q, Str sq,
                                                                 const T* __restrict__ k, Str sk,
                                                                 const T* __restrict__ v, Str sv,
                                                                 const T* __restrict__ dout, Str sd,
                                                                 const acc<T>* __restrict__ lse,
                                                                 const acc<T>* __restrict__ delta, Dims dm,
                                                                 Mask<acc<T>> mk, acc<T> scale, int kt,
                                                                 T* __restrict__ dq) {
  using A = acc<T>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int64_t D = dm.D, Dv = dm.Dv, Tq = dm.Tq, Tk = dm.Tk, ldk = D + 1, ldv = Dv + 1;
  A* sQ = reinterpret_cast<A*>(smem_raw);
  A* sdO = sQ + kWarps * D;
  A* sdQ = sdO + kWarps * Dv;
  A* sS = sdQ + kWarps * D;
  A* sK = sS + kWarps * 32;
  A* sV = sK + kt * ldk;

  const auto [bh, b, h, i0, i, nq, warp, lane, row_ok] = block_tile(Tq, dm.Hq);
  const int64_t g = h / dm.group;
  stage_rows(sq.at(q, b, h, i0), sq.s2, nq, kWarps, D, sQ, D);
  stage_rows(sd.at(dout, b, h, i0), sd.s2, nq, kWarps, Dv, sdO, Dv);
  zero_shared(sdQ, kWarps * D);
  const auto [jlo, jhi] = tile_keys(mk, i0, nq, Tk);
  const auto [rlo, rhi] = mk.row_keys(i, Tk, row_ok);
  const A L = row_ok ? lse[bh * Tq + i] : A(-INFINITY), dl = row_ok ? delta[bh * Tq + i] : A(0);
  const A *qr = sQ + warp * D, *dor = sdO + warp * Dv;
  A* dqr = sdQ + warp * D;
  A* srow = sS + warp * 32;

  for (int64_t j0 = jlo; j0 < jhi; j0 += kt) {
    const int nk = static_cast<int>(imin(kt, jhi - j0));
    stage_key_tile(k, sk, v, sv, b, g, j0, nk, dm, sK, ldk, sV, ldv);
    if (!row_ok || L == A(-INFINITY) || j0 >= rhi || j0 + nk <= rlo) continue;  // warp-uniform
    A ds = 0;  // dS = P * (dO . v - Delta) for key j0 + lane
    if (lane < nk) {
      const A s = mk.apply(row_dot(qr, sK + lane * ldk, D) * scale, b, h, i, j0 + lane);
      if (s != A(-INFINITY)) {
        const A dp = row_dot(dor, sV + lane * ldv, Dv);
        ds = m_exp(s - L) * (dp - dl);
      }
    }
    srow[lane] = ds;
    __syncwarp();
    accumulate_rows(dqr, D, A(1), srow, nk, sK, ldk, lane);  // dQ += dS K
    __syncwarp();
  }
  if (!row_ok) return;
  store_row(dq + (bh * Tq + i) * D, dqr, D, scale, lane);
}

// dK (B, Hkv, Tk, D), dV (B, Hkv, Tk, Dv). nr query rows per tile (<= 32, one lane each); tile
// bounds tlo/thi (per tile of nr rows: min key_begin, max key_end) let a block skip query tiles that
// see none of its keys. Shared: sK (8, D), sV (8, Dv), sdK (8, D), sdV (8, Dv), sP, sS (8, 32),
// sQ (nr, D + 1), sdO (nr, Dv + 1), sL, sDl (nr).
template <class T>
__global__ void __launch_bounds__(kThreads) attention_dkdv_kernel(
    const T* __restrict__ q, Str sq, const T* __restrict__ k, Str sk, const T* __restrict__ v, Str sv,
    const T* __restrict__ dout, Str sd, const acc<T>* __restrict__ lse, const acc<T>* __restrict__ delta, Dims dm,
    Mask<acc<T>> mk, const int64_t* __restrict__ tlo, const int64_t* __restrict__ thi, acc<T> scale, int nr,
    T* __restrict__ dk, T* __restrict__ dv) {
  using A = acc<T>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int64_t D = dm.D, Dv = dm.Dv, Tq = dm.Tq, Tk = dm.Tk, ldq = D + 1, ldo = Dv + 1;
  A* sK = reinterpret_cast<A*>(smem_raw);
  A* sV = sK + kWarps * D;
  A* sdK = sV + kWarps * Dv;
  A* sdV = sdK + kWarps * D;
  A* sP = sdV + kWarps * Dv;
  A* sS = sP + kWarps * 32;
  A* sQ = sS + kWarps * 32;
  A* sdO = sQ + nr * ldq;
  A* sL = sdO + nr * ldo;
  A* sDl = sL + nr;

  const auto [bg, b, g, j0, j, nk, warp, lane, key_ok] = block_tile(Tk, dm.Hkv);
  zero_shared(sdK, kWarps * D);
  zero_shared(sdV, kWarps * Dv);
  stage_rows(sk.at(k, b, g, j0), sk.s2, nk, kWarps, D, sK, D);
  stage_rows(sv.at(v, b, g, j0), sv.s2, nk, kWarps, Dv, sV, Dv);
  const A *kr = sK + warp * D, *vr = sV + warp * Dv;
  A *dkr = sdK + warp * D, *dvr = sdV + warp * Dv, *prow = sP + warp * 32, *srow = sS + warp * 32;
  const int64_t nqt = (Tq + nr - 1) / nr;

  for (int64_t h = g * dm.group; h < (g + 1) * dm.group; ++h) {
    const int64_t bh = b * dm.Hq + h;
    for (int64_t t = 0; t < nqt; ++t) {
      if (thi[t] <= j0 || tlo[t] >= j0 + nk) continue;  // block-uniform
      const int64_t i0 = t * nr, nq = imin(nr, Tq - i0);
      __syncthreads();  // every warp is done with the previous query tile
      stage_rows(sq.at(q, b, h, i0), sq.s2, nq, nq, D, sQ, ldq);
      stage_rows(sd.at(dout, b, h, i0), sd.s2, nq, nq, Dv, sdO, ldo);
      for (int64_t x = threadIdx.x; x < nq; x += blockDim.x) {
        sL[x] = lse[bh * Tq + i0 + x];
        sDl[x] = delta[bh * Tq + i0 + x];
      }
      __syncthreads();
      if (!key_ok) continue;
      A p = 0, ds = 0;  // P and dS of query row i0 + lane with key j
      if (lane < nq && sL[lane] != A(-INFINITY)) {
        const A s = mk.apply(row_dot(sQ + lane * ldq, kr, D) * scale, b, h, i0 + lane, j);
        if (s != A(-INFINITY)) {
          const A dp = row_dot(sdO + lane * ldo, vr, Dv);
          p = m_exp(s - sL[lane]);
          ds = p * (dp - sDl[lane]);
        }
      }
      prow[lane] = p;
      srow[lane] = ds;
      __syncwarp();
      accumulate_rows(dvr, Dv, A(1), prow, nq, sdO, ldo, lane);  // dV += P^T dO
      accumulate_rows(dkr, D, A(1), srow, nq, sQ, ldq, lane);    // dK += dS^T Q
      __syncwarp();
    }
  }
  if (!key_ok) return;
  store_row(dk + (bg * Tk + j) * D, dkr, D, scale, lane);
  store_row(dv + (bg * Tk + j) * Dv, dvr, Dv, A(1), lane);
}

// ==== host =========================================================================================
// Blocks of a 1-D grid, checked against the grid limit.
unsigned grid_blocks(int64_t n) {
  VT_CHECK(n < (int64_t{1} << 31), "cuda attention: ", n, " blocks exceed the grid limit");
  return static_cast<unsigned>(n);
}

Dims dims_of(const Tensor& q, const Tensor& k, const Tensor& v) {
  return {q.size(0), q.size(1), k.size(1), q.size(1) / k.size(1), q.size(2), k.size(2), q.size(3), v.size(3)};
}

// Device copies of the row ranges: one int64 buffer [key_begin (Tq), key_end (Tq), tile_lo (nt),
// tile_hi (nt)] with the tile bounds over tiles of `tile_rows` query rows (0 tiles: no bounds).
struct DeviceRows {
  Tensor buf;
  const int64_t *lo = nullptr, *hi = nullptr, *tlo = nullptr, *thi = nullptr;
};
DeviceRows upload_rows(const nn::AttentionRows& rows, int64_t Tq, int64_t Tk, int64_t tile_rows, Device dev) {
  const bool ranged = !rows.key_begin.empty();
  VT_CHECK(!ranged || (static_cast<int64_t>(rows.key_begin.size()) == Tq &&
                       static_cast<int64_t>(rows.key_end.size()) == Tq),
           "cuda attention: key ranges for ", rows.key_begin.size(), " rows, expected ", Tq);
  const int64_t nt = tile_rows > 0 ? (Tq + tile_rows - 1) / tile_rows : 0;
  std::vector<int64_t> h;
  if (ranged) {
    h.insert(h.end(), rows.key_begin.begin(), rows.key_begin.end());
    h.insert(h.end(), rows.key_end.begin(), rows.key_end.end());
  }
  for (int64_t t = 0; t < nt; ++t) {
    int64_t a = ranged ? Tk : 0;
    for (int64_t i = t * tile_rows; i < std::min(Tq, (t + 1) * tile_rows); ++i) a = ranged ? std::min(a, rows.key_begin[i]) : 0;
    h.push_back(a);
  }
  for (int64_t t = 0; t < nt; ++t) {
    int64_t e = ranged ? 0 : Tk;
    for (int64_t i = t * tile_rows; i < std::min(Tq, (t + 1) * tile_rows); ++i) e = ranged ? std::max(e, rows.key_end[i]) : Tk;
    h.push_back(e);
  }
  DeviceRows d;
  if (h.empty()) return d;
  d.buf = from_blob(h.data(), {static_cast<int64_t>(h.size())}, DType::I64, dev);
  const int64_t* p = static_cast<const int64_t*>(d.buf.raw_data());
  const int64_t off = ranged ? 2 * Tq : 0;
  if (ranged) d.lo = p, d.hi = p + Tq;
  if (nt > 0) d.tlo = p + off, d.thi = p + off + nt;
  return d;
}

template <class A>
Mask<A> mask_of(const DeviceRows& r, const nn::AttentionRows& rows, Device dev) {
  Mask<A> m;
  m.lo = r.lo, m.hi = r.hi;
  const Tensor& d = rows.dense;
  if (d.defined()) {
    VT_CHECK(d.dim() == 4, "cuda attention: dense mask must be a (B, Hq, Tq, Tk) view, got ", d.shape().str());
    VT_CHECK(d.device() == dev, "cuda attention: the dense mask is on ", d.device().str(), ", q on ", dev.str());
    m.ds0 = d.stride(0), m.ds1 = d.stride(1), m.ds2 = d.stride(2), m.ds3 = d.stride(3);
    if (d.dtype() == DType::Bool) m.dense_bool = static_cast<const uint8_t*>(d.raw_data());
    else {
      VT_CHECK(d.dtype() == dtype_of<A>(), "cuda attention: additive mask must be ", dtype_name(dtype_of<A>()),
               ", got ", dtype_name(d.dtype()));
      m.dense_add = static_cast<const A*>(d.raw_data());
    }
  }
  return m;
}

// The largest count n <= 32 of per-item rows for which base + n * per_item bytes fit the default
// 48 KB of shared memory; at least `floor_n` (then the kernel's limit is raised, see allow_smem).
int fit_items(size_t base, size_t per_item, int floor_n) {
  if (base + 32 * per_item <= kDefaultSmem) return 32;
  const int64_t n = base < kDefaultSmem ? static_cast<int64_t>((kDefaultSmem - base) / per_item) : 0;
  return static_cast<int>(std::max<int64_t>(n, floor_n));
}

// Raises the kernel's dynamic shared-memory limit when a launch needs more than 48 KB.
template <class K>
void allow_smem(K* kernel, size_t bytes, int device, const Dims& dm) {
  if (bytes <= kDefaultSmem) return;
  int optin = 0;
  VT_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  VT_CHECK(bytes <= static_cast<size_t>(optin), "cuda attention: head dims D = ", dm.D, ", Dv = ", dm.Dv, " need ",
           bytes, " bytes of shared memory per block; the device allows ", optin);
  VT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

void check_attention_inputs(const Tensor& q, const Tensor& k, const Tensor& v, const char* op) {
  check_cuda(q, op), check_cuda(k, op), check_cuda(v, op);
  for (const Tensor* t : {&q, &k, &v})
    VT_CHECK(t->dim() == 4 && (t->size(3) <= 1 || t->stride(3) == 1), "cuda ", op,
             ": q, k, v must be (B, H, T, E) with a contiguous last dim, got ", t->shape().str());
}

void attention_forward_cuda(const Tensor& q, const Tensor& k, const Tensor& v, const nn::AttentionRows& rows,
                            double scale, const Tensor& out, const Tensor& lse) {
  check_attention_inputs(q, k, v, "attention_forward");
  DeviceGuard guard(q.device());
  DeviceContext& ctx = context(q.device().index);
#ifdef VT_WITH_CUDNN
  if (cudnn::sdpa_forward(q, k, v, rows, scale, out, lse)) return;  // opt-in: VT_ATTENTION_CUDNN
#endif
  if (flash::flash_supports(q, k, v, rows)) return flash::flash_attention_forward(q, k, v, rows, scale, out, lse);
  const Dims dm = dims_of(q, k, v);
  if (dm.B * dm.Hq * dm.Tq == 0) return;
  const DeviceRows dr = upload_rows(rows, dm.Tq, dm.Tk, 0, q.device());
  visit_float(q.dtype(), "attention_forward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc<T>;
    const size_t base = sizeof(A) * (kWarps * (dm.D + dm.Dv) + kWarps * 32);
    const size_t per_key = sizeof(A) * (dm.D + 1 + dm.Dv);
    const int kt = fit_items(base, per_key, 8);
    const size_t bytes = base + kt * per_key;
    allow_smem(attention_forward_kernel<T>, bytes, q.device().index, dm);
    const int64_t blocks = dm.B * dm.Hq * ((dm.Tq + kWarps - 1) / kWarps);
    attention_forward_kernel<T><<<grid_blocks(blocks), kThreads, bytes, ctx.stream()>>>(
        static_cast<const T*>(q.raw_data()), str_of(q), static_cast<const T*>(k.raw_data()), str_of(k),
        static_cast<const T*>(v.raw_data()), str_of(v), dm, mask_of<A>(dr, rows, q.device()), static_cast<A>(scale), kt,
        static_cast<T*>(out.raw_data()), static_cast<A*>(lse.raw_data()));
    VT_CUDA_CHECK_LAUNCH();
  });
}

void attention_backward_cuda(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                             const Tensor& dout, const nn::AttentionRows& rows, double scale, const Tensor& dq,
                             const Tensor& dk, const Tensor& dv) {
  check_attention_inputs(q, k, v, "attention_backward");
  check_cuda(dout, "attention_backward");
  VT_CHECK(out.is_contiguous() && lse.is_contiguous() && dq.is_contiguous() && dk.is_contiguous() &&
               dv.is_contiguous(),
           "cuda attention_backward: out, lse, dq, dk, dv must be contiguous");
  VT_CHECK(dout.dim() == 4 && (dout.size(3) <= 1 || dout.stride(3) == 1),
           "cuda attention_backward: dout must have a contiguous last dim, got ", dout.shape().str());
  DeviceGuard guard(q.device());
#ifdef VT_WITH_CUDNN
  if (cudnn::sdpa_backward(q, k, v, out, lse, dout, rows, scale, dq, dk, dv)) return;
#endif
  if (flash::flash_supports(q, k, v, rows, &dout))
    return flash::flash_attention_backward(q, k, v, out, lse, dout, rows, scale, dq, dk, dv);
  DeviceContext& ctx = context(q.device().index);
  const Dims dm = dims_of(q, k, v);
  const Device dev = q.device();
  visit_float(q.dtype(), "attention_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc<T>;
    const int device = dev.index;
    // A query tile of the dK dV kernel: as many rows (<= 32) as fit; its bounds are uploaded.
    const size_t kv_base = sizeof(A) * (kWarps * 2 * (dm.D + dm.Dv) + kWarps * 64);
    const size_t kv_per_row = sizeof(A) * (dm.D + 1 + dm.Dv + 1 + 2);
    const int nr = fit_items(kv_base, kv_per_row, 8);
    const DeviceRows dr = upload_rows(rows, dm.Tq, dm.Tk, nr, dev);
    const Mask<A> mk = mask_of<A>(dr, rows, q.device());
    const A sc = static_cast<A>(scale);
    const T *qp = static_cast<const T*>(q.raw_data()), *kp = static_cast<const T*>(k.raw_data());
    const T *vp = static_cast<const T*>(v.raw_data()), *dop = static_cast<const T*>(dout.raw_data());
    const A* lp = static_cast<const A*>(lse.raw_data());

    // delta (B, Hq, Tq) = rowsum(dO * O)
    Tensor delta = empty({dm.B, dm.Hq, dm.Tq}, {dtype_of<A>(), dev});
    A* dl = static_cast<A*>(delta.raw_data());
    const int64_t rows_total = dm.B * dm.Hq * dm.Tq;
    if (rows_total > 0) {
      attention_delta_kernel<T><<<nnk::blocks_for(rows_total, kWarps), kThreads, 0, ctx.stream()>>>(
          dop, str_of(dout), static_cast<const T*>(out.raw_data()), dm, dl);
      VT_CUDA_CHECK_LAUNCH();
    }

    // dQ
    if (rows_total > 0) {
      const size_t base = sizeof(A) * (kWarps * (2 * dm.D + dm.Dv) + kWarps * 32);
      const size_t per_key = sizeof(A) * (dm.D + 1 + dm.Dv + 1);
      const int kt = fit_items(base, per_key, 8);
      const size_t bytes = base + kt * per_key;
      allow_smem(attention_dq_kernel<T>, bytes, device, dm);
      const int64_t blocks = dm.B * dm.Hq * ((dm.Tq + kWarps - 1) / kWarps);
      attention_dq_kernel<T><<<grid_blocks(blocks), kThreads, bytes, ctx.stream()>>>(
          qp, str_of(q), kp, str_of(k), vp, str_of(v), dop, str_of(dout), lp, dl, dm, mk, sc, kt,
          static_cast<T*>(dq.raw_data()));
      VT_CUDA_CHECK_LAUNCH();
    }

    // dK, dV (every key row is written, 0 where no query sees it)
    if (dm.B * dm.Hkv * dm.Tk > 0) {
      const size_t bytes = kv_base + nr * kv_per_row;
      allow_smem(attention_dkdv_kernel<T>, bytes, device, dm);
      const int64_t blocks = dm.B * dm.Hkv * ((dm.Tk + kWarps - 1) / kWarps);
      attention_dkdv_kernel<T><<<grid_blocks(blocks), kThreads, bytes, ctx.stream()>>>(
          qp, str_of(q), kp, str_of(k), vp, str_of(v), dop, str_of(dout), lp, dl, dm, mk, dr.tlo, dr.thi, sc, nr,
          static_cast<T*>(dk.raw_data()), static_cast<T*>(dv.raw_data()));
      VT_CUDA_CHECK_LAUNCH();
    }
  });
}

}  // namespace

void register_attention_kernels() {
  using namespace vt::nn;
  kernels::register_kernel("attention_forward", DeviceType::CUDA,
                           static_cast<AttentionForwardFn*>(&attention_forward_cuda));
  kernels::register_kernel("attention_backward", DeviceType::CUDA,
                           static_cast<AttentionBackwardFn*>(&attention_backward_cuda));
}

}  // namespace vt::cuda
