// nn_adaln.cpp: AdaLN modulation and gated residuals as compositions of elementwise ops.
#include "vt/nn/adaln.h"

namespace vt::nn {

// A (B, C) per-sample vector acts on every token of a (B, L, C) x; other shapes broadcast as they are.
static Tensor per_sample(const Tensor& p, const Tensor& x, const char* op, const char* name) {
  Tensor r = (x.dim() == 3 && p.dim() == 2 && p.size(0) == x.size(0) && p.size(1) == x.size(2)) ? p.unsqueeze(1) : p;
  bool ok = r.dim() <= x.dim();
  for (int d = 1; ok && d <= r.dim(); ++d) ok = r.size(-d) == 1 || r.size(-d) == x.size(-d);
  VT_CHECK(ok, op, ": ", name, " of shape ", p.shape().str(), " does not broadcast over x of shape ",
           x.shape().str(), " (expected (B, 1, C), (B, C) or (C))");
  return r;
}

Tensor modulate(const Tensor& x, const Tensor& shift, const Tensor& scale) {
  Tensor sh = per_sample(shift, x, "modulate", "shift"), sc = per_sample(scale, x, "modulate", "scale");
  return add(mul(x, add(sc, 1.0)), sh);  // upstream: x.mul(scale.add(1)).add_(shift)
}

Tensor gated_residual(const Tensor& x, const Tensor& gamma, const Tensor& y) {
  VT_CHECK(x.shape() == y.shape(), "gated_residual: residual x ", x.shape().str(), " and branch y ",
           y.shape().str(), " differ");
  return add(x, mul(per_sample(gamma, x, "gated_residual", "gamma"), y));
}

}  // namespace vt::nn
