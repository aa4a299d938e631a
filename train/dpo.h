// train/dpo.h: DPO on image bits, as VARGPT-v1.1 runs it in its stage-3 preference phases
// (vargpt.md §13, training.md §4). The "completion" of a pair is its image: a response's
// log-probability is the sum of the log-probabilities of the ground-truth bits over every bit and
// token of its <image_gen> span; the text of the response is not counted.
//
//   pairs: 2N rows [chosen 0..N-1; rejected 0..N-1], each holding one <image_gen> span, with the
//          teacher inputs (2N, L-1, d) and bits (2N, L, d) of its own image
//   reference (eval, no grad) --training_forward--> gen_logits (2N, L, 2d) --image_logps--> (2N)
//        or given: reference_logps (2N), precomputed once per batch (TRL precompute_ref_log_probs)
//   policy (train)            --training_forward--> gen_logits (2N, L, 2d) --image_logps--> (2N)
//   chunk(2) -> chosen / rejected -> nn::dpo_sigmoid_loss(beta, label_smoothing)
//   loss = mean_pairs [ dpo_loss + ftx * (-log pi(chosen) / L) ]           (LLaMA-Factory pref_ftx)
//
// Contract: gradients reach the policy only (the reference log-probs are detached), and only through
// its generation logits: the text loss that training_forward also computes is not part of the DPO
// loss. Log-softmax and sums run in f32 (f64 for an f64 model), as TRL's fp32 upcast.
//
// Randomness (Q19). The data side draws the bitwise self-correction flips and the sos condition
// dropout (TrainingBatch gen_inputs, gen_labels, drop_condition); DropPath is the model's, active in
// train mode. dpo_forward gives the policy and the live reference the same batch, so with equal
// weights and a DropPath-free policy the step-0 loss is exactly ln 2 (--dpo-deterministic-ref).
// Upstream's faithful behaviour, independent draws in the reference forward, is had by drawing a
// second batch for the reference and passing reference_logps(reference, that batch) as
// reference_logps (precomputed_reference = true): the labels then differ between the two forwards.
#pragma once
#include <map>
#include <string>

#include "vargpt/training.h"
#include "vt/nn/loss.h"

namespace vt::train {

// gen_logits (N, L, 2d) float, labels (N, L, d) bits (0/1, any integer, bool or float dtype)
//   -> (N): sum_{l, j} log softmax(gen_logits[n, l].view(d, 2)[j])[labels[n, l, j]]
// in f32 (f64 for f64 logits), differentiable w.r.t. gen_logits. Equals -sum softplus(-(2b-1)(z1-z0)).
Tensor image_logps(const Tensor& gen_logits, const Tensor& labels);

struct DpoOptions {
  double beta = 0.1;                  // pref_beta (VARGPT's value is not published; LLaMA-Factory default)
  double label_smoothing = 0;         // dpo_label_smoothing: conservative DPO, in [0, 0.5]
  double ftx = 0;                     // pref_ftx: weight of the chosen image's NLL per token, -log pi(c) / L
  bool precomputed_reference = false; // read the reference log-probs from reference_logps (no reference model)
};

struct DpoStepOutput {
  Tensor loss;                    // 0-d: metrics.loss + ftx * sft_loss; differentiable w.r.t. the policy
  nn::DpoOutput metrics;          // the sigmoid DPO loss alone (metrics.loss) and TRL's rewards
  Tensor sft_loss;                // 0-d: mean over pairs of -log pi(chosen) / L (the pref_ftx term before ftx)
  Tensor policy_chosen_logps;     // (N), differentiable
  Tensor policy_rejected_logps;   // (N), differentiable
  Tensor ref_chosen_logps;        // (N), detached
  Tensor ref_rejected_logps;      // (N), detached
  Tensor logits_chosen;           // 0-d, detached: mean policy gen logit over the chosen rows (all classes)
  Tensor logits_rejected;         // 0-d, detached: the same over the rejected rows
};

// One DPO forward of `pairs` (2N rows, chosen first). The policy runs in whatever mode it is in
// (train() for training); the reference must be in eval mode and is run under NoGradGuard, before
// the policy, so its activations are freed before the policy's graph is built. With
// opt.precomputed_reference, `reference` may be null and `reference_logps` (2N) [chosen; rejected]
// is used instead. Errors name a batch whose rows are odd in number or lack an <image_gen> span.
DpoStepOutput dpo_forward(const vargpt::Vargpt& policy, const vargpt::Vargpt* reference,
                          const vargpt::TrainingBatch& pairs, const DpoOptions& opt = {},
                          const Tensor* reference_logps = nullptr);

// The loss and metrics from log-probs alone: policy_logps (2N) [chosen; rejected] (differentiable),
// reference_logps (2N) (detached here), image_tokens = L of the sft term. dpo_forward's second half;
// logits_chosen / logits_rejected stay undefined.
DpoStepOutput dpo_loss(const Tensor& policy_logps, const Tensor& reference_logps, int64_t image_tokens,
                       const DpoOptions& opt = {});

// The reference log-probs of one batch in one no-grad pass: (rows) [chosen; rejected], detached,
// on the model's device. `reference` must be in eval mode. Also the building block of TRL's
// precompute_ref_log_probs (one pass over the dataset before training) and of the faithful Q19 mode.
Tensor reference_logps(const vargpt::Vargpt& reference, const vargpt::TrainingBatch& pairs);

// TRL 0.9's logged names: rewards/{chosen, rejected, accuracies, margins}, logps/{chosen, rejected}
// and logits/{chosen, rejected} (when defined), each prefixed with `prefix` ("eval_" for
// evaluation). Reads the values back to the host.
std::map<std::string, double> dpo_metrics(const DpoStepOutput& out, const std::string& prefix = "");

}  // namespace vt::train
