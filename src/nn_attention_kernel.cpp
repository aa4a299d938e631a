// nn_attention_kernel.cpp: the CPU flash-attention kernels behind scaled_dot_product_attention.
//
// Forward (Dao et al., FlashAttention-2, Alg. 1), per (batch, query head, block of kBq query rows):
//   for each block of kBk keys the mask does not hide entirely:
//     S = scale * Q K^T                     (kBq, kBk) tile, one GEMM
//     mask S (-inf outside each row's key range; the dense mask is added or applied)
//     m' = max(m, rowmax S);  P = exp(S - m');  l = l * exp(m - m') + rowsum P
//     O = O * exp(m - m') + P V              one GEMM
//   O /= l,  lse = m + log l                 (saved for the backward; a row that saw nothing: 0, -inf)
// Only the tiles, the output block and three per-row statistics live at a time: memory is O(T D)
// per head. Statistics and accumulators are f32 (f64 for f64 input); bf16/f16 rows are widened
// once per tile pass into f32 scratch, then every GEMM is an f32 GEMM (vt/cpu/gemm.h).
//
// Backward (FA-2 Alg. 2). With Delta = rowsum(dO * O), for each non-empty tile (query block i, key
// block j), recomputing P from the saved lse instead of storing it:
//   S = scale Q_i K_j^T (masked);  P = exp(S - lse_i)
//   dV_j += P^T dO_i;  dP = dO_i V_j^T;  dS = P * (dP - Delta_i)
//   dQ_i += scale dS K_j;  dK_j += scale dS^T Q_i
// Determinism: dK_j and dV_j add over (query head of the GQA group, query block) in that order, dQ_i
// over key blocks in ascending order, whichever of two schedules runs:
//   A  one task per (batch, KV head): a thread owns all its heads, looping key blocks outside and
//      query blocks inside, with dQ accumulated for the whole head (B * Hkv >= threads);
//   B  two passes when there are fewer (batch, KV head) pairs than threads: one task per (batch, KV
//      head, key block) for dK, dV, then one per (batch, query head, query block) for dQ, which
//      recomputes S, P and dP a second time (7 GEMMs per tile instead of 5).
// Every tile computes the same values with the same GEMM calls in both, so the gradients are
// bitwise identical with any thread count.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "nn_cpu_math.h"
#include "vt/cpu/gemm.h"
#include "vt/nn/attention.h"

namespace vt::nn {
namespace {

// Tile sizes: 64x64, 64x128, 128x64, 128x128 and 128x256 measured within noise of each other for
// B2 H8 T1024 D64 causal fwd+bwd (process CPU time, 2 threads, shared EPYC); 128x128 kept.
constexpr int64_t kBq = 128;  // query rows per tile
constexpr int64_t kBk = 128;  // keys per tile

using cpu::ld;
using cpu::st;

inline void gemm(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t rsA, int64_t csA,
                 const float* B, int64_t rsB, int64_t csB, float beta, float* C, int64_t rsC) {
  cpu::gemm_f32(M, N, K, alpha, A, rsA, csA, B, rsB, csB, beta, C, rsC, 1);
}
inline void gemm(int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t rsA, int64_t csA,
                 const double* B, int64_t rsB, int64_t csB, double beta, double* C, int64_t rsC) {
  cpu::gemm_f64(M, N, K, alpha, A, rsA, csA, B, rsB, csB, beta, C, rsC, 1);
}

// Rows [r0, r1) of one head of a (B, H, T, E) tensor, as compute-type rows: row r is at
// p + (r - r0) * rs. Points into the tensor when it already holds C, else into widened scratch.
template <class C>
struct Rows {
  const C* p = nullptr;
  int64_t rs = 0, r0 = 0;
  const C* row(int64_t r) const { return p + (r - r0) * rs; }
};

template <class T, class C>
Rows<C> head_rows(const Tensor& t, int64_t b, int64_t h, int64_t r0, int64_t r1, std::vector<C>& scratch) {
  const T* base = t.data<T>() + b * t.stride(0) + h * t.stride(1);
  const int64_t rs = t.stride(2), E = t.size(3);
  if constexpr (std::is_same_v<T, C>) {
    return {base, rs, 0};
  } else {
    if (static_cast<int64_t>(scratch.size()) < (r1 - r0) * E) scratch.resize((r1 - r0) * E);
    for (int64_t r = r0; r < r1; ++r) {
      const T* src = base + r * rs;
      C* dst = scratch.data() + (r - r0) * E;
      for (int64_t e = 0; e < E; ++e) dst[e] = ld(src[e]);
    }
    return {scratch.data(), E, r0};
  }
}

// The problem, read once from the tensors and the mask.
template <class C>
struct Problem {
  int64_t B, Hq, Hkv, group, Tq, Tk, D, Dv, nqb, nkb;
  C scale;
  const int64_t *lo = nullptr, *hi = nullptr;  // per query row visible keys [lo, hi), or null: all
  // Per query block: min of lo, max of lo, min of hi, max of hi over its rows.
  std::vector<int64_t> lo_min, lo_max, hi_min, hi_max;
  const uint8_t* dense_bool = nullptr;  // (B, Hq, Tq, Tk) with strides ds
  const C* dense_add = nullptr;
  int64_t ds[4] = {0, 0, 0, 0};

  Problem(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionRows& rows, double sc)
      : B(q.size(0)), Hq(q.size(1)), Hkv(k.size(1)), group(Hq / Hkv), Tq(q.size(2)), Tk(k.size(2)), D(q.size(3)),
        Dv(v.size(3)), nqb((Tq + kBq - 1) / kBq), nkb((Tk + kBk - 1) / kBk), scale(C(sc)) {
    if (!rows.key_begin.empty()) lo = rows.key_begin.data(), hi = rows.key_end.data();
    lo_min.assign(nqb, 0), lo_max.assign(nqb, 0), hi_min.assign(nqb, Tk), hi_max.assign(nqb, Tk);
    if (lo) {
      for (int64_t qb = 0; qb < nqb; ++qb) {
        int64_t i0 = qb * kBq, i1 = std::min(Tq, i0 + kBq);
        lo_min[qb] = *std::min_element(lo + i0, lo + i1), lo_max[qb] = *std::max_element(lo + i0, lo + i1);
        hi_min[qb] = *std::min_element(hi + i0, hi + i1), hi_max[qb] = *std::max_element(hi + i0, hi + i1);
      }
    }
    if (rows.dense.defined()) {
      for (int d = 0; d < 4; ++d) ds[d] = rows.dense.stride(d);
      if (rows.dense.dtype() == DType::Bool) dense_bool = static_cast<const uint8_t*>(rows.dense.raw_data());
      else dense_add = rows.dense.data<C>();
    }
  }
  enum Tile { Empty, Partial, Full };
  // Empty when every row's range misses the key block (checked on the block's bounds, which is
  // exact for ranges that grow or stay put from row to row); Full when no element is masked.
  Tile classify(int64_t qb, int64_t kb) const {
    int64_t j0 = kb * kBk, j1 = std::min(Tk, j0 + kBk);
    if (hi_max[qb] <= j0 || lo_min[qb] >= j1) return Empty;
    bool full = lo_max[qb] <= j0 && hi_min[qb] >= j1 && !dense_bool && !dense_add;
    return full ? Full : Partial;
  }
  // Key blocks worth visiting for query block qb: [kb_begin, kb_end).
  int64_t kb_begin(int64_t qb) const { return lo_min[qb] / kBk; }
  int64_t kb_end(int64_t qb) const { return (hi_max[qb] + kBk - 1) / kBk; }
};

// S (nq, nk; row stride kBk) = scale * Q_i K_j^T, then masked.
template <class C>
void score_tile(const Problem<C>& pb, typename Problem<C>::Tile tile, int64_t b, int64_t h, int64_t i0, int64_t nq,
                int64_t j0, int64_t nk, const Rows<C>& Q, const Rows<C>& K, C* S) {
  gemm(nq, nk, pb.D, pb.scale, Q.row(i0), Q.rs, 1, K.row(j0), 1, K.rs, C(0), S, kBk);
  if (tile == Problem<C>::Full) return;
  const C ninf = -INFINITY;
  for (int64_t r = 0; r < nq; ++r) {
    C* s = S + r * kBk;
    const int64_t i = i0 + r;
    if (pb.lo) {
      const int64_t a = std::clamp(pb.lo[i] - j0, int64_t{0}, nk), e = std::clamp(pb.hi[i] - j0, a, nk);
      for (int64_t c = 0; c < a; ++c) s[c] = ninf;
      for (int64_t c = e; c < nk; ++c) s[c] = ninf;
    }
    const int64_t off = b * pb.ds[0] + h * pb.ds[1] + i * pb.ds[2] + j0 * pb.ds[3];
    if (pb.dense_bool) {
      const uint8_t* m = pb.dense_bool + off;
      for (int64_t c = 0; c < nk; ++c)
        if (!m[c * pb.ds[3]]) s[c] = ninf;
    } else if (pb.dense_add) {
      const C* m = pb.dense_add + off;
      for (int64_t c = 0; c < nk; ++c) s[c] += m[c * pb.ds[3]];
    }
  }
}

// ---- forward ---------------------------------------------------------------------------------------
// One task: query block qb of head (b, h). Scratch: S tile, O block (nq, Dv), widened rows.
template <class T, class C>
struct ForwardScratch {
  std::vector<C> S = std::vector<C>(kBq * kBk), O, m = std::vector<C>(kBq), l = std::vector<C>(kBq);
  std::vector<C> q, k, v;
};

template <class T, class C>
void forward_block(const Problem<C>& pb, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                   C* lse, int64_t b, int64_t h, int64_t qb, ForwardScratch<T, C>& ws) {
  const int64_t i0 = qb * kBq, nq = std::min(kBq, pb.Tq - i0), g = h / pb.group, Dv = pb.Dv;
  const int64_t kb0 = pb.kb_begin(qb), kb1 = std::max(kb0, pb.kb_end(qb));
  const int64_t jr0 = kb0 * kBk, jr1 = std::min(pb.Tk, kb1 * kBk);
  Rows<C> Q = head_rows<T, C>(q, b, h, i0, i0 + nq, ws.q);
  Rows<C> K = head_rows<T, C>(k, b, g, jr0, jr1, ws.k), V = head_rows<T, C>(v, b, g, jr0, jr1, ws.v);
  ws.O.assign(nq * Dv, C(0));
  C *O = ws.O.data(), *S = ws.S.data(), *m = ws.m.data(), *l = ws.l.data();
  std::fill(m, m + nq, C(-INFINITY));
  std::fill(l, l + nq, C(0));
  for (int64_t kb = kb0; kb < kb1; ++kb) {
    auto tile = pb.classify(qb, kb);
    if (tile == Problem<C>::Empty) continue;
    const int64_t j0 = kb * kBk, nk = std::min(kBk, pb.Tk - j0);
    score_tile(pb, tile, b, h, i0, nq, j0, nk, Q, K, S);
    for (int64_t r = 0; r < nq; ++r) {
      C* s = S + r * kBk;
      C mx = -INFINITY;
#pragma omp simd reduction(max : mx)
      for (int64_t c = 0; c < nk; ++c) mx = std::max(mx, s[c]);
      const C m_new = std::max(m[r], mx);
      if (m_new == -INFINITY) {  // nothing visible to this row yet
        std::fill(s, s + nk, C(0));
        continue;
      }
      C sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t c = 0; c < nk; ++c) {
        s[c] = cpu::exp_acc(s[c] - m_new);
        sum += s[c];
      }
      const C alpha = cpu::exp_acc(m[r] - m_new);  // 0 when m was -inf
      if (alpha != C(1)) {
        C* o = O + r * Dv;
#pragma omp simd
        for (int64_t e = 0; e < Dv; ++e) o[e] *= alpha;
      }
      l[r] = l[r] * alpha + sum;
      m[r] = m_new;
    }
    gemm(nq, Dv, nk, C(1), S, kBk, 1, V.row(j0), V.rs, 1, C(1), O, Dv);
  }
  T* o_out = out.data<T>() + ((b * pb.Hq + h) * pb.Tq + i0) * Dv;
  for (int64_t r = 0; r < nq; ++r) {
    const C inv = l[r] > 0 ? C(1) / l[r] : C(0);
    for (int64_t e = 0; e < Dv; ++e) o_out[r * Dv + e] = st<T>(O[r * Dv + e] * inv);
    lse[i0 + r] = l[r] > 0 ? m[r] + std::log(l[r]) : C(-INFINITY);
  }
}

template <class T, class C>
void forward_typed(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionRows& rows, double scale,
                   const Tensor& out, const Tensor& lse) {
  Problem<C> pb(q, k, v, rows, scale);
  const int64_t tasks = pb.B * pb.Hq * pb.nqb;
  const int threads = static_cast<int>(std::min<int64_t>(omp_get_max_threads(), tasks));
  C* lse_p = lse.data<C>();
#pragma omp parallel num_threads(threads)
  {
    ForwardScratch<T, C> ws;
    // Dynamic: causal blocks near the end of the sequence cost Tq / kBq times those at the start.
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t qb = t % pb.nqb, bh = t / pb.nqb;
      forward_block<T, C>(pb, q, k, v, out, lse_p + bh * pb.Tq, bh / pb.Hq, bh % pb.Hq, qb, ws);
    }
  }
}

// ---- backward --------------------------------------------------------------------------------------
template <class C>
struct BackwardScratch {
  std::vector<C> S = std::vector<C>(kBq * kBk), dP = std::vector<C>(kBq * kBk);
  std::vector<C> q, k, v, dout, dq, dk, dv;  // widened rows and accumulators
};

// One tile of the backward; dQ (rows of query block i, stride D), dK and dV (rows of key block j)
// are accumulated (+=) when non-null. lse and delta point at row i0.
template <class C>
void backward_tile(const Problem<C>& pb, typename Problem<C>::Tile tile, int64_t b, int64_t h, int64_t i0,
                   int64_t nq, int64_t j0, int64_t nk, const Rows<C>& Q, const Rows<C>& K, const Rows<C>& V,
                   const Rows<C>& dO, const C* lse, const C* delta, C* dQ, C* dK, C* dV, BackwardScratch<C>& ws) {
  C *P = ws.S.data(), *dP = ws.dP.data();
  score_tile(pb, tile, b, h, i0, nq, j0, nk, Q, K, P);
  for (int64_t r = 0; r < nq; ++r) {
    C* p = P + r * kBk;
    const C L = lse[r];
    if (L == -INFINITY) {
      std::fill(p, p + nk, C(0));
      continue;
    }
#pragma omp simd
    for (int64_t c = 0; c < nk; ++c) p[c] = cpu::exp_acc(p[c] - L);
  }
  if (dV) gemm(nk, pb.Dv, nq, C(1), P, 1, kBk, dO.row(i0), dO.rs, 1, C(1), dV, pb.Dv);
  gemm(nq, nk, pb.Dv, C(1), dO.row(i0), dO.rs, 1, V.row(j0), 1, V.rs, C(0), dP, kBk);
  for (int64_t r = 0; r < nq; ++r) {
    C *p = P + r * kBk, *dp = dP + r * kBk;
    const C dl = delta[r];
#pragma omp simd
    for (int64_t c = 0; c < nk; ++c) p[c] = p[c] * (dp[c] - dl);  // P becomes dS
  }
  if (dQ) gemm(nq, pb.D, nk, pb.scale, P, kBk, 1, K.row(j0), K.rs, 1, C(1), dQ, pb.D);
  if (dK) gemm(nk, pb.D, nq, pb.scale, P, 1, kBk, Q.row(i0), Q.rs, 1, C(1), dK, pb.D);
}

// An accumulator for `rows` rows of width E: the output itself when it holds C, else zeroed scratch
// that store() rounds into the output.
template <class T, class C>
C* accumulator(T* out, int64_t rows, int64_t E, std::vector<C>& scratch) {
  if constexpr (std::is_same_v<T, C>) {
    std::fill(out, out + rows * E, C(0));
    return out;
  } else {
    scratch.assign(rows * E, C(0));
    return scratch.data();
  }
}
template <class T, class C>
void store(T* out, const C* acc, int64_t n) {
  if constexpr (!std::is_same_v<T, C>)
    for (int64_t e = 0; e < n; ++e) out[e] = st<T>(acc[e]);
}

template <class T, class C>
void backward_typed(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse_t,
                    const Tensor& dout, const AttentionRows& rows, double scale, const Tensor& dq_t,
                    const Tensor& dk_t, const Tensor& dv_t) {
  Problem<C> pb(q, k, v, rows, scale);
  const int64_t B = pb.B, Hq = pb.Hq, Hkv = pb.Hkv, Tq = pb.Tq, Tk = pb.Tk, D = pb.D, Dv = pb.Dv;
  const C* lse = lse_t.data<C>();
  T *dq = dq_t.data<T>(), *dk = dk_t.data<T>(), *dv = dv_t.data<T>();
  const int max_threads = omp_get_max_threads();

  // delta (B, Hq, Tq) = rowsum(dO * O), from the rounded output as PyTorch does.
  std::vector<C> delta(B * Hq * Tq);
  {
    const T* o = out.data<T>();
#pragma omp parallel for num_threads(B * Hq * Tq * Dv >= (1 << 16) ? max_threads : 1) schedule(static)
    for (int64_t bh = 0; bh < B * Hq; ++bh) {
      const T* dob = dout.data<T>() + (bh / Hq) * dout.stride(0) + (bh % Hq) * dout.stride(1);
      for (int64_t i = 0; i < Tq; ++i) {
        C s = 0;
        for (int64_t e = 0; e < Dv; ++e) s += ld(dob[i * dout.stride(2) + e]) * ld(o[(bh * Tq + i) * Dv + e]);
        delta[bh * Tq + i] = s;
      }
    }
  }
  auto rows_of = [&](int64_t qb) { return std::min(kBq, Tq - qb * kBq); };
  auto keys_of = [&](int64_t kb) { return std::min(kBk, Tk - kb * kBk); };

  if (B * Hkv >= max_threads) {
    // ---- schedule A: one task per (batch, KV head) ----
#pragma omp parallel num_threads(max_threads)
    {
      BackwardScratch<C> ws;
#pragma omp for schedule(dynamic, 1)
      for (int64_t bg = 0; bg < B * Hkv; ++bg) {
        const int64_t b = bg / Hkv, g = bg % Hkv;
        Rows<C> K = head_rows<T, C>(k, b, g, 0, Tk, ws.k), V = head_rows<T, C>(v, b, g, 0, Tk, ws.v);
        C* dK = accumulator<T, C>(dk + bg * Tk * D, Tk, D, ws.dk);
        C* dV = accumulator<T, C>(dv + bg * Tk * Dv, Tk, Dv, ws.dv);
        for (int64_t h = g * pb.group; h < (g + 1) * pb.group; ++h) {
          const int64_t bh = b * Hq + h;
          Rows<C> Q = head_rows<T, C>(q, b, h, 0, Tq, ws.q), dO = head_rows<T, C>(dout, b, h, 0, Tq, ws.dout);
          C* dQ = accumulator<T, C>(dq + bh * Tq * D, Tq, D, ws.dq);
          for (int64_t kb = 0; kb < pb.nkb; ++kb)
            for (int64_t qb = 0; qb < pb.nqb; ++qb) {
              auto tile = pb.classify(qb, kb);
              if (tile == Problem<C>::Empty) continue;
              const int64_t i0 = qb * kBq, j0 = kb * kBk;
              backward_tile(pb, tile, b, h, i0, rows_of(qb), j0, keys_of(kb), Q, K, V, dO, lse + bh * Tq + i0,
                            delta.data() + bh * Tq + i0, dQ + i0 * D, dK + j0 * D, dV + j0 * Dv, ws);
            }
          store(dq + bh * Tq * D, dQ, Tq * D);
        }
        store(dk + bg * Tk * D, dK, Tk * D);
        store(dv + bg * Tk * Dv, dV, Tk * Dv);
      }
    }
    return;
  }
  // ---- schedule B, pass 1: dK, dV per (batch, KV head, key block) ----
#pragma omp parallel num_threads(max_threads)
  {
    BackwardScratch<C> ws;
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < B * Hkv * pb.nkb; ++t) {
      const int64_t kb = t % pb.nkb, bg = t / pb.nkb, b = bg / Hkv, g = bg % Hkv;
      const int64_t j0 = kb * kBk, nk = keys_of(kb);
      Rows<C> K = head_rows<T, C>(k, b, g, j0, j0 + nk, ws.k), V = head_rows<T, C>(v, b, g, j0, j0 + nk, ws.v);
      C* dK = accumulator<T, C>(dk + (bg * Tk + j0) * D, nk, D, ws.dk);
      C* dV = accumulator<T, C>(dv + (bg * Tk + j0) * Dv, nk, Dv, ws.dv);
      for (int64_t h = g * pb.group; h < (g + 1) * pb.group; ++h) {
        const int64_t bh = b * Hq + h;
        for (int64_t qb = 0; qb < pb.nqb; ++qb) {
          auto tile = pb.classify(qb, kb);
          if (tile == Problem<C>::Empty) continue;
          const int64_t i0 = qb * kBq, nq = rows_of(qb);
          Rows<C> Q = head_rows<T, C>(q, b, h, i0, i0 + nq, ws.q);
          Rows<C> dO = head_rows<T, C>(dout, b, h, i0, i0 + nq, ws.dout);
          backward_tile(pb, tile, b, h, i0, nq, j0, nk, Q, K, V, dO, lse + bh * Tq + i0, delta.data() + bh * Tq + i0,
                        static_cast<C*>(nullptr), dK, dV, ws);
        }
      }
      store(dk + (bg * Tk + j0) * D, dK, nk * D);
      store(dv + (bg * Tk + j0) * Dv, dV, nk * Dv);
    }
  }
  // ---- schedule B, pass 2: dQ per (batch, query head, query block) ----
#pragma omp parallel num_threads(max_threads)
  {
    BackwardScratch<C> ws;
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < B * Hq * pb.nqb; ++t) {
      const int64_t qb = t % pb.nqb, bh = t / pb.nqb, b = bh / Hq, h = bh % Hq, g = h / pb.group;
      const int64_t i0 = qb * kBq, nq = rows_of(qb);
      const int64_t kb0 = pb.kb_begin(qb), kb1 = std::max(kb0, pb.kb_end(qb));
      const int64_t jr0 = kb0 * kBk, jr1 = std::min(Tk, kb1 * kBk);
      Rows<C> Q = head_rows<T, C>(q, b, h, i0, i0 + nq, ws.q), dO = head_rows<T, C>(dout, b, h, i0, i0 + nq, ws.dout);
      Rows<C> K = head_rows<T, C>(k, b, g, jr0, jr1, ws.k), V = head_rows<T, C>(v, b, g, jr0, jr1, ws.v);
      C* dQ = accumulator<T, C>(dq + (bh * Tq + i0) * D, nq, D, ws.dq);
      for (int64_t kb = kb0; kb < kb1; ++kb) {
        auto tile = pb.classify(qb, kb);
        if (tile == Problem<C>::Empty) continue;
        backward_tile(pb, tile, b, h, i0, nq, kb * kBk, keys_of(kb), Q, K, V, dO, lse + bh * Tq + i0,
                      delta.data() + bh * Tq + i0, dQ, static_cast<C*>(nullptr), static_cast<C*>(nullptr), ws);
      }
      store(dq + (bh * Tq + i0) * D, dQ, nq * D);
    }
  }
}

template <class F>
void dispatch(DType t, F&& f) {
  switch (t) {
    case DType::F32: return f(float{}, float{});
    case DType::F64: return f(double{}, double{});
    case DType::BF16: return f(bf16{}, float{});
    case DType::F16: return f(f16{}, float{});
    default: VT_FAIL("scaled_dot_product_attention: needs a floating-point dtype, got ", dtype_name(t));
  }
}

void attention_forward_cpu(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionRows& rows,
                           double scale, const Tensor& out, const Tensor& lse) {
  dispatch(q.dtype(), [&](auto t, auto c) {
    forward_typed<decltype(t), decltype(c)>(q, k, v, rows, scale, out, lse);
  });
}

void attention_backward_cpu(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                            const Tensor& lse, const Tensor& dout, const AttentionRows& rows, double scale,
                            const Tensor& dq, const Tensor& dk, const Tensor& dv) {
  dispatch(q.dtype(), [&](auto t, auto c) {
    backward_typed<decltype(t), decltype(c)>(q, k, v, out, lse, dout, rows, scale, dq, dk, dv);
  });
}

kernels::Registrar reg_fwd("attention_forward", DeviceType::CPU, &attention_forward_cpu);
kernels::Registrar reg_bwd("attention_backward", DeviceType::CPU, &attention_backward_cpu);

}  // namespace

// Referenced from nn_attention.cpp so that the linker keeps this object (and its registrars) when
// libvt is a static library.
extern const bool attention_cpu_kernels_linked = true;

}  // namespace vt::nn
