// nn/adaln.h: adaptive LayerNorm modulation and gated residuals (infinity_bsq.md §6.3, VAR's
// AdaLNSelfAttn): the block's condition gives per-sample shift, scale and gamma vectors that act
// on every token.
//
//   modulate(x, shift, scale)     = x * (1 + scale) + shift
//   gated_residual(x, gamma, y)   = x + gamma * y
//
// x, y: (B, L, C); shift, scale, gamma: (B, 1, C), (B, C) (read as (B, 1, C): one vector per
// sample, broadcast over the L tokens), (C) or anything else that broadcasts to x. Compositions of
// broadcasting elementwise ops, so dtype promotion follows PyTorch (an f32 gamma on a bf16 branch
// gives an f32 residual, as in Infinity) and the backward comes from the ops.
#pragma once
#include "vt/ops.h"

namespace vt::nn {

Tensor modulate(const Tensor& x, const Tensor& shift, const Tensor& scale);
Tensor gated_residual(const Tensor& x, const Tensor& gamma, const Tensor& y);

}  // namespace vt::nn
