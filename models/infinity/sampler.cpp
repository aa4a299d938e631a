// sampler.cpp: KV-cached scale-by-scale decoding, CFG and bitwise sampling; see the header.
#include "infinity/sampler.h"

#include "infinity/self_correction.h"
#include "vt/autograd.h"
#include "vt/ops.h"
#include "vt/random.h"

namespace vt::infinity {

// ---- the cached decoder ------------------------------------------------------------------------------
CachedDecoder::CachedDecoder(const Infinity& model, const Condition& cond, const ScaleSchedule& schedule)
    : model_(&model), schedule_(schedule), cond_(cond) {
  cond6_ = model.shared_condition(cond.cond_BD);
  ca_kv_ = model.cross_kv(cond.memory, cond.cu_seqlens);
  rope_ = schedule_rope(schedule, model.config().head_dim(), model.config().rope_theta);
  const Device dev = model.lvl_embed->weight.device();  // the tables live where the model does
  rope_ = {rope_.cos.to(dev), rope_.sin.to(dev)};
  caches_.resize(model.blocks.size());
}

Tensor CachedDecoder::tokens_for(const Tensor& inputs) const {
  if (k_ == 0) return model_->embed_tokens(cond_.cond_BD, Tensor());
  return model_->embed_inputs(inputs);
}

Tensor CachedDecoder::step(const Tensor& tokens) {
  const int64_t K = schedule_.num_scales();
  VT_CHECK(k_ < K, "CachedDecoder: all ", K, " scales are decoded");
  const int64_t n = schedule_.tokens[k_], off = schedule_.offsets[k_];
  VT_CHECK(tokens.dim() == 3 && tokens.size(0) == cond_.batch() && tokens.size(1) == n,
           "CachedDecoder: tokens of scale ", k_, " have shape ", tokens.shape().str(), ", expected (",
           cond_.batch(), ", ", n, ", C)");
  Tensor x = model_->add_level_embedding(tokens, schedule_, k_);
  nn::RopeCosSin rope{rope_.cos.narrow(0, off, n), rope_.sin.narrow(0, off, n)};
  x = model_->run_blocks(x, cond6_, ca_kv_, rope, nn::AttentionMask::none(), &caches_);
  ++k_;
  return model_->head_logits(x, cond_.cond_BD);
}

// ---- CFG and bit sampling ------------------------------------------------------------------------------
Tensor cfg_combine(const Tensor& cond_logits, const Tensor& uncond_logits, double cfg, int64_t k, int64_t K,
                   bool var_linear_ramp) {
  if (var_linear_ramp) {
    const double t = K > 1 ? cfg * static_cast<double>(k) / static_cast<double>(K - 1) : cfg;
    return cond_logits * (1 + t) - uncond_logits * t;
  }
  return cond_logits * cfg + uncond_logits * (1 - cfg);
}

Tensor sample_bits(const Tensor& logits, int64_t top_k, double top_p, Generator* gen) {
  const Tensor p1 = bit_probabilities(logits, top_k, top_p);
  return lt(rand(p1.shape(), {DType::F32, p1.device()}, gen), p1);
}

Tensor bit_probabilities(const Tensor& logits, int64_t top_k, double top_p) {
  VT_CHECK(logits.size(-1) % 2 == 0, "sample_bits: the last dim (", logits.size(-1), ") is not 2d");
  Shape pair_shape = logits.shape();
  pair_shape[pair_shape.size() - 1] /= 2;
  pair_shape.push_back(2);
  Tensor z = logits.to(DType::F32).reshape(pair_shape);  // (..., d, 2)
  Tensor p1 = sigmoid(z.select(-1, 1) - z.select(-1, 0));  // softmax over the pair: P(bit = 1)
  // The smaller class (bit 0 on a tie, as a stable ascending sort puts it first) is removed by
  // top_k = 1, or by top_p when its probability <= 1 - top_p; the larger is then certain.
  Tensor one_larger = gt(p1, 0.5);
  Tensor small_prob = where(one_larger, 1.0 - p1, p1);
  Tensor decided;
  if (top_k == 1) decided = ones_like(one_larger);
  if (top_p > 0) {
    Tensor by_p = le(small_prob, 1.0 - top_p);
    decided = decided.defined() ? logical_or(decided, by_p) : by_p;
  }
  if (decided.defined()) p1 = where(decided, cast(one_larger, DType::F32), p1);
  return p1;
}

// ---- sampling -----------------------------------------------------------------------------------------
namespace {
double per_scale(const std::vector<double>& v, int64_t k, const char* what) {
  VT_CHECK(v.size() == 1 || static_cast<int64_t>(v.size()) > k, "sample: ", what, " has ", v.size(),
           " values; give one, or one per scale");
  return v.size() == 1 ? v[0] : v[k];
}
}  // namespace

SampleOutput sample(const Infinity& model, const Condition& cond, const Condition* uncond,
                    const ScaleSchedule& schedule, const SamplerConfig& cfg, const bsq::BsqVae* vae) {
  NoGradGuard no_grad;
  const int64_t B = cond.batch(), d = model.config().codebook_dim, K = schedule.num_scales();
  VT_CHECK(!cfg.classifier_free || (uncond && uncond->batch() == B), "sample: CFG needs ", B,
           " unconditional rows, got ", uncond ? uncond->batch() : 0);
  VT_CHECK(K <= model.config().num_levels, "sample: the schedule has ", K, " scales, the model ",
           model.config().num_levels, " level embeddings");
  check_scale_bits(cfg.gt_bits, schedule, d, "sample (gt_bits)");
  const Condition rows = cfg.classifier_free ? concat_conditions(cond, *uncond) : cond;
  const int64_t R = rows.batch();
  CachedDecoder dec(model, rows, schedule);
  ScaleAccumulator acc(B, d, schedule);
  Generator gen(cfg.seed);
  SampleOutput out;
  Tensor inputs;  // (B, n_k, d) next-scale input
  for (int64_t k = 0; k < K; ++k) {
    Tensor in = k == 0 ? Tensor() : (R == B ? inputs : cat({inputs, inputs}, 0));  // same input, both rows
    Tensor logits = dec.step(dec.tokens_for(in)) / per_scale(cfg.tau, k, "tau");  // (R, n_k, 2d)
    if (cfg.classifier_free)
      logits = cfg_combine(logits.narrow(0, 0, B), logits.narrow(0, B, B), per_scale(cfg.cfg, k, "cfg"), k, K,
                           cfg.var_linear_ramp);
    const ScaleHW s = schedule.scales[k];
    Tensor bits = k < static_cast<int64_t>(cfg.gt_bits.size())
                      ? ne(cfg.gt_bits[k].to(logits.device()), 0.0)
                      : sample_bits(logits, cfg.top_k, cfg.top_p, &gen).reshape({B, s.h, s.w, d});
    out.logits.push_back(logits);
    out.bits.push_back(bits);
    acc.add(bsq::bits_to_codes(bits), k);
    if (k + 1 < K) inputs = acc.next_input();
  }
  out.latent = acc.latent();
  if (vae) out.image = vae->decode_latent(out.latent);
  return out;
}

SampleOutput sample(const Infinity& model, const PackedText& text, const ScaleSchedule& schedule,
                    const SamplerConfig& cfg, const bsq::BsqVae* vae) {
  NoGradGuard no_grad;
  const Condition cond = model.condition(text);
  if (!cfg.classifier_free) return sample(model, cond, nullptr, schedule, cfg, vae);
  const Condition uncond = model.condition(model.unconditional_text(text.lengths()));
  return sample(model, cond, &uncond, schedule, cfg, vae);
}

std::vector<Tensor> cached_logits(const Infinity& model, const Condition& cond, const std::vector<Tensor>& bits,
                                  const ScaleSchedule& schedule) {
  NoGradGuard no_grad;
  const int64_t K = schedule.num_scales();
  check_scale_bits(bits, schedule, model.config().codebook_dim, "cached_logits");
  VT_CHECK(static_cast<int64_t>(bits.size()) >= K - 1, "cached_logits: ", bits.size(), " scales of bits, need ",
           K - 1);
  CachedDecoder dec(model, cond, schedule);
  ScaleAccumulator acc(cond.batch(), model.config().codebook_dim, schedule);
  std::vector<Tensor> logits;
  Tensor inputs;
  for (int64_t k = 0; k < K; ++k) {
    logits.push_back(dec.step(dec.tokens_for(inputs)));
    if (k + 1 < K) {
      acc.add(bsq::bits_to_codes(bits[k].to(model.lvl_embed->weight.device())), k);
      inputs = acc.next_input();
    }
  }
  return logits;
}

}  // namespace vt::infinity
