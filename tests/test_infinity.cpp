// The Infinity transformer (models/infinity): the tiny model against the PyTorch reference written
// from the spec (tools/infinity_reference.py via tools/gen_infinity_fixtures.py): conditioning,
// teacher-forced logits, bitwise self-correction, both losses, the bit accuracies and every
// parameter's gradient (tools/gen_infinity_grad_fixtures.py); the KV-cached scale-by-scale decoder
// against the block-causal forward; the sampler's seeding, CFG and bit rules, and a chi-squared
// test of its bits against the probabilities its logits imply; bad input.
#include <doctest/doctest.h>

#include <cmath>

#include "bsq_vae/bsq_vae.h"
#include "infinity/infinity.h"
#include "infinity/sampler.h"
#include "infinity/self_correction.h"
#include "vt/io/tensor_io.h"
#include "vt/ops.h"
#include "vt/random.h"

using namespace vt;
using namespace vt::infinity;

namespace {

const std::map<std::string, Tensor>& fixture() {
  static const auto fx = io::load_safetensors(std::string(VT_FIXTURES) + "/infinity.safetensors");
  return fx;
}
const Tensor& fx(const std::string& name) {
  auto it = fixture().find(name);
  REQUIRE_MESSAGE(it != fixture().end(), "fixture tensor ", name);
  return it->second;
}
// The reference's gradients and accuracies (infinity_grads.safetensors).
const Tensor& fx_grad(const std::string& name) {
  static const auto g = io::load_safetensors(std::string(VT_FIXTURES) + "/infinity_grads.safetensors");
  auto it = g.find(name);
  REQUIRE_MESSAGE(it != g.end(), "fixture tensor ", name, " of infinity_grads.safetensors");
  return it->second;
}

// max |a - b| / max |b|
double rel_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const double scale = amax(abs(b.to(DType::F64))).item();
  return amax(abs(a.to(DType::F64) - b.to(DType::F64))).item() / std::max(scale, 1e-30);
}

// The 0.06M (256px) 1:1 schedule of the fixtures: 1, 2, 4, 6, 8, 12, 16 (RoPE grid 64x64).
const ScaleSchedule& schedule() {
  static const ScaleSchedule s = scale_schedule(1.0, "0.06M");
  return s;
}

std::shared_ptr<Infinity> tiny_model() {
  static std::shared_ptr<Infinity> m = [] {
    auto model = std::make_shared<Infinity>(InfinityConfig::tiny());
    std::map<std::string, Tensor> w;
    for (const auto& [k, v] : fixture())
      if (k.rfind("ref.", 0) != 0 && k.rfind("sc.", 0) != 0) w[k] = v;
    model->load_state_dict(w, /*strict=*/true, "infinity.safetensors");
    model->eval();
    return model;
  }();
  return m;
}

PackedText fixture_text() {
  return PackedText{fx("ref.text"), fx("ref.cu_seqlens").tolist<int64_t>()};
}

// Per-scale bits (B, h, w, d) from packed labels (B, L, d).
std::vector<Tensor> split_scales(const Tensor& labels, const ScaleSchedule& s) {
  std::vector<Tensor> bits;
  for (int64_t k = 0; k < s.num_scales(); ++k)
    bits.push_back(ne(labels.narrow(1, s.offsets[k], s.tokens[k]), 0.0)
                       .reshape({labels.size(0), s.scales[k].h, s.scales[k].w, labels.size(2)}));
  return bits;
}

std::vector<Tensor> fixture_flips() {
  std::vector<Tensor> m;
  for (int64_t k = 0; k < schedule().num_scales(); ++k) m.push_back(fx("sc.flip." + std::to_string(k)));
  return m;
}

bsq::BsqVae& tiny_vae() {
  static bsq::BsqVae vae = [] {
    bsq::BsqVaeConfig c;
    c.base_channels = 32, c.channel_mult = {1, 2}, c.num_res_blocks = 1, c.codebook_dim = 16, c.patch_size = 2;
    manual_seed(7);
    return bsq::BsqVae(c);
  }();
  return vae;
}

}  // namespace

TEST_CASE("infinity: upstream state-dict names and presets") {
  auto m = tiny_model();
  const auto sd = m->state_dict();
  for (const char* name : {"cfg_uncond", "pos_start", "lvl_embed.weight", "word_embed.weight", "text_norm.weight",
                           "text_proj_for_sos.ca.mat_q", "text_proj_for_sos.ca.zero_k_bias",
                           "text_proj_for_ca.2.bias", "shared_ada_lin.1.weight", "head_nm.ada_lin.1.bias",
                           "head.weight", "block_chunks.0.module.1.ada_gss", "block_chunks.0.module.1.sa.zero_k_bias",
                           "block_chunks.0.module.0.sa.scale_mul_1H11", "block_chunks.0.module.0.ca.mat_kv.weight",
                           "block_chunks.0.module.0.ca_norm.bias", "block_chunks.0.module.1.ffn.fc2.weight"})
    CHECK_MESSAGE(sd.count(name) == 1, name);
  CHECK(sd.size() == fixture().size() - 18);  // every weight of the fixture, nothing else (18 ref./sc. entries)
  InfinityConfig c = InfinityConfig::infinity_2b();
  CHECK(c.ffn_hidden() == 8192);
  CHECK(c.head_dim() == 128);
  CHECK(c.blocks_per_chunk() == 4);
  // Block b of a chunked model lives at block_chunks.{b / per}.module.{b % per}.
  InfinityConfig chunked = InfinityConfig::tiny();
  chunked.depth = 4, chunked.block_chunks = 2;
  Infinity small(chunked);
  CHECK(small.has_parameter("block_chunks.1.module.1.sa.mat_qkv.weight"));
  CHECK(small.parameter("block_chunks.1.module.1.sa.mat_qkv.weight").shape() == Shape{192, 64});
}

TEST_CASE("infinity: conditioning path equals the reference") {
  auto m = tiny_model();
  Condition c = m->condition(fixture_text());
  CHECK(rel_diff(c.cond_BD, fx("ref.cond_BD")) < 1e-5);
  CHECK(rel_diff(c.memory, fx("ref.memory")) < 1e-5);
  Condition u = m->condition(m->unconditional_text(fixture_text().lengths()));
  CHECK(rel_diff(u.cond_BD, fx("ref.uncond_cond_BD")) < 1e-5);
}

TEST_CASE("infinity: bitwise self-correction equals the reference for the same flips") {
  TeacherBatch t = bitwise_self_correction(fx("sc.f"), schedule(), fixture_flips(), /*requant=*/true);
  CHECK(t.inputs.shape() == Shape{2, 520, 16});
  CHECK(t.labels.shape() == Shape{2, 521, 16});
  CHECK(rel_diff(t.inputs, fx("sc.inputs")) < 1e-5);
  CHECK(sum(ne(cast(t.labels, DType::U8), fx("sc.labels")).to(DType::I64)).item() == 0);
  // Without flips the teacher inputs are the next-scale inputs of the labels (§8).
  TeacherBatch clean = bitwise_self_correction(fx("sc.f"), schedule(), std::vector<Tensor>{});
  Tensor from_bits = teacher_inputs_from_bits(split_scales(clean.labels, schedule()), schedule());
  CHECK(rel_diff(from_bits, clean.inputs) < 1e-6);
  // Flips change the teacher inputs and the later labels, never the first scale's label.
  CHECK(rel_diff(clean.inputs, t.inputs) > 1e-3);
  CHECK(sum(ne(clean.labels.narrow(1, 0, 1), t.labels.narrow(1, 0, 1)).to(DType::I64)).item() == 0);
}

TEST_CASE("infinity: seeded self-correction") {
  SelfCorrectionConfig cfg;
  Generator g1(5), g2(5), g3(6);
  TeacherBatch a = bitwise_self_correction(fx("sc.f"), schedule(), cfg, &g1);
  TeacherBatch b = bitwise_self_correction(fx("sc.f"), schedule(), cfg, &g2);
  TeacherBatch c = bitwise_self_correction(fx("sc.f"), schedule(), cfg, &g3);
  CHECK(rel_diff(a.inputs, b.inputs) == 0);
  CHECK(a.flip_prob == b.flip_prob);
  CHECK(rel_diff(a.inputs, c.inputs) > 0);
  for (double p : a.flip_prob) CHECK((p >= 0 && p <= 0.3 + 1e-12));
  cfg.noise_apply_layers = 0;
  Generator g4(5);
  TeacherBatch none = bitwise_self_correction(fx("sc.f"), schedule(), cfg, &g4);
  CHECK(rel_diff(none.inputs, bitwise_self_correction(fx("sc.f"), schedule(), std::vector<Tensor>{}).inputs) == 0);
}

TEST_CASE("infinity: teacher-forced logits and losses equal the reference") {
  auto m = tiny_model();
  Condition c = m->condition(fixture_text());
  TeacherBatch t{fx("sc.inputs"), ne(fx("sc.labels"), 0.0), {}};
  TrainingOutput out = training_forward(*m, c, t, schedule());
  CHECK(out.logits.shape() == Shape{2, 521, 32});
  const double rel = rel_diff(out.logits, fx("ref.logits"));
  MESSAGE("teacher-forced logits: max rel diff ", rel);
  CHECK(rel < 1e-4);
  CHECK(std::abs(out.loss.item() - fx("ref.loss").item()) < 1e-5 * fx("ref.loss").item());
  const double rw = bitwise_loss(out.logits, t.labels, schedule(), {.reweight_by_scale = true}).item();
  CHECK(std::abs(rw - fx("ref.loss_reweighted").item()) < 1e-5 * fx("ref.loss_reweighted").item());
  CHECK(std::abs(sum(scale_loss_weights(schedule())).item() - 1.0) < 1e-6);
  // Upstream's padding to a multiple of 128 leaves the real rows' logits unchanged.
  Tensor padded = m->forward(c, t.inputs, schedule(), 128);
  CHECK(rel_diff(padded, out.logits) < 1e-5);
  // The bit accuracies against the reference's (of 16672 bits, f32 near-ties may differ in a few).
  CHECK(std::abs(out.accuracy.item() - fx_grad("ref.accuracy").item()) < 1e-3);
  CHECK(std::abs(out.last_scale_accuracy.item() - fx_grad("ref.last_scale_accuracy").item()) < 1e-3);
}

TEST_CASE("infinity: training backward equals the reference's gradient for every trainable parameter") {
  Infinity m(InfinityConfig::tiny());
  m.load_state_dict(tiny_model()->state_dict());
  Condition c = m.condition(fixture_text());
  TeacherBatch t{fx("sc.inputs"), ne(fx("sc.labels"), 0.0), {}};
  TrainingOutput out = training_forward(m, c, t, schedule());
  CHECK(std::abs(out.loss.item() - fx("ref.loss").item()) < 1e-5 * fx("ref.loss").item());
  out.loss.backward();
  int64_t compared = 0;
  double worst = 0;
  std::string worst_name;
  for (const auto& [name, p] : m.named_parameters(true)) {
    CAPTURE(name);
    if (name == "cfg_uncond") {  // used only for unconditional rows
      CHECK(!p.grad().defined());
      continue;
    }
    REQUIRE_MESSAGE(p.grad().defined(), name);
    const Tensor& want = fx_grad("grad." + name);
    // max |a - b| over max |b|: each gradient against its own largest entry (1.6e-4 to about 1)
    const double err = amax(abs(p.grad().to(DType::F64) - want.to(DType::F64))).item() /
                       std::max(amax(abs(want.to(DType::F64))).item(), 1e-6);
    CHECK_MESSAGE(err < 1e-4, name, " gradient: max error ", err, " of its largest value");
    if (err > worst) worst = err, worst_name = name;
    ++compared;
  }
  MESSAGE("gradients of ", compared, " parameters against the reference: worst ", worst, " (", worst_name, ")");
  CHECK(compared == 58);  // every gradient of the fixture: the 64 weights less cfg_uncond and 5 zero_k_bias
}

TEST_CASE("infinity: KV-cached scale-by-scale logits equal the block-causal forward") {
  auto m = tiny_model();
  Condition c = m->condition(fixture_text());
  const std::vector<Tensor> bits = split_scales(ne(fx("sc.labels"), 0.0), schedule());
  Tensor full = m->forward(c, teacher_inputs_from_bits(bits, schedule()), schedule());
  std::vector<Tensor> cached = cached_logits(*m, c, bits, schedule());
  REQUIRE(cached.size() == 7);
  for (int64_t k = 0; k < 7; ++k) {
    const double rel = rel_diff(cached[k], full.narrow(1, schedule().offsets[k], schedule().tokens[k]));
    CHECK_MESSAGE(rel < 1e-5, "scale ", k, " rel diff ", rel);
  }
}

TEST_CASE("infinity: CFG rule, tau and teacher forcing through the sampler") {
  // Hand computation: cfg 3 -> 3 l_c - 2 l_u; VAR ramp at k = 1 of K = 3: t = 1.5 -> 2.5 l_c - 1.5 l_u.
  Tensor lc = from_vector<float>({1.0f, -2.0f}), lu = from_vector<float>({0.5f, 1.0f});
  CHECK(cfg_combine(lc, lu, 3.0, 0, 3, false).tolist<float>() == std::vector<float>{2.0f, -8.0f});
  CHECK(cfg_combine(lc, lu, 3.0, 1, 3, true).tolist<float>() == std::vector<float>{1.75f, -6.5f});
  CHECK(cfg_combine(lc, lu, 3.0, 0, 3, true).tolist<float>() == std::vector<float>{1.0f, -2.0f});

  // With every scale forced (gt_leak = K), the sampler's guided logits are cfg l_c + (1 - cfg) l_u
  // of the tau-scaled per-row logits of the cached decoder.
  auto m = tiny_model();
  const PackedText text = fixture_text();
  Condition c = m->condition(text), u = m->condition(m->unconditional_text(text.lengths()));
  const std::vector<Tensor> bits = split_scales(ne(fx("sc.labels"), 0.0), schedule());
  SamplerConfig cfg;
  cfg.cfg = {2.5}, cfg.tau = {0.5}, cfg.gt_bits = bits;
  SampleOutput out = sample(*m, text, schedule(), cfg);
  std::vector<Tensor> lc_k = cached_logits(*m, c, bits, schedule()), lu_k = cached_logits(*m, u, bits, schedule());
  for (int64_t k = 0; k < 7; ++k) {
    Tensor expect = lc_k[k] / 0.5 * 2.5 + lu_k[k] / 0.5 * (1 - 2.5);
    CHECK(rel_diff(out.logits[k], expect) < 1e-5);
    CHECK(sum(ne(out.bits[k], bits[k]).to(DType::I64)).item() == 0);
  }
  CHECK(rel_diff(out.latent, bsq::multiscale_bits_to_latent(bits)) < 1e-6);
}

TEST_CASE("infinity: per-bit sampling rules") {
  // Pairs (l0, l1): P(1) = sigmoid(l1 - l0) = 0.982, 0.018, 0.5, 0.622.
  Tensor logits = from_vector<float>({0, 4, 4, 0, 0, 0, 0, 0.5f}, {1, 8});
  Generator g(1);
  // top_k 1: the larger class (bit 0 on a tie).
  CHECK(cast(sample_bits(logits, 1, 0, &g), DType::I64).tolist<int64_t>() == std::vector<int64_t>{1, 0, 0, 1});
  // top_p 0.97: classes with probability <= 0.03 go; the 0.5 / 0.622 bits stay random.
  Tensor many = logits.expand({4000, 8}).contiguous();
  Tensor b = cast(sample_bits(many, 0, 0.97, &g), DType::F64);
  std::vector<double> freq = mean(b, {0}).tolist<double>();
  CHECK(freq[0] == 1.0);
  CHECK(freq[1] == 0.0);
  CHECK(std::abs(freq[2] - 0.5) < 0.04);
  CHECK(std::abs(freq[3] - 0.6225) < 0.04);
  // No filter: the 0.982 bit is sometimes 0.
  Tensor free_bits = cast(sample_bits(many, 0, 0, &g), DType::F64);
  CHECK(std::abs(mean(free_bits, {0}).tolist<double>()[0] - 0.982) < 0.01);
}

TEST_CASE("infinity: seeded sampling with a batch of 2, CFG and the BSQ-VAE decoder") {
  auto m = tiny_model();
  SamplerConfig cfg;
  cfg.cfg = {3.0}, cfg.tau = {0.5}, cfg.top_p = 0.97, cfg.seed = 11;
  SampleOutput a = sample(*m, fixture_text(), schedule(), cfg, &tiny_vae());
  SampleOutput b = sample(*m, fixture_text(), schedule(), cfg, &tiny_vae());
  cfg.seed = 12;
  SampleOutput c = sample(*m, fixture_text(), schedule(), cfg, &tiny_vae());
  REQUIRE(a.bits.size() == 7);
  CHECK(a.bits.back().shape() == Shape{2, 16, 16, 16});
  CHECK(a.image.shape() == Shape{2, 3, 32, 32});
  int64_t differ = 0;
  for (int64_t k = 0; k < 7; ++k) {
    CHECK(sum(ne(a.bits[k], b.bits[k]).to(DType::I64)).item() == 0);
    differ += static_cast<int64_t>(sum(ne(a.bits[k], c.bits[k]).to(DType::I64)).item());
  }
  CHECK(differ > 0);
  CHECK(rel_diff(a.image, b.image) == 0);
  CHECK(rel_diff(a.image, c.image) > 0);
  CHECK(amax(abs(a.image)).item() <= 1.0);
  // Without CFG only the B condition rows run.
  cfg.classifier_free = false;
  SampleOutput d = sample(*m, fixture_text(), schedule(), cfg);
  CHECK(d.bits.back().shape() == Shape{2, 16, 16, 16});
  CHECK(!d.image.defined());
}

// Over 12 seeds, every sampled bit of every scale against the probability its guided logits imply,
// p = sigmoid(l1 - l0) computed here in f64 (no top-k or top-p). Bits are binned by p; per bin the
// count of ones O, its expectation E = sum p and variance V = sum p (1 - p) give
// X = sum (O - E)^2 / V, chi-squared with one degree of freedom per bin for a fair sampler.
TEST_CASE("infinity: sampled bits follow the probabilities of the logits (chi-squared over seeds)") {
  auto m = tiny_model();
  SamplerConfig cfg;
  cfg.cfg = {2.0}, cfg.tau = {0.8}, cfg.top_p = 0.0;
  constexpr int kBins = 10;
  std::vector<double> ones(kBins, 0), expect(kBins, 0), var(kBins, 0);
  int64_t draws = 0;
  for (uint64_t seed = 100; seed < 112; ++seed) {
    cfg.seed = seed;
    SampleOutput s = sample(*m, fixture_text(), schedule(), cfg);
    for (size_t k = 0; k < s.bits.size(); ++k) {
      const Tensor z = s.logits[k].to(DType::F64).contiguous();  // (B, n_k, 2d)
      const std::vector<double> l = z.view({-1}).tolist<double>();
      const std::vector<int64_t> b = cast(s.bits[k], DType::I64).contiguous().view({-1}).tolist<int64_t>();
      REQUIRE(l.size() == 2 * b.size());
      for (size_t i = 0; i < b.size(); ++i) {
        const double p = 1 / (1 + std::exp(l[2 * i] - l[2 * i + 1]));
        const int bin = std::min(kBins - 1, static_cast<int>(p * kBins));
        ones[bin] += static_cast<double>(b[i]), expect[bin] += p, var[bin] += p * (1 - p);
      }
      draws += static_cast<int64_t>(b.size());
    }
  }
  double chi2 = 0;
  int dof = 0;
  for (int i = 0; i < kBins; ++i) {
    CAPTURE(i);
    if (var[i] < 20) continue;  // too few uncertain draws for the normal approximation
    chi2 += (ones[i] - expect[i]) * (ones[i] - expect[i]) / var[i];
    ++dof;
  }
  MESSAGE(draws, " bits over 12 seeds: chi-squared ", chi2, " with ", dof, " degrees of freedom");
  REQUIRE(dof >= 8);
  CHECK(chi2 < 29.6);  // the 99.9% quantile for 10 degrees of freedom (27.9 for 9, 26.1 for 8)
}

TEST_CASE("infinity: errors name the problem") {
  auto m = tiny_model();
  // A condition longer than the unconditional table (16 rows).
  CHECK_THROWS_WITH_AS(m->unconditional_text({5, 17}), doctest::Contains("cfg_uncond"), vt::Error);
  Tensor long_text = randn({17, 48});
  CHECK_THROWS_AS(sample(*m, pack_text({long_text}), schedule(), SamplerConfig{}), vt::Error);
  Condition c = m->condition(fixture_text());
  // Teacher inputs of the wrong depth d, or for another schedule.
  CHECK_THROWS_WITH_AS(m->forward(c, zeros({2, 520, 32}), schedule()), doctest::Contains("d = 16"), vt::Error);
  CHECK_THROWS_WITH_AS(m->forward(c, zeros({2, 300, 16}), schedule()), doctest::Contains("521 tokens"), vt::Error);
  std::vector<Tensor> bits = split_scales(ne(fx("sc.labels"), 0.0), schedule());
  bits[3] = zeros({2, 5, 5, 16}, DType::Bool);
  CHECK_THROWS_WITH_AS(cached_logits(*m, c, bits, schedule()), doctest::Contains("scale 3"), vt::Error);
  bits = split_scales(ne(fx("sc.labels"), 0.0), schedule());
  bits[0] = zeros({2, 1, 1, 32}, DType::Bool);
  CHECK_THROWS_WITH_AS(teacher_inputs_from_bits(bits, schedule()), doctest::Contains("d = 32"), vt::Error);
  // Text rows of the wrong width; a flip mask of the wrong shape.
  CHECK_THROWS_AS(m->condition(pack_text({randn({3, 40})})), vt::Error);
  CHECK_THROWS_WITH_AS(bitwise_self_correction(fx("sc.f"), schedule(), {zeros({2, 2, 2, 16}, DType::Bool)}),
                       doctest::Contains("flip mask of scale 0"), vt::Error);
}
