// The fused nn and optimizer kernels of the CUDA backend (cuda/nn_*.cu, cuda/optim_adamw.cu) against
// PyTorch and the CPU: the nn fixture tables (tests/op_table_nn_functional.h, op_table_nn_conv.h) run
// on CUDA, shapes the fixtures do not reach (long rows that take the block-per-row and 128-bit
// paths), run-to-run determinism of the parameter gradients, and AdamW bit for bit against the CPU.
//
// An op with no CUDA kernel is a gap only when kExpectedGaps lists it; any other case that fails,
// for want of a kernel or otherwise (a misspelt registration), fails the test, and a listed gap
// that passes must leave the list. conv2d runs twice: on cuDNN (when built in) and on im2col
// (VT_CONV_IM2COL=1), and the test checks that each call took the path it meant. Every case skips
// itself when no GPU is visible (CI has none), and CTest reports the suite as skipped.
#ifdef VT_WITH_CUDA
#include <cstdlib>
#include <cstring>
#include <functional>
#include <set>

#include "op_table_nn_attention.h"
#include "op_table_nn_conv.h"
#include "op_table_nn_functional.h"
#include "../cuda/nn_kernels.h"
#include "cuda_test_util.h"
#include "vt/backend.h"
#include "vt/cuda.h"
#include "vt/nn/functional.h"
#include "vt/nn/loss.h"
#include "vt/nn/norm.h"
#include "vt/optim/adamw.h"
#include "vt/random.h"

using namespace vt;

using test::bytes_of;
using test::kCpu;
using test::kGpu;

namespace {

// The fixture ops (the "op" of a case) that have no CUDA kernel yet. Every nn op has one today.
const std::set<std::string> kExpectedGaps = {};

// Runs every case of a fixture on CUDA. A case fails unless it passes, or its op is an expected gap
// and it fails only for want of a CUDA kernel.
void run_fixture_on_cuda(const char* stem, const std::map<std::string, test::OpFn>& table) {
  const auto& fx = test::load_fixture(stem);
  REQUIRE(fx.cases.size() > 0);
  int failed = 0, gaps = 0;
  std::set<std::string> gap_ops, passing_gaps;
  for (auto& c : fx.cases) {
    const std::string op = c["op"].get<std::string>();
    auto fails = test::run_case(c, fx, kGpu, table);
    bool no_kernel = !fails.empty();
    for (auto& f : fails) no_kernel = no_kernel && f.find("no kernel for device cuda") != std::string::npos;
    if (no_kernel && kExpectedGaps.count(op)) {
      ++gaps;
      gap_ops.insert(op);
      continue;
    }
    if (fails.empty() && kExpectedGaps.count(op)) passing_gaps.insert(op);
    for (auto& f : fails) MESSAGE(c["name"].get<std::string>(), " (", op, "): ", f);
    failed += !fails.empty();
  }
  std::string list;
  for (auto& o : gap_ops) list += (list.empty() ? "" : ", ") + o;
  const int total = static_cast<int>(fx.cases.size());
  MESSAGE(stem, ": ", total - failed - gaps, " of ", total, " cases pass on CUDA; ", gaps,
          " without a CUDA kernel (expected gaps: ", (list.empty() ? "none" : list), ")");
  CHECK(failed == 0);
  for (auto& o : passing_gaps) FAIL_CHECK(o, " is listed in kExpectedGaps but has a CUDA kernel now: unlist it");
}

Tensor randn_on(const Shape& s, DType t, uint64_t seed) {
  Generator g(seed);
  return randn(s, DType::F32, &g).to(t);
}

// Forward output and input gradients (for sum(out * gout)) of f on a device.
std::vector<Tensor> fwd_bwd(const std::function<Tensor(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& in,
                            Device d) {
  std::vector<Tensor> leaves;
  for (const Tensor& t : in) leaves.push_back(t.to(d).clone().requires_grad_());
  Tensor y = f(leaves);
  Tensor gout = randn_on(y.shape(), y.dtype(), 77).to(d);
  sum(mul(y, gout)).backward();
  std::vector<Tensor> r{y.detach().to(kCpu)};
  for (const Tensor& l : leaves) r.push_back(l.grad().to(kCpu));
  return r;
}

void check_close(const std::vector<Tensor>& got, const std::vector<Tensor>& want, double rtol, double atol) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    const std::string m = test::compare(got[i], want[i], rtol, atol);
    CHECK_MESSAGE(m.empty(), m);
  }
}

}  // namespace

TEST_CASE("cuda nn: the nn_functional fixtures match PyTorch on CUDA") {
  VT_SKIP_WITHOUT_GPU();
  run_fixture_on_cuda("nn_functional", test::op_table_nn_functional());
}

TEST_CASE("cuda nn: the nn_conv fixtures (interpolate, rope, conv) match PyTorch on CUDA") {
  VT_SKIP_WITHOUT_GPU();
  run_fixture_on_cuda("nn_conv", test::op_table_nn_conv());
}

// conv2d on each path: the default (cuDNN when vt has it, for f32, bf16 and f16), then im2col +
// cuBLAS forced by VT_CONV_IM2COL=1, which nn_conv.cu reads at each call. The run counters say
// which path each forward took; an f16 conv (no f16 case in the fixtures) is checked against the CPU.
TEST_CASE("cuda nn: conv2d on cuDNN and on im2col (VT_CONV_IM2COL, read per call) matches PyTorch and the CPU") {
  VT_SKIP_WITHOUT_GPU();
  const bool cudnn = kernels::supports("conv2d_forward_16bit", kGpu);  // registered with cuDNN only
  for (const char* im2col : {"0", "1"}) {
    CAPTURE(im2col);
    const test::ScopedEnv env("VT_CONV_IM2COL", im2col);
    const bool want_cudnn = cudnn && std::strcmp(im2col, "0") == 0;
    for (DType t : {DType::F32, DType::BF16, DType::F16}) {
      CAPTURE(dtype_name(t));
      const auto before = cuda::conv2d_forward_runs();
      const double tol = t == DType::F32 ? 1e-4 : 3e-2;
      Tensor x = randn_on({2, 8, 13, 11}, t, 61), w = mul(randn_on({6, 8, 3, 3}, t, 62), 0.2),
             b = randn_on({6}, t, 63);
      auto f = [](const std::vector<Tensor>& v) { return nn::conv2d(v[0], v[1], v[2], 2, 1); };
      check_close(fwd_bwd(f, {x, w, b}, kGpu), fwd_bwd(f, {x, w, b}, kCpu), tol, tol);
      const auto after = cuda::conv2d_forward_runs();
      CHECK_MESSAGE(after[0] - before[0] == (want_cudnn ? 1 : 0), "cuDNN forward calls");
      CHECK_MESSAGE(after[1] - before[1] == (want_cudnn ? 0 : 1), "im2col forward calls");
    }
    const auto before = cuda::conv2d_forward_runs();
    run_fixture_on_cuda("nn_conv", test::op_table_nn_conv());
    const auto after = cuda::conv2d_forward_runs();
    if (want_cudnn) CHECK(after[0] - before[0] > 0);
    else CHECK(after[0] - before[0] == 0);
    CHECK(after[1] - before[1] > 0);  // f64 takes im2col in either pass
  }
}

TEST_CASE("cuda nn: long rows (block per row, 128-bit loads, mixed dtypes) match the CPU") {
  VT_SKIP_WITHOUT_GPU();
  SUBCASE("softmax / log_softmax over 3000 classes, last dim and a middle dim") {
    Tensor x = randn_on({6, 3000}, DType::F32, 1);
    for (bool log : {false, true}) {
      auto f = [log](const std::vector<Tensor>& v) { return log ? nn::log_softmax(v[0], -1) : nn::softmax(v[0], -1); };
      check_close(fwd_bwd(f, {x}, kGpu), fwd_bwd(f, {x}, kCpu), 1e-5, 1e-6);
    }
    Tensor x3 = randn_on({3, 70, 5}, DType::BF16, 2);
    auto f = [](const std::vector<Tensor>& v) { return nn::softmax(v[0], 1); };
    check_close(fwd_bwd(f, {x3}, kGpu), fwd_bwd(f, {x3}, kCpu), 1e-2, 1e-3);
  }
  SUBCASE("rms_norm bf16 x with f32 weight, D = 4096 (vectorised) and D = 1000 (scalar)") {
    for (int64_t D : {4096, 1000}) {
      CAPTURE(D);
      Tensor x = randn_on({37, D}, DType::BF16, 3), w = randn_on({D}, DType::F32, 4);
      auto f = [](const std::vector<Tensor>& v) { return nn::rms_norm(v[0], v[1], 1e-6); };
      check_close(fwd_bwd(f, {x, w}, kGpu), fwd_bwd(f, {x, w}, kCpu), 2e-2, 2e-2);
    }
  }
  SUBCASE("layer_norm f32, D = 1024, 300 rows; group_norm bf16") {
    Tensor x = randn_on({300, 1024}, DType::F32, 5), w = randn_on({1024}, DType::F32, 6),
           b = randn_on({1024}, DType::F32, 7);
    auto f = [](const std::vector<Tensor>& v) { return nn::layer_norm(v[0], {1024}, v[1], v[2]); };
    check_close(fwd_bwd(f, {x, w, b}, kGpu), fwd_bwd(f, {x, w, b}, kCpu), 1e-4, 1e-4);
    Tensor xg = randn_on({2, 64, 9, 7}, DType::BF16, 8), wg = randn_on({64}, DType::BF16, 9),
           bg = randn_on({64}, DType::BF16, 10);
    auto g = [](const std::vector<Tensor>& v) { return nn::group_norm(v[0], 8, v[1], v[2]); };
    check_close(fwd_bwd(g, {xg, wg, bg}, kGpu), fwd_bwd(g, {xg, wg, bg}, kCpu), 3e-2, 5e-2);
  }
  SUBCASE("cross_entropy over 5000 classes with ignored rows and label smoothing") {
    Tensor z = randn_on({9, 5000}, DType::F32, 11);
    Tensor y = from_vector<int64_t>({1, 4999, -100, 0, 17, 2500, -100, 3, 4});
    auto f = [y](const std::vector<Tensor>& v) {
      return nn::cross_entropy(v[0], y.to(v[0].device()), -100, 0.1);
    };
    check_close(fwd_bwd(f, {z}, kGpu), fwd_bwd(f, {z}, kCpu), 1e-5, 1e-6);
    Tensor bad = from_vector<int64_t>({1, 5000, 0, 0, 0, 0, 0, 0, 0}).to(kGpu);
    std::string msg;
    try {
      (void)nn::cross_entropy(z.to(kGpu), bad);
    } catch (const Error& e) {
      msg = e.what();
    }
    CHECK_MESSAGE(msg.find("target 5000 at row 1 is out of range") != std::string::npos, msg);
  }
}

TEST_CASE("cuda nn: linear with the cuBLASLt bias / GELU epilogue matches the CPU, forward and backward") {
  VT_SKIP_WITHOUT_GPU();
  REQUIRE(kernels::supports("linear_bias_forward", kGpu));
  for (DType t : {DType::F32, DType::BF16, DType::F16}) {
    const double tol = t == DType::F32 ? 1e-4 : 2e-2;
    // Odd sizes (no multiple of 8 or 16) and a 3-D input.
    Tensor x = randn_on({3, 37, 61}, t, 31), w = mul(randn_on({45, 61}, t, 32), 0.2), b = randn_on({45}, t, 33);
    auto f = [](const std::vector<Tensor>& v) { return nn::linear(v[0], v[1], v[2]); };
    auto gpu = fwd_bwd(f, {x, w, b}, kGpu), cpu = fwd_bwd(f, {x, w, b}, kCpu);
    REQUIRE(gpu.size() == cpu.size());
    for (size_t i = 0; i < gpu.size(); ++i) {
      const Tensor a = gpu[i].to(kCpu).to(DType::F64), r = cpu[i].to(DType::F64);
      const double err = amax(abs(a - r)).item() / std::max(1.0, amax(abs(r)).item());
      INFO(dtype_name(t) << " output " << i << " error " << err);
      CHECK(err < tol);
    }
    NoGradGuard no_grad;
    const Tensor y = nn::linear_gelu_tanh(x.to(kGpu), w.to(kGpu), b.to(kGpu)).to(kCpu).to(DType::F64);
    const Tensor r = nn::gelu(nn::linear(x, w, b), true).to(DType::F64);
    const double err = amax(abs(y - r)).item() / std::max(1.0, amax(abs(r)).item());
    INFO(dtype_name(t) << " linear_gelu_tanh error " << err);
    CHECK(err < tol);
  }
}

// add_rms_norm (or add_layer_norm) on the GPU against add + the norm on the GPU (bit for bit: the
// same rounding and summation order) and against the CPU, forward and every gradient.
static void check_add_norm(int64_t rows, int64_t D, DType t, double tol, bool layer = false) {
  CAPTURE(rows);
  CAPTURE(D);
  CAPTURE(layer);
  const Tensor x = randn_on({rows, D}, t, 41), r = randn_on({rows, D}, t, 42), w = randn_on({D}, t, 43);
  const Tensor b = randn_on({D}, t, 44);
  auto fused = [layer](const std::vector<Tensor>& v) {
    nn::AddNorm o = layer ? nn::add_layer_norm(v[0], v[1], {v[0].size(-1)}, v[2], v[3])
                          : nn::add_rms_norm(v[0], v[1], v[2], 1e-6);
    return add(o.normed, mul(o.sum, 0.5));
  };
  auto composite = [layer](const std::vector<Tensor>& v) {
    Tensor s = add(v[0], v[1]);
    Tensor n = layer ? nn::layer_norm(s, {s.size(-1)}, v[2], v[3]) : nn::rms_norm(s, v[2], 1e-6);
    return add(n, mul(s, 0.5));
  };
  std::vector<Tensor> in{x, r, w};
  if (layer) in.push_back(b);
  const auto got = fwd_bwd(fused, in, kGpu), want = fwd_bwd(composite, in, kGpu);
  for (size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);  // 0: the output, then the gradients of x, residual, weight (and bias)
    CHECK_MESSAGE(bytes_of(got[i]) == bytes_of(want[i]), test::compare(got[i], want[i], 0, 0));
  }
  check_close(got, fwd_bwd(fused, in, kCpu), tol, tol);
}

TEST_CASE("cuda nn: add_rms_norm and add_layer_norm equal add + the norm bit for bit, and the CPU") {
  VT_SKIP_WITHOUT_GPU();
  for (bool layer : {false, true}) {
    check_add_norm(300, 3584, DType::BF16, 2e-2, layer);
    check_add_norm(17, 1000, DType::F32, 1e-4, layer);
    check_add_norm(9, 37, DType::F16, 2e-2, layer);  // scalar path
  }
}

// Both layouts of rms_norm (block rows, the default; warp rows under VT_RMS_NORM_BLOCK=0) against
// the CPU, and each run twice for the same bits.
TEST_CASE("cuda nn: rms_norm's block-row and warp-row layouts match the CPU and repeat bit for bit") {
  VT_SKIP_WITHOUT_GPU();
  for (const char* block : {"1", "0"}) {
    CAPTURE(block);
    const test::ScopedEnv env("VT_RMS_NORM_BLOCK", block);  // the layout is chosen per call
    run_fixture_on_cuda("nn_functional", test::op_table_nn_functional());
    struct Shape3 {
      int64_t rows, D;
      DType x, w;
      double tol;
    };
    // 1, 2 and 4 vectors per thread, a partly used last slot (3584 = 448 vectors of 8), many rows
    // per block, f32 and f64; a bf16 x with an f32 weight (f32 out) always takes the warp layout.
    const DType bf = DType::BF16, f32 = DType::F32, f64 = DType::F64;
    for (const Shape3& c : {Shape3{5000, 1536, bf, bf, 2e-2}, Shape3{300, 3584, bf, bf, 2e-2},
                            Shape3{37, 4096, bf, f32, 2e-2}, Shape3{64, 8192, bf, bf, 2e-2},
                            Shape3{100, 4096, f32, f32, 1e-4}, Shape3{20, 2048, f64, f64, 1e-10},
                            Shape3{9, 1000, bf, bf, 2e-2}}) {
      CAPTURE(c.rows);
      CAPTURE(c.D);
      Tensor x = randn_on({c.rows, c.D}, c.x, 31), w = randn_on({c.D}, c.w, 32);
      auto f = [](const std::vector<Tensor>& v) { return nn::rms_norm(v[0], v[1], 1e-6); };
      const auto gpu = fwd_bwd(f, {x, w}, kGpu);
      check_close(gpu, fwd_bwd(f, {x, w}, kCpu), c.tol, c.tol);
      const auto again = fwd_bwd(f, {x, w}, kGpu);
      for (size_t i = 0; i < gpu.size(); ++i) CHECK(bytes_of(gpu[i]) == bytes_of(again[i]));
    }
    check_add_norm(300, 3584, DType::BF16, 2e-2);
    check_add_norm(40, 4096, DType::F32, 1e-4);
    // Without a weight, and with a leading batch dim.
    Tensor x3 = randn_on({3, 50, 2048}, DType::BF16, 33);
    auto f = [](const std::vector<Tensor>& v) { return nn::rms_norm(v[0], Tensor(), 1e-6); };
    check_close(fwd_bwd(f, {x3}, kGpu), fwd_bwd(f, {x3}, kCpu), 2e-2, 2e-2);
  }
}

// Both layouts of group_norm (split groups, the default; one block per group under
// VT_GROUP_NORM_SPLIT=0) against the CPU, and each run twice for the same bits.
TEST_CASE("cuda nn: group_norm's split-group and group-block layouts match the CPU and repeat bit for bit") {
  VT_SKIP_WITHOUT_GPU();
  for (const char* split : {"1", "0"}) {
    CAPTURE(split);
    const test::ScopedEnv env("VT_GROUP_NORM_SPLIT", split);
    run_fixture_on_cuda("nn_functional", test::op_table_nn_functional());
    run_fixture_on_cuda("nn_conv", test::op_table_nn_conv());
    struct Case {
      Shape s;
      int64_t groups;
      DType t;
      double tol;
    };
    // A VAE-decoder-like plane (many chunks per group, 16-byte vectors), an odd plane (scalar
    // path), f32 with several samples, f64, and one channel per group.
    for (const Case& c : {Case{{1, 128, 96, 96}, 32, DType::BF16, 3e-2}, Case{{2, 64, 9, 7}, 8, DType::BF16, 3e-2},
                          Case{{3, 32, 33, 33}, 4, DType::F32, 1e-4}, Case{{2, 16, 40, 40}, 16, DType::F64, 1e-9},
                          Case{{1, 8, 256, 256}, 2, DType::F32, 1e-4}}) {
      CAPTURE(c.s.str());
      const int64_t C = c.s[1];
      Tensor x = randn_on(c.s, c.t, 51), w = randn_on({C}, c.t, 52), b = randn_on({C}, c.t, 53);
      const int64_t G = c.groups;
      auto f = [G](const std::vector<Tensor>& v) { return nn::group_norm(v[0], G, v[1], v[2]); };
      const auto gpu = fwd_bwd(f, {x, w, b}, kGpu);
      check_close(gpu, fwd_bwd(f, {x, w, b}, kCpu), c.tol, c.tol);
      const auto again = fwd_bwd(f, {x, w, b}, kGpu);
      for (size_t i = 0; i < gpu.size(); ++i) CHECK(bytes_of(gpu[i]) == bytes_of(again[i]));
    }
  }
}

TEST_CASE("cuda nn: parameter gradients are the same run to run") {
  VT_SKIP_WITHOUT_GPU();
  Tensor x = randn_on({4097, 256}, DType::BF16, 21), w = randn_on({256}, DType::BF16, 22);
  auto f = [](const std::vector<Tensor>& v) { return nn::rms_norm(v[0], v[1], 1e-6); };
  auto a = fwd_bwd(f, {x, w}, kGpu), b = fwd_bwd(f, {x, w}, kGpu);
  for (size_t i = 0; i < a.size(); ++i) CHECK(bytes_of(a[i]) == bytes_of(b[i]));
  Tensor b1 = randn_on({256}, DType::F32, 23), w1 = randn_on({256}, DType::F32, 24);
  Tensor x1 = randn_on({4097, 256}, DType::F32, 25);
  auto g = [](const std::vector<Tensor>& v) { return nn::layer_norm(v[0], {256}, v[1], v[2]); };
  auto c = fwd_bwd(g, {x1, w1, b1}, kGpu), d = fwd_bwd(g, {x1, w1, b1}, kGpu);
  for (size_t i = 0; i < c.size(); ++i) CHECK(bytes_of(c[i]) == bytes_of(d[i]));
}

TEST_CASE("cuda nn: AdamW on CUDA equals the CPU bit for bit over 5 steps") {
  VT_SKIP_WITHOUT_GPU();
  // bf16 params with bf16 grads (odd size: the scalar tail), an f32 param, and a bf16 param fed an
  // fp32 accumulation gradient.
  const std::vector<std::pair<Shape, DType>> specs = {
      {{1027}, DType::BF16}, {{64, 33}, DType::F32}, {{8, 16}, DType::BF16}, {{5}, DType::F16}};
  auto make = [&](Device d) {
    std::vector<Tensor> ps;
    for (size_t i = 0; i < specs.size(); ++i)
      ps.push_back(randn_on(specs[i].first, specs[i].second, 100 + i).to(d).requires_grad_());
    return ps;
  };
  std::vector<Tensor> pc = make(kCpu), pg = make(kGpu);
  optim::AdamWOptions o;
  o.lr = 1e-2;
  o.weight_decay = 0.1;
  optim::AdamW oc(pc, o), og(pg, o);
  for (int step = 0; step < 5; ++step) {
    CAPTURE(step);
    for (size_t i = 0; i < specs.size(); ++i) {
      const DType gt = i == 2 ? DType::F32 : specs[i].second;
      Tensor g = randn_on(specs[i].first, gt, 1000 + 10 * step + i);
      pc[i].set_grad(g);
      pg[i].set_grad(g.to(kGpu));
    }
    oc.step();
    og.step();
    for (size_t i = 0; i < specs.size(); ++i) {
      CAPTURE(i);
      CHECK(bytes_of(pc[i]) == bytes_of(pg[i]));
    }
    const auto& gc = oc.groups()[0];
    const auto& gg = og.groups()[0];
    CHECK(bytes_of(gc.master) == bytes_of(gg.master));
    CHECK(bytes_of(gc.exp_avg) == bytes_of(gg.exp_avg));
    CHECK(bytes_of(gc.exp_avg_sq) == bytes_of(gg.exp_avg_sq));
  }
}

TEST_CASE("cuda nn: the nn_attention fixtures (sdpa, masks, GQA, cosine attention, AdaLN) match PyTorch on CUDA") {
  VT_SKIP_WITHOUT_GPU();
  run_fixture_on_cuda("nn_attention", test::op_table_nn_attention());
}

#else
#include "test_skip.h"

TEST_CASE("cuda nn: CUDA is not built") { VT_SKIP("vt was built without CUDA (VT_CUDA=OFF or no nvcc)"); }
#endif
