// vae_stage.cpp: BSQ-VAE training losses, the PatchGAN discriminator and the step; see vae_stage.h.
#include "vae_stage.h"

#include <cmath>

#include "vt/nn/conv.h"
#include "vt/nn/norm.h"
#include "vt/ops.h"
#include "vt/optim/clip.h"

namespace vt::train {

// ---- BSQ terms ----------------------------------------------------------------------------------

Tensor bsq_commitment_loss(const Tensor& u, const Tensor& codes) {
  VT_CHECK(u.shape() == codes.shape(), "bsq_commitment_loss: u ", u.shape().str(), " and codes ",
           codes.shape().str(), " differ in shape");
  return mean(square(u - codes.detach()));
}

namespace {
// h(p) = -p ln(p + 1e-8) - (1 - p) ln(1 - p + 1e-8), elementwise; upstream's get_entropy on [p, 1 - p].
Tensor binary_entropy(const Tensor& p, const Tensor& one_minus_p) {
  constexpr double kEps = 1e-8;
  return -(p * log(p + kEps) + one_minus_p * log(one_minus_p + kEps));
}
}  // namespace

BsqEntropy bsq_entropy(const Tensor& u, double inv_temperature) {
  VT_CHECK(u.dim() == 4, "bsq_entropy: expected u (B, d, h, w), got ", u.shape().str());
  const double d = static_cast<double>(u.size(1));
  // p_j = q(c_j = -1/sqrt(d) | u) = sigmoid(-4 tau u_j / sqrt(d)): (B, d, h, w)
  Tensor p = sigmoid(u * (-4.0 * inv_temperature / std::sqrt(d)));
  Tensor one_minus_p = 1.0 - p;
  BsqEntropy e;
  e.per_sample = mean(sum(binary_entropy(p, one_minus_p), {1}));  // sum over bits, mean over tokens
  // Mean assignment per bit over the batch and positions: (d); upstream averages [p, 1 - p] alike.
  e.codebook = sum(binary_entropy(mean(p, {0, 2, 3}), mean(one_minus_p, {0, 2, 3})));
  return e;
}

// ---- PatchGAN discriminator ---------------------------------------------------------------------

namespace {
// One upstream nn.Sequential slot (a conv or a norm): a weight and an optional bias.
struct SequentialSlot : nn::Module {
  Tensor weight, bias;
  SequentialSlot(Tensor w, Tensor b) {
    weight = register_parameter("weight", std::move(w));
    if (b.defined()) bias = register_parameter("bias", std::move(b));
  }
};
}  // namespace

PatchDiscriminator::PatchDiscriminator(PatchDiscriminatorConfig cfg) : cfg_(cfg) {
  VT_CHECK(cfg_.num_layers >= 1 && cfg_.base_channels > 0, "PatchDiscriminator: need num_layers >= 1 and ",
           "base_channels > 0, got ", cfg_.num_layers, " and ", cfg_.base_channels);
  int64_t index = 0;  // upstream's nn.Sequential index (activations take an index too)
  auto add = [&](int64_t in, int64_t out, int64_t stride, bool bias, bool norm, bool activation) {
    Layer l;
    const std::string name = "main." + std::to_string(index);
    auto conv = register_module(name, std::make_shared<SequentialSlot>(normal({out, in, 4, 4}, 0.0, 0.02),
                                                                     bias ? zeros({out}) : Tensor()));
    l.weight = conv->weight;  // (O, I, 4, 4)
    l.bias = conv->bias;      // (O) or undefined
    index += 1;
    if (norm) {
      VT_CHECK(out % cfg_.norm_groups == 0, "PatchDiscriminator: ", out, " channels are not divisible into ",
               cfg_.norm_groups, " norm groups");
      auto gn = register_module("main." + std::to_string(index),
                                std::make_shared<SequentialSlot>(normal({out}, 1.0, 0.02), zeros({out})));
      l.norm_weight = gn->weight;  // (O)
      l.norm_bias = gn->bias;      // (O)
      index += 1;
    }
    if (activation) index += 1;
    l.stride = stride;
    l.activation = activation;
    layers_.push_back(l);
  };
  const int64_t ndf = cfg_.base_channels;
  add(cfg_.in_channels, ndf, 2, /*bias=*/true, /*norm=*/false, /*activation=*/true);
  int64_t mult = 1;
  for (int64_t n = 1; n < cfg_.num_layers; ++n) {
    const int64_t prev = mult;
    mult = std::min<int64_t>(int64_t{1} << n, 8);
    add(ndf * prev, ndf * mult, 2, false, true, true);
  }
  const int64_t prev = mult;
  mult = std::min<int64_t>(int64_t{1} << cfg_.num_layers, 8);
  add(ndf * prev, ndf * mult, 1, false, true, true);
  add(ndf * mult, 1, 1, true, false, false);
}

Tensor PatchDiscriminator::forward(const Tensor& image) const {
  VT_CHECK(image.dim() == 4 && image.size(1) == cfg_.in_channels, "PatchDiscriminator: expected (B, ",
           cfg_.in_channels, ", H, W), got ", image.shape().str());
  Tensor h = image;
  for (const Layer& l : layers_) {
    h = nn::conv2d(h, l.weight, l.bias, nn::Conv2dOptions{l.stride, l.stride, nn::Padding2d::same(1)});
    if (l.norm_weight.defined()) h = nn::group_norm(h, cfg_.norm_groups, l.norm_weight, l.norm_bias, 1e-5);
    if (l.activation) h = relu(h) - relu(-h) * 0.2;  // leaky_relu(h, 0.2)
  }
  return h;
}

Tensor discriminator_hinge_loss(const PatchDiscriminator& disc, const Tensor& real, const Tensor& fake) {
  Tensor loss_real = mean(relu(1.0 - disc.forward(real.detach())));
  Tensor loss_fake = mean(relu(disc.forward(fake.detach()) + 1.0));
  return (loss_real + loss_fake) * 0.5;
}

// ---- loss and step ------------------------------------------------------------------------------

std::vector<infinity::ScaleHW> vae_loss_scales(const bsq::BsqVae& vae, const Tensor& images,
                                               const VaeLossOptions& options) {
  if (!options.scales.empty()) return options.scales;
  VT_CHECK(images.dim() == 4, "vae_training_loss: expected images (B, 3, H, W), got ", images.shape().str());
  VT_CHECK(vae.config().patch_size == infinity::kLatentStride, "vae_training_loss: the standard schedules assume ",
           "patch size ", infinity::kLatentStride, ", this VAE has ", vae.config().patch_size,
           "; set VaeLossOptions::scales");
  return infinity::schedule_for_image(images.size(2), images.size(3)).scales;
}

VaeLossOutput vae_training_loss(const bsq::BsqVae& vae, const Tensor& images, const VaeLossOptions& options,
                                const PatchDiscriminator* disc) {
  VT_CHECK(options.gan_weight == 0 || disc, "vae_training_loss: gan_weight is ", options.gan_weight,
           " but no discriminator was given");
  const bsq::BsqVaeTrainForward fw = bsq::bsq_vae_train_forward(vae, images, vae_loss_scales(vae, images, options));
  const Tensor x = images.to(DType::F32);
  VaeLossOutput out;
  const Tensor diff = fw.reconstruction - x;  // (B, 3, H, W)
  if (options.saturation_weight > 0) {
    // w (B, 1, H, W) = 1 + s (max_c x - min_c x) / 2, a constant of the target
    const Tensor w = (amax(x, {1}, true) - amin(x, {1}, true)) * (0.5 * options.saturation_weight) + 1.0;
    const Tensor norm = sum(w) * static_cast<double>(diff.size(1));  // sum of w over (b, c, y, x)
    out.l1 = sum(abs(diff) * w) / norm;
    out.l2 = sum(square(diff) * w) / norm;
  } else {
    out.l1 = mean(abs(diff));
    out.l2 = mean(square(diff));
  }
  {  // the forward differences of the error are those of x^ minus those of x
    const int64_t H = diff.size(2), W = diff.size(3);
    out.grad = mean(abs(diff.narrow(3, 1, W - 1) - diff.narrow(3, 0, W - 1))) +
               mean(abs(diff.narrow(2, 1, H - 1) - diff.narrow(2, 0, H - 1)));
  }

  const double K = static_cast<double>(fw.quant.scales.size());
  Tensor commit, per_sample, codebook;
  for (const bsq::BsqTrainScale& s : fw.quant.scales) {
    Tensor c = bsq_commitment_loss(s.u, s.codes);
    BsqEntropy e = bsq_entropy(s.u, options.inv_temperature);
    commit = commit.defined() ? commit + c : c;
    per_sample = per_sample.defined() ? per_sample + e.per_sample : e.per_sample;
    codebook = codebook.defined() ? codebook + e.codebook : e.codebook;
    out.bits.push_back(s.bits);
  }
  out.commit = commit / K;
  out.per_sample_entropy = per_sample / K;
  out.codebook_entropy = codebook / K;
  out.entropy = out.per_sample_entropy * options.gamma0 - out.codebook_entropy * options.gamma;
  out.gan = options.gan_weight != 0 ? -mean(disc->forward(fw.reconstruction)) : zeros({});

  // Terms with weight 0 are reported but left out of the graph.
  Tensor loss;
  for (auto [term, weight] : {std::pair{out.l1, options.l1_weight}, {out.l2, options.l2_weight},
                              {out.commit, options.commit_weight}, {out.entropy, options.entropy_weight},
                              {out.gan, options.gan_weight}, {out.grad, options.gradient_weight}}) {
    if (weight == 0) continue;
    Tensor t = term * weight;
    loss = loss.defined() ? loss + t : t;
  }
  out.loss = loss.defined() ? loss : zeros({});
  out.reconstruction = fw.reconstruction.detach();
  {
    NoGradGuard ng;
    const double mse = mean(square(clamp(out.reconstruction, -1.0, 1.0) - x)).item();
    out.psnr = 10.0 * std::log10(4.0 / std::max(mse, 1e-20));
  }
  return out;
}

VaeStepStats vae_train_step(bsq::BsqVae& vae, optim::AdamW& optimizer, const Tensor& images,
                            const VaeLossOptions& options, const VaeStepOptions& step) {
  const bool gan = options.gan_weight != 0;
  VT_CHECK(!gan || (step.discriminator && step.discriminator_optimizer), "vae_train_step: gan_weight is ",
           options.gan_weight, " but VaeStepOptions has no discriminator and discriminator optimizer");
  optimizer.zero_grad();
  VaeLossOutput out = vae_training_loss(vae, images, options, step.discriminator);
  out.loss.backward();
  const std::vector<Tensor> params = vae.parameters(/*trainable_only=*/true);
  VaeStepStats s;
  s.grad_norm = step.max_grad_norm > 0 ? optim::clip_grad_norm_(params, step.max_grad_norm) : optim::grad_norm(params);
  optimizer.step();

  if (gan) {
    step.discriminator->zero_grad();
    Tensor d_loss = discriminator_hinge_loss(*step.discriminator, images.to(DType::F32), out.reconstruction);
    d_loss.backward();
    step.discriminator_optimizer->step();
    s.discriminator_loss = d_loss.item();
  }
  s.loss = out.loss.item(), s.l1 = out.l1.item(), s.l2 = out.l2.item(), s.commit = out.commit.item();
  s.entropy = out.entropy.item(), s.gan = out.gan.item(), s.grad = out.grad.item(), s.psnr = out.psnr;
  s.per_sample_entropy = out.per_sample_entropy.item(), s.codebook_entropy = out.codebook_entropy.item();
  return s;
}

}  // namespace vt::train
