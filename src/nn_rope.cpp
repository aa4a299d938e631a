// nn_rope.cpp: rotary embeddings: the four table builders and the two pair layouts, forward and
// backward side by side.
//
// Tables are built on the host in f32 (angle = f32(pos) * inv_freq[i], one f32 product, then
// cos/sin of that f32 angle evaluated in f64 and rounded: within an ulp of torch's f32 cos/sin)
// and moved to the device of the positions. The apply kernel works on rows of x (..., D): for
// each pair (a, b) with angles (c1, s1) for a's slot and (c2, s2) for b's slot,
//   forward   a' = a c1 - b s1        b' = b c2 + a s2
//   backward  da = ga c1 + gb s2      db = gb c2 - ga s1     (the transpose; nothing is saved
//                                                            but the tables)
// rotate_half pairs (j, j + D/2) and reads cos[j], cos[j + D/2]; interleaved pairs (2p, 2p+1)
// and reads cos[p] for both. Math is in f32 (f64 for f64 x); see rope.h for the 16-bit rule.
#include "vt/nn/rope.h"

#include <cmath>

#include "vt/backend.h"
#include "vt/ops.h"


namespace vt::nn {
namespace {

// Offsets (in elements) of each row of a (..., Dc) view, rows in row-major order.
std::vector<int64_t> row_offsets(const Tensor& t) {
  const int nd = t.dim() - 1;
  const int64_t rows = t.numel() / std::max<int64_t>(t.size(-1), 1);
  std::vector<int64_t> off(static_cast<size_t>(rows));
  std::vector<int64_t> idx(static_cast<size_t>(nd), 0);
  int64_t cur = 0;
  for (int64_t r = 0; r < rows; ++r) {
    off[size_t(r)] = cur;
    for (int d = nd - 1; d >= 0; --d) {  // odometer increment
      cur += t.stride(d);
      if (++idx[size_t(d)] < t.size(d)) break;
      cur -= t.stride(d) * t.size(d);
      idx[size_t(d)] = 0;
    }
  }
  return off;
}

template <class A>
inline A round_to(A v, DType dt) {
  if (dt == DType::BF16) return A(float(bf16(float(v))));
  if (dt == DType::F16) return A(float(f16(float(v))));
  return v;
}

template <class A>
void apply_cpu_t(const Tensor& x_, const Tensor& cos_, const Tensor& sin_, RopeLayout layout, bool transpose,
                 DType rt, const Tensor& out_) {
  const int64_t D = x_.size(-1), R = x_.numel() / std::max<int64_t>(D, 1), half = D / 2;
  const std::vector<int64_t> oc = row_offsets(cos_), os = row_offsets(sin_);
  const int64_t cs_c = cos_.stride(-1), cs_s = sin_.stride(-1);
  const A* x = x_.data<A>();  // x: (R, D)
  const A* cb = cos_.data<A>();
  const A* sb = sin_.data<A>();
  A* out = out_.data<A>();  // out: (R, D)
  const bool rnd = rt == DType::BF16 || rt == DType::F16;
#pragma omp parallel for schedule(static) if (R * D > (1 << 15))
  for (int64_t r = 0; r < R; ++r) {
    const A* xr = x + r * D;
    const A* c = cb + oc[size_t(r)];
    const A* s = sb + os[size_t(r)];
    A* yr = out + r * D;
    for (int64_t p = 0; p < half; ++p) {
      int64_t ia, ib, ka, kb;  // element indices of the pair, table indices of their angles
      if (layout == RopeLayout::Half) ia = p, ib = p + half, ka = p, kb = p + half;
      else ia = 2 * p, ib = 2 * p + 1, ka = p, kb = p;
      const A a = xr[ia], b = xr[ib];
      const A c1 = c[ka * cs_c], s1 = s[ka * cs_s], c2 = c[kb * cs_c], s2 = s[kb * cs_s];
      if (transpose) {
        yr[ia] = a * c1 + b * s2;
        yr[ib] = b * c2 - a * s1;
      } else if (rnd) {  // torch's 16-bit elementwise ops: every product and the sum rounded
        yr[ia] = round_to(round_to(a * c1, rt) - round_to(b * s1, rt), rt);
        yr[ib] = round_to(round_to(b * c2, rt) + round_to(a * s2, rt), rt);
      } else {
        yr[ia] = a * c1 - b * s1;
        yr[ib] = b * c2 + a * s2;
      }
    }
  }
}

void rope_apply_cpu(const Tensor& x, const Tensor& c, const Tensor& s, RopeLayout layout, bool transpose, DType rt,
                    const Tensor& out) {
  if (x.dtype() == DType::F64) apply_cpu_t<double>(x, c, s, layout, transpose, rt, out);
  else apply_cpu_t<float>(x, c, s, layout, transpose, rt, out);
}
kernels::Registrar reg_apply("rope_apply", DeviceType::CPU, &rope_apply_cpu);

// ---- apply (forward and backward) ---------------------------------------------------------------
Tensor apply_rope(const Tensor& x, const Tensor& cos, const Tensor& sin, RopeLayout layout, const char* op) {
  VT_CHECK(x.dim() >= 1 && is_floating(x.dtype()), op, ": x must be a floating-point (..., D) tensor, got ",
           dtype_name(x.dtype()), " ", x.shape().str());
  const int64_t D = x.size(-1), Dc = layout == RopeLayout::Half ? D : D / 2;
  VT_CHECK(D % 2 == 0, op, ": head dim ", D, " of x ", x.shape().str(), " must be even");
  VT_CHECK(cos.defined() && sin.defined() && cos.shape() == sin.shape(), op, ": cos ",
           cos.defined() ? cos.shape().str() : "undefined", " and sin ", sin.defined() ? sin.shape().str() : "undefined",
           " must have one shape");
  VT_CHECK(!cos.requires_grad() && !sin.requires_grad(), op, ": cos/sin tables are constants (no gradient)");
  VT_CHECK(cos.device() == x.device() && sin.device() == x.device(), op, ": cos/sin on ", cos.device().str(), "/",
           sin.device().str(), " but x on ", x.device().str());
  VT_CHECK(cos.dim() >= 1 && cos.size(-1) == Dc, op, ": cos/sin ", cos.shape().str(), " must end in ", Dc,
           " for x ", x.shape().str());
  Shape rows(x.shape().begin(), x.shape().end() - 1);
  Shape crow(cos.shape().begin(), cos.shape().end() - 1);
  bool fits = crow.size() <= rows.size();
  for (int i = 1; fits && i <= crow.size(); ++i)
    fits = crow[crow.size() - i] == 1 || crow[crow.size() - i] == rows[rows.size() - i];
  VT_CHECK(fits, op, ": cos/sin ", cos.shape().str(), " do not broadcast to x ", x.shape().str());
  Shape tshape = rows;
  tshape.push_back(Dc);
  const DType ct = x.dtype() == DType::F64 ? DType::F64 : DType::F32;
  // Products round to x's dtype only when the tables already have it (torch's bf16 * bf16).
  const DType rt = cos.dtype() == x.dtype() ? x.dtype() : ct;
  Tensor xc, cc, sc;
  {
    NoGradGuard ng;
    xc = cast(x.detach(), ct).contiguous();
    cc = cast(cos, ct).expand(tshape);
    sc = cast(sin, ct).expand(tshape);
  }
  Tensor out = empty(x.shape(), {ct, x.device()});
  static const kernels::Kernel<kernels::RopeApply> k_rope_apply("rope_apply");
  k_rope_apply(x.device())(xc, cc, sc, layout, false, rt, out);
  {
    NoGradGuard ng;
    out = cast(out, x.dtype());
  }
  autograd::record(op, out, {x}, [cc, sc, layout, ct](const Tensor& g) {
    Tensor gc = cast(g, ct).contiguous();
    Tensor gx = empty(g.shape(), {ct, g.device()});
    static const kernels::Kernel<kernels::RopeApply> k_rope_apply("rope_apply");
    k_rope_apply(g.device())(gc, cc, sc, layout, true, ct, gx);
    return grads{gx};
  });
  return out;
}

// ---- table builders (host, f32) ----------------------------------------------------------------
std::vector<int64_t> int_list(const Tensor& t, const char* op) {
  VT_CHECK(t.defined() && !is_floating(t.dtype()) && t.dtype() != DType::Bool, op,
           ": positions must be an integer tensor, got ", t.defined() ? dtype_name(t.dtype()) : "undefined");
  return t.to(Device::cpu()).contiguous().tolist<int64_t>();
}

inline float angle(int64_t pos, float inv) { return float(pos) * inv; }  // f32(pos) * inv_freq, as HF
inline float cosf_ref(float a) { return float(std::cos(double(a))); }
inline float sinf_ref(float a) { return float(std::sin(double(a))); }

RopeCosSin finish(std::vector<float>& c, std::vector<float>& s, const Shape& shape, DType dtype, Device dev) {
  Tensor tc = from_vector(c, shape), ts = from_vector(s, shape);
  if (dtype != DType::F32) tc = tc.to(dtype), ts = ts.to(dtype);
  return {tc.to(dev), ts.to(dev)};
}

}  // namespace

Tensor apply_rope_half(const Tensor& x, const Tensor& cos, const Tensor& sin) {
  return apply_rope(x, cos, sin, RopeLayout::Half, "apply_rope_half");
}
Tensor apply_rope_interleaved(const Tensor& x, const Tensor& cos, const Tensor& sin) {
  return apply_rope(x, cos, sin, RopeLayout::Interleaved, "apply_rope_interleaved");
}

std::vector<float> rope_inv_freq(int64_t dim, double theta) {
  VT_CHECK(dim > 0 && dim % 2 == 0 && theta > 0, "rope_inv_freq: dim ", dim, " must be positive and even, theta ",
           theta, " positive");
  std::vector<float> inv(size_t(dim / 2));
  for (int64_t i = 0; i < dim / 2; ++i) {
    float e = float(2 * i) / float(dim);
    inv[size_t(i)] = 1.0f / float(std::pow(double(float(theta)), double(e)));
  }
  return inv;
}

// (1) Qwen2: positions (B, T) -> (B, T, D), band i and i + D/2 share the angle pos * inv[i].
RopeCosSin rope_cos_sin(const Tensor& positions, int64_t head_dim, double theta, DType dtype) {
  VT_CHECK(positions.dim() == 2, "rope_cos_sin: positions must be (B, T), got ", positions.shape().str());
  const std::vector<int64_t> pos = int_list(positions, "rope_cos_sin");
  const std::vector<float> inv = rope_inv_freq(head_dim, theta);
  const int64_t half = head_dim / 2;
  std::vector<float> c(pos.size() * size_t(head_dim)), s(c.size());
  for (size_t r = 0; r < pos.size(); ++r)
    for (int64_t i = 0; i < half; ++i) {
      const float a = angle(pos[r], inv[size_t(i)]);
      c[r * head_dim + i] = c[r * head_dim + i + half] = cosf_ref(a);
      s[r * head_dim + i] = s[r * head_dim + i + half] = sinf_ref(a);
    }
  return finish(c, s, {positions.size(0), positions.size(1), head_dim}, dtype, positions.device());
}

// (2) M-RoPE: positions (3, B, T) -> (B, T, D); band i reads axis 0, 1 or 2 by section.
RopeCosSin mrope_cos_sin(const Tensor& positions, int64_t head_dim, double theta, std::array<int64_t, 3> sections,
                         DType dtype) {
  VT_CHECK(positions.dim() == 3 && positions.size(0) == 3, "mrope_cos_sin: positions must be (3, B, T), got ",
           positions.shape().str());
  VT_CHECK(sections[0] >= 0 && sections[1] >= 0 && sections[2] >= 0 &&
               sections[0] + sections[1] + sections[2] == head_dim / 2,
           "mrope_cos_sin: sections [", sections[0], ", ", sections[1], ", ", sections[2], "] must sum to head_dim/2 = ",
           head_dim / 2);
  const std::vector<int64_t> pos = int_list(positions, "mrope_cos_sin");
  const std::vector<float> inv = rope_inv_freq(head_dim, theta);
  const int64_t half = head_dim / 2, BT = positions.size(1) * positions.size(2);
  std::vector<float> c(size_t(BT * head_dim)), s(c.size());
  for (int64_t r = 0; r < BT; ++r)
    for (int64_t i = 0; i < half; ++i) {
      const int axis = i < sections[0] ? 0 : i < sections[0] + sections[1] ? 1 : 2;
      const float a = angle(pos[size_t(axis * BT + r)], inv[size_t(i)]);
      c[r * head_dim + i] = c[r * head_dim + i + half] = cosf_ref(a);
      s[r * head_dim + i] = s[r * head_dim + i + half] = sinf_ref(a);
    }
  return finish(c, s, {positions.size(1), positions.size(2), head_dim}, dtype, positions.device());
}

// (3) ViT: (S, 2) -> (S, D) as [h (D/4), w (D/4), h, w]; inv_freq over D/2 (dim 40 for D = 80).
RopeCosSin vision_rope_cos_sin(const Tensor& pos_hw, int64_t head_dim, double theta) {
  VT_CHECK(pos_hw.dim() == 2 && pos_hw.size(1) == 2, "vision_rope_cos_sin: positions must be (S, 2), got ",
           pos_hw.shape().str());
  VT_CHECK(head_dim % 4 == 0, "vision_rope_cos_sin: head_dim ", head_dim, " must be a multiple of 4");
  const std::vector<int64_t> pos = int_list(pos_hw, "vision_rope_cos_sin");
  const std::vector<float> inv = rope_inv_freq(head_dim / 2, theta);
  const int64_t S = pos_hw.size(0), q = head_dim / 4, half = head_dim / 2;
  std::vector<float> c(size_t(S * head_dim)), s(c.size());
  for (int64_t r = 0; r < S; ++r)
    for (int64_t axis = 0; axis < 2; ++axis)
      for (int64_t i = 0; i < q; ++i) {
        const float a = angle(pos[size_t(2 * r + axis)], inv[size_t(i)]);
        const int64_t j = r * head_dim + axis * q + i;
        c[size_t(j)] = c[size_t(j + half)] = cosf_ref(a);
        s[size_t(j)] = s[size_t(j + half)] = sinf_ref(a);
      }
  return finish(c, s, {S, head_dim}, DType::F32, pos_hw.device());
}

Tensor vision_rope_positions(int64_t t, int64_t h, int64_t w, int64_t merge) {
  VT_CHECK(t > 0 && h > 0 && w > 0 && merge > 0 && h % merge == 0 && w % merge == 0, "vision_rope_positions: grid (",
           t, ", ", h, ", ", w, ") must be positive with h and w multiples of merge ", merge);
  std::vector<int64_t> pos;
  pos.reserve(size_t(2 * t * h * w));
  for (int64_t f = 0; f < t; ++f)
    for (int64_t bh = 0; bh < h / merge; ++bh)
      for (int64_t bw = 0; bw < w / merge; ++bw)
        for (int64_t i = 0; i < merge; ++i)
          for (int64_t j = 0; j < merge; ++j) pos.push_back(bh * merge + i), pos.push_back(bw * merge + j);
  return from_vector(pos, {t * h * w, 2});
}

// (4) Infinity.
Tensor infinity_rope_positions(const std::vector<std::array<int64_t, 2>>& scales, int64_t uh, int64_t uw) {
  VT_CHECK(uh > 0 && uw > 0, "infinity_rope_positions: grid (", uh, ", ", uw, ") must be positive");
  std::vector<int64_t> pos;
  for (auto [h, w] : scales) {
    VT_CHECK(h > 0 && w > 0, "infinity_rope_positions: scale (", h, ", ", w, ") must be positive");
    // torch: arange(h) * (uh / h): the Python float becomes an f32 scalar, the product is f32
    const float fh = float(double(uh) / double(h)), fw = float(double(uw) / double(w));
    for (int64_t r = 0; r < h; ++r)
      for (int64_t c = 0; c < w; ++c)  // nearbyint: round half to even under the default mode
        pos.push_back(int64_t(std::nearbyint(float(r) * fh))), pos.push_back(int64_t(std::nearbyint(float(c) * fw)));
  }
  return from_vector(pos, {int64_t(pos.size() / 2), 2});
}

RopeCosSin infinity_rope_cos_sin(const Tensor& pos_rc, int64_t head_dim, double theta, int64_t pad_to) {
  VT_CHECK(pos_rc.dim() == 2 && pos_rc.size(1) == 2, "infinity_rope_cos_sin: positions must be (L, 2), got ",
           pos_rc.shape().str());
  VT_CHECK(head_dim % 4 == 0 && pad_to >= 1, "infinity_rope_cos_sin: head_dim ", head_dim,
           " must be a multiple of 4 and pad_to ", pad_to, " positive");
  const std::vector<int64_t> pos = int_list(pos_rc, "infinity_rope_cos_sin");
  const std::vector<float> inv = rope_inv_freq(head_dim / 2, theta);  // D/4 frequencies
  const int64_t L = pos_rc.size(0), Lp = (L + pad_to - 1) / pad_to * pad_to, q = head_dim / 4, half = head_dim / 2;
  std::vector<float> c(size_t(Lp * half), 0.0f), s(c.size(), 0.0f);
  for (int64_t r = 0; r < L; ++r)
    for (int64_t axis = 0; axis < 2; ++axis)
      for (int64_t i = 0; i < q; ++i) {
        const float a = angle(pos[size_t(2 * r + axis)], inv[size_t(i)]);
        c[size_t(r * half + axis * q + i)] = cosf_ref(a);
        s[size_t(r * half + axis * q + i)] = sinf_ref(a);
      }
  return finish(c, s, {Lp, half}, DType::F32, pos_rc.device());
}

}  // namespace vt::nn
