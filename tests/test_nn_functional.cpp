// The nn layers and losses (include/vt/nn/) against PyTorch fixtures, float64 gradcheck of every
// differentiable op, dropout statistics, thread-count determinism, and bad-input errors.
#include <omp.h>

#include <cmath>
#include <functional>

#include "op_table_nn_functional.h"
#include "vt/gradcheck.h"
#include "vt/random.h"

using namespace vt;
using V = std::vector<Tensor>;

TEST_CASE("nn layers and losses match PyTorch on the CPU (forward and backward)") {
  const auto& fx = test::load_fixture("nn_functional");
  REQUIRE(fx.cases.size() > 90);
  int failed = 0;
  for (auto& c : fx.cases) {
    auto fails = test::run_case(c, fx, Device::cpu(), test::op_table_nn_functional());
    for (auto& f : fails) MESSAGE(f);
    failed += !fails.empty();
  }
  CHECK(failed == 0);
}

TEST_CASE("every op of the nn fixture has an entry in the nn op table") {
  const auto& fx = test::load_fixture("nn_functional");
  for (auto& c : fx.cases) CHECK_MESSAGE(test::op_table_nn_functional().count(c["op"]), c["op"]);
}

TEST_CASE("every fused nn kernel is registered on the CPU") {
  for (const char* k : {"softmax_forward", "softmax_backward", "activation_forward", "activation_backward",
                        "swiglu_forward", "swiglu_backward", "rms_norm_forward", "rms_norm_backward",
                        "add_rms_norm_forward", "add_layer_norm_forward",
                        "layer_norm_forward", "layer_norm_backward", "group_norm_forward", "group_norm_backward",
                        "cross_entropy_forward", "cross_entropy_backward", "bitwise_cross_entropy_forward",
                        "bitwise_cross_entropy_backward"})
    CHECK_MESSAGE(kernels::supports(k, Device::cpu()), k);
}

// Kernels for this test only: the registry keeps each one's signature.
static int64_t g_registry_calls = 0;
static void registry_test_kernel(const Tensor& x, double scale) { g_registry_calls += x.numel() * int64_t(scale); }
using RegistryTestFn = void(const Tensor& x, double scale);
using OtherSignatureFn = void(const Tensor& x, float scale);  // a float where the kernel takes a double

TEST_CASE("the kernel registry checks each kernel's signature at lookup, and a handle caches it") {
  kernels::register_kernel("registry_test_kernel", DeviceType::CPU, &registry_test_kernel);
  const Device cpu = Device::cpu();
  CHECK(kernels::supports("registry_test_kernel", cpu));
  CHECK((kernels::get<RegistryTestFn>("registry_test_kernel", cpu) == &registry_test_kernel));
  // Another signature: an error naming the kernel and both signatures, not a call through it.
  CHECK_THROWS_WITH_AS(kernels::get<OtherSignatureFn>("registry_test_kernel", cpu),
                       doctest::Contains("kernel registry_test_kernel on cpu was registered as void (vt::Tensor "
                                         "const&, double) but is looked up as void (vt::Tensor const&, float)"),
                       Error);
  const kernels::Kernel<OtherSignatureFn> wrong("registry_test_kernel");
  CHECK_THROWS_AS(wrong(cpu), Error);
  // A real kernel looked up with another kernel's signature.
  CHECK_THROWS_WITH_AS(kernels::get<RegistryTestFn>("softmax_forward", cpu), doctest::Contains("softmax_forward"),
                       Error);
  // Missing kernels and second registrations are errors that name the kernel.
  CHECK_THROWS_WITH_AS(kernels::get<RegistryTestFn>("no_such_kernel", cpu),
                       doctest::Contains("no_such_kernel: no kernel for device cpu"), Error);
  CHECK_THROWS_WITH_AS(kernels::register_kernel("registry_test_kernel", DeviceType::CPU, &registry_test_kernel),
                       doctest::Contains("kernel registry_test_kernel is registered twice"), Error);
  // The handle looks up once and calls the registered function.
  const kernels::Kernel<RegistryTestFn> handle("registry_test_kernel");
  CHECK((handle(cpu) == &registry_test_kernel));
  CHECK((handle(cpu) == handle(cpu)));
  g_registry_calls = 0;
  handle(cpu)(ones({3, 4}), 2.0);
  CHECK(g_registry_calls == 24);
}

// ---- float64 gradcheck --------------------------------------------------------------------------
static Tensor rnd(const Shape& s, uint64_t seed, double scale = 1) {
  Generator g(seed);
  return mul(randn(s, DType::F64, &g), scale);
}
static Tensor leaf(const Shape& s, uint64_t seed, double scale = 1) { return rnd(s, seed, scale).requires_grad_(); }

static void check_grad(const char* what, const std::function<Tensor(const V&)>& f, V inputs) {
  GradcheckResult r = gradcheck(f, std::move(inputs), 1e-6, 1e-6, 1e-4);
  CHECK_MESSAGE(r.ok, what, ": ", r.message);
}

TEST_CASE("gradcheck: linear, softmax, activations") {
  check_grad("linear", [](const V& x) { return nn::linear(x[0], x[1], x[2]); },
             {leaf({2, 3, 5}, 1), leaf({4, 5}, 2), leaf({4}, 3)});
  check_grad("linear no bias", [](const V& x) { return nn::linear(x[0], x[1]); }, {leaf({3, 5}, 4), leaf({2, 5}, 5)});
  check_grad("softmax last", [](const V& x) { return nn::softmax(x[0], -1); }, {leaf({3, 7}, 6, 2)});
  check_grad("softmax mid", [](const V& x) { return nn::softmax(x[0], 1); }, {leaf({2, 4, 3}, 7, 2)});
  check_grad("log_softmax last", [](const V& x) { return nn::log_softmax(x[0], -1); }, {leaf({3, 7}, 8, 2)});
  check_grad("log_softmax dim0", [](const V& x) { return nn::log_softmax(x[0], 0); }, {leaf({4, 3}, 9, 2)});
  check_grad("silu", [](const V& x) { return nn::silu(x[0]); }, {leaf({3, 5}, 10, 3)});
  check_grad("gelu", [](const V& x) { return nn::gelu(x[0]); }, {leaf({3, 5}, 11, 3)});
  check_grad("gelu tanh", [](const V& x) { return nn::gelu(x[0], true); }, {leaf({3, 5}, 12, 3)});
  check_grad("quick_gelu", [](const V& x) { return nn::quick_gelu(x[0]); }, {leaf({3, 5}, 13, 3)});
  check_grad("swiglu", [](const V& x) { return nn::swiglu(x[0], x[1]); }, {leaf({3, 5}, 14, 2), leaf({3, 5}, 15)});
  check_grad("dropout (fixed seed)", [](const V& x) {
    Generator g(7);
    return nn::dropout(x[0], 0.4, true, &g);
  }, {leaf({4, 6}, 16)});
  check_grad("drop_path (fixed seed)", [](const V& x) {
    Generator g(8);
    return nn::drop_path(x[0], 0.5, true, &g);
  }, {leaf({6, 2, 3}, 17)});
}

TEST_CASE("gradcheck: norms") {
  check_grad("rms_norm", [](const V& x) { return nn::rms_norm(x[0], x[1], 1e-6); }, {leaf({3, 7}, 20), leaf({7}, 21)});
  check_grad("rms_norm no weight", [](const V& x) { return nn::rms_norm(x[0], Tensor(), 1e-6); }, {leaf({2, 3, 4}, 22)});
  // add_rms_norm's two outputs, both used: gradients of normed and of sum add up.
  check_grad("add_rms_norm", [](const V& x) {
    nn::AddNorm r = nn::add_rms_norm(x[0], x[1], x[2], 1e-6);
    return add(r.normed, mul(r.sum, r.sum));
  }, {leaf({3, 7}, 34), leaf({3, 7}, 35), leaf({7}, 36)});
  check_grad("layer_norm", [](const V& x) { return nn::layer_norm(x[0], {6}, x[1], x[2]); },
             {leaf({4, 6}, 23), leaf({6}, 24), leaf({6}, 25)});
  check_grad("layer_norm 2-D shape", [](const V& x) { return nn::layer_norm(x[0], {2, 3}, x[1], x[2]); },
             {leaf({2, 2, 3}, 26), leaf({2, 3}, 27), leaf({2, 3}, 28)});
  check_grad("layer_norm no affine", [](const V& x) { return nn::layer_norm(x[0], {5}); }, {leaf({3, 5}, 29)});
  check_grad("add_layer_norm", [](const V& x) {
    nn::AddNorm r = nn::add_layer_norm(x[0], x[1], {6}, x[2], x[3]);
    return add(r.normed, mul(r.sum, r.sum));
  }, {leaf({4, 6}, 37), leaf({4, 6}, 38), leaf({6}, 39), leaf({6}, 40)});
  check_grad("group_norm", [](const V& x) { return nn::group_norm(x[0], 2, x[1], x[2]); },
             {leaf({2, 4, 3}, 30), leaf({4}, 31), leaf({4}, 32)});
  check_grad("group_norm no affine", [](const V& x) { return nn::group_norm(x[0], 3); }, {leaf({2, 6, 2, 2}, 33)});
}

TEST_CASE("gradcheck: losses") {
  Tensor y = from_vector<int64_t>({2, -100, 0, 4, 1});
  for (auto red : {nn::Reduction::Mean, nn::Reduction::Sum, nn::Reduction::None})
    for (double ls : {0.0, 0.15})
      check_grad("cross_entropy", [&](const V& x) { return nn::cross_entropy(x[0], y, -100, ls, red); },
                 {leaf({5, 6}, 40, 2)});
  Tensor bits = from_vector<int64_t>({0, 1, 1, 0, 1, 1, 0, 0, 1, 0, 1, 0}, {2, 3, 2});
  Tensor w = from_vector<double>({0.5, 1.0, 2.0, 0.1, 0.3, 0.7}, {2, 3});
  check_grad("bitwise_cross_entropy", [&](const V& x) { return nn::bitwise_cross_entropy(x[0], bits); },
             {leaf({2, 3, 2, 2}, 41, 2)});
  check_grad("bitwise_cross_entropy weighted, smoothed",
             [&](const V& x) { return nn::bitwise_cross_entropy(x[0], bits, w, 0.1); }, {leaf({2, 3, 2, 2}, 42, 2)});
  check_grad("dpo_sigmoid_loss", [](const V& x) { return nn::dpo_sigmoid_loss(x[0], x[1], x[2], x[3], 0.3, 0.1).loss; },
             {leaf({4}, 43, 3), leaf({4}, 44, 3), leaf({4}, 45, 3), leaf({4}, 46, 3)});
}

// ---- dropout -------------------------------------------------------------------------------------
TEST_CASE("dropout: keeps 1 - p of the elements, scales them by 1 / (1 - p), reproducible by seed") {
  Tensor x = ones({200000});
  Generator g1(123), g2(123);
  Tensor a = nn::dropout(x, 0.3, true, &g1), b = nn::dropout(x, 0.3, true, &g2);
  CHECK(sum(ne(a, b)).item() == 0);
  double kept = sum(ne(a, 0.0)).item() / x.numel();
  CHECK(std::fabs(kept - 0.7) < 0.005);
  CHECK(sum(logical_and(ne(a, 0.0), ne(a, 1.0 / 0.7))).item() == 0);
  CHECK(nn::dropout(x, 0.3, false).is_same(x));
  CHECK(nn::dropout(x, 0.0, true).is_same(x));
  CHECK(sum(nn::dropout(x, 1.0, true)).item() == 0);
  // The gradient is the mask: dx = dy * keep / (1 - p).
  Tensor xl = rnd({1000}, 3).requires_grad_();
  Generator g3(9);
  Tensor y = nn::dropout(xl, 0.5, true, &g3);
  sum(y).backward();
  CHECK(sum(ne(mul(xl.grad(), xl.detach()), y.detach())).item() == 0);
}

TEST_CASE("drop_path: whole samples are dropped or scaled") {
  Tensor x = ones({4000, 3, 5});
  Generator g(5);
  Tensor y = nn::drop_path(x, 0.25, true, &g);
  Tensor per = sum(y, {1, 2});  // 0 or 15 / 0.75 = 20 per sample
  CHECK(sum(logical_and(ne(per, 0.0), gt(abs(sub(per, 20.0)), 1e-4))).item() == 0);
  double kept = sum(ne(per, 0.0)).item() / 4000;
  CHECK(std::fabs(kept - 0.75) < 0.03);
  CHECK(nn::drop_path(x, 0.25, false).is_same(x));
}

// ---- thread-count determinism ---------------------------------------------------------------------
TEST_CASE("norm parameter gradients are bitwise identical on 1 and 2 threads") {
  auto run = [](int threads) {
    omp_set_num_threads(threads);
    Tensor x = rnd({300, 257}, 50).to(DType::F32).requires_grad_();
    Tensor w = rnd({257}, 51).to(DType::F32).requires_grad_(), b = rnd({257}, 52).to(DType::F32).requires_grad_();
    Tensor gy = rnd({300, 257}, 53).to(DType::F32);
    sum(mul(nn::rms_norm(x, w), gy)).backward();
    sum(mul(nn::layer_norm(x, {257}, w, b), gy)).backward();
    Tensor xg = rnd({4, 64, 11, 13}, 54).to(DType::F32).requires_grad_();
    Tensor wg = rnd({64}, 55).to(DType::F32).requires_grad_();
    sum(mul(nn::group_norm(xg, 32, wg), rnd({4, 64, 11, 13}, 56).to(DType::F32))).backward();
    return V{x.grad(), w.grad(), b.grad(), xg.grad(), wg.grad()};
  };
  int prev = omp_get_max_threads();
  V one = run(1), two = run(2);
  omp_set_num_threads(prev);
  for (size_t i = 0; i < one.size(); ++i) CHECK_MESSAGE(sum(ne(one[i], two[i])).item() == 0, "tensor ", i);
}

// add_rms_norm / add_layer_norm (fused(x, r, w, b) -> {normed, sum}) against add then the norm
// (plain(sum, w, b)), bit for bit: outputs and the gradients of x, r, w (and b).
static void check_add_norm(const std::function<nn::AddNorm(const V&)>& fused,
                           const std::function<Tensor(const V&)>& plain) {
  for (DType t : {DType::F32, DType::BF16, DType::F16, DType::F64}) {
    CAPTURE(dtype_name(t));
    for (const Shape& s : {Shape{5, 64}, Shape{2, 3, 37}}) {
      const int64_t D = s[s.size() - 1];
      auto make = [&](const Shape& sh, uint64_t seed) { return rnd(sh, seed).to(t).requires_grad_(); };
      V a{make(s, 60), make(s, 61), make({D}, 62), make({D}, 63)};
      V b{make(s, 60), make(s, 61), make({D}, 62), make({D}, 63)};
      const Tensor gy = rnd(s, 64).to(t), gs = rnd(s, 65).to(t);
      nn::AddNorm f = fused(a);
      Tensor sum2 = add(b[0], b[1]), y2 = plain({sum2, b[2], b[3]});
      CHECK(sum(ne(f.sum, sum2)).item() == 0);
      CHECK(sum(ne(f.normed, y2)).item() == 0);
      // Both outputs feed the loss, as in a decoder layer (normed -> MLP, sum -> the next residual).
      sum(add(mul(f.normed, gy), mul(f.sum, gs))).backward();
      sum(add(mul(y2, gy), mul(sum2, gs))).backward();
      for (size_t i = 0; i < a.size(); ++i)
        if (a[i].grad().defined() || b[i].grad().defined()) CHECK(sum(ne(a[i].grad(), b[i].grad())).item() == 0);
    }
  }
}

TEST_CASE("add_rms_norm and add_layer_norm equal add then the norm bit for bit, forward and backward") {
  check_add_norm([](const V& v) { return nn::add_rms_norm(v[0], v[1], v[2], 1e-6); },
                 [](const V& v) { return nn::rms_norm(v[0], v[1], 1e-6); });
  check_add_norm([](const V& v) { return nn::add_layer_norm(v[0], v[1], {v[0].size(-1)}, v[2], v[3]); },
                 [](const V& v) { return nn::layer_norm(v[0], {v[0].size(-1)}, v[1], v[2]); });
  // Without parameters, and without autograd.
  Tensor x = rnd({4, 16}, 66).to(DType::BF16), r = rnd({4, 16}, 67).to(DType::BF16);
  nn::AddNorm f = nn::add_rms_norm(x, r, Tensor());
  CHECK(sum(ne(f.normed, nn::rms_norm(add(x, r), Tensor()))).item() == 0);
  CHECK_FALSE(f.normed.requires_grad());
  nn::AddNorm l = nn::add_layer_norm(x, r, {16});
  CHECK(sum(ne(l.normed, nn::layer_norm(add(x, r), {16}))).item() == 0);
}

// ---- semantics worth pinning ---------------------------------------------------------------------
TEST_CASE("dpo_sigmoid_loss: ln 2 at equal policy and reference, TRL metrics and gradients") {
  Tensor pc = from_vector<float>({-120.f, -80.f}).requires_grad_(), pr = from_vector<float>({-90.f, -85.f}).requires_grad_();
  nn::DpoOutput o = nn::dpo_sigmoid_loss(pc, pr, pc.detach(), pr.detach(), 0.1);
  CHECK(o.loss.item() == doctest::Approx(std::log(2.0)).epsilon(1e-7));
  CHECK(o.margins.item() == 0);
  CHECK(o.accuracies.item() == 0);
  o.loss.backward();
  // dL/du = -sigmoid(0) / N = -0.25; dL/d policy_chosen = beta * dL/du
  CHECK(pc.grad().tolist<float>() == std::vector<float>{-0.025f, -0.025f});
  CHECK(pr.grad().tolist<float>() == std::vector<float>{0.025f, 0.025f});
}

TEST_CASE("cross_entropy: ignored rows get zero gradient, valid rows a gradient summing to zero") {
  Tensor z = rnd({4, 9}, 60).to(DType::F32).requires_grad_();
  Tensor y = from_vector<int64_t>({3, -100, 8, 0});
  Tensor loss = nn::cross_entropy(z, y);
  loss.backward();
  std::vector<float> g = z.grad().tolist<float>();
  for (int c = 0; c < 9; ++c) CHECK(g[9 + c] == 0.0f);
  // each valid row's gradient sums to zero (softmax minus one-hot), scaled by 1/3
  for (int r : {0, 2, 3}) {
    double s = 0;
    for (int c = 0; c < 9; ++c) s += g[r * 9 + c];
    CHECK(std::fabs(s) < 1e-6);
  }
}

TEST_CASE("add_rms_norm / add_layer_norm: mismatched residuals are named errors") {
  Tensor x = rnd({2, 8}, 70).to(DType::F32), w = rnd({8}, 71).to(DType::F32);
  CHECK_THROWS_WITH_AS(nn::add_rms_norm(x, rnd({2, 9}, 72).to(DType::F32), w),
                       doctest::Contains("add_rms_norm: residual (2, 9) does not match input (2, 8)"), Error);
  CHECK_THROWS_WITH_AS(nn::add_rms_norm(x, rnd({2, 8}, 72).to(DType::BF16), w),
                       doctest::Contains("add_rms_norm: residual is bfloat16, input is float32"), Error);
  CHECK_THROWS_WITH_AS(nn::add_rms_norm(x, Tensor(), w), doctest::Contains("residual (undefined)"), Error);
  CHECK_THROWS_WITH_AS(nn::add_rms_norm(x, rnd({2, 8}, 73).to(DType::F32), rnd({7}, 74).to(DType::F32)),
                       doctest::Contains("add_rms_norm: weight"), Error);
  CHECK_THROWS_WITH_AS(nn::add_layer_norm(x, rnd({2, 9}, 75).to(DType::F32), {8}),
                       doctest::Contains("add_layer_norm: residual (2, 9) does not match input (2, 8)"), Error);
  CHECK_THROWS_WITH_AS(nn::add_layer_norm(x, x, {7}), doctest::Contains("does not end with normalized_shape"),
                       Error);
}

// ---- bad input --------------------------------------------------------------------------------------
static std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}
#define CHECK_ERROR(expr, ...)                                                     \
  do {                                                                             \
    std::string msg = error_of([&] { (void)(expr); });                             \
    for (const char* part : {__VA_ARGS__}) CHECK_MESSAGE(msg.find(part) != std::string::npos, msg); \
  } while (0)

TEST_CASE("bad inputs raise vt::Error naming the op and the sizes") {
  Tensor x = zeros({4, 6});
  CHECK_ERROR(nn::linear(x, zeros({3, 5})), "linear", "(4, 6)", "(3, 5)", "5");
  CHECK_ERROR(nn::linear(x, zeros({3, 6}), zeros({4})), "linear", "bias", "(4)", "(3, 6)");
  CHECK_ERROR(nn::rms_norm(x, zeros({5})), "rms_norm", "weight", "(5)", "(6)");
  CHECK_ERROR(nn::layer_norm(x, {5}), "layer_norm", "(4, 6)", "normalized_shape (5)");
  CHECK_ERROR(nn::layer_norm(x, {6}, zeros({4})), "layer_norm", "weight (4)");
  CHECK_ERROR(nn::group_norm(zeros({2, 64, 3, 3}), 5), "group_norm", "num_groups 5", "64 channels", "(2, 64, 3, 3)");
  CHECK_ERROR(nn::group_norm(zeros({2, 8}), 4, zeros({6})), "group_norm", "weight (6)", "(8)");
  CHECK_ERROR(nn::swiglu(x, zeros({4, 5})), "swiglu", "(4, 6)", "(4, 5)");
  CHECK_ERROR(nn::softmax(x, 2), "softmax", "dim 2");
  CHECK_ERROR(nn::silu(zeros({3}, DType::I64)), "silu", "int64");
  CHECK_ERROR(nn::dropout(x, 1.5), "dropout", "1.5");
  CHECK_ERROR(nn::cross_entropy(x, from_vector<int64_t>({0, 1, 6, 2})), "cross_entropy", "target 6", "row 2", "6 classes");
  CHECK_ERROR(nn::cross_entropy(x, from_vector<int64_t>({0, -1, 1, 2})), "cross_entropy", "target -1");
  CHECK_ERROR(nn::cross_entropy(x, from_vector<int64_t>({0, 1, 2})), "cross_entropy", "target (3)", "(4, 6)", "(4)");
  CHECK_ERROR(nn::cross_entropy(x, zeros({4})), "cross_entropy", "float32");
  CHECK_ERROR(nn::bitwise_cross_entropy(zeros({2, 3, 2}), from_vector<int64_t>({0, 1, 2, 0, 1, 1}, {2, 3})),
              "bitwise_cross_entropy", "is 2", "token 0", "bit 2");
  CHECK_ERROR(nn::bitwise_cross_entropy(zeros({2, 3, 2}), zeros({2, 4}, DType::I64)), "bitwise_cross_entropy",
              "bits (2, 4)", "(2, 3, 2)");
  CHECK_ERROR(nn::bitwise_cross_entropy(zeros({2, 3, 3}), zeros({2, 3}, DType::I64)), "bitwise_cross_entropy",
              "(..., d, 2)", "(2, 3, 3)");
  CHECK_ERROR(nn::bitwise_cross_entropy(zeros({2, 3, 2}), zeros({2, 3}, DType::I64), ones({3})),
              "token_weight (3)", "(2)");
  CHECK_ERROR(nn::dpo_sigmoid_loss(zeros({3}), zeros({3}), zeros({3}), zeros({2})), "dpo_sigmoid_loss",
              "ref_rejected_logps (2)", "(3)");
}
