// optim/clip.h: global-norm gradient clipping and gradient-accumulation helpers (spec training.md §7).
//
// clip_grad_norm_ follows torch.nn.utils.clip_grad_norm_: the total norm is the norm of the vector of
// every gradient's norm, i.e. (sum over all elements |g|^p)^(1/p) for p = norm_type (inf = max |g|);
// then clip_coef = max_norm / (total + 1e-6), clamped to 1, and every gradient is multiplied by it
// (also when the clamp gives 1, as torch does; that multiplication is exact). The coefficient is
// formed in fp32 the way torch evaluates it on its fp32 norm tensor: 1 / (total + 1e-6) * max_norm.
// vt sums |g|^p in double over fixed chunks in a fixed order, so the norm does not depend on the
// thread count; torch sums in fp32, so the two agree to about 1e-7 relative.
// Parameters without a gradient (frozen, or unused) contribute nothing. Gradients of bf16
// parameters are scaled in fp32 and rounded back to bf16, as torch's in-place mul_ does.
//
// Gradient accumulation: leaf gradients add up across backward() calls (autograd.h), so N
// micro-batches of a mean loss give N times the gradient of the mean over the whole batch;
// average_grads_(params, N) (or scaling each micro-batch loss by 1/N, as HF does) restores it.
#pragma once
#include <limits>
#include <vector>

#include "vt/tensor.h"

namespace vt::optim {

inline constexpr double kInfNorm = std::numeric_limits<double>::infinity();

// The total norm of the defined gradients of `params`, without changing them.
double grad_norm(const std::vector<Tensor>& params, double norm_type = 2.0);
// Scales the gradients by min(1, max_norm / (total_norm + 1e-6)) (torch.nn.utils.clip_grads_with_norm_).
void clip_grads_with_norm_(const std::vector<Tensor>& params, double max_norm, double total_norm);
// grad_norm, then clip_grads_with_norm_; returns the norm before clipping (what trainers log).
// With error_if_nonfinite a NaN or inf norm raises instead of spreading NaN into every gradient.
double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type = 2.0,
                       bool error_if_nonfinite = false);

// grad = grad * factor for every parameter with a gradient (fp32 arithmetic, rounded to the grad's dtype).
void scale_grads_(const std::vector<Tensor>& params, double factor);
// scale_grads_(params, 1 / num_micro_batches): the mean over micro-batches of equal size.
void average_grads_(const std::vector<Tensor>& params, int64_t num_micro_batches);

}  // namespace vt::optim
