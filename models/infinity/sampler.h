// sampler.h: Infinity's scale-by-scale sampler with a KV cache and classifier-free guidance
// (infinity_bsq.md §8, §10).
//
// Rows: with CFG the batch holds 2B rows [cond; uncond] (Infinity's form). Per scale k:
//   tokens = k == 0 ? cond_BD + pos_start : word_embed(next-scale input), + lvl_embed[k]
//   every block appends its post-RoPE K, V of the n_k new tokens to its cache and attends over the
//   whole cache without a mask (a scale sees itself and every earlier scale); the cross-attention
//   K/V of the memories are computed once
//   logits = head(head_nm(x, cond_BD)) / tau_k                       (2B, n_k, 2d)
//   CFG:  l = cfg_k l_cond + (1 - cfg_k) l_uncond                      (Infinity, constant cfg)
//         or VAR's ramp t = cfg k / (K - 1), l = (1 + t) l_cond - t l_uncond
//   per bit: p = softmax(l0, l1); top_k 1 keeps the larger (>= 2 is a no-op); top_p removes the
//   smaller class when its probability <= 1 - top_p; then bit = [u < p(bit = 1)], u from vt's Philox
//   stream seeded by `seed`
//   codes_k = (2 bits - 1) / sqrt(d); the next input is bilinear(S -> scale k + 1), the SAME for the
//   cond and uncond rows
// After the last scale S is the VAE decoder's input (clamped image when a BSQ-VAE is given).
#pragma once
#include <cstdint>
#include <vector>

#include "bsq_vae/bsq_vae.h"
#include "infinity/infinity.h"

namespace vt {
class Generator;
}

namespace vt::infinity {

// The KV-cached forward of one image batch, one scale per step().
class CachedDecoder {
 public:
  // cond: the rows to decode (2B rows for CFG); the memory K/V and cond6 are computed here, once.
  CachedDecoder(const Infinity& model, const Condition& cond, const ScaleSchedule& schedule);
  // tokens: (R, n_k, C) of the next scale k, before the level embedding -> logits (R, n_k, 2d).
  Tensor step(const Tensor& tokens);
  // Embedded tokens of scale k from next-scale inputs (R, n_k, d), or the start token for k = 0.
  Tensor tokens_for(const Tensor& inputs) const;
  int64_t next_scale() const { return k_; }
  const std::vector<nn::KVCache>& caches() const { return caches_; }

 private:
  const Infinity* model_;
  ScaleSchedule schedule_;
  Condition cond_;
  Tensor cond6_;
  std::vector<CrossKV> ca_kv_;
  nn::RopeCosSin rope_;
  std::vector<nn::KVCache> caches_;
  int64_t k_ = 0;
};

struct SamplerConfig {
  std::vector<double> cfg = {3.0};  // one value for every scale, or one per scale
  std::vector<double> tau = {1.0};  // logits are divided by tau_k before CFG
  bool var_linear_ramp = false;     // VAR's CFG ramp instead of Infinity's constant form
  bool classifier_free = true;      // false: B rows only, no uncond pass (cfg unused)
  int64_t top_k = 0;                // 0: off
  double top_p = 0.0;               // 0: off (released scripts: 0.97)
  uint64_t seed = 0;
  // Teacher forcing at inference (upstream gt_leak): the first gt_bits.size() scales take these
  // bits (B, h_k, w_k, d) instead of sampled ones.
  std::vector<Tensor> gt_bits;
};

struct SampleOutput {
  std::vector<Tensor> bits;    // per scale (B, h_k, w_k, d) Bool
  std::vector<Tensor> logits;  // per scale (B, n_k, 2d): the guided, tau-scaled logits sampled from
  Tensor latent;               // S: (B, d, H, W), the decoder input
  Tensor image;                // (B, 3, 16 H, 16 W) in [-1, 1] when a VAE was given
};

// cond: B rows; uncond: B rows (needed when cfg.classifier_free). vae: optional decoder.
SampleOutput sample(const Infinity& model, const Condition& cond, const Condition* uncond,
                    const ScaleSchedule& schedule, const SamplerConfig& cfg, const bsq::BsqVae* vae = nullptr);
// From condition text: uncond rows are cfg_uncond[:T_b] with each sample's length (Infinity's rule).
SampleOutput sample(const Infinity& model, const PackedText& text, const ScaleSchedule& schedule,
                    const SamplerConfig& cfg, const bsq::BsqVae* vae = nullptr);

// The guided logits of scale k of K (cond, uncond: same shape).
Tensor cfg_combine(const Tensor& cond_logits, const Tensor& uncond_logits, double cfg, int64_t k, int64_t K,
                   bool var_linear_ramp);
// logits (..., 2d) -> bits (..., d) Bool, with the per-bit top-k / top-p rules above.
Tensor sample_bits(const Tensor& logits, int64_t top_k, double top_p, Generator* gen);
// The probability of each bit being 1 after the top-k / top-p rules: (..., 2d) -> (..., d) f32.
// sample_bits draws bit = [u < p] with u uniform in [0, 1).
Tensor bit_probabilities(const Tensor& logits, int64_t top_k, double top_p);

// The KV-cached logits of every scale (no CFG, tau 1) with the given bits as the inputs: equals
// the teacher-forced forward (tests; upstream's gt_leak = K).
std::vector<Tensor> cached_logits(const Infinity& model, const Condition& cond, const std::vector<Tensor>& bits,
                                  const ScaleSchedule& schedule);

}  // namespace vt::infinity
