// self_correction.cpp: next-scale inputs, bitwise self-correction and the bitwise loss; see the
// header.
#include "infinity/self_correction.h"

#include <cmath>

#include "bsq_vae/multiscale_bsq.h"
#include "vt/nn/interpolate.h"
#include "vt/nn/loss.h"
#include "vt/ops.h"
#include "vt/random.h"

namespace vt::infinity {

namespace {
bool is_full(const ScaleHW& s, const ScaleHW& full) { return s == full; }

// (B, d, h, w) -> tokens (B, h w, d) in raster order.
Tensor to_tokens(const Tensor& map) { return map.flatten(2).transpose(1, 2).contiguous(); }
}  // namespace

// ---- next-scale inputs ---------------------------------------------------------------------------------
ScaleAccumulator::ScaleAccumulator(int64_t batch, int64_t d, const ScaleSchedule& schedule)
    : sum_(zeros({batch, d, schedule.latent().h, schedule.latent().w})), schedule_(schedule) {}

void ScaleAccumulator::add(const Tensor& codes, int64_t k) {
  VT_CHECK(k == next_scale_ && k < schedule_.num_scales(), "ScaleAccumulator: scale ", k, " added, expected ",
           next_scale_, " of ", schedule_.num_scales());
  const ScaleHW s = schedule_.scales[k], full = schedule_.latent();
  VT_CHECK(codes.dim() == 4 && codes.size(0) == sum_.size(0) && codes.size(1) == sum_.size(1) &&
               codes.size(2) == s.h && codes.size(3) == s.w,
           "ScaleAccumulator: codes of scale ", k, " have shape ", codes.shape().str(), ", expected (",
           sum_.size(0), ", ", sum_.size(1), ", ", s.h, ", ", s.w, ")");
  if (sum_.device() != codes.device()) sum_ = sum_.to(codes.device());  // follows the model's device
  sum_ = sum_ + (is_full(s, full) ? codes : nn::interpolate(codes, {full.h, full.w}, "bilinear"));
  ++next_scale_;
}

Tensor ScaleAccumulator::next_input() const {
  VT_CHECK(next_scale_ >= 1 && next_scale_ < schedule_.num_scales(), "ScaleAccumulator: no next scale after ",
           next_scale_, " of ", schedule_.num_scales(), " scales");
  const ScaleHW s = schedule_.scales[next_scale_];
  return to_tokens(is_full(s, schedule_.latent()) ? sum_ : nn::interpolate(sum_, {s.h, s.w}, "bilinear"));
}

void check_scale_bits(const std::vector<Tensor>& bits, const ScaleSchedule& schedule, int64_t d, const char* where) {
  VT_CHECK(static_cast<int64_t>(bits.size()) <= schedule.num_scales(), where, ": ", bits.size(),
           " scales of bits for a schedule of ", schedule.num_scales());
  for (size_t k = 0; k < bits.size(); ++k) {
    const ScaleHW s = schedule.scales[k];
    VT_CHECK(bits[k].dim() == 4 && bits[k].size(0) == bits[0].size(0) && bits[k].size(1) == s.h &&
                 bits[k].size(2) == s.w && bits[k].size(3) == d,
             where, ": bits of scale ", k, " have shape ", bits[k].shape().str(), ", expected (",
             bits[0].size(0), ", ", s.h, ", ", s.w, ", ", d, ") from the schedule and d = ", d);
  }
}

Tensor teacher_inputs_from_bits(const std::vector<Tensor>& bits, const ScaleSchedule& schedule) {
  VT_CHECK(!bits.empty() && bits[0].dim() == 4, "teacher_inputs_from_bits: no bits, or bits not (B, h, w, d)");
  check_scale_bits(bits, schedule, bits[0].size(3), "teacher_inputs_from_bits");
  VT_CHECK(static_cast<int64_t>(bits.size()) >= schedule.num_scales() - 1, "teacher_inputs_from_bits: ",
           bits.size(), " scales of bits, need at least ", schedule.num_scales() - 1);
  ScaleAccumulator acc(bits[0].size(0), bits[0].size(3), schedule);
  std::vector<Tensor> inputs;
  for (int64_t k = 0; k + 1 < schedule.num_scales(); ++k) {
    acc.add(bsq::bits_to_codes(bits[k]), k);
    inputs.push_back(acc.next_input());
  }
  return cat(inputs, 1);
}

// ---- bitwise self-correction -----------------------------------------------------------------------------
namespace {
Tensor logical_xor_bits(const Tensor& a, const Tensor& b) { return ne(cast(a, DType::Bool), cast(b, DType::Bool)); }

// flip(k): the flip mask of scale k (B, h, w, d) Bool, or undefined for none.
template <class FlipFn>
TeacherBatch self_correct(const Tensor& f_in, const ScaleSchedule& schedule, bool requant, FlipFn&& flip) {
  VT_CHECK(f_in.dim() == 4, "bitwise_self_correction: expected a latent (B, d, H, W), got ", f_in.shape().str());
  const ScaleHW full = schedule.latent();
  VT_CHECK(f_in.size(2) == full.h && f_in.size(3) == full.w, "bitwise_self_correction: the latent is ",
           f_in.size(2), "x", f_in.size(3), " but the schedule ends at ", full.h, "x", full.w);
  const Tensor f = f_in.detach().to(DType::F32).contiguous();
  const int64_t B = f.size(0), d = f.size(1);
  Tensor cum = zeros(f.shape(), {DType::F32, f.device()});
  std::vector<Tensor> inputs, labels;
  TeacherBatch out;
  for (int64_t k = 0; k < schedule.num_scales(); ++k) {
    const ScaleHW s = schedule.scales[k];
    const bool at_full = is_full(s, full);
    Tensor res = f - cum;
    if (!at_full) res = nn::interpolate(res, {s.h, s.w}, "area");
    bsq::BsqOutput q = bsq::bsq_quantize(res);  // bits (B, h, w, d)
    labels.push_back(q.bits.reshape({B, s.h * s.w, d}));
    Tensor codes = q.codes;
    auto [mask, p] = flip(k, s, B, d);
    out.flip_prob.push_back(p);
    if (mask.defined() && requant) codes = bsq::bits_to_codes(logical_xor_bits(q.bits, mask));
    cum = cum + (at_full ? codes : nn::interpolate(codes, {full.h, full.w}, "bilinear"));
    if (k + 1 < schedule.num_scales()) {
      const ScaleHW n = schedule.scales[k + 1];
      inputs.push_back(to_tokens(is_full(n, full) ? cum : nn::interpolate(cum, {n.h, n.w}, "bilinear")));
    }
  }
  out.inputs = inputs.empty() ? zeros({B, 0, d}, {DType::F32, f.device()}) : cat(inputs, 1);
  out.labels = cat(labels, 1);
  return out;
}
}  // namespace

TeacherBatch bitwise_self_correction(const Tensor& f, const ScaleSchedule& schedule, const SelfCorrectionConfig& cfg,
                                     Generator* gen) {
  VT_CHECK(cfg.noise_apply_strength >= 0 && cfg.noise_apply_strength <= 1, "bitwise_self_correction: strength ",
           cfg.noise_apply_strength, " is not a probability");
  const int64_t steps = static_cast<int64_t>(std::llround(cfg.noise_apply_strength * 100));
  return self_correct(f, schedule, cfg.requant, [&](int64_t k, ScaleHW s, int64_t B, int64_t d) {
    if (k >= cfg.noise_apply_layers) return std::pair<Tensor, double>{Tensor(), 0.0};
    // One probability per scale for the batch: p = randint(0, 100 strength + 1) / 100.
    const double p = static_cast<double>(randint(0, steps + 1, {1}, DType::I64, gen).item()) * 0.01;
    return std::pair<Tensor, double>{lt(rand({B, s.h, s.w, d}, {DType::F32, f.device()}, gen), p), p};
  });
}

TeacherBatch bitwise_self_correction(const Tensor& f, const ScaleSchedule& schedule,
                                     const std::vector<Tensor>& flip_masks, bool requant) {
  VT_CHECK(static_cast<int64_t>(flip_masks.size()) <= schedule.num_scales(), "bitwise_self_correction: ",
           flip_masks.size(), " flip masks for ", schedule.num_scales(), " scales");
  return self_correct(f, schedule, requant, [&](int64_t k, ScaleHW s, int64_t B, int64_t d) {
    if (k >= static_cast<int64_t>(flip_masks.size())) return std::pair<Tensor, double>{Tensor(), 0.0};
    const Tensor& m = flip_masks[k];
    VT_CHECK(m.dim() == 4 && m.size(0) == B && m.size(1) == s.h && m.size(2) == s.w && m.size(3) == d,
             "bitwise_self_correction: flip mask of scale ", k, " has shape ", m.shape().str(), ", expected (", B,
             ", ", s.h, ", ", s.w, ", ", d, ")");
    return std::pair<Tensor, double>{m, mean(cast(m, DType::F32)).item()};
  });
}

// ---- loss --------------------------------------------------------------------------------------------------
Tensor scale_loss_weights(const ScaleSchedule& schedule) {
  const ScaleHW last = schedule.latent();
  std::vector<double> w;
  double total = 0;
  for (int64_t k = 0; k < schedule.num_scales(); ++k) {
    const double wk = std::sqrt(double(last.h * last.w)) / std::sqrt(double(schedule.tokens[k]));
    w.insert(w.end(), schedule.tokens[k], wk);
    total += wk * schedule.tokens[k];
  }
  for (double& x : w) x /= total;
  return cast(from_vector(w), DType::F32);
}

Tensor bitwise_loss(const Tensor& logits, const Tensor& labels, const ScaleSchedule& schedule,
                    const LossOptions& opt) {
  const int64_t L = schedule.total_tokens;
  VT_CHECK(logits.dim() == 3 && logits.size(1) == L && logits.size(2) % 2 == 0, "bitwise_loss: logits ",
           logits.shape().str(), ", expected (B, ", L, ", 2d)");
  const int64_t B = logits.size(0), d = logits.size(2) / 2;
  VT_CHECK(labels.dim() == 3 && labels.size(0) == B && labels.size(1) == L && labels.size(2) == d,
           "bitwise_loss: labels ", labels.shape().str(), ", expected (", B, ", ", L, ", ", d, ")");
  Tensor w = opt.reweight_by_scale ? scale_loss_weights(schedule).unsqueeze(0).expand({B, L}).contiguous() : Tensor();
  return nn::bitwise_cross_entropy(logits.view({B, L, d, 2}), labels, w, opt.label_smoothing);
}

TrainingOutput training_forward(const Infinity& model, const Condition& cond, const TeacherBatch& batch,
                                const ScaleSchedule& schedule, const LossOptions& opt) {
  TrainingOutput out;
  out.logits = model.forward(cond, batch.inputs, schedule);
  out.loss = bitwise_loss(out.logits, batch.labels, schedule, opt);
  const int64_t B = out.logits.size(0), L = schedule.total_tokens, d = out.logits.size(2) / 2;
  const int64_t last = schedule.tokens.back();
  Tensor z = out.logits.detach().view({B, L, d, 2});
  out.accuracy = nn::bit_accuracy(z, batch.labels);
  out.last_scale_accuracy = nn::bit_accuracy(z.narrow(1, L - last, last), batch.labels.narrow(1, L - last, last));
  return out;
}

}  // namespace vt::infinity
