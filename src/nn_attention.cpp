// nn_attention.cpp: scaled_dot_product_attention (checks, masks, autograd), its materialising
// reference, the KV cache and cosine attention. The tiled kernels are in nn_attention_kernel.cpp.
//
// Every structural mask is turned into one visible key range [key_begin[i], key_end[i]) per query
// row, which is all a tiled kernel needs to skip hidden tiles:
//   Causal          [0, i + 1)                          (torch is_causal: top-left)
//   CausalFromEnd   [0, i + 1 + Tk - Tq)                (KV cache: bottom-right)
//   BlockCausal     [0, end of the scale of key i + Tk - Tq); padding rows [0, 1)
//   Varlen          the key segment of the query's segment
#include "vt/nn/attention.h"

#include <algorithm>
#include <cmath>

#include "vt/nn/functional.h"

namespace vt::nn {

extern const bool attention_cpu_kernels_linked;  // nn_attention_kernel.cpp

namespace {

constexpr const char* kOp = "scaled_dot_product_attention";

void check_cu_seqlens(const std::vector<int64_t>& cu, int64_t T, const char* which) {
  VT_CHECK(cu.size() >= 2 && cu.front() == 0 && cu.back() == T, kOp, ": ", which,
           " must run from 0 to the sequence length ", T, " (got ", cu.size(), " entries, ending at ",
           cu.empty() ? -1 : cu.back(), ")");
  for (size_t s = 1; s < cu.size(); ++s)
    VT_CHECK(cu[s] >= cu[s - 1], kOp, ": ", which, " must not decrease (entry ", s, " is ", cu[s], " after ",
             cu[s - 1], ")");
}

// Per query row visible key range of the structural part of `m` (empty vectors: all keys).
void key_ranges(const AttentionMask& m, int64_t Tq, int64_t Tk, std::vector<int64_t>& lo, std::vector<int64_t>& hi) {
  using Kind = AttentionMask::Kind;
  lo.clear(), hi.clear();
  if (m.kind == Kind::None) return;
  lo.assign(Tq, 0), hi.assign(Tq, Tk);
  switch (m.kind) {
    case Kind::None: break;
    case Kind::Causal:
      for (int64_t i = 0; i < Tq; ++i) hi[i] = std::min(Tk, i + 1);
      break;
    case Kind::CausalFromEnd:
      for (int64_t i = 0; i < Tq; ++i) hi[i] = std::clamp(i + 1 + Tk - Tq, int64_t{0}, Tk);
      break;
    case Kind::BlockCausal: {
      VT_CHECK(Tq <= Tk, kOp, ": block-causal needs Tq <= Tk (queries are the last Tq keys), got Tq ", Tq,
               " and Tk ", Tk);
      int64_t total = 0;
      for (int64_t n : m.lengths) {
        VT_CHECK(n > 0, kOp, ": block-causal scale lengths must be positive, got ", n);
        total += n;
      }
      VT_CHECK(total <= Tk, kOp, ": block-causal scale lengths sum to ", total, ", more than the ", Tk, " keys");
      std::vector<int64_t> end_of(Tk, 1);  // padding positions see key 0 only
      int64_t at = 0;
      for (int64_t n : m.lengths) {
        std::fill(end_of.begin() + at, end_of.begin() + at + n, at + n);
        at += n;
      }
      for (int64_t i = 0; i < Tq; ++i) hi[i] = end_of[i + Tk - Tq];
      break;
    }
    case Kind::Varlen: {
      const std::vector<int64_t>& cq = m.lengths;
      const std::vector<int64_t>& ck = m.cu_seqlens_k.empty() ? m.lengths : m.cu_seqlens_k;
      check_cu_seqlens(cq, Tq, "cu_seqlens (queries)");
      check_cu_seqlens(ck, Tk, "cu_seqlens_k");
      VT_CHECK(cq.size() == ck.size(), kOp, ": cu_seqlens has ", cq.size() - 1, " segments, cu_seqlens_k has ",
               ck.size() - 1);
      for (size_t s = 0; s + 1 < cq.size(); ++s)
        for (int64_t i = cq[s]; i < cq[s + 1]; ++i) lo[i] = ck[s], hi[i] = ck[s + 1];
      break;
    }
  }
}

// The explicit mask as the kernel reads it: Bool, or the compute float type, broadcast to (B, Hq, Tq, Tk).
Tensor dense_view(const Tensor& m, const Shape& full, DType compute) {
  if (!m.defined()) return m;
  VT_CHECK(!m.requires_grad() || !grad_enabled(), kOp, ": the attention mask requires grad; no gradient flows "
           "into masks, so detach it");
  VT_CHECK(m.dim() <= 4, kOp, ": mask of shape ", m.shape().str(), " has more than 4 dims");
  bool ok = true;
  for (int d = 1; d <= m.dim(); ++d) ok &= m.size(-d) == 1 || m.size(-d) == full[4 - d];
  VT_CHECK(ok, kOp, ": mask of shape ", m.shape().str(), " does not broadcast to (B, Hq, Tq, Tk) = ", full.str());
  VT_CHECK(m.dtype() == DType::Bool || is_floating(m.dtype()), kOp, ": mask must be bool or floating point, got ",
           dtype_name(m.dtype()));
  Tensor d = m.detach();
  if (d.dtype() != DType::Bool) d = d.to(compute);
  return d.contiguous().expand(full);
}

// Makes the last dim contiguous (the kernels read rows with unit stride).
Tensor rows_contiguous(const Tensor& t) { return t.size(-1) <= 1 || t.stride(-1) == 1 ? t : t.contiguous(); }

DType compute_dtype(DType t) { return t == DType::F64 ? DType::F64 : DType::F32; }

void check_inputs(const Tensor& q, const Tensor& k, const Tensor& v) {
  VT_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, kOp, ": q, k, v must be (B, H, T, D), got ",
           q.shape().str(), ", ", k.shape().str(), ", ", v.shape().str());
  VT_CHECK(q.dtype() == k.dtype() && q.dtype() == v.dtype() && is_floating(q.dtype()), kOp,
           ": q, k, v must share one float dtype, got ", dtype_name(q.dtype()), ", ", dtype_name(k.dtype()), ", ",
           dtype_name(v.dtype()));
  VT_CHECK(q.device() == k.device() && q.device() == v.device(), kOp, ": q, k, v on different devices");
  VT_CHECK(k.size(0) == q.size(0) && v.size(0) == q.size(0), kOp, ": batch sizes differ: q ", q.shape().str(),
           ", k ", k.shape().str(), ", v ", v.shape().str());
  VT_CHECK(k.size(1) == v.size(1) && k.size(2) == v.size(2), kOp, ": k ", k.shape().str(), " and v ",
           v.shape().str(), " must have the same heads and length");
  VT_CHECK(k.size(3) == q.size(3), kOp, ": q has head dim ", q.size(3), ", k has ", k.size(3));
  VT_CHECK(k.size(1) > 0 && q.size(1) % k.size(1) == 0, kOp, ": query heads (", q.size(1),
           ") must be a multiple of KV heads (", k.size(1), ") for GQA");
}

}  // namespace

Tensor AttentionMask::visible(int64_t Tq, int64_t Tk) const {
  std::vector<int64_t> lo, hi;
  key_ranges(*this, Tq, Tk, lo, hi);
  std::vector<bool> vis(Tq * Tk, true);
  if (!lo.empty())
    for (int64_t i = 0; i < Tq; ++i)
      for (int64_t j = 0; j < Tk; ++j) vis[i * Tk + j] = j >= lo[i] && j < hi[i];
  return from_vector(vis, {Tq, Tk});
}

// ---- scaled_dot_product_attention ------------------------------------------------------------------
Tensor scaled_dot_product_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                                    const AttentionMask& mask, std::optional<double> scale_opt) {
  if (q_in.dim() == 3 && k_in.dim() == 3 && v_in.dim() == 3)
    return scaled_dot_product_attention(q_in.unsqueeze(0), k_in.unsqueeze(0), v_in.unsqueeze(0), mask, scale_opt)
        .squeeze(0);
  check_inputs(q_in, k_in, v_in);
  const int64_t B = q_in.size(0), Hq = q_in.size(1), Tq = q_in.size(2), Tk = k_in.size(2), D = q_in.size(3);
  const int64_t Dv = v_in.size(3);
  const double scale = scale_opt.value_or(1.0 / std::sqrt(static_cast<double>(D)));
  const DType acc = compute_dtype(q_in.dtype());

  auto rows = std::make_shared<AttentionRows>();
  key_ranges(mask, Tq, Tk, rows->key_begin, rows->key_end);
  rows->dense = dense_view(mask.tensor, {B, Hq, Tq, Tk}, acc);

  Tensor q = rows_contiguous(q_in.detach()), k = rows_contiguous(k_in.detach()), v = rows_contiguous(v_in.detach());
  Tensor out = empty({B, Hq, Tq, Dv}, {q.dtype(), q.device()});
  Tensor lse = empty({B, Hq, Tq}, {acc, q.device()});
  static const kernels::Kernel<AttentionForwardFn> k_attention_forward("attention_forward");
  if (out.numel() > 0 && attention_cpu_kernels_linked)
    k_attention_forward(q.device())(q, k, v, *rows, scale, out, lse);
  // Saved for the backward: q, k, v, the output (detached: no cycle through its own grad_fn), lse.
  autograd::record(kOp, out, {q_in, k_in, v_in}, [q, k, v, o = out.detach(), lse, rows, scale](const Tensor& g) {
    Tensor dq = empty(q.shape(), {q.dtype(), q.device()}), dk = empty(k.shape(), {k.dtype(), k.device()});
    Tensor dv = empty(v.shape(), {v.dtype(), v.device()});
    if (o.numel() == 0 || k.size(2) == 0) {
      fill_(dq, 0), fill_(dk, 0), fill_(dv, 0);
      return grads{dq, dk, dv};
    }
    Tensor dout = rows_contiguous(g.dtype() == o.dtype() ? g : cast(g, o.dtype()));
    static const kernels::Kernel<AttentionBackwardFn> k_attention_backward("attention_backward");
    k_attention_backward(q.device())(q, k, v, o, lse, dout, *rows, scale, dq, dk, dv);
    return grads{dq, dk, dv};
  });
  return out;
}

// ---- reference: the same function from vt ops -------------------------------------------------------
Tensor scaled_dot_product_attention_reference(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                                              const AttentionMask& mask, std::optional<double> scale_opt) {
  check_inputs(q_in, k_in, v_in);
  const int64_t B = q_in.size(0), Hq = q_in.size(1), Tq = q_in.size(2), Tk = k_in.size(2), D = q_in.size(3);
  const int64_t Hkv = k_in.size(1), R = Hq / Hkv;
  const double scale = scale_opt.value_or(1.0 / std::sqrt(static_cast<double>(D)));
  const DType acc = compute_dtype(q_in.dtype());
  Tensor q = cast(q_in, acc), k = cast(k_in, acc), v = cast(v_in, acc);
  // GQA: repeat each KV head R times (repeat_interleave along heads).
  auto repeat = [&](const Tensor& t) {
    return t.unsqueeze(2).expand({B, Hkv, R, Tk, t.size(3)}).reshape({B, Hq, Tk, t.size(3)});
  };
  k = repeat(k), v = repeat(v);
  Tensor s = mul(matmul(q, k.transpose(-1, -2)), scale);  // (B, Hq, Tq, Tk)
  Tensor vis = mask.visible(Tq, Tk);
  Tensor dense = dense_view(mask.tensor, {B, Hq, Tq, Tk}, acc);
  if (dense.defined() && dense.dtype() == DType::Bool) vis = logical_and(vis, dense);
  if (dense.defined() && dense.dtype() != DType::Bool) s = add(s, dense);
  s = where(vis, s, -INFINITY);
  // Rows that see no key give 0: softmax over zeros there, then zero the row (no NaN in the backward).
  Tensor row_ok;
  {
    NoGradGuard ng;
    row_ok = amax(s, {-1}, true).detach();
    row_ok = gt(row_ok, -INFINITY);
  }
  Tensor p = softmax(where(row_ok, s, 0.0), -1);
  p = where(row_ok, p, 0.0);
  return cast(matmul(p, v), q_in.dtype());
}

// ---- KV cache -----------------------------------------------------------------------------------------
void KVCache::reserve(int64_t rows) {
  if (rows <= capacity()) return;
  VT_CHECK(k_buffer.defined(), "KVCache::reserve: append once first (the cache learns B, H, D and dtypes from it)");
  auto grow = [&](const Tensor& old) {
    Tensor fresh = empty({old.size(0), old.size(1), rows, old.size(3)}, {old.dtype(), old.device()});
    Tensor dst = fresh.narrow(2, 0, length);
    if (length > 0) copy_(dst, old.narrow(2, 0, length));
    return fresh;
  };
  k_buffer = grow(k_buffer), v_buffer = grow(v_buffer);
}

void KVCache::append(const Tensor& k_new, const Tensor& v_new) {
  VT_CHECK(k_new.dim() == 4 && v_new.dim() == 4 && k_new.size(0) == v_new.size(0) && k_new.size(1) == v_new.size(1) &&
               k_new.size(2) == v_new.size(2),
           "KVCache::append: k and v must be (B, Hkv, n, D) with the same B, Hkv, n; got ", k_new.shape().str(),
           " and ", v_new.shape().str());
  if (!k_buffer.defined()) {
    const int64_t cap = std::max<int64_t>(16, k_new.size(2));
    k_buffer = empty({k_new.size(0), k_new.size(1), cap, k_new.size(3)}, {k_new.dtype(), k_new.device()});
    v_buffer = empty({v_new.size(0), v_new.size(1), cap, v_new.size(3)}, {v_new.dtype(), v_new.device()});
    length = 0;
  }
  for (int d : {0, 1, 3}) {
    VT_CHECK(k_new.size(d) == k_buffer.size(d), "KVCache::append: k ", k_new.shape().str(),
             " does not match the cache (B, Hkv, *, D) = ", k_buffer.shape().str(), " at dim ", d);
    VT_CHECK(v_new.size(d) == v_buffer.size(d), "KVCache::append: v ", v_new.shape().str(),
             " does not match the cache (B, Hkv, *, Dv) = ", v_buffer.shape().str(), " at dim ", d);
  }
  const int64_t n = k_new.size(2);
  if (length + n > capacity()) reserve(std::max(2 * capacity(), length + n));
  NoGradGuard ng;
  Tensor kd = k_buffer.narrow(2, length, n), vd = v_buffer.narrow(2, length, n);
  copy_(kd, k_new.detach());
  copy_(vd, v_new.detach());
  length += n;
}

Tensor KVCache::k() const {
  VT_CHECK(k_buffer.defined(), "KVCache::k: the cache is empty");
  return k_buffer.narrow(2, 0, length);
}
Tensor KVCache::v() const {
  VT_CHECK(v_buffer.defined(), "KVCache::v: the cache is empty");
  return v_buffer.narrow(2, 0, length);
}

Tensor attention_with_cache(KVCache& cache, const Tensor& q, const Tensor& k_new, const Tensor& v_new,
                            const AttentionMask& mask, std::optional<double> scale) {
  cache.append(k_new, v_new);
  return scaled_dot_product_attention(q, cache.k(), cache.v(), mask, scale);
}

// ---- cosine attention --------------------------------------------------------------------------------
Tensor l2_normalize(const Tensor& x, double eps) {
  return mul(x, rsqrt(clamp(sum(mul(x, x), {-1}, true), eps * eps, std::nullopt)));
}

std::pair<Tensor, Tensor> cosine_qk(const Tensor& q, const Tensor& k, const Tensor& scale_mul) {
  VT_CHECK(q.dim() == 4 && k.dim() == 4, "cosine_attention: q and k must be (B, H, T, D), got ", q.shape().str(),
           " and ", k.shape().str());
  const int64_t H = q.size(1);
  VT_CHECK(scale_mul.numel() == H, "cosine_attention: scale_mul has shape ", scale_mul.shape().str(), " (",
           scale_mul.numel(), " elements), expected one per query head (", H, ")");
  const DType acc = compute_dtype(q.dtype());
  // Infinity: scale_mul_1H11.clamp_max(ln 100).exp(), applied to the normalised q.
  Tensor head_scale = exp(clamp(cast(scale_mul, acc).reshape({1, H, 1, 1}), std::nullopt, std::log(100.0)));
  return {mul(l2_normalize(cast(q, acc)), head_scale), l2_normalize(cast(k, acc))};
}

Tensor cosine_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& scale_mul,
                        const AttentionMask& mask) {
  auto [qn, kn] = cosine_qk(q, k, scale_mul);
  return scaled_dot_product_attention(cast(qn, v.dtype()), cast(kn, v.dtype()), v, mask, 1.0);
}

}  // namespace vt::nn
