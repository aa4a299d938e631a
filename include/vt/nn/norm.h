// nn/norm.h: RMSNorm (Qwen2's cast rule), LayerNorm and GroupNorm, forward and backward.
//
// Statistics are computed in f32 (f64 for f64 input) whatever the storage dtype and saved for the
// backward (rstd; mean and rstd for layer and group norm), so the backward never recomputes them.
// The fused kernels are registered by name (backend.h); the CPU ones are in src/nn_norm.cpp.
#pragma once
#include "vt/backend.h"
#include "vt/ops.h"

namespace vt::nn {

// Qwen2RMSNorm (qwen2_vl.md §3): y = weight * cast_to(x.dtype, x_f32 * rsqrt(mean(x_f32^2) + eps)).
// The normalised value is rounded to x's dtype *before* the weight multiply, which is done in the
// dtype PyTorch's promotion gives (bf16 * bf16 -> a bf16 product; an f32 weight gives f32 output).
// x: (..., D), weight: (D) or undefined (no affine)  ->  (..., D)
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps = 1e-6);

// The pre-norm residual step in one pass over x and residual: sum = x + residual (x's dtype,
// rounded once, as add()), normed = rms_norm(sum, weight, eps) or layer_norm(sum, ...). Bit for bit
// the two ops, with the same gradients (sum may be used further; its gradient and normed's add up).
// x, residual: (..., D) of one float dtype; weight: (D) or undefined.
struct AddNorm {
  Tensor normed, sum;
};
AddNorm add_rms_norm(const Tensor& x, const Tensor& residual, const Tensor& weight, double eps = 1e-6);

// torch.nn.functional.layer_norm over the trailing `normalized_shape` dims (D = their product).
// x: (..., *normalized_shape), weight, bias: normalized_shape or undefined  ->  x's shape and dtype
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = Tensor(),
                  const Tensor& bias = Tensor(), double eps = 1e-5);
// sum = x + residual, normed = layer_norm(sum, ...) in one pass (see add_rms_norm).
AddNorm add_layer_norm(const Tensor& x, const Tensor& residual, const Shape& normalized_shape,
                       const Tensor& weight = Tensor(), const Tensor& bias = Tensor(), double eps = 1e-5);

// torch.nn.functional.group_norm: channels are split into num_groups groups of C / G channels;
// each (sample, group) is normalised over its channels and spatial positions, then the per-channel
// affine is applied.  x: (N, C, *), weight, bias: (C) or undefined  ->  x's shape and dtype
Tensor group_norm(const Tensor& x, int64_t num_groups, const Tensor& weight = Tensor(),
                  const Tensor& bias = Tensor(), double eps = 1e-5);

// ---- kernels (all tensors contiguous; weight/bias/dweight/dbias may be undefined) ----------------
// Stats (mean, rstd) are f32, or f64 for f64 x. Parameter gradients are written (=), not added.
//   x, y, dy, dx: (rows, D); weight, dweight: (D); rstd: (rows); y in result_type(x, weight)
using RmsNormForwardFn = void(const Tensor& x, const Tensor& weight, double eps, const Tensor& y,
                              const Tensor& rstd);
using RmsNormBackwardFn = void(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& rstd,
                               const Tensor& dx, const Tensor& dweight);
//   x, residual, sum: (rows, D) of one dtype; sum = x + residual, then rms_norm_forward of sum
using AddRmsNormForwardFn = void(const Tensor& x, const Tensor& residual, const Tensor& weight, double eps,
                                 const Tensor& sum, const Tensor& y, const Tensor& rstd);
//   x, y, dy, dx: (rows, D); weight, bias, dweight, dbias: (D); mean, rstd: (rows)
using LayerNormForwardFn = void(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                                const Tensor& y, const Tensor& mean, const Tensor& rstd);
using LayerNormBackwardFn = void(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& mean,
                                 const Tensor& rstd, const Tensor& dx, const Tensor& dweight, const Tensor& dbias);
//   x, residual, sum: (rows, D) of one dtype; sum = x + residual, then layer_norm_forward of sum
using AddLayerNormForwardFn = void(const Tensor& x, const Tensor& residual, const Tensor& weight, const Tensor& bias,
                                   double eps, const Tensor& sum, const Tensor& y, const Tensor& mean,
                                   const Tensor& rstd);
//   x, y, dy, dx: (N, C, HW); weight, bias, dweight, dbias: (C); mean, rstd: (N, G)
using GroupNormForwardFn = void(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t groups,
                                double eps, const Tensor& y, const Tensor& mean, const Tensor& rstd);
using GroupNormBackwardFn = void(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& mean,
                                 const Tensor& rstd, int64_t groups, const Tensor& dx, const Tensor& dweight,
                                 const Tensor& dbias);

}  // namespace vt::nn
