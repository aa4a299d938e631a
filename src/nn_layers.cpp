// nn_layers.cpp: Linear, Embedding, LayerNorm, RMSNorm modules; see include/vt/nn/layers.h.
#include "vt/nn/layers.h"

#include "vt/nn/functional.h"
#include "vt/nn/norm.h"

namespace vt::nn {

Linear::Linear(int64_t in, int64_t out, bool has_bias, DType dtype, double init_std) {
  weight = register_parameter("weight", init_std > 0 ? normal({out, in}, 0.0, init_std, dtype)
                                                     : zeros({out, in}, dtype));  // (out, in)
  if (has_bias) bias = register_parameter("bias", zeros({out}, dtype));           // (out)
}

Tensor Linear::forward(const Tensor& x) const { return linear(x, weight, bias); }

Embedding::Embedding(int64_t num, int64_t dim, DType dtype, double init_std) {
  weight = register_parameter("weight", normal({num, dim}, 0.0, init_std, dtype));  // (num, dim)
}

Tensor Embedding::forward(const Tensor& ids) const { return embedding(weight, ids); }

LayerNorm::LayerNorm(int64_t dim, double eps_, DType dtype) : eps(eps_) {
  weight = register_parameter("weight", ones({dim}, dtype));  // (C)
  bias = register_parameter("bias", zeros({dim}, dtype));     // (C)
}

Tensor LayerNorm::forward(const Tensor& x) const { return layer_norm(x, {x.size(-1)}, weight, bias, eps); }

AddNorm LayerNorm::forward_add(const Tensor& x, const Tensor& residual) const {
  if (x.dtype() == residual.dtype()) return add_layer_norm(x, residual, {x.size(-1)}, weight, bias, eps);
  Tensor s = add(x, residual);
  return {forward(s), s};
}

AddNorm LayerNorm::forward(const ResidualStream& h) const {
  return h.delta.defined() ? forward_add(h.residual, h.delta) : AddNorm{forward(h.residual), h.residual};
}

RMSNorm::RMSNorm(int64_t dim, double eps_, DType dtype) : eps(eps_) {
  weight = register_parameter("weight", ones({dim}, dtype));  // (C)
}

Tensor RMSNorm::forward(const Tensor& x) const { return rms_norm(x, weight, eps); }

AddNorm RMSNorm::forward_add(const Tensor& x, const Tensor& residual) const {
  if (x.dtype() == residual.dtype()) return add_rms_norm(x, residual, weight, eps);
  Tensor s = add(x, residual);
  return {rms_norm(s, weight, eps), s};
}

AddNorm RMSNorm::forward(const ResidualStream& h) const {
  return h.delta.defined() ? forward_add(h.residual, h.delta) : AddNorm{forward(h.residual), h.residual};
}

}  // namespace vt::nn
