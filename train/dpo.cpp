// dpo.cpp: DPO on image bits (vargpt.md §13, training.md §4); see dpo.h.
#include "dpo.h"

#include "vt/autograd.h"
#include "vt/nn/functional.h"
#include "vt/ops.h"

namespace vt::train {

namespace {
// DPO scores image bits only (vargpt.md §13): no lm_head, no text loss.
vargpt::TrainingOptions image_only() {
  vargpt::TrainingOptions o;
  o.text_loss = false;
  return o;
}
}  // namespace

Tensor image_logps(const Tensor& gen_logits, const Tensor& labels) {
  VT_CHECK(gen_logits.defined() && gen_logits.dim() == 3 && gen_logits.size(2) % 2 == 0,
           "image_logps: gen_logits must be (N, L, 2d), got ",
           gen_logits.defined() ? gen_logits.shape().str() : std::string("undefined"));
  const int64_t N = gen_logits.size(0), L = gen_logits.size(1), d = gen_logits.size(2) / 2;
  VT_CHECK(labels.defined() && labels.dim() == 3 && labels.size(0) == N && labels.size(1) == L && labels.size(2) == d,
           "image_logps: labels ", labels.defined() ? labels.shape().str() : std::string("undefined"),
           " do not match gen_logits ", gen_logits.shape().str(), " (expected (", N, ", ", L, ", ", d, "))");
  const Tensor bits = labels.to(gen_logits.device()).to(DType::I64);
  if (bits.numel() > 0)
    VT_CHECK(amin(bits).item() >= 0 && amax(bits).item() <= 1, "image_logps: labels hold values outside {0, 1}");
  // TRL's fp32 upcast; f64 stays f64 (gradcheck).
  const DType acc = gen_logits.dtype() == DType::F64 ? DType::F64 : DType::F32;
  const Tensor logp = nn::log_softmax(gen_logits.to(acc).reshape({N, L, d, 2}), 3);  // (N, L, d, 2)
  return sum(gather(logp, 3, bits.reshape({N, L, d, 1})), {1, 2, 3});           // (N)
}

namespace {

// The image log-probs of a training forward whose every row holds an <image_gen> span.
Tensor row_logps(const vargpt::TrainingOutput& out, const vargpt::TrainingBatch& pairs, const char* who) {
  const int64_t rows = pairs.input_ids.size(0);
  const int64_t spans = static_cast<int64_t>(out.gen_rows.size());
  VT_CHECK(spans == rows, "DPO (", who, "): ", rows - spans, " of the ", rows,
           " rows hold no <image_gen> span; every chosen and rejected response must end in one");
  return image_logps(out.gen_logits, pairs.gen_labels);
}

int64_t num_pairs(const vargpt::TrainingBatch& pairs) {
  VT_CHECK(pairs.input_ids.defined() && pairs.input_ids.dim() == 2, "DPO: input_ids must be (2N, T), got ",
           pairs.input_ids.defined() ? pairs.input_ids.shape().str() : std::string("undefined"));
  const int64_t rows = pairs.input_ids.size(0);
  VT_CHECK(rows > 0 && rows % 2 == 0, "DPO: a batch of pairs has 2N rows [chosen; rejected], got ", rows);
  return rows / 2;
}

}  // namespace

Tensor reference_logps(const vargpt::Vargpt& reference, const vargpt::TrainingBatch& pairs) {
  VT_CHECK(!reference.is_training(), "DPO: the reference model is in train mode; call eval() on it (TRL runs the ",
           "reference in eval mode, training.md §4.2)");
  NoGradGuard no_grad;
  return row_logps(vargpt::training_forward(reference, pairs, image_only()), pairs, "reference").detach();
}

DpoStepOutput dpo_loss(const Tensor& policy_logps, const Tensor& reference_logps, int64_t image_tokens,
                       const DpoOptions& opt) {
  VT_CHECK(policy_logps.defined() && policy_logps.dim() == 1 && policy_logps.size(0) % 2 == 0 &&
               policy_logps.size(0) > 0,
           "DPO: policy log-probs must be (2N) [chosen; rejected], got ",
           policy_logps.defined() ? policy_logps.shape().str() : std::string("undefined"));
  VT_CHECK(reference_logps.defined() && reference_logps.shape() == policy_logps.shape(), "DPO: reference log-probs ",
           reference_logps.defined() ? reference_logps.shape().str() : std::string("undefined"),
           " do not match the policy's ", policy_logps.shape().str());
  VT_CHECK(image_tokens > 0, "DPO: image_tokens must be positive, got ", image_tokens);
  const int64_t N = policy_logps.size(0) / 2;
  const Tensor ref = reference_logps.detach().to(policy_logps.device()).to(policy_logps.dtype());
  DpoStepOutput s;
  s.policy_chosen_logps = policy_logps.narrow(0, 0, N);
  s.policy_rejected_logps = policy_logps.narrow(0, N, N);
  s.ref_chosen_logps = ref.narrow(0, 0, N);
  s.ref_rejected_logps = ref.narrow(0, N, N);
  s.metrics = nn::dpo_sigmoid_loss(s.policy_chosen_logps, s.policy_rejected_logps, s.ref_chosen_logps,
                                   s.ref_rejected_logps, opt.beta, opt.label_smoothing);
  // LLaMA-Factory's sft_loss = -chosen_logps / valid_length; in the image path the length is the
  // L tokens of the image (training.md §4.3), each token's log-prob summing its d bits.
  s.sft_loss = mean(s.policy_chosen_logps) * (-1.0 / static_cast<double>(image_tokens));
  s.loss = opt.ftx != 0 ? s.metrics.loss + s.sft_loss * opt.ftx : s.metrics.loss;
  return s;
}

DpoStepOutput dpo_forward(const vargpt::Vargpt& policy, const vargpt::Vargpt* reference,
                          const vargpt::TrainingBatch& pairs, const DpoOptions& opt, const Tensor* given) {
  const int64_t N = num_pairs(pairs);
  Tensor ref;  // (2N)
  if (opt.precomputed_reference) {
    VT_CHECK(given != nullptr && given->defined(), "DPO: precomputed_reference is set but no reference_logps given");
    VT_CHECK(given->dim() == 1 && given->size(0) == 2 * N, "DPO: reference_logps ", given->shape().str(),
             ", expected (", 2 * N, ") [chosen; rejected] for ", N, " pairs");
    ref = given->detach();
  } else {
    VT_CHECK(reference != nullptr, "DPO: no reference model (pass one, or precomputed_reference with reference_logps)");
    VT_CHECK(given == nullptr, "DPO: reference_logps given but precomputed_reference is off");
    ref = reference_logps(*reference, pairs);  // before the policy: its activations are gone by then
  }

  const vargpt::TrainingOutput out = vargpt::training_forward(policy, pairs, image_only());
  DpoStepOutput s = dpo_loss(row_logps(out, pairs, "policy"), ref, out.gen_logits.size(1), opt);
  const Tensor logits = out.gen_logits.detach();  // (2N, L, 2d)
  const DType acc = s.policy_chosen_logps.dtype();
  s.logits_chosen = mean(logits.narrow(0, 0, N).to(acc));
  s.logits_rejected = mean(logits.narrow(0, N, N).to(acc));
  return s;
}

std::map<std::string, double> dpo_metrics(const DpoStepOutput& out, const std::string& prefix) {
  const nn::DpoOutput& m = out.metrics;
  std::map<std::string, double> r = {
      {prefix + "rewards/chosen", m.rewards_chosen.item()},
      {prefix + "rewards/rejected", m.rewards_rejected.item()},
      {prefix + "rewards/accuracies", m.accuracies.item()},
      {prefix + "rewards/margins", m.margins.item()},
      {prefix + "logps/chosen", mean(out.policy_chosen_logps.detach()).item()},
      {prefix + "logps/rejected", mean(out.policy_rejected_logps.detach()).item()}};
  if (out.logits_chosen.defined()) r[prefix + "logits/chosen"] = out.logits_chosen.item();
  if (out.logits_rejected.defined()) r[prefix + "logits/rejected"] = out.logits_rejected.item();
  return r;
}

}  // namespace vt::train
