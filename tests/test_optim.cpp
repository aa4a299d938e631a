// The optimizer stack (include/vt/optim/) against PyTorch / Hugging Face fixtures from
// tools/gen_optim_fixtures.py: the LambdaLR schedules over 100 steps, clip_grad_norm_, and a 10-step
// run of a small model (two param groups, a bias-free layer, a frozen layer, a bf16 parameter with an
// fp32 master) under AdamW + cosine warmup + clipping. Then vt-only properties: resuming from a saved
// state equals an uninterrupted run bit for bit, and N micro-batches equal one batch of N*b.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "vt/io/tensor_io.h"
#include "vt/nn/functional.h"
#include "vt/nn/module.h"
#include "vt/ops.h"
#include "vt/optim/adamw.h"
#include "vt/optim/clip.h"
#include "vt/optim/schedule.h"
#include "vt/random.h"

using namespace vt;
using json = nlohmann::json;

namespace {

struct Fixture {
  json meta;
  std::map<std::string, Tensor> t;
};
const Fixture& fixture() {
  static Fixture f = [] {
    Fixture x;
    std::ifstream in(std::string(VT_FIXTURES) + "/optim.json");
    REQUIRE_MESSAGE(in.good(), "missing fixture optim.json (run tools/gen_optim_fixtures.py)");
    x.meta = json::parse(in);
    x.t = io::load_safetensors(std::string(VT_FIXTURES) + "/optim.safetensors");
    return x;
  }();
  return f;
}

// y = x W^T + b: a test-only layer (the model code has its own).
struct TestLinear : nn::Module {
  Tensor weight, bias;
  TestLinear(int64_t in, int64_t out, bool with_bias) {
    weight = register_parameter("weight", zeros({out, in}));  // (out, in)
    if (with_bias) bias = register_parameter("bias", zeros({out}));
  }
  Tensor forward(const Tensor& x) const { return nn::linear(x, weight, bias); }
};

// The fixture's model: out = head(fc2(tanh(fc1(x)) * scale)), head frozen, scale bf16.
struct TinyNet : nn::Module {
  std::shared_ptr<TestLinear> fc1 = register_module("fc1", std::make_shared<TestLinear>(6, 8, true));
  std::shared_ptr<TestLinear> fc2 = register_module("fc2", std::make_shared<TestLinear>(8, 5, false));
  std::shared_ptr<TestLinear> head = register_module("head", std::make_shared<TestLinear>(5, 3, true));
  Tensor scale = register_parameter("scale", zeros({8}, DType::BF16));  // (8,)
  TinyNet() {
    const auto& f = fixture();
    std::map<std::string, Tensor> init;
    for (const char* k : {"fc1.weight", "fc1.bias", "fc2.weight", "head.weight", "head.bias", "scale"})
      init[k] = f.t.at(std::string("init.") + k);
    load_state_dict(init);
    freeze("head");
  }
  // With `dropout`, tanh(fc1(x)) goes through dropout(p = 0.25) drawn from that generator.
  Tensor forward(const Tensor& x, Generator* dropout = nullptr) const {
    Tensor h = tanh(fc1->forward(x));
    if (dropout) h = nn::dropout(h, 0.25, true, dropout);
    return head->forward(fc2->forward(mul(h, scale)));
  }
  Tensor loss(const Tensor& x, const Tensor& target, Generator* dropout = nullptr) const {
    return mean(square(sub(forward(x, dropout), target)));
  }
};

optim::AdamW make_optimizer(TinyNet& net, int64_t world_size = 1) {
  const json& g = fixture().meta["train"]["groups"];
  auto opts = [](const json& j) {
    optim::AdamWOptions o;
    o.lr = j["lr"], o.weight_decay = j["weight_decay"], o.beta1 = j["betas"][0], o.beta2 = j["betas"][1];
    o.eps = j["eps"];
    return o;
  };
  std::vector<optim::ParamGroupSpec> specs(2);
  specs[0] = {{net.fc1->weight, net.fc1->bias}, {"fc1.weight", "fc1.bias"}, opts(g[0]), "decay"};
  specs[1] = {{net.scale, net.fc2->weight}, {"scale", "fc2.weight"}, opts(g[1]), "other"};
  return optim::AdamW(std::move(specs), world_size);
}

// max over elements of |a - b| / (|b| + floor): relative error with a floor for values near 0.
double max_rel_err(const Tensor& a, const Tensor& b, double floor) {
  REQUIRE(a.shape() == b.shape());
  auto x = a.tolist<double>(), y = b.tolist<double>();
  double e = 0;
  for (size_t i = 0; i < x.size(); ++i) e = std::max(e, std::fabs(x[i] - y[i]) / (std::fabs(y[i]) + floor));
  return e;
}

double max_abs_err(const Tensor& a, const Tensor& b) { return amax(abs(sub(a, b))).item(); }
double max_abs(const Tensor& a) { return amax(abs(a)).item(); }

// bf16 values at most `ulps` representable steps apart.
bool bf16_close(const Tensor& a, const Tensor& b, int ulps) {
  auto x = a.contiguous(), y = b.contiguous();
  const auto* p = x.data<bf16>();
  const auto* q = y.data<bf16>();
  for (int64_t i = 0; i < x.numel(); ++i) {
    auto ord = [](uint16_t u) { return (u & 0x8000) ? -int(u & 0x7FFF) : int(u); };
    if (std::abs(ord(p[i].bits) - ord(q[i].bits)) > ulps) return false;
  }
  return true;
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  Tensor x = a.contiguous(), y = b.contiguous();
  return std::memcmp(x.raw_data(), y.raw_data(), x.nbytes()) == 0;
}

const char* kTrainable[] = {"fc1.weight", "fc1.bias", "scale", "fc2.weight"};

}  // namespace

TEST_CASE("the fused AdamW kernel is registered on the CPU") {
  CHECK(kernels::supports("adamw_step", Device::cpu()));
}

TEST_CASE("schedules: multipliers over 100 steps equal transformers' LambdaLR values") {
  const json& s = fixture().meta["schedules"];
  const int64_t total = s["total"], W = s["warmup"];
  CHECK(optim::warmup_steps_from_ratio(s["warmup_ratio"], total) == W);
  for (const auto& c : fixture().meta["warmup_from_ratio"])
    CHECK_MESSAGE(optim::warmup_steps_from_ratio(c[0], c[1]) == c[2].get<int64_t>(), c.dump());
  std::map<std::string, optim::LrMultiplier> fns = {
      {"constant", optim::constant_schedule()},
      {"constant_with_warmup", optim::constant_schedule_with_warmup(W)},
      {"linear_with_warmup", optim::linear_schedule_with_warmup(W, total)},
      {"cosine_with_warmup", optim::cosine_schedule_with_warmup(W, total)},
      {"cosine_with_warmup_1.5_cycles", optim::cosine_schedule_with_warmup(W, total, 1.5)}};
  for (auto& [name, fn] : fns) {
    // Through a Scheduler on an optimizer with base lr 1, read before each step() as the fixture did.
    Tensor p = zeros({1}).requires_grad_();
    optim::AdamWOptions o;
    o.lr = 1.0;
    optim::AdamW opt({p}, o);
    optim::Scheduler sched(opt, fn);
    const auto& ref = s[name];
    REQUIRE(ref.size() == 100);
    double worst = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      worst = std::max(worst, std::fabs(opt.groups()[0].lr - ref[i].get<double>()));
      CHECK(fn(static_cast<int64_t>(i)) == opt.groups()[0].lr);
      sched.step();
    }
    CHECK_MESSAGE(worst <= 1e-15, name, ": max |vt - HF| = ", worst);
  }
}

TEST_CASE("clip_grad_norm_ equals torch's norm and clipped gradients") {
  const auto& f = fixture();
  int i = 0;
  for (const auto& c : f.meta["clip"]) {
    std::vector<Tensor> params;
    for (int j = 0; j < c["n"].get<int>(); ++j) {
      Tensor g = f.t.at("clip" + std::to_string(i) + ".grad" + std::to_string(j));
      Tensor p = zeros(g.shape()).requires_grad_();
      p.set_grad(g.clone());
      params.push_back(p);
    }
    params.push_back(zeros({3}).requires_grad_());  // no gradient: contributes nothing
    const double norm = optim::clip_grad_norm_(params, c["max_norm"]);
    CHECK(norm == doctest::Approx(c["total_norm"].get<double>()).epsilon(1e-6));
    for (int j = 0; j < c["n"].get<int>(); ++j)
      CHECK(max_rel_err(params[j].grad(), f.t.at("clip" + std::to_string(i) + ".clipped" + std::to_string(j)), 1e-6) <
            1e-6);
    ++i;
  }
  // inf-norm and the non-finite check
  Tensor p = zeros({3}).requires_grad_();
  p.set_grad(from_vector<float>({1, -4, 2}));
  CHECK(optim::grad_norm({p}, optim::kInfNorm) == 4.0);
  p.set_grad(from_vector<float>({1, NAN, 2}));
  CHECK_THROWS_AS(optim::clip_grad_norm_({p}, 1.0, 2.0, true), Error);
}

// Runs the fixture's 10 steps. With `replay`, the gradients are torch's (isolating the optimizer,
// clipping and schedule from forward/backward rounding); otherwise vt computes them.
static void run_fixture_training(bool replay) {
  const auto& f = fixture();
  const json& tr = f.meta["train"];
  TinyNet net;
  CHECK(net.num_parameters(true) == 6 * 8 + 8 + 8 * 5 + 8);
  optim::AdamW opt = make_optimizer(net);
  optim::Scheduler sched(opt, optim::cosine_schedule_with_warmup(
                                  optim::warmup_steps_from_ratio(tr["warmup_ratio"], tr["steps"]), tr["steps"]));
  const std::vector<Tensor> trainable = net.parameters(true);
  REQUIRE(trainable.size() == 4);
  Tensor x = f.t.at("init.x"), target = f.t.at("init.target");
  double worst_f32 = 0, worst_master = 0, worst_norm = 0;
  for (int s = 0; s < tr["steps"].get<int>(); ++s) {
    const json& ref = tr["per_step"][s];
    opt.zero_grad();
    const std::string st = "step" + std::to_string(s);
    if (replay) {
      for (const char* k : kTrainable) net.parameter(k).set_grad(f.t.at(st + ".grad." + k).clone());
    } else {
      Tensor loss = net.loss(x[s], target[s]);
      CHECK(loss.item() == doctest::Approx(ref["loss"].get<double>()).epsilon(1e-5));
      loss.backward();
      CHECK(!net.head->weight.grad().defined());  // frozen
    }
    // Replay clips with torch's norm (isolating the optimizer); vt's own norm is checked against it.
    const double norm = optim::grad_norm(trainable);
    optim::clip_grads_with_norm_(trainable, tr["max_norm"], replay ? ref["total_norm"].get<double>() : norm);
    worst_norm = std::max(worst_norm, std::fabs(norm / ref["total_norm"].get<double>() - 1));
    for (size_t g = 0; g < 2; ++g) CHECK(opt.groups()[g].lr == ref["lr"][g].get<double>());
    opt.step();
    sched.step();
    for (const char* k : {"fc1.weight", "fc1.bias", "fc2.weight"})
      worst_f32 = std::max(worst_f32, max_rel_err(net.parameter(k), f.t.at(st + "." + k), 1e-3));
    worst_master = std::max(worst_master, max_rel_err(opt.groups()[1].master_view(0), f.t.at(st + ".scale_master"), 1e-3));
    CHECK_MESSAGE(bf16_close(net.scale, f.t.at(st + ".scale"), replay ? 0 : 1), st);
  }
  MESSAGE(std::string(replay ? "replayed torch grads" : "vt forward/backward"), ": max rel err f32 params ", worst_f32,
          ", bf16 master ", worst_master, ", grad norm ", worst_norm);
  CHECK(worst_norm < 1e-6);
  CHECK(worst_f32 < 1e-6);
  CHECK(worst_master < 1e-6);
  CHECK(opt.groups()[0].steps == std::vector<int64_t>{10, 10});
}

TEST_CASE("AdamW + cosine warmup + clipping: 10 steps match torch.optim.AdamW (torch's gradients)") {
  run_fixture_training(true);
}

TEST_CASE("AdamW + cosine warmup + clipping: 10 steps match torch.optim.AdamW (vt's gradients)") {
  run_fixture_training(false);
}

TEST_CASE("AdamW layout: flat fp32 buffers per group, padded to the world size, views per parameter") {
  TinyNet net;
  optim::AdamW opt = make_optimizer(net, 3);
  const auto& g0 = opt.groups()[0];
  CHECK(g0.numel == 48 + 8);
  CHECK(g0.padded_numel == 57);
  CHECK(g0.offsets == std::vector<int64_t>{0, 48});
  CHECK(opt.groups()[1].padded_numel % 3 == 0);
  CHECK(g0.master_view(1).storage() == g0.master.storage());
  CHECK(bitwise_equal(g0.master_view(1), net.fc1->bias));
  // Frozen parameters get no state; a parameter without a gradient is skipped and keeps t = 0.
  Tensor frozen = ones({4});
  optim::AdamW opt2({net.fc1->bias, frozen});
  CHECK(opt2.groups()[0].params.size() == 1);
  CHECK(opt2.groups()[0].skipped.size() == 1);
  Tensor before = net.fc1->bias.clone();
  opt2.step();
  CHECK(bitwise_equal(before, net.fc1->bias));
  CHECK(opt2.groups()[0].steps[0] == 0);
}

TEST_CASE("AdamW reads an fp32 gradient of a bf16 parameter as it is") {
  Generator gen(3);
  Tensor g16 = randn({37}, DType::F32, &gen).to(DType::BF16);  // values exact in both dtypes
  Tensor init = randn({37}, DType::F32, &gen).to(DType::BF16);
  Tensor a = init.clone().requires_grad_(), b = init.clone().requires_grad_();
  optim::AdamW opt_a({a}), opt_b({b});
  a.set_grad(g16);
  b.set_grad(g16.to(DType::F32));
  opt_a.step();
  opt_b.step();
  CHECK(bitwise_equal(a, b));
  CHECK(bitwise_equal(opt_a.groups()[0].master, opt_b.groups()[0].master));
}

// Random batches from vt's Philox stream; `steps` AdamW steps starting at batch `first`. With
// `dropout`, the hidden layer's dropout draws from that generator, whose state runs on across steps
// (as a training generator does), so a resumed run must restore it.
static void train_steps(TinyNet& net, optim::AdamW& opt, optim::Scheduler& sched, int first, int steps,
                        Generator* dropout = nullptr) {
  for (int s = first; s < first + steps; ++s) {
    Generator g(1000 + s);
    Tensor x = randn({16, 6}, DType::F32, &g), target = randn({16, 3}, DType::F32, &g);
    opt.zero_grad();
    net.loss(x, target, dropout).backward();
    optim::clip_grad_norm_(net.parameters(true), 0.3);
    opt.step();
    sched.step();
  }
}

// The frozen head is the fixture's init after any number of steps, and a model checkpoint must
// carry it: a resumed model has it only if loading the checkpoint worked.
static void check_frozen_head(const TinyNet& net, const std::string& where) {
  const auto& f = fixture();
  CHECK_MESSAGE(bitwise_equal(net.head->weight, f.t.at("init.head.weight")), where);
  CHECK_MESSAGE(bitwise_equal(net.head->bias, f.t.at("init.head.bias")), where);
}

// Every tensor of the model moved away from its value, so that a load that does nothing shows: the
// frozen head has no optimizer state to restore it, and the trainable parameters would be
// overwritten by the optimizer's master copy only at the first step.
static void perturb(TinyNet& net) {
  std::map<std::string, Tensor> moved;
  for (auto& [name, t] : net.state_dict()) moved[name] = add(t, ones(t.shape(), t.dtype())).detach();
  net.load_state_dict(moved);
}

TEST_CASE("resuming from saved model + optimizer state equals the uninterrupted run, bit for bit") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("vt_test_optim_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto cosine = optim::cosine_schedule_with_warmup(2, 8);
  // Legs: world size 1 and 3 (a state saved with 3 loads into 1); the last with dropout, whose
  // generator state is saved with the optimizer and restored.
  struct Leg {
    int64_t ws;
    bool dropout;
  };
  for (const Leg leg : {Leg{1, false}, Leg{3, false}, Leg{1, true}}) {
    const int64_t ws = leg.ws;
    CAPTURE(ws);
    CAPTURE(leg.dropout);
    Generator drop_a(77), drop_b(77);
    TinyNet a;
    optim::AdamW opt_a = make_optimizer(a, ws);
    optim::Scheduler sched_a(opt_a, cosine);
    train_steps(a, opt_a, sched_a, 0, 6, leg.dropout ? &drop_a : nullptr);
    check_frozen_head(a, "uninterrupted run");

    TinyNet b;
    {
      optim::AdamW opt_b = make_optimizer(b, ws);
      optim::Scheduler sched_b(opt_b, cosine);
      train_steps(b, opt_b, sched_b, 0, 3, leg.dropout ? &drop_b : nullptr);
      b.save((dir / "model.safetensors").string());
      opt_b.save((dir / "optim.safetensors").string(), {{"scheduler.last_step", std::to_string(sched_b.last_step())},
                                                        {"rng.seed", std::to_string(drop_b.seed())},
                                                        {"rng.offset", std::to_string(drop_b.offset())}});
    }
    TinyNet c;  // a fresh process would start here
    perturb(c);
    REQUIRE(!bitwise_equal(c.head->weight, a.head->weight));
    c.load((dir / "model.safetensors").string());
    check_frozen_head(c, "resumed model after load");
    optim::AdamW opt_c = make_optimizer(c, 1);  // a state saved with world size 3 loads into 1
    auto md = opt_c.load((dir / "optim.safetensors").string());
    optim::Scheduler sched_c(opt_c, cosine);
    sched_c.set_last_step(std::stoll(md.at("scheduler.last_step")));
    Generator drop_c;  // a fresh process's generator, then the saved state
    drop_c.set_state(std::stoull(md.at("rng.seed")), std::stoull(md.at("rng.offset")));
    if (leg.dropout) REQUIRE(drop_c.offset() > 0);  // the first three steps drew dropout masks
    train_steps(c, opt_c, sched_c, 3, 3, leg.dropout ? &drop_c : nullptr);

    check_frozen_head(c, "resumed run");
    for (auto& [name, t] : a.state_dict()) CHECK_MESSAGE(bitwise_equal(t, c.parameter(name)), name, " ws=", ws);
    for (size_t g = 0; g < 2; ++g) {
      const auto &ga = opt_a.groups()[g], &gc = opt_c.groups()[g];
      CHECK(bitwise_equal(ga.master.narrow(0, 0, ga.numel), gc.master.narrow(0, 0, gc.numel)));
      CHECK(bitwise_equal(ga.exp_avg.narrow(0, 0, ga.numel), gc.exp_avg.narrow(0, 0, gc.numel)));
      CHECK(bitwise_equal(ga.exp_avg_sq.narrow(0, 0, ga.numel), gc.exp_avg_sq.narrow(0, 0, gc.numel)));
      CHECK(ga.steps == gc.steps);
      CHECK(ga.lr == gc.lr);
    }
  }
  // A state from another model is refused with the names.
  TinyNet d;
  optim::AdamW wrong({d.fc1->weight});
  CHECK_THROWS_WITH_AS(wrong.load((dir / "optim.safetensors").string()), doctest::Contains("groups"), Error);
  fs::remove_all(dir);
}

TEST_CASE("gradient accumulation: N micro-batches of b equal one batch of N*b for a mean loss") {
  const int N = 4, b = 5;
  Generator g(7);
  Tensor x = randn({N * b, 6}, DType::F32, &g), target = randn({N * b, 3}, DType::F32, &g);
  TinyNet big, micro, scaled;
  for (TinyNet* n : {&big, &micro, &scaled}) n->to(DType::F32);  // f32 grads: no bf16 rounding per add
  CHECK(big.scale.dtype() == DType::F32);
  big.loss(x, target).backward();
  for (int i = 0; i < N; ++i) {
    micro.loss(x.narrow(0, i * b, b), target.narrow(0, i * b, b)).backward();  // grads add up
    mul(scaled.loss(x.narrow(0, i * b, b), target.narrow(0, i * b, b)), 1.0 / N).backward();  // HF's way
  }
  optim::average_grads_(micro.parameters(true), N);
  for (auto& [name, t] : big.named_parameters(true)) {
    // Summation order differs (per micro-batch, then across), so compare relative to the largest entry.
    CHECK_MESSAGE(max_abs_err(micro.parameter(name).grad(), t.grad()) < 1e-6 * max_abs(t.grad()), name);
    CHECK_MESSAGE(max_abs_err(scaled.parameter(name).grad(), t.grad()) < 1e-6 * max_abs(t.grad()), name);
  }
}
