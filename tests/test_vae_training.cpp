// BSQ-VAE training (train/vae_stage.h, models/bsq_vae/bsq_training.h): the BSQ entropy and
// commitment terms against hand computations in f64 and their gradients against central
// differences (with negative controls that must fail), the straight-through forward against the
// inference encode -> quantise -> decode path (bit for bit) and its gradient against the
// surrogate it stands for, the PatchGAN discriminator and its hinge loss, and a tiny VAE that
// overfits 4 images with AdamW.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "bsq_vae/bsq_training.h"
#include "vae_stage.h"
#include "vt/autograd.h"
#include "vt/gradcheck.h"
#include "vt/nn/interpolate.h"
#include "vt/ops.h"
#include "vt/optim/adamw.h"
#include "vt/random.h"

using namespace vt;
using infinity::ScaleHW;

namespace {

double max_abs_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  return amax(abs(a.to(DType::F64) - b.to(DType::F64))).item();
}

// u: (B=2, d=3, h=1, w=2) with mixed signs and magnitudes, none near 0.
const std::vector<double> kU = {0.9, -0.2, 0.4, -0.7, 0.05, -0.3, 0.6, 0.8, -0.5, 0.25, -0.35, 0.15};
Tensor small_u() { return from_vector(kU, {2, 3, 1, 2}); }
double u_at(int64_t b, int64_t j, int64_t x) { return kU[(b * 3 + j) * 2 + x]; }

double h_nats(double p) { return -p * std::log(p + 1e-8) - (1 - p) * std::log(1 - p + 1e-8); }

bsq::BsqVaeConfig tiny_vae_config() {
  bsq::BsqVaeConfig c;
  c.base_channels = 32;
  c.channel_mult = {1, 1};  // patch 2: 16x16 images -> 8x8 latents
  c.num_res_blocks = 1;
  c.codebook_dim = 16;
  c.patch_size = 2;
  return c;
}
const std::vector<ScaleHW> kTinyScales = {{1, 1}, {2, 2}, {4, 4}, {8, 8}};

// Four 16x16 test images in [-0.9, 0.9]: a colour gradient each, plus a coloured square.
Tensor four_images() {
  std::vector<float> v(4 * 3 * 16 * 16);
  for (int i = 0; i < 4; ++i)
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 16; ++y)
        for (int x = 0; x < 16; ++x) {
          double g = 0.7 * std::sin(0.25 * (i + 1) * x + 0.2 * (3 - i) * y + 1.3 * c + i);
          const int x0 = 2 + 3 * i, y0 = 8 - 2 * i;
          if (x >= x0 && x < x0 + 6 && y >= y0 && y < y0 + 5) g = (c == i % 3) ? 0.9 : -0.6;
          v[((i * 3 + c) * 16 + y) * 16 + x] = static_cast<float>(g);
        }
  return from_vector(v, {4, 3, 16, 16});
}

// Normalise over channels exactly as the quantiser does.
Tensor normalize_channels(const Tensor& r) {
  return r / clamp(sqrt(sum(square(r), {1}, true)), 1e-12, std::nullopt);
}

}  // namespace

TEST_CASE("BSQ entropy and commitment terms equal a hand computation (f64)") {
  const double tau = 1.5, d = 3;
  // p_j = sigmoid(-4 tau u_j / sqrt(d)) = q(c_j = -1/sqrt(d) | u)
  auto p_of = [&](double u) { return 1.0 / (1.0 + std::exp(4 * tau * u / std::sqrt(d))); };
  double per_sample = 0, commit = 0;
  std::vector<double> p_mean(3, 0.0);
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t x = 0; x < 2; ++x)
      for (int64_t j = 0; j < 3; ++j) {
        const double u = u_at(b, j, x), p = p_of(u), q = (u > 0 ? 1 : -1) / std::sqrt(d);
        per_sample += h_nats(p) / 4;  // sum over bits, mean over the 4 tokens
        p_mean[j] += p / 4;
        commit += (u - q) * (u - q) / 12;  // mean over all 12 elements
      }
  double codebook = 0;
  for (double p : p_mean) codebook += h_nats(p);

  const Tensor u = small_u();
  const train::BsqEntropy e = train::bsq_entropy(u, tau);
  CHECK(e.per_sample.item() == doctest::Approx(per_sample).epsilon(1e-13));
  CHECK(e.codebook.item() == doctest::Approx(codebook).epsilon(1e-13));
  // Sanity of the hand values: 0 <= H_sample <= d ln 2 and the codebook term is within bounds too.
  CHECK(per_sample > 0);
  CHECK(codebook <= d * std::log(2.0) + 1e-12);
  const Tensor codes = (cast(gt(u, 0.0), DType::F64) * 2.0 - 1.0) / std::sqrt(d);
  CHECK(train::bsq_commitment_loss(u, codes).item() == doctest::Approx(commit).epsilon(1e-13));
  // The ln is natural (nats): the same numbers in bits would not match.
  CHECK(e.per_sample.item() != doctest::Approx(per_sample / std::log(2.0)).epsilon(1e-6));
}

TEST_CASE("BSQ entropy and commitment gradients pass gradcheck (f64); wrong gradients fail") {
  const double tau = 1.5;
  const Tensor u = small_u().requires_grad_();
  const Tensor codes = (cast(gt(u.detach(), 0.0), DType::F64) * 2.0 - 1.0) / std::sqrt(3.0);

  auto entropy_terms = [&](const std::vector<Tensor>& in) {
    train::BsqEntropy e = train::bsq_entropy(in[0], tau);
    return stack({e.per_sample, e.codebook});
  };
  GradcheckResult r = gradcheck(entropy_terms, {u});
  CHECK_MESSAGE(r.ok, r.message);

  auto commitment = [&](const std::vector<Tensor>& in) { return train::bsq_commitment_loss(in[0], codes); };
  r = gradcheck(commitment, {u});
  CHECK_MESSAGE(r.ok, r.message);

  // Through the L2 normalisation, from the raw residual r, with gamma weights: what the VAE sees.
  Tensor raw = (small_u() * 3.0 + 0.1).requires_grad_();
  auto full_term = [&](const std::vector<Tensor>& in) {
    Tensor un = normalize_channels(in[0]);
    Tensor c = (cast(gt(un.detach(), 0.0), DType::F64) * 2.0 - 1.0) / std::sqrt(3.0);
    train::BsqEntropy e = train::bsq_entropy(un, 100.0 / 8);
    return stack({e.per_sample * 0.7 - e.codebook * 1.3, train::bsq_commitment_loss(un, c)});
  };
  r = gradcheck(full_term, {raw});
  CHECK_MESSAGE(r.ok, r.message);

  // Negative control 1: the codebook term with its mean assignment detached (a forgotten chain
  // term). Same values, wrong analytic gradient: gradcheck must catch it.
  auto forgot_codebook_chain = [&](const std::vector<Tensor>& in) {
    train::BsqEntropy e = train::bsq_entropy(in[0], tau);
    Tensor p = sigmoid(in[0] * (-4.0 * tau / std::sqrt(3.0)));
    Tensor pm = mean(p, {0, 2, 3}).detach();
    Tensor cb = sum(-(pm * log(pm + 1e-8) + (1.0 - pm) * log(1.0 - pm + 1e-8)));
    CHECK(cb.item() == doctest::Approx(e.codebook.item()).epsilon(1e-12));
    return stack({e.per_sample, cb});
  };
  r = gradcheck(forgot_codebook_chain, {u});
  CHECK_FALSE(r.ok);

  // Negative control 2: the right value with an analytic gradient 1% too large.
  auto scaled_grad = [&](const std::vector<Tensor>& in) {
    Tensor out = train::bsq_entropy(in[0].detach(), tau).per_sample;
    if (!grad_enabled()) return out;  // gradcheck's numeric passes
    Tensor x = in[0].detach().clone().requires_grad_();
    train::bsq_entropy(x, tau).per_sample.backward();
    const Tensor right = x.grad();
    autograd::record("wrong_entropy_grad", out, {in[0]}, [right](const Tensor& g) { return grads{right * g * 1.01}; });
    return out;
  };
  r = gradcheck(scaled_grad, {u});
  CHECK_FALSE(r.ok);
}

TEST_CASE("straight-through multi-scale quantiser: inference values, surrogate gradient") {
  Generator gen(7);
  const Tensor f = randn({1, 4, 4, 4}, DType::F64, &gen);  // (B, d, H, W)
  const std::vector<ScaleHW> scales = {{1, 1}, {2, 2}, {4, 4}};

  // Values: bits and F equal multiscale_quantize's, which runs in f32, on an f32 latent.
  {
    const Tensor f32 = f.to(DType::F32);
    bsq::MultiScaleTrainOutput t = bsq::multiscale_quantize_train(f32, scales);
    bsq::MultiScaleOutput ref = bsq::multiscale_quantize(f32, scales);
    REQUIRE(t.scales.size() == ref.bits.size());
    for (size_t k = 0; k < ref.bits.size(); ++k) CHECK(max_abs_diff(t.scales[k].bits, ref.bits[k]) == 0);
    CHECK(max_abs_diff(t.quantized, ref.quantized) == 0);
  }

  // Gradient: d F / d f through the STE equals the derivative of the surrogate that replaces each
  // code by its normalised residual, sum_k up(normalize(area(f - C_k))), with C_k the (constant)
  // codes subtracted before scale k; gradcheck confirms the surrogate's autograd is a derivative.
  std::vector<Tensor> before(scales.size());
  {
    NoGradGuard ng;
    Tensor acc = zeros(f.shape(), DType::F64);
    bsq::MultiScaleTrainOutput t = bsq::multiscale_quantize_train(f, scales);
    for (size_t k = 0; k < scales.size(); ++k) {
      before[k] = acc.clone();
      const Tensor& c = t.scales[k].codes;
      acc = acc + (c.size(2) == 4 ? c : nn::interpolate(c, {4, 4}, "bilinear"));
    }
  }
  auto surrogate = [&](const std::vector<Tensor>& in) {
    Tensor out = zeros(in[0].shape(), DType::F64);
    for (size_t k = 0; k < scales.size(); ++k) {
      Tensor r = in[0] - before[k];
      if (scales[k].h != 4) r = nn::interpolate(r, {scales[k].h, scales[k].w}, "area");
      Tensor u = normalize_channels(r);
      out = out + (scales[k].h == 4 ? u : nn::interpolate(u, {4, 4}, "bilinear"));
    }
    return out;
  };
  GradcheckResult r = gradcheck(surrogate, {f.clone().requires_grad_()});
  CHECK_MESSAGE(r.ok, r.message);

  const Tensor w = randn({1, 4, 4, 4}, DType::F64, &gen);
  Tensor fa = f.clone().requires_grad_(), fb = f.clone().requires_grad_();
  sum(bsq::multiscale_quantize_train(fa, scales).quantized * w).backward();
  sum(surrogate({fb}) * w).backward();
  REQUIRE(fa.grad().defined());
  CHECK(max_abs_diff(fa.grad(), fb.grad()) < 1e-12);
  CHECK(amax(abs(fa.grad())).item() > 1e-3);  // the gradient really flows
}

TEST_CASE("training forward equals inference encode -> quantise -> decode, bit for bit") {
  manual_seed(11);
  bsq::BsqVae vae(tiny_vae_config());
  Generator gen(3);
  const Tensor images = uniform({2, 3, 16, 16}, -1, 1, DType::F32, &gen);
  const bsq::BsqVaeTrainForward t = bsq::bsq_vae_train_forward(vae, images, kTinyScales);
  Tensor ref_image;
  bsq::MultiScaleOutput ref;
  {
    NoGradGuard ng;
    ref = bsq::multiscale_quantize(vae.encode_latent(images), kTinyScales);
    ref_image = vae.decode_latent(ref.quantized);
  }
  CHECK(t.reconstruction.requires_grad());
  for (size_t k = 0; k < kTinyScales.size(); ++k) CHECK(max_abs_diff(t.quant.scales[k].bits, ref.bits[k]) == 0);
  CHECK(max_abs_diff(t.quant.quantized, ref.quantized) == 0);
  CHECK(max_abs_diff(clamp(t.reconstruction, -1.0, 1.0), ref_image) == 0);
  CHECK(max_abs_diff(t.quant.quantized, bsq::multiscale_bits_to_latent(ref.bits)) == 0);

  // The loss's bits are the tokens encode_bits() gives.
  train::VaeLossOptions o;
  o.scales = kTinyScales;
  train::VaeLossOutput out = train::vae_training_loss(vae, images, o);
  const std::vector<Tensor> bits = vae.encode_bits(images, kTinyScales);
  for (size_t k = 0; k < bits.size(); ++k) CHECK(max_abs_diff(out.bits[k], bits[k]) == 0);
  // The reported total is the weighted sum of the reported terms.
  const double expect = o.l1_weight * out.l1.item() + o.commit_weight * out.commit.item() +
                        o.entropy_weight * out.entropy.item();
  CHECK(out.loss.item() == doctest::Approx(expect).epsilon(1e-6));
  CHECK(out.per_sample_entropy.item() <= 16 * std::log(2.0) + 1e-6);

  // Every encoder and decoder parameter gets a gradient from the total loss.
  out.loss.backward();
  int64_t without = 0;
  for (const auto& [name, p] : vae.named_parameters()) without += p.grad().defined() ? 0 : 1;
  CHECK(without == 0);
}

TEST_CASE("gradient difference loss: the value of a hand computation, its weight in the total") {
  manual_seed(21);
  bsq::BsqVae vae(tiny_vae_config());
  const Tensor x = four_images();
  train::VaeLossOptions o;
  o.scales = kTinyScales;
  const train::VaeLossOutput off = train::vae_training_loss(vae, x, o);
  // By hand in f64 from the reconstruction: mean |dx x^ - dx x| over (4, 3, 16, 15) plus the dy mean.
  const std::vector<double> r = off.reconstruction.to(DType::F64).contiguous().tolist<double>();
  const std::vector<double> t = x.to(DType::F64).contiguous().tolist<double>();
  auto at = [](const std::vector<double>& v, int i, int c, int y, int xx) { return v[((i * 3 + c) * 16 + y) * 16 + xx]; };
  double gx = 0, gy = 0;
  for (int i = 0; i < 4; ++i)
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 16; ++y)
        for (int xx = 0; xx < 16; ++xx) {
          if (xx + 1 < 16) gx += std::abs((at(r, i, c, y, xx + 1) - at(r, i, c, y, xx)) - (at(t, i, c, y, xx + 1) - at(t, i, c, y, xx)));
          if (y + 1 < 16) gy += std::abs((at(r, i, c, y + 1, xx) - at(r, i, c, y, xx)) - (at(t, i, c, y + 1, xx) - at(t, i, c, y, xx)));
        }
  const double want = gx / (4 * 3 * 16 * 15) + gy / (4 * 3 * 15 * 16);
  CHECK(off.grad.item() == doctest::Approx(want).epsilon(1e-5));
  CHECK(want > 0.01);  // a random VAE is far from the images: the check is not 0 == 0
  // Weight 0 leaves it out of the loss; weight w adds w·GD to the same total.
  o.gradient_weight = 0.5;
  const train::VaeLossOutput on = train::vae_training_loss(vae, x, o);
  CHECK(on.loss.item() == doctest::Approx(off.loss.item() + 0.5 * want).epsilon(1e-5));
}

TEST_CASE("saturation-weighted L1/L2: the weighted means of a hand computation; weight 0 is the plain mean") {
  manual_seed(22);
  bsq::BsqVae vae(tiny_vae_config());
  const Tensor x = four_images();
  train::VaeLossOptions o;
  o.scales = kTinyScales;
  const train::VaeLossOutput plain = train::vae_training_loss(vae, x, o);
  o.saturation_weight = 3.0;
  const train::VaeLossOutput sat = train::vae_training_loss(vae, x, o);
  const std::vector<double> r = plain.reconstruction.to(DType::F64).contiguous().tolist<double>();
  const std::vector<double> t = x.to(DType::F64).contiguous().tolist<double>();
  auto at = [](const std::vector<double>& v, int i, int c, int p) { return v[(i * 3 + c) * 256 + p]; };
  double l1 = 0, l2 = 0, m1 = 0, m2 = 0, wsum = 0;
  for (int i = 0; i < 4; ++i)
    for (int p = 0; p < 256; ++p) {
      double hi = -1e9, lo = 1e9;
      for (int c = 0; c < 3; ++c) hi = std::max(hi, at(t, i, c, p)), lo = std::min(lo, at(t, i, c, p));
      const double w = 1 + 3.0 * (hi - lo) / 2;
      for (int c = 0; c < 3; ++c) {
        const double d = at(r, i, c, p) - at(t, i, c, p);
        l1 += w * std::abs(d), l2 += w * d * d, m1 += std::abs(d), m2 += d * d, wsum += w;
      }
    }
  CHECK(plain.l1.item() == doctest::Approx(m1 / (4 * 3 * 256)).epsilon(1e-5));
  CHECK(plain.l2.item() == doctest::Approx(m2 / (4 * 3 * 256)).epsilon(1e-5));
  CHECK(sat.l1.item() == doctest::Approx(l1 / wsum).epsilon(1e-5));
  CHECK(sat.l2.item() == doctest::Approx(l2 / wsum).epsilon(1e-5));
  CHECK(std::abs(sat.l1.item() - plain.l1.item()) > 1e-3);  // the weights matter on these images
}

TEST_CASE("PatchGAN discriminator: shapes, hinge loss, and a GAN step") {
  manual_seed(5);
  train::PatchDiscriminator disc({3, 8, 1, 4});  // ndf 8, one stride-2 layer, GroupNorm(4)
  Generator gen(9);
  const Tensor real = uniform({2, 3, 16, 16}, -1, 1, DType::F32, &gen);
  const Tensor fake = uniform({2, 3, 16, 16}, -1, 1, DType::F32, &gen);
  const Tensor dr = disc.forward(real), df = disc.forward(fake);
  CHECK(dr.shape() == Shape{2, 1, 6, 6});  // 16 -> 8 -> 7 -> 6
  CHECK(disc.has_parameter("main.0.weight"));
  CHECK(disc.has_parameter("main.3.weight"));  // conv 2 then its norm at upstream's index 3
  double lr = 0, lf = 0;
  for (double v : dr.tolist<double>()) lr += std::max(0.0, 1 - v) / 72;
  for (double v : df.tolist<double>()) lf += std::max(0.0, 1 + v) / 72;
  CHECK(train::discriminator_hinge_loss(disc, real, fake).item() == doctest::Approx(0.5 * (lr + lf)).epsilon(1e-5));

  manual_seed(13);
  bsq::BsqVae vae(tiny_vae_config());
  optim::AdamW opt(vae.parameters(true), {1e-3, 0.5, 0.9, 1e-8, 0.0});
  optim::AdamW dopt(disc.parameters(true), {1e-3, 0.5, 0.9, 1e-8, 0.0});
  train::VaeLossOptions o;
  o.scales = kTinyScales;
  o.gan_weight = 0.1;
  CHECK_THROWS_AS(train::vae_train_step(vae, opt, real, o), Error);  // GAN on without a discriminator
  const Tensor w0 = disc.parameter("main.0.weight").clone();
  train::VaeStepStats s = train::vae_train_step(vae, opt, real, o, {0, &disc, &dopt});
  CHECK(std::isfinite(s.discriminator_loss));
  CHECK(s.discriminator_loss > 0);
  CHECK(std::isfinite(s.gan));
  CHECK(max_abs_diff(disc.parameter("main.0.weight"), w0) > 0);
}

TEST_CASE("overfitting: a tiny VAE reconstructs 4 images from ~10 dB to > 20 dB PSNR") {
  manual_seed(1);
  bsq::BsqVae vae(tiny_vae_config());
  const Tensor images = four_images();
  optim::AdamW opt(vae.parameters(true), {2e-3, 0.9, 0.99, 1e-8, 0.0});
  train::VaeLossOptions o;
  o.scales = kTinyScales;
  o.l2_weight = 1.0;  // L1 + L2 with the default BSQ terms

  const auto t0 = std::chrono::steady_clock::now();
  double first_psnr = 0, psnr = 0;
  double first_l2 = 0, l2 = 0;
  int steps = 0;
  for (; steps < 400; ++steps) {
    train::VaeStepStats s = train::vae_train_step(vae, opt, images, o, {1.0});
    if (steps == 0) first_psnr = s.psnr, first_l2 = s.l2;
    psnr = s.psnr, l2 = s.l2;
    REQUIRE(std::isfinite(s.loss));
    if (std::getenv("VT_VAE_TRACE")) std::printf("step %d psnr %.2f l2 %.4f ent %.3f cb %.3f commit %.4f\n", steps, psnr, l2, s.per_sample_entropy, s.codebook_entropy, s.commit);
    if (psnr > 22) break;
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("vae overfit: %d steps, %.2f s, PSNR %.2f -> %.2f dB, L2 %.4f -> %.4f\n", steps + 1, secs,
              first_psnr, psnr, first_l2, l2);
  CHECK(first_psnr < 13);
  CHECK(psnr > 20);
  CHECK(l2 < first_l2 / 10);
}
