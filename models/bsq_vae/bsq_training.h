// bsq_training.h: the differentiable (training) forward of the BSQ-VAE: the same multi-scale
// quantisation as multiscale_bsq.h, with a straight-through estimator so that the reconstruction
// loss reaches the encoder.
//
//   image (B, 3, H, W) --encoder--> f (B, d, h, w)
//     R = f, F = 0; for each scale k:
//       r_k = area(R -> (h_k, w_k))                 (skipped at the full grid)
//       u_k = r_k / max(||r_k||, 1e-12)             L2 over the d channels; differentiable
//       q_k = ST(sign(u_k) / sqrt(d); u_k)          value: the sign code; gradient: identity to u_k
//       Q_k = bilinear_up(q_k -> (h, w))            (skipped at the full grid)
//       R = R - stopgrad(Q_k),  F = F + Q_k
//   --decoder--> reconstruction (B, 3, H, W), not clamped
//
// Value: every step is the op sequence of multiscale_quantize() on the same dtype, and ST returns
// the code tensor itself, so F equals the inference latent bit for bit (upstream's
// `u + (q - u).detach()` can differ from q by an ulp; the gradient is the same).
// Gradient (upstream MultiScaleBSQ with its default remove_residual_detach=False): dF/df is the
// sum over scales of up_k . d(normalize)/dr . area_k, each scale seeing f through its own
// residual only, because earlier scales' codes are subtracted as constants.
//
// Shapes as in multiscale_bsq.h. The quantiser runs in f's dtype (f32 for the VAE, as the
// reference; f64 in gradient checks).
#pragma once
#include <vector>

#include "bsq_vae/bsq_vae.h"

namespace vt::bsq {

// Straight-through estimator: returns a tensor with `value`'s values whose gradient passes
// unchanged to `through` (same shape); `value` itself gets no gradient.
Tensor straight_through(const Tensor& value, const Tensor& through);

// One scale of the training quantiser.
struct BsqTrainScale {
  Tensor u;      // (B, d, h_k, w_k): the L2-normalised residual, differentiable w.r.t. f
  Tensor codes;  // (B, d, h_k, w_k): sign(u) / sqrt(d), a constant (what the commitment term pulls u to)
  Tensor bits;   // (B, h_k, w_k, d) Bool, identical to multiscale_quantize()'s
};

struct MultiScaleTrainOutput {
  std::vector<BsqTrainScale> scales;
  Tensor quantized;  // F: (B, d, H, W), the decoder input, with the straight-through gradient
};

// f: (B, d, H, W) f32 or f64; the schedule's last scale must be (H, W).
MultiScaleTrainOutput multiscale_quantize_train(const Tensor& f, const std::vector<infinity::ScaleHW>& scales);

struct BsqVaeTrainForward {
  Tensor latent;                // f: (B, d, h, w), the encoder output
  MultiScaleTrainOutput quant;  // per-scale u, codes, bits and F
  Tensor reconstruction;        // (B, 3, H, W) decoder(F), NOT clamped (upstream's training loss reads it so)
};

// image: (B, 3, H, W) in [-1, 1]; the encoder runs in f32 as encode_latent() does. clamp(
// reconstruction, -1, 1) equals decode_latent(multiscale_quantize(encode_latent(image)).quantized).
BsqVaeTrainForward bsq_vae_train_forward(const BsqVae& vae, const Tensor& image,
                                         const std::vector<infinity::ScaleHW>& scales);

}  // namespace vt::bsq
