// self_correction.h: the training inputs and loss of Infinity (infinity_bsq.md §3.3, §8, §9).
//
// Next-scale inputs (§8): with S (B, d, H, W) = 0 on the full latent grid, after scale k
//   S += bilinear_up(codes_k -> (H, W))          (identity at the full grid)
//   x_{k+1} = bilinear(S -> (h_{k+1}, w_{k+1}))   (align_corners=False, no antialias: trilinear with
//                                                 T = 1 upstream, which equals bilinear)
// and the tokens of scale k+1 are x_{k+1} in raster order, (B, h w, d). ScaleAccumulator does this
// for the sampler and for teacher forcing from given bits.
//
// Bitwise self-correction (§9.1, upstream flip_requant): from the continuous latent f, with cum = 0,
// for each scale k
//   res = f - cum, area-downsampled to (h_k, w_k) (not at the full grid)
//   bits_k = BSQ(res)                             -> the LABELS of scale k
//   for k < noise_apply_layers: p ~ Uniform{0, 0.01, ..., strength} (one draw per scale for the whole
//   batch); each bit flips with probability p; with requant the flipped bits give the codes
//   cum += bilinear_up(codes)                     -> the teacher input of scale k+1 = bilinear(cum)
// so later labels are residuals against the corrupted accumulation: the model learns to correct.
//
// Loss (§9.2): per bit a 2-way cross-entropy; VARGPT takes the uniform mean over all bits (its
// reweighting is a no-op, vargpt.md Q9); Infinity's reweight_loss_by_scale weighs the tokens of
// scale k by sqrt(h_K w_K) / sqrt(h_k w_k), normalised to sum 1 per sample.
#pragma once
#include <vector>

#include "infinity/infinity.h"

namespace vt {
class Generator;
}

namespace vt::infinity {

class ScaleAccumulator {
 public:
  // batch B, d bits, on `schedule` (whose last scale is the latent grid (H, W)).
  ScaleAccumulator(int64_t batch, int64_t d, const ScaleSchedule& schedule);
  // codes_k (B, d, h_k, w_k) of scale k (called for k = 0, 1, ... in order).
  void add(const Tensor& codes, int64_t k);
  // The tokens of scale k + 1 from the accumulation so far: (B, h w, d).
  Tensor next_input() const;
  const Tensor& latent() const { return sum_; }  // S: (B, d, H, W)

 private:
  Tensor sum_;
  ScaleSchedule schedule_;
  int64_t next_scale_ = 0;
};

// Teacher inputs of scales 1..K-1 from the bits of each scale ((B, h_k, w_k, d), e.g. a VAE's
// multiscale_quantize bits): (B, L - 1, d). Errors name a scale whose bits do not fit the schedule.
Tensor teacher_inputs_from_bits(const std::vector<Tensor>& bits, const ScaleSchedule& schedule);
// Checks per-scale bits against a schedule and d (error naming the scale and the expected shape).
void check_scale_bits(const std::vector<Tensor>& bits, const ScaleSchedule& schedule, int64_t d, const char* where);

struct SelfCorrectionConfig {
  int64_t noise_apply_layers = 13;    // scales k < this are corrupted (13 = all, upstream's images)
  double noise_apply_strength = 0.3;  // the largest flip probability
  bool requant = true;                // the flipped bits define the accumulated codes
};

struct TeacherBatch {
  Tensor inputs;                   // (B, L - 1, d) f32: teacher-forced inputs of scales 1..K-1
  Tensor labels;                   // (B, L, d) Bool: bits of every scale
  std::vector<double> flip_prob;  // per scale (0 past noise_apply_layers)
};

// f: (B, d, H, W) continuous latent, last scale of the schedule = (H, W). Seeded through `gen`.
TeacherBatch bitwise_self_correction(const Tensor& f, const ScaleSchedule& schedule,
                                     const SelfCorrectionConfig& cfg = {}, Generator* gen = nullptr);
// The same with explicit flip masks (B, h_k, w_k, d), one per corrupted scale (fewer masks than
// scales: the rest are not corrupted). For parity tests against a reference given the same draws.
TeacherBatch bitwise_self_correction(const Tensor& f, const ScaleSchedule& schedule,
                                     const std::vector<Tensor>& flip_masks, bool requant = true);

struct LossOptions {
  bool reweight_by_scale = false;  // Infinity's per-scale token weights (off: VARGPT's uniform mean)
  double label_smoothing = 0;
};

struct TrainingOutput {
  Tensor loss;                 // 0-d, differentiable
  Tensor logits;               // (B, L, 2d)
  Tensor accuracy;             // 0-d: bit accuracy over all scales ("Accm")
  Tensor last_scale_accuracy;  // 0-d: on the last scale ("Acct")
};

// Token weights (L) of reweight_loss_by_scale, summing to 1.
Tensor scale_loss_weights(const ScaleSchedule& schedule);
// logits (B, L, 2d), labels (B, L, d) -> the loss under `opt`.
Tensor bitwise_loss(const Tensor& logits, const Tensor& labels, const ScaleSchedule& schedule,
                    const LossOptions& opt = {});
// The teacher-forced forward of all scales in one block-causal sequence, then the loss.
TrainingOutput training_forward(const Infinity& model, const Condition& cond, const TeacherBatch& batch,
                                const ScaleSchedule& schedule, const LossOptions& opt = {});

}  // namespace vt::infinity
