// nn/loss.h: the training losses of VARGPT-v1.1 (training.md §2-4): token cross-entropy fused with
// log_softmax, the bitwise (infinite-vocabulary) cross-entropy of the Infinity head with its bit
// accuracy metric, and the DPO sigmoid loss with TRL 0.9's reward metrics.
//
// Losses are computed in f32 (f64 for f64 logits) whatever the logits' dtype and returned in the
// logits' dtype, as PyTorch does. The fused kernels are registered by name (backend.h); the CPU ones
// are in src/nn_loss.cpp.
#pragma once
#include "vt/backend.h"
#include "vt/ops.h"

namespace vt::nn {

enum class Reduction : uint8_t { None, Mean, Sum };

// torch.nn.functional.cross_entropy with class-index targets, the class dim last (as HF's
// `loss_fct(logits.view(-1, V), labels.view(-1))`):
//   logits: (..., C) float; target: (...) int64 in [0, C) or == ignore_index
//   row loss  l = logsumexp(z) - (1 - eps) z[y] - (eps / C) sum_c z[c]      (0 for ignored rows)
//   None -> (...) row losses; Sum -> sum; Mean -> sum / (number of non-ignored rows) (NaN if none).
// Fused with log_softmax: the forward keeps one logsumexp per row (f32) and no (rows, C) buffer;
// the backward recomputes softmax row by row straight into the gradient, which is the only
// logits-sized allocation:  dz = g_row * (softmax(z) - (1 - eps) onehot(y) - eps / C).
Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index = -100,
                     double label_smoothing = 0, Reduction reduction = Reduction::Mean);

// Infinity's bitwise classifier loss (infinity_bsq.md §9.2, training.md §3): 2-way cross-entropy
// per bit on the logit pair (z0, z1), with optional label smoothing eps:
//   l = logsumexp(z0, z1) - (1 - eps) z[b] - (eps / 2) (z0 + z1)       (= softplus(-(2b-1)(z1-z0)) at eps 0)
//   logits: (..., d, 2); bits: (..., d) with values 0 or 1 (any integer, bool or float dtype);
//   token_weight: (...) or undefined.
//   loss = sum_t w_t * mean_j l[t, j] / sum_t w_t        (w = 1: the mean over all bits and tokens)
// With Infinity's reweight_loss_by_scale weights (normalised to sum 1 per sample) this equals its
// `(loss.mean(-1) * lw).sum(-1).mean()`.
Tensor bitwise_cross_entropy(const Tensor& logits, const Tensor& bits, const Tensor& token_weight = Tensor(),
                             double label_smoothing = 0);
// mean over all bits of [argmax(z0, z1) == b] (ties pick bit 0, like torch.argmax); 0-d f32, no grad.
Tensor bit_accuracy(const Tensor& logits, const Tensor& bits);

// DPO with TRL 0.9's `sigmoid` loss (training.md §4.3). Inputs are (N) summed log-probabilities.
//   u = beta * ((policy_chosen - policy_rejected) - (ref_chosen - ref_rejected))
//   loss = mean_pairs [ -(1 - eps) log sigmoid(u) - eps log sigmoid(-u) ]     (ln 2 when u = 0)
// Rewards are beta * (policy - reference), detached, in the inputs' dtype; the metrics are TRL's
// logged means (accuracies in f32, as TRL's `.float()`).
struct DpoOutput {
  Tensor loss;              // 0-d, differentiable w.r.t. all four inputs
  Tensor chosen_rewards;    // (N)
  Tensor rejected_rewards;  // (N)
  Tensor rewards_chosen;    // 0-d: mean chosen reward ("rewards/chosen")
  Tensor rewards_rejected;  // 0-d: "rewards/rejected"
  Tensor margins;           // 0-d: mean(chosen - rejected) ("rewards/margins")
  Tensor accuracies;        // 0-d: mean(chosen > rejected) ("rewards/accuracies")
};
DpoOutput dpo_sigmoid_loss(const Tensor& policy_chosen_logps, const Tensor& policy_rejected_logps,
                           const Tensor& ref_chosen_logps, const Tensor& ref_rejected_logps, double beta = 0.1,
                           double label_smoothing = 0);

// ---- kernels (contiguous tensors; per-row values in f32, f64 for f64 logits) ---------------------
//   logits, dlogits: (N, C); target: (N) int64; row_loss, lse, row_grad: (N)
// The forward raises vt::Error for a target outside [0, C) that is not ignore_index.
using CrossEntropyForwardFn = void(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                                   double label_smoothing, const Tensor& row_loss, const Tensor& lse);
using CrossEntropyBackwardFn = void(const Tensor& logits, const Tensor& target, const Tensor& lse,
                                    const Tensor& row_grad, int64_t ignore_index, double label_smoothing,
                                    const Tensor& dlogits);
//   logits, dlogits: (T, d, 2); bits: (T, d) int64; token_loss, token_grad: (T) (token_loss = mean
//   over the d bits). The forward raises vt::Error for a bit that is not 0 or 1.
using BitwiseCrossEntropyForwardFn = void(const Tensor& logits, const Tensor& bits, double label_smoothing,
                                          const Tensor& token_loss);
using BitwiseCrossEntropyBackwardFn = void(const Tensor& logits, const Tensor& bits, const Tensor& token_grad,
                                           double label_smoothing, const Tensor& dlogits);

}  // namespace vt::nn
