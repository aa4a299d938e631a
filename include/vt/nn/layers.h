// nn/layers.h: the parameterised layers every model file shares, as Modules under torch's tensor
// names (`weight`, `bias`), so a checkpoint key maps onto them directly.
//
//   Linear      torch.nn.Linear:    weight (out, in), bias (out) optional;  y = x weight^T + bias
//   LayerNorm   torch.nn.LayerNorm over the last dim: weight, bias (C)
//   RMSNorm     Qwen2RMSNorm / LlamaRMSNorm: weight (C); the f32 normalisation and cast rule of
//               nn::rms_norm
//   Embedding   torch.nn.Embedding: weight (num, dim); rows looked up by integer id
//
// Parameters are created in `dtype` as zeros (Linear, unless init_std > 0 draws them from
// N(0, init_std^2) with the global generator) or as torch's norm defaults (weight 1, bias 0); a
// checkpoint load overwrites them.
#pragma once
#include "vt/nn/module.h"
#include "vt/nn/norm.h"

namespace vt::nn {

class Linear : public Module {
 public:
  Linear(int64_t in, int64_t out, bool bias = true, DType dtype = DType::F32, double init_std = 0);
  Tensor forward(const Tensor& x) const;  // (..., in) -> (..., out)
  Tensor weight, bias;
};

// weight drawn from N(0, init_std^2) as torch's (std 1) unless told otherwise.
class Embedding : public Module {
 public:
  Embedding(int64_t num, int64_t dim, DType dtype = DType::F32, double init_std = 1.0);
  Tensor forward(const Tensor& ids) const;  // ids (...) integer -> (..., dim)
  Tensor weight;                            // (num, dim)
};

// The residual stream of a pre-norm transformer with its last add pending: h = residual + delta
// (delta undefined: h = residual). Passed from block to block, so that every residual add runs in
// one pass with the norm after it (the norms' forward(ResidualStream)).
struct ResidualStream {
  Tensor residual, delta;
};

class LayerNorm : public Module {
 public:
  LayerNorm(int64_t dim, double eps = 1e-5, DType dtype = DType::F32);
  Tensor forward(const Tensor& x) const;  // (..., C) -> (..., C)
  // {layer_norm(x + residual), x + residual} in one pass (add_layer_norm) when both share a dtype,
  // else as the two ops (add's type promotion).
  AddNorm forward_add(const Tensor& x, const Tensor& residual) const;
  AddNorm forward(const ResidualStream& h) const;  // {layer_norm(h), h}, the add fused when pending
  Tensor weight, bias;
  double eps;
};

class RMSNorm : public Module {
 public:
  RMSNorm(int64_t dim, double eps = 1e-6, DType dtype = DType::F32);
  Tensor forward(const Tensor& x) const;  // (..., C) -> (..., C)
  // {rms_norm(x + residual), x + residual} in one pass (add_rms_norm) when both share a dtype, else
  // as the two ops (add's type promotion).
  AddNorm forward_add(const Tensor& x, const Tensor& residual) const;
  AddNorm forward(const ResidualStream& h) const;  // {rms_norm(h), h}, the add fused when pending
  Tensor weight;
  double eps;
};

}  // namespace vt::nn
