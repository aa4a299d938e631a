// flash_attention_fwd.cu: the tensor-core flash-attention forward (FlashAttention-2, Dao 2023,
// Algorithm 1) for bf16/f16 q, k, v with head dim 64 or 128, behind the CUDA attention_forward
// kernel (nn_attention.cu dispatches here; the contract is AttentionRows in include/vt/nn/attention.h).
// Also the host pieces both directions share: which calls qualify, and the mask plan.
//
//   one CTA per (128 query rows, batch, query head); 4 warps, each 32 rows (two m16 row blocks) of
//   the tile, so every K and V fragment read from shared memory feeds two products (ldmatrix traffic
//   was the limit with 16-row warps). Q (128, D) is staged once by cp.async and its A fragments are
//   re-read from shared memory per key tile; K and V tiles of 64 keys are double-buffered in shared
//   memory (the next tile's copy overlaps this tile's math). P is packed to A fragments per row block.
//   S = Q K^T and O += P V run on mma.sync m16n8k16 (bf16/f16 in, f32 accumulate); P goes from the
//   S accumulators to A fragments in registers. The softmax is online, in base 2: scores are scaled
//   by scale * log2(e) once, so every exponential is one exp2f.
//   Masks: a CTA visits only the keys its rows' ranges cover (the plan's per-tile union), and tests
//   each element only in key tiles that some row of the tile does not fully see.
//   out = O / l in q's dtype; lse = (m + log2 l) * ln 2 in f32 (natural log, as the CPU kernel);
//   a row that sees no key: out 0, lse -inf.
// Precision: scores, m, l and O are f32; P is rounded to q's dtype for the P V product, as in FA2.
#include <algorithm>
#include <climits>
#include <vector>

#include "backend.h"
#include "device.h"
#include "flash_attention.cuh"

namespace vt::cuda::flash {

// ---- host: eligibility and the mask plan ------------------------------------------------------------
namespace {
bool rows_aligned(const Tensor& t) {
  if (reinterpret_cast<uintptr_t>(t.raw_data()) % 16 != 0) return false;
  if (t.dim() != 4 || t.stride(3) != 1) return false;
  for (int d = 0; d < 3; ++d)
    if (t.size(d) > 1 && t.stride(d) % 8 != 0) return false;  // 16-byte rows for cp.async
  return true;
}
}  // namespace

bool flash_supports(const Tensor& q, const Tensor& k, const Tensor& v, const nn::AttentionRows& rows,
                    const Tensor* extra) {
  if (env_on("VT_ATTENTION_FALLBACK")) return false;
  if (q.dtype() != DType::BF16 && q.dtype() != DType::F16) return false;
  if (rows.dense.defined()) return false;
  const int64_t D = q.size(3);
  if ((D != 64 && D != 128) || v.size(3) != D) return false;
  const int64_t Tq = q.size(2), Tk = k.size(2);
  if (Tq > INT_MAX / 2 || Tk > INT_MAX / 2 || q.size(0) * q.size(1) > INT_MAX) return false;
  if ((Tq + kBlockM - 1) / kBlockM > 65535 || (Tk + kBlockN - 1) / kBlockN > 65535) return false;
  for (const Tensor* t : {&q, &k, &v, extra})
    if (t && !rows_aligned(*t)) return false;
  return true;
}

Plan make_plan(const nn::AttentionRows& rows, int64_t Tq, int64_t Tk, int q_tile, Device dev) {
  const bool ranged = !rows.key_begin.empty();
  VT_CHECK(!ranged || (static_cast<int64_t>(rows.key_begin.size()) == Tq &&
                       static_cast<int64_t>(rows.key_end.size()) == Tq),
           "cuda flash attention: key ranges for ", rows.key_begin.size(), " rows, expected ", Tq);
  const int64_t nqt = (Tq + q_tile - 1) / q_tile, nkt = (Tk + kBlockN - 1) / kBlockN;
  std::vector<int> h(2 * Tq + 4 * nqt + 2 * nkt);
  int *lo = h.data(), *hi = lo + Tq, *qt_lo = hi + Tq, *qt_hi = qt_lo + nqt, *qt_in_lo = qt_hi + nqt;
  int *qt_in_hi = qt_in_lo + nqt, *kt_first = qt_in_hi + nqt, *kt_last = kt_first + nkt;
  for (int64_t i = 0; i < Tq; ++i) {
    const int64_t a = ranged ? std::clamp<int64_t>(rows.key_begin[i], 0, Tk) : 0;
    const int64_t e = ranged ? std::clamp<int64_t>(rows.key_end[i], 0, Tk) : Tk;
    lo[i] = a < e ? static_cast<int>(a) : 0;
    hi[i] = a < e ? static_cast<int>(e) : 0;
  }
  std::fill(kt_first, kt_first + nkt, static_cast<int>(nqt));
  std::fill(kt_last, kt_last + nkt, 0);
  for (int64_t t = 0; t < nqt; ++t) {
    const int64_t r0 = t * q_tile, r1 = std::min(Tq, r0 + q_tile);
    int ulo = INT_MAX, uhi = 0, ilo = 0, ihi = INT_MAX;
    for (int64_t i = r0; i < r1; ++i) {
      if (hi[i] > lo[i]) ulo = std::min(ulo, lo[i]), uhi = std::max(uhi, hi[i]);
      ilo = std::max(ilo, lo[i]), ihi = std::min(ihi, hi[i]);
    }
    if (uhi == 0) ulo = 0;
    if (r1 - r0 < q_tile) ilo = 0, ihi = -1;  // a tail tile: its rows past Tq are always masked
    qt_lo[t] = ulo, qt_hi[t] = uhi, qt_in_lo[t] = ilo, qt_in_hi[t] = ihi;
    if (uhi > ulo)
      for (int64_t n = ulo / kBlockN; n <= (uhi - 1) / kBlockN; ++n)
        kt_first[n] = std::min<int>(kt_first[n], t), kt_last[n] = std::max<int>(kt_last[n], t + 1);
  }
  for (int64_t n = 0; n < nkt; ++n)
    if (kt_first[n] >= kt_last[n]) kt_first[n] = kt_last[n] = 0;
  Plan p;
  p.buf = from_blob(h.data(), {static_cast<int64_t>(h.size())}, DType::I32, dev);
  const int* d = static_cast<const int*>(p.buf.raw_data());
  const auto at = [&](const int* x) { return d + (x - h.data()); };
  p.view = {at(lo), at(hi), at(qt_lo), at(qt_hi), at(qt_in_lo), at(qt_in_hi), at(kt_first), at(kt_last)};
  return p;
}

// ---- forward kernel -------------------------------------------------------------------------------------
// q (B, Hq, Tq, D), k, v (B, Hkv, Tk, D) strided rows -> out (B, Hq, Tq, D) contiguous, lse (B, Hq, Tq) f32.
// Grid (B * Hq, query tiles of kFwdM rows); shared: sQ (kFwdM, D), sK (2, 64, D), sV (2, 64, D), swizzled,
// then the rows' key ranges sLo, sHi (kFwdM) int32.
// Warp w owns rows [32 w, 32 w + 32) of the tile as kFwdRB = 2 row blocks of 16: every K or V fragment
// it loads from shared memory feeds both blocks (half the ldmatrix traffic per product of 16-row warps).
// Q's A fragments are re-read from shared memory per tile (holding both blocks would take 64 registers).
template <class T, int D>
__global__ void __launch_bounds__(kThreads) flash_forward_kernel(const T* __restrict__ q, Strides sq,
                                                                  const T* __restrict__ k, Strides sk,
                                                                  const T* __restrict__ v, Strides sv, int Hq,
                                                                  int group, int Tq, int Tk, PlanView pl,
                                                                  float scale_log2, T* __restrict__ out,
                                                                  float* __restrict__ lse) {
  constexpr int RB = kFwdRB;
  extern __shared__ __align__(128) unsigned char smem[];
  T* sQ = reinterpret_cast<T*>(smem);
  T* sK = sQ + kFwdM * D;
  T* sV = sK + 2 * kBlockN * D;
  int* sLo = reinterpret_cast<int*>(sV + 2 * kBlockN * D);
  int* sHi = sLo + kFwdM;

  const int m = gridDim.y - 1 - blockIdx.y;  // the long causal tiles start first
  const int bh = blockIdx.x, b = bh / Hq, h = bh % Hq, g = h / group;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gr = lane >> 2, tq = lane & 3;
  const int i0 = m * kFwdM;
  const int jlo = pl.qt_lo[m], jhi = pl.qt_hi[m], in_lo = pl.qt_in_lo[m], in_hi = pl.qt_in_hi[m];
  const int ntiles = jhi > jlo ? (jhi - jlo + kBlockN - 1) / kBlockN : 0;
  const T* qh = q + b * sq.s0 + h * sq.s1;
  const T* kh = k + b * sk.s0 + g * sk.s1;
  const T* vh = v + b * sv.s0 + g * sv.s1;

  // The key range of each row of the tile, in shared memory (read only in tiles that need a mask; first
  // read after the loop's first barrier). This thread's rows are g and g + 8 (x = 0, 1) of each of its
  // warp's row blocks: tile row warp * 32 + rb * 16 + x * 8 + g.
  static_assert(kFwdM == kThreads, "one row of the tile per thread");
  {
    const int r = i0 + static_cast<int>(threadIdx.x);
    sLo[threadIdx.x] = r < Tq ? pl.lo[r] : 0;
    sHi[threadIdx.x] = r < Tq ? pl.hi[r] : 0;
  }

  float o[RB][D / 8][4];
#pragma unroll
  for (int rb = 0; rb < RB; ++rb)
#pragma unroll
    for (int dn = 0; dn < D / 8; ++dn) o[rb][dn][0] = o[rb][dn][1] = o[rb][dn][2] = o[rb][dn][3] = 0.f;
  float mr[RB][2], lr[RB][2];  // running max (base 2) and per-lane partial sum of each row
#pragma unroll
  for (int rb = 0; rb < RB; ++rb) mr[rb][0] = mr[rb][1] = -INFINITY, lr[rb][0] = lr[rb][1] = 0.f;

  if (ntiles > 0) {
    load_tile<kFwdM, D>(sQ, qh, sq.s2, i0, Tq);
    load_tile<kBlockN, D>(sK, kh, sk.s2, jlo, Tk);
    load_tile<kBlockN, D>(sV, vh, sv.s2, jlo, Tk);
    cp_async_commit();
  }
  for (int it = 0; it < ntiles; ++it) {
    const int j0 = jlo + it * kBlockN, st = it & 1;
    cp_async_wait_all();
    __syncthreads();  // tile `it` is in; every warp is done with tile it - 1, whose buffers we refill
    if (it + 1 < ntiles) {
      load_tile_lean<kBlockN, D>(sK + (st ^ 1) * kBlockN * D, kh, sk.s2, j0 + kBlockN, Tk);
      load_tile_lean<kBlockN, D>(sV + (st ^ 1) * kBlockN * D, vh, sv.s2, j0 + kBlockN, Tk);
      cp_async_commit();
    }
    const T* cK = sK + st * kBlockN * D;
    const T* cV = sV + st * kBlockN * D;

    // S = Q K^T: (32, 64) per warp, RB row blocks x 8 n-tiles of 8 keys.
    float s[RB][kBlockN / 8][4];
#pragma unroll
    for (int rb = 0; rb < RB; ++rb)
#pragma unroll
      for (int nt = 0; nt < kBlockN / 8; ++nt) s[rb][nt][0] = s[rb][nt][1] = s[rb][nt][2] = s[rb][nt][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t qa[RB][4];
#pragma unroll
      for (int rb = 0; rb < RB; ++rb)
        ldsm_x4(qa[rb], sQ + swz<D>(warp * 16 * RB + rb * 16 + (lane & 15), kk * 16 + (lane >> 4) * 8));
#pragma unroll
      for (int np = 0; np < kBlockN / 16; ++np) {
        uint32_t bk[4];
        ldsm_x4(bk, cK + swz<D>(np * 16 + (lane & 7) + (lane >> 4) * 8, kk * 16 + ((lane >> 3) & 1) * 8));
#pragma unroll
        for (int rb = 0; rb < RB; ++rb) {
          mma16816<T>(s[rb][2 * np], qa[rb], bk[0], bk[1]);
          mma16816<T>(s[rb][2 * np + 1], qa[rb], bk[2], bk[3]);
        }
      }
    }

    // Scale to base 2, mask, online softmax; row x of block rb holds elements e = 2x, 2x + 1.
    const bool full = in_lo <= j0 && j0 + kBlockN <= in_hi;
    uint32_t pa[RB][kBlockN / 16][4];  // P as A fragments, packed as soon as a block's softmax is done
#pragma unroll
    for (int rb = 0; rb < RB; ++rb) {
      float mx[2] = {mr[rb][0], mr[rb][1]};
#pragma unroll
      for (int nt = 0; nt < kBlockN / 8; ++nt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          float x = s[rb][nt][e] * scale_log2;
          if (!full) {
            const int j = j0 + nt * 8 + 2 * tq + (e & 1), row = warp * 16 * RB + rb * 16 + (e >> 1) * 8 + gr;
            x = (j >= sLo[row] && j < sHi[row]) ? x : -INFINITY;
          }
          s[rb][nt][e] = x;
        }
        mx[0] = fmaxf(mx[0], fmaxf(s[rb][nt][0], s[rb][nt][1]));
        mx[1] = fmaxf(mx[1], fmaxf(s[rb][nt][2], s[rb][nt][3]));
      }
      float al[2], use[2];
#pragma unroll
      for (int x = 0; x < 2; ++x) {
        mx[x] = quad_max(mx[x]);
        // While a row has seen nothing its max is -inf; subtract 0 then, so exp2 gives 0, not NaN.
        use[x] = mx[x] == -INFINITY ? 0.f : mx[x];
        al[x] = exp2f(mr[rb][x] - use[x]);
        mr[rb][x] = mx[x];
      }
      float sum[2] = {0.f, 0.f};
#pragma unroll
      for (int nt = 0; nt < kBlockN / 8; ++nt) {
        s[rb][nt][0] = exp2f(s[rb][nt][0] - use[0]), s[rb][nt][1] = exp2f(s[rb][nt][1] - use[0]);
        s[rb][nt][2] = exp2f(s[rb][nt][2] - use[1]), s[rb][nt][3] = exp2f(s[rb][nt][3] - use[1]);
        sum[0] += s[rb][nt][0] + s[rb][nt][1], sum[1] += s[rb][nt][2] + s[rb][nt][3];
      }
      // per-lane partial sums; the quad sums at the end
      lr[rb][0] = lr[rb][0] * al[0] + sum[0], lr[rb][1] = lr[rb][1] * al[1] + sum[1];
#pragma unroll
      for (int dn = 0; dn < D / 8; ++dn)
        o[rb][dn][0] *= al[0], o[rb][dn][1] *= al[0], o[rb][dn][2] *= al[1], o[rb][dn][3] *= al[1];
#pragma unroll
      for (int kk = 0; kk < kBlockN / 16; ++kk) {
        pa[rb][kk][0] = pack2<T>(s[rb][2 * kk][0], s[rb][2 * kk][1]);
        pa[rb][kk][1] = pack2<T>(s[rb][2 * kk][2], s[rb][2 * kk][3]);
        pa[rb][kk][2] = pack2<T>(s[rb][2 * kk + 1][0], s[rb][2 * kk + 1][1]);
        pa[rb][kk][3] = pack2<T>(s[rb][2 * kk + 1][2], s[rb][2 * kk + 1][3]);
      }
    }

    // O += P V: P's C fragments are the A fragments; V (keys, D) is read transposed, once for both blocks.
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk) {
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        uint32_t bv[4];
        ldsm_x4_trans(bv, cV + swz<D>(kk * 16 + (lane & 15), dp * 16 + (lane >> 4) * 8));
#pragma unroll
        for (int rb = 0; rb < RB; ++rb) {
          mma16816<T>(o[rb][2 * dp], pa[rb][kk], bv[0], bv[1]);
          mma16816<T>(o[rb][2 * dp + 1], pa[rb][kk], bv[2], bv[3]);
        }
      }
    }
  }

  const int64_t row0 = static_cast<int64_t>(bh) * Tq;
#pragma unroll
  for (int rb = 0; rb < RB; ++rb)
#pragma unroll
    for (int x = 0; x < 2; ++x) {
      const int r = i0 + warp * 16 * RB + rb * 16 + x * 8 + gr;
      const float l = quad_sum(lr[rb][x]);  // every lane of the warp takes part in the shuffles
      const float inv = l > 0.f ? 1.f / l : 0.f;
      if (r < Tq) {
        uint32_t* dst = reinterpret_cast<uint32_t*>(out + (row0 + r) * D + 2 * tq);
#pragma unroll
        for (int dn = 0; dn < D / 8; ++dn) dst[dn * 4] = pack2<T>(o[rb][dn][2 * x] * inv, o[rb][dn][2 * x + 1] * inv);
        if (tq == 0) lse[row0 + r] = l > 0.f ? mr[rb][x] * kLn2 + logf(l) : -INFINITY;
      }
    }
}

// ---- host: launch --------------------------------------------------------------------------------------
namespace {
Strides strides_of(const Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2)}; }

template <class T, int D>
void launch_forward(const Tensor& q, const Tensor& k, const Tensor& v, const PlanView& pl, double scale,
                    const Tensor& out, const Tensor& lse, cudaStream_t stream) {
  const int B = static_cast<int>(q.size(0)), Hq = static_cast<int>(q.size(1)), Hkv = static_cast<int>(k.size(1));
  const int Tq = static_cast<int>(q.size(2)), Tk = static_cast<int>(k.size(2));
  constexpr int bytes = (kFwdM + 4 * kBlockN) * D * static_cast<int>(sizeof(T)) + 2 * kFwdM * 4;
  allow_dynamic_smem(flash_forward_kernel<T, D>, bytes);
  const dim3 grid(B * Hq, (Tq + kFwdM - 1) / kFwdM);
  flash_forward_kernel<T, D><<<grid, kThreads, bytes, stream>>>(
      static_cast<const T*>(q.raw_data()), strides_of(q), static_cast<const T*>(k.raw_data()), strides_of(k),
      static_cast<const T*>(v.raw_data()), strides_of(v), Hq, Hq / Hkv, Tq, Tk, pl,
      static_cast<float>(scale * 1.4426950408889634), static_cast<T*>(out.raw_data()),
      static_cast<float*>(lse.raw_data()));
  VT_CUDA_CHECK_LAUNCH();
}
}  // namespace

void flash_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const nn::AttentionRows& rows,
                             double scale, const Tensor& out, const Tensor& lse) {
  VT_CHECK(out.is_contiguous() && lse.is_contiguous() && lse.dtype() == DType::F32,
           "cuda flash attention: out and lse must be contiguous, lse f32");
  if (q.size(0) * q.size(1) * q.size(2) == 0) return;
  const cudaStream_t stream = context(q.device().index).stream();
  const Plan plan = make_plan(rows, q.size(2), k.size(2), kFwdM, q.device());
  const bool is_bf16 = q.dtype() == DType::BF16;
  if (q.size(3) == 64) {
    if (is_bf16) launch_forward<bf16, 64>(q, k, v, plan.view, scale, out, lse, stream);
    else launch_forward<f16, 64>(q, k, v, plan.view, scale, out, lse, stream);
  } else {
    if (is_bf16) launch_forward<bf16, 128>(q, k, v, plan.view, scale, out, lse, stream);
    else launch_forward<f16, 128>(q, k, v, plan.view, scale, out, lse, stream);
  }
}

}  // namespace vt::cuda::flash
