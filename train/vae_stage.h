// vae_stage.h: the losses and the optimizer step of BSQ-VAE (tokenizer) training.
//
//   images (B, 3, H, W) in [-1, 1] --bsq_vae_train_forward (straight-through, bsq_training.h)-->
//     reconstruction x^ (not clamped), and per scale k = 1..K the normalised residual u_k (B, d, h_k, w_k)
//     and its sign code q_k = sign(u_k) / sqrt(d)
//   loss = w_l1 L1 + w_l2 L2 + w_commit C + w_entropy E + w_gan G + w_grad GD
//
// The terms (all means are plain means over every listed index; ln is the natural log):
//   L1 = mean_{b,c,y,x} |x^ - x|              L2 = mean_{b,c,y,x} (x^ - x)^2
//        with saturation_weight s > 0 both become weighted means, sum w |x^ - x| / sum w with the
//        per-pixel w = 1 + s (max_c x - min_c x) / 2 (the target's saturation, 0 for greys, up to 1):
//        vt's addition, which gives small coloured objects on grey ground a say in the loss
//   C  = 1/K sum_k mean_{b,j,y,x} (u_kj - stopgrad(q_kj))^2
//        BSQ's commitment term (Zhao et al. 2024, "Image and Video Tokenization with Binary
//        Spherical Quantization", arXiv 2406.07548, §4) in the form of the Infinity/BitVAE
//        quantiser: F.mse_loss(u, q.detach()), i.e. a mean over the d bits too, so C = ||u - q||^2 / d
//        per token (the BSQ-ViT reference sums over d instead: multiply w_commit by d to get it).
//   E  = 1/K sum_k ( gamma0 H_sample,k - gamma H_codebook,k )
//        BSQ's entropy regulariser E_u[H(q(c|u))] - gamma H(E_u[q(c|u)]) (ibid. §4, after LFQ's
//        entropy penalty in MAGVIT-v2) with the soft assignment q(c|u) proportional to exp(-tau ||u - c||^2) over
//        the 2^d codes c in {-1/sqrt(d), +1/sqrt(d)}^d. Since ||u - c||^2 = 2 - 2 c.u, q factorises
//        over bits: q(c_j = -1/sqrt(d) | u) = p_j = sigmoid(-4 tau u_j / sqrt(d)). Then
//          H_sample   = mean_{b,y,x} sum_j h(p_j)          exact: the entropy of a product is the sum
//          H_codebook = sum_j h(mean_{b,y,x} p_j)          the bitwise (factorised) approximation of
//                       H(E_u[q(c|u)]), an upper bound, which keeps d = 32 (2^32 codes) tractable
//        with h(p) = -p ln(p + 1e-8) - (1 - p) ln(1 - p + 1e-8) (upstream's 1e-8 keeps saturated
//        sigmoids finite). The codebook mean runs over the batch and the positions of scale k.
//        The sample entropy is minimised (confident bits), the codebook entropy maximised (all codes used).
//   G  = -mean D(x^)                           hinge generator loss of a PatchGAN D (off by default)
//   GD = mean_{b,c,y,x} |dx x^ - dx x| + mean_{b,c,y,x} |dy x^ - dy x|   (off by default)
//        the gradient difference loss (Mathieu, Couprie and LeCun 2016, arXiv 1511.05440, alpha = 1)
//        with forward differences dx x = x[.., x+1] - x[.., x], dy likewise; it weighs edges, where
//        a pixel loss on a mostly flat image gives a small object little say
// and the discriminator's own loss (its separate step) is the hinge
//   L_D = 0.5 (mean relu(1 - D(x)) + mean relu(1 + D(stopgrad(x^)))).
//
// Weights against upstream (bitvae d_vae.py + multiscale_bsq.py): its quantiser loss is
//   lfq_weight * mean_k( beta commit_k + 0.1 zeta (gamma0 H_sample,k - gamma H_codebook,k) / tau )
// so w_commit = lfq_weight beta and w_entropy = lfq_weight 0.1 zeta / tau; with beta = 0.25,
// zeta = 1, tau = 100 the defaults below are lfq_weight = 1. Perceptual (LPIPS) loss, LeCam
// regularisation, adaptive GAN weighting and random bit flips are not implemented.
#pragma once
#include <optional>
#include <vector>

#include "bsq_vae/bsq_training.h"
#include "vt/nn/module.h"
#include "vt/optim/adamw.h"

namespace vt::train {

struct VaeLossOptions {
  double l1_weight = 1.0;
  double l2_weight = 0.0;
  double commit_weight = 0.25;    // beta
  double entropy_weight = 1e-3;   // on E; upstream's 0.1 zeta / tau
  double gamma0 = 1.0;            // per-sample entropy (minimised)
  double gamma = 1.0;             // codebook entropy (maximised)
  double inv_temperature = 100.0; // tau of the soft assignment
  double gan_weight = 0.0;        // 0: no discriminator needed
  double gradient_weight = 0.0;   // GD, vt's addition (upstream has LPIPS instead, not implemented)
  double saturation_weight = 0.0; // s of the weighted L1/L2 above (0: plain means, upstream's)
  // Quantiser schedule, ending at the latent grid; empty: Infinity's standard schedule for the
  // image size (patch 16 only, as BsqVae::encode_bits).
  std::vector<infinity::ScaleHW> scales;
};

struct VaeLossOutput {
  Tensor loss;                 // 0-d, differentiable w.r.t. the VAE (and D, through G)
  Tensor l1, l2, commit, entropy, gan, grad;  // 0-d terms as defined above (gan = 0 when off)
  Tensor per_sample_entropy;   // 0-d: 1/K sum_k H_sample,k (nats, at most d ln 2)
  Tensor codebook_entropy;     // 0-d: 1/K sum_k H_codebook,k
  Tensor reconstruction;       // (B, 3, H, W) x^, detached, not clamped
  std::vector<Tensor> bits;    // per scale (B, h_k, w_k, d) Bool: the image's tokens
  double psnr = 0;             // 10 log10(2^2 / mean (clamp(x^) - x)^2), dB for [-1, 1] images
};

// ---- the BSQ terms of one scale (u, codes: (B, d, h, w)) -------------------------------------
// mean (u - stopgrad(codes))^2; the gradient reaches u only.
Tensor bsq_commitment_loss(const Tensor& u, const Tensor& codes);
struct BsqEntropy {
  Tensor per_sample;  // 0-d H_sample
  Tensor codebook;    // 0-d H_codebook
};
BsqEntropy bsq_entropy(const Tensor& u, double inv_temperature);

// ---- PatchGAN discriminator (pix2pix NLayerDiscriminator, as upstream's image discriminator) ---
//   main.0: conv 4x4 s2 p1 (C -> ndf) + bias, leaky_relu 0.2
//   n = 1 .. L-1: conv 4x4 s2 p1 (ndf m_{n-1} -> ndf m_n), norm, leaky_relu     m_n = min(2^n, 8)
//   conv 4x4 s1 p1 (-> ndf m_L), norm, leaky_relu; conv 4x4 s1 p1 (-> 1) + bias: one logit per patch
// Tensor names follow upstream's nn.Sequential indices (main.<i>.weight). Upstream's norm is
// BatchNorm; vt has none, so it is GroupNorm(norm_groups) here (weights ~ N(1, 0.02), bias 0, as
// upstream initialises its BatchNorm). Conv weights ~ N(0, 0.02); conv biases start at 0.
struct PatchDiscriminatorConfig {
  int64_t in_channels = 3;
  int64_t base_channels = 64;  // ndf
  int64_t num_layers = 3;      // L; an input side must exceed about 2^(L+1) for a non-empty map
  int64_t norm_groups = 32;
};

class PatchDiscriminator : public nn::Module {
 public:
  explicit PatchDiscriminator(PatchDiscriminatorConfig cfg = {});
  Tensor forward(const Tensor& image) const;  // (B, C, H, W) -> (B, 1, H', W') logits

 private:
  struct Layer {
    Tensor weight, bias;                // conv (O, I, 4, 4), (O) or undefined
    Tensor norm_weight, norm_bias;      // (O) or undefined
    int64_t stride = 1;
    bool activation = true;
  };
  PatchDiscriminatorConfig cfg_;
  std::vector<Layer> layers_;
};

// L_D above; the gradient reaches D only.
Tensor discriminator_hinge_loss(const PatchDiscriminator& disc, const Tensor& real, const Tensor& fake);

// ---- the stage's loss and step ---------------------------------------------------------------
// The schedule the loss quantises `images` with (VaeLossOptions::scales, or the standard one).
std::vector<infinity::ScaleHW> vae_loss_scales(const bsq::BsqVae& vae, const Tensor& images,
                                               const VaeLossOptions& options);

// images: (B, 3, H, W) in [-1, 1]; `disc` is required when options.gan_weight > 0.
VaeLossOutput vae_training_loss(const bsq::BsqVae& vae, const Tensor& images, const VaeLossOptions& options,
                                const PatchDiscriminator* disc = nullptr);

struct VaeStepOptions {
  double max_grad_norm = 0;                           // global-norm clip of the VAE gradients; 0: none
  PatchDiscriminator* discriminator = nullptr;        // both needed when gan_weight > 0
  optim::AdamW* discriminator_optimizer = nullptr;
};

struct VaeStepStats {
  double loss = 0, l1 = 0, l2 = 0, commit = 0, entropy = 0, gan = 0, grad = 0;
  double per_sample_entropy = 0, codebook_entropy = 0, psnr = 0;
  double grad_norm = 0;          // of the VAE gradients, before clipping
  double discriminator_loss = 0; // L_D (0 when the GAN is off)
};

// One optimizer step of the stage, in order: zero grads, forward, backward, clip, AdamW step of
// the VAE; then, with the GAN on, zero D's grads (the generator term left some), L_D on the same
// (detached) reconstruction, backward, AdamW step of D.
VaeStepStats vae_train_step(bsq::BsqVae& vae, optim::AdamW& optimizer, const Tensor& images,
                            const VaeLossOptions& options, const VaeStepOptions& step = {});

}  // namespace vt::train
