// DPO on image bits (train/dpo.h; vargpt.md §13, training.md §4): the image log-prob against a hand
// computation and float64 finite differences; the loss and TRL metrics against a hand computation
// from given log-probs; then on the tiny VARGPT checkpoint: ln 2 at step 0 with policy = reference,
// a few AdamW steps on one toy pair that widen the margin while the reference stays untouched, and
// the pref_ftx term equal to the chosen image's NLL computed by the plain training forward.
#include <doctest/doctest.h>

#include <cmath>
#include <tuple>

#include "dpo.h"
#include "infinity/self_correction.h"
#include "random_image_bits.h"
#include "vargpt/training.h"
#include "vt/autograd.h"
#include "vt/gradcheck.h"
#include "vt/io/tensor_io.h"
#include "vt/ops.h"
#include "vt/optim/adamw.h"
#include "vt/random.h"

using namespace vt;
using vargpt::Vargpt;

namespace {

const std::string kTiny = std::string(VT_FIXTURES) + "/vargpt_tiny";

std::shared_ptr<Vargpt> load_tiny() { return Vargpt::from_pretrained(kTiny, DType::F32); }

// One toy pair on the text-to-image prompt of the fixture: both rows hold the same ids (the prompt
// ends with <|image_gen_start|>; then P pads and <|image_gen_end|>, as test_vargpt.cpp builds them);
// chosen and rejected images are two random bit patterns with their teacher inputs at 256².
vargpt::TrainingBatch toy_pair(const Vargpt& m, uint64_t seed) {
  static const auto ref = io::load_safetensors(kTiny + "/reference.safetensors");
  const Tensor prompt = ref.at("t2i.input_ids").to(DType::I64).contiguous().reshape({-1});
  std::vector<int64_t> ids(prompt.data<int64_t>(), prompt.data<int64_t>() + prompt.numel());
  REQUIRE(ids.back() == m.tokens().start);
  vargpt::TrainingBatch b;
  b.schedule = infinity::schedule_for_image(256, 256);
  ids.insert(ids.end(), b.schedule.padded_tokens(infinity::kSequencePadMultiple), m.tokens().pad);
  ids.push_back(m.tokens().end);
  const int64_t T = static_cast<int64_t>(ids.size()), d = m.config().gen.codebook_dim;
  std::vector<int64_t> rows = ids;
  rows.insert(rows.end(), ids.begin(), ids.end());
  b.input_ids = from_vector(rows, {2, T});
  Generator gen(seed);
  std::tie(b.gen_inputs, b.gen_labels) = testing::random_image_bits(b.schedule, d, 2, gen);
  return b;
}

// Row r of a batch as a batch of one.
vargpt::TrainingBatch row_of(const vargpt::TrainingBatch& b, int64_t r) {
  vargpt::TrainingBatch one = b;
  one.input_ids = b.input_ids.narrow(0, r, 1);
  one.gen_inputs = b.gen_inputs.narrow(0, r, 1);
  one.gen_labels = b.gen_labels.narrow(0, r, 1);
  return one;
}

double log_sigmoid(double x) { return x >= 0 ? -std::log1p(std::exp(-x)) : x - std::log1p(std::exp(x)); }

}  // namespace

TEST_CASE("DPO: image_logps sums log_softmax over each bit's logit pair at the label, and passes gradcheck") {
  const int64_t N = 3, L = 5, d = 4;
  Generator gen(11);
  const Tensor z = mul(randn({N, L, 2 * d}, {DType::F64}, &gen), 3.0);
  const Tensor bits = lt(rand({N, L, d}, {}, &gen), 0.5);  // Bool
  const std::vector<double> zv = z.tolist<double>();
  const std::vector<int64_t> bv = bits.to(DType::I64).tolist<int64_t>();
  std::vector<double> want(N, 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t t = 0; t < L * d; ++t) {  // bit j of token l owns logits 2j (bit 0) and 2j + 1 (bit 1)
      const double z0 = zv[(n * L * d + t) * 2], z1 = zv[(n * L * d + t) * 2 + 1];
      const double m = std::max(z0, z1), lse = m + std::log(std::exp(z0 - m) + std::exp(z1 - m));
      want[n] += (bv[n * L * d + t] ? z1 : z0) - lse;
    }
  const Tensor got = train::image_logps(z, bits);
  REQUIRE(got.shape() == Shape{N});
  CHECK(got.dtype() == DType::F64);
  for (int64_t n = 0; n < N; ++n) CHECK(got.tolist<double>()[n] == doctest::Approx(want[n]).epsilon(1e-12));
  // bf16 / f32 logits are read in f32 (TRL's upcast); integer labels work as bools do.
  const Tensor got32 = train::image_logps(z.to(DType::F32), bits.to(DType::I64));
  CHECK(got32.dtype() == DType::F32);
  for (int64_t n = 0; n < N; ++n) CHECK(got32.tolist<float>()[n] == doctest::Approx(want[n]).epsilon(1e-5));

  const GradcheckResult r = gradcheck([&](const std::vector<Tensor>& x) { return train::image_logps(x[0], bits); },
                                      {z.detach().requires_grad_()});
  CHECK_MESSAGE(r.ok, r.message);

  CHECK_THROWS_WITH_AS(train::image_logps(z, bits.narrow(2, 0, 3)), doctest::Contains("(3, 5, 3)"), Error);
  CHECK_THROWS_WITH_AS(train::image_logps(z, add(bits.to(DType::I64), 1.0)), doctest::Contains("{0, 1}"), Error);
}

TEST_CASE("DPO: loss and TRL metrics from given log-probs equal a hand computation") {
  // 4 pairs: ranked right, ranked wrong, a tie of rewards (counts as not accurate), ranked right.
  const std::vector<float> pc = {-100, -50, -70, -60}, pr = {-110, -40, -70, -65};
  const std::vector<float> rc = {-105, -45, -72, -60}, rr = {-108, -42, -72, -61};
  const int64_t N = 4, L = 10;
  train::DpoOptions opt;
  opt.beta = 0.2;
  opt.label_smoothing = 0.1;
  opt.ftx = 0.3;
  std::vector<float> policy = pc, reference = rc;
  policy.insert(policy.end(), pr.begin(), pr.end());
  reference.insert(reference.end(), rr.begin(), rr.end());
  const Tensor p = from_vector(policy).requires_grad_();
  const train::DpoStepOutput o = train::dpo_loss(p, from_vector(reference), L, opt);

  double chosen = 0, rejected = 0, acc = 0, margin = 0, loss = 0, sft = 0, logps_c = 0, logps_r = 0;
  for (int64_t i = 0; i < N; ++i) {
    const double c = opt.beta * (pc[i] - rc[i]), r = opt.beta * (pr[i] - rr[i]), u = c - r;
    chosen += c / N, rejected += r / N, margin += u / N, acc += (c > r ? 1.0 : 0.0) / N;
    loss += (-(1 - opt.label_smoothing) * log_sigmoid(u) - opt.label_smoothing * log_sigmoid(-u)) / N;
    sft += -pc[i] / double(L) / N;
    logps_c += pc[i] / double(N), logps_r += pr[i] / double(N);
  }
  REQUIRE(acc == 0.5);  // the tie and the wrong pair
  const std::map<std::string, double> m = train::dpo_metrics(o, "eval_");
  CHECK(m.size() == 6);  // no logits without a forward
  CHECK(m.at("eval_rewards/chosen") == doctest::Approx(chosen).epsilon(1e-6));
  CHECK(m.at("eval_rewards/rejected") == doctest::Approx(rejected).epsilon(1e-6));
  CHECK(m.at("eval_rewards/accuracies") == acc);
  CHECK(m.at("eval_rewards/margins") == doctest::Approx(margin).epsilon(1e-6));
  CHECK(m.at("eval_logps/chosen") == doctest::Approx(logps_c).epsilon(1e-6));
  CHECK(m.at("eval_logps/rejected") == doctest::Approx(logps_r).epsilon(1e-6));
  CHECK(o.metrics.loss.item() == doctest::Approx(loss).epsilon(1e-6));
  CHECK(o.sft_loss.item() == doctest::Approx(sft).epsilon(1e-6));
  CHECK(o.loss.item() == doctest::Approx(loss + opt.ftx * sft).epsilon(1e-6));

  // Gradient (training.md §4.4): dL/d log pi(c) = beta dL/du - ftx / (L N), dL/d log pi(r) = -beta dL/du,
  // dL/du = [-(1 - eps) sigmoid(-u) + eps sigmoid(u)] / N.
  o.loss.backward();
  const std::vector<float> g = p.grad().tolist<float>();
  for (int64_t i = 0; i < N; ++i) {
    const double u = opt.beta * ((pc[i] - rc[i]) - (pr[i] - rr[i]));
    const double s = 1 / (1 + std::exp(-u));
    const double dldu = (-(1 - opt.label_smoothing) * (1 - s) + opt.label_smoothing * s) / N;
    CHECK(g[i] == doctest::Approx(opt.beta * dldu - opt.ftx / double(L * N)).epsilon(1e-5));
    CHECK(g[N + i] == doctest::Approx(-opt.beta * dldu).epsilon(1e-5));
  }
  CHECK_THROWS_WITH_AS(train::dpo_loss(p, from_vector(reference).narrow(0, 0, 6), L, opt),
                       doctest::Contains("(6)"), Error);
}

TEST_CASE("DPO: at step 0 with policy = reference the loss is ln 2 and every reward metric is 0") {
  const auto policy = load_tiny(), reference = load_tiny();
  vargpt::apply_freeze_preset(*policy, 3);
  policy->train();
  reference->eval();
  const vargpt::TrainingBatch pair = toy_pair(*policy, 1);
  const train::DpoStepOutput o = train::dpo_forward(*policy, reference.get(), pair);
  const int64_t bits = pair.gen_labels[0].numel();
  // Two different images: log-probs of order -bits ln 2 that differ between chosen and rejected.
  CHECK(o.policy_chosen_logps.item() < -0.3 * bits);
  CHECK(o.policy_chosen_logps.item() != o.policy_rejected_logps.item());
  CHECK(o.policy_chosen_logps.item() == o.ref_chosen_logps.item());
  CHECK(o.policy_rejected_logps.item() == o.ref_rejected_logps.item());
  CHECK(o.loss.item() == doctest::Approx(std::log(2.0)).epsilon(1e-7));
  const std::map<std::string, double> m = train::dpo_metrics(o);
  CHECK(m.size() == 8);
  for (const char* k : {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"}) {
    INFO(k);
    CHECK(m.at(k) == 0);
  }
  CHECK(m.at("logps/chosen") == o.policy_chosen_logps.item());
  CHECK(std::isfinite(m.at("logits/chosen")));
  CHECK(m.at("logits/chosen") != m.at("logits/rejected"));  // same ids, different teacher inputs
  CHECK_FALSE(o.ref_chosen_logps.requires_grad());
  CHECK(o.loss.requires_grad());

  // The reference must be in eval mode; a batch of pairs has an even number of rows.
  CHECK_THROWS_WITH_AS(train::dpo_forward(*policy, policy.get(), pair), doctest::Contains("eval()"), Error);
  CHECK_THROWS_WITH_AS(train::dpo_forward(*policy, reference.get(), row_of(pair, 0)), doctest::Contains("2N rows"),
                       Error);
  train::DpoOptions pre;
  pre.precomputed_reference = true;
  CHECK_THROWS_WITH_AS(train::dpo_forward(*policy, nullptr, pair, pre), doctest::Contains("reference_logps"), Error);
}

TEST_CASE("DPO: AdamW steps on one toy pair widen the margin below ln 2; the reference is untouched") {
  const auto policy = load_tiny(), reference = load_tiny();
  vargpt::apply_freeze_preset(*policy, 3);
  policy->train();
  reference->eval();
  std::map<std::string, Tensor> before;
  for (const auto& [name, t] : reference->named_parameters()) before[name] = t.detach().to(DType::F64);
  optim::AdamWOptions ao;
  ao.lr = 1e-6;  // the paper's DPO rate (Table 1); at 1e-3 one step saturates the loss (training.md §4.7)
  ao.weight_decay = 0;
  optim::AdamW opt(policy->parameters(/*trainable_only=*/true), ao);
  const vargpt::TrainingBatch pair = toy_pair(*policy, 2);
  std::vector<double> loss, margin;
  for (int step = 0; step < 4; ++step) {
    opt.zero_grad();
    const train::DpoStepOutput o = train::dpo_forward(*policy, reference.get(), pair);
    o.loss.backward();
    opt.step();
    loss.push_back(o.loss.item());
    margin.push_back(train::dpo_metrics(o).at("rewards/margins"));
    MESSAGE("step ", step, ": loss ", loss.back(), ", margin ", margin.back());
  }
  CHECK(loss[0] == doctest::Approx(std::log(2.0)).epsilon(1e-7));
  for (size_t i = 1; i < margin.size(); ++i) CHECK(margin[i] > margin[i - 1]);
  CHECK(loss.back() < std::log(2.0) - 0.01);
  for (const auto& [name, t] : reference->named_parameters()) {
    INFO(name);
    CHECK_FALSE(t.grad().defined());
    CHECK(sum(ne(t.detach().to(DType::F64), before.at(name))).item() == 0);
  }
  // The policy moved in its stage-3 set only.
  int64_t moved = 0;
  for (const auto& [name, t] : policy->named_parameters()) {
    const bool changed = sum(ne(t.detach().to(DType::F64), before.at(name))).item() > 0;
    INFO(name);
    if (!t.requires_grad()) CHECK_FALSE(changed);
    moved += changed;
  }
  CHECK(moved > 0);
}

TEST_CASE("DPO: ftx adds ftx times the chosen image's NLL per token, as the plain training forward gives it") {
  const auto policy = load_tiny(), reference = load_tiny();
  policy->eval();
  reference->eval();
  const vargpt::TrainingBatch pair = toy_pair(*policy, 3);
  // Reference log-probs shifted so that u != 0: the precomputed path with a live-computed base.
  const Tensor ref = add(train::reference_logps(*reference, pair), from_vector<float>({5, -5}));
  train::DpoOptions opt;
  opt.precomputed_reference = true;
  opt.ftx = 0.5;
  const train::DpoStepOutput with = train::dpo_forward(*policy, nullptr, pair, opt, &ref);
  opt.ftx = 0;
  const train::DpoStepOutput without = train::dpo_forward(*policy, nullptr, pair, opt, &ref);
  CHECK(with.metrics.loss.item() == without.loss.item());
  CHECK(std::abs(without.loss.item() - std::log(2.0)) > 0.1);
  // The chosen row alone through training_forward: image_loss is the mean bit CE, so d times it is
  // the NLL per token, -log pi(chosen) / L.
  NoGradGuard no_grad;
  const vargpt::TrainingOutput chosen = vargpt::training_forward(*policy, row_of(pair, 0));
  const double nll = chosen.image_loss.item() * policy->config().gen.codebook_dim;
  CHECK(with.sft_loss.item() == doctest::Approx(nll).epsilon(1e-5));
  CHECK(with.loss.item() == doctest::Approx(without.loss.item() + 0.5 * nll).epsilon(1e-5));
}
