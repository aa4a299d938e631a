// conv2d, Conv3d patch embedding, interpolate and rotary embeddings: PyTorch fixtures (forward and
// backward), float64 gradchecks, the trilinear-depth-1 == bilinear identity, Infinity's position
// table, thread-count determinism, the f32 phase-plane path against im2col (VT_CONV_IM2COL=1) and
// float64, and bad-input errors.
#include <omp.h>
#include <stdlib.h>

#include "op_table_nn_conv.h"
#include "vt/gradcheck.h"
#include "vt/random.h"

using namespace vt;

TEST_CASE("nn_conv ops match PyTorch on the CPU (forward and backward)") {
  const auto& fx = test::load_fixture("nn_conv");
  REQUIRE(fx.cases.size() > 50);
  int failed = 0;
  for (auto& c : fx.cases) {
    auto fails = test::run_case(c, fx, Device::cpu(), test::op_table_nn_conv());
    for (auto& f : fails) MESSAGE(f);
    failed += !fails.empty();
  }
  CHECK(failed == 0);
}

namespace {
Tensor rnd(const Shape& s, uint64_t seed) {
  Generator g(seed);
  return randn(s, DType::F64, &g);
}
void expect_gradcheck(const char* what, const std::function<Tensor(const std::vector<Tensor>&)>& f,
                      std::vector<Tensor> in) {
  for (auto& t : in)
    if (t.defined()) t.requires_grad_();
  GradcheckResult r = gradcheck(f, in);
  CHECK_MESSAGE(r.ok, what, ": ", r.message);
}
}  // namespace

TEST_CASE("float64 gradcheck: conv2d and the patch embedding") {
  nn::Conv2dOptions down{2, 2, {0, 1, 0, 1}};
  expect_gradcheck("conv2d stride 2, pad (0,1,0,1)",
                   [&](const std::vector<Tensor>& v) { return nn::conv2d(v[0], v[1], v[2], down); },
                   {rnd({2, 3, 5, 6}, 1), rnd({4, 3, 3, 3}, 2), rnd({4}, 3)});
  nn::Conv2dOptions odd{1, 2, {2, 0, 1, 1}};
  expect_gradcheck("conv2d 3x2 kernel, asymmetric pad",
                   [&](const std::vector<Tensor>& v) { return nn::conv2d(v[0], v[1], Tensor(), odd); },
                   {rnd({1, 2, 4, 5}, 4), rnd({3, 2, 3, 2}, 5)});
  expect_gradcheck("conv2d 1x1", [](const std::vector<Tensor>& v) { return nn::conv2d(v[0], v[1], v[2]); },
                   {rnd({2, 3, 2, 3}, 6), rnd({2, 3, 1, 1}, 7), rnd({2}, 8)});
  expect_gradcheck("conv3d_patch_embed",
                   [](const std::vector<Tensor>& v) { return nn::conv3d_patch_embed(v[0], v[1]); },
                   {rnd({3, 2 * 2 * 2 * 2}, 9), rnd({4, 2, 2, 2, 2}, 10)});
}

TEST_CASE("float64 gradcheck: interpolate, every mode, up and down") {
  struct C {
    const char* mode;
    Shape in, size;
  };
  for (const C& c : {C{"nearest", {1, 2, 3, 5}, {7, 3}}, C{"bilinear", {1, 2, 4, 5}, {7, 3}},
                     C{"bicubic", {1, 1, 4, 5}, {7, 3}}, C{"area", {1, 2, 7, 5}, {3, 4}},
                     C{"linear", {1, 2, 5}, {8}}, C{"trilinear", {1, 1, 2, 3, 4}, {3, 2, 5}}}) {
    Shape size = c.size;
    std::string mode = c.mode;
    expect_gradcheck(c.mode, [=](const std::vector<Tensor>& v) { return nn::interpolate(v[0], size, mode); },
                     {rnd(c.in, 11)});
  }
  expect_gradcheck("bicubic by scale 1.6",
                   [](const std::vector<Tensor>& v) { return nn::interpolate_scale(v[0], {1.6}, "bicubic"); },
                   {rnd({1, 1, 3, 4}, 12)});
}

TEST_CASE("float64 gradcheck: rotary embeddings, both pair layouts") {
  Tensor pos = from_vector<int64_t>({0, 3, 17, 4000}, {1, 4});
  auto cs = nn::rope_cos_sin(pos, 8, 1e4, DType::F64);
  expect_gradcheck("apply_rope_half",
                   [&](const std::vector<Tensor>& v) {
                     return nn::apply_rope_half(v[0], cs.cos.unsqueeze(1), cs.sin.unsqueeze(1));
                   },
                   {rnd({1, 2, 4, 8}, 13)});
  auto ics = nn::infinity_rope_cos_sin(nn::infinity_rope_positions({{1, 1}, {2, 2}}, 64, 64), 8);
  expect_gradcheck("apply_rope_interleaved",
                   [&](const std::vector<Tensor>& v) { return nn::apply_rope_interleaved(v[0], ics.cos, ics.sin); },
                   {rnd({2, 5, 8}, 14)});
}

TEST_CASE("trilinear with depth 1 equals bilinear on the 2-D slice") {
  for (DType dt : {DType::F32, DType::F64, DType::BF16}) {
    Tensor x = rnd({2, 3, 9, 7}, 15).to(dt);
    for (Shape s : {Shape{13, 4}, Shape{5, 11}, Shape{9, 7}}) {
      Tensor bi = nn::interpolate(x, s, "bilinear");
      Tensor tri = nn::interpolate(x.unsqueeze(2), {1, s[0], s[1]}, "trilinear").squeeze(2);
      CHECK(test::compare(tri, bi, 0, 0) == "");
    }
    Tensor tri_s = nn::interpolate_scale(x.unsqueeze(2), {1.0, 1.7, 0.6}, "trilinear").squeeze(2);
    CHECK(test::compare(tri_s, nn::interpolate_scale(x, {1.7, 0.6}, "bilinear"), 0, 0) == "");
  }
}

TEST_CASE("Infinity RoPE positions on the 64x64 grid (infinity_bsq.md 6.5)") {
  auto rows = [](int64_t h, size_t first = 64) {  // the first row indices of an (h, 1) scale
    Tensor p = nn::infinity_rope_positions({{h, 1}}, 64, 64);
    std::vector<int64_t> v = p.select(1, 0).contiguous().tolist<int64_t>();
    v.resize(std::min(v.size(), first));
    return v;
  };
  CHECK(rows(1) == std::vector<int64_t>{0});
  CHECK(rows(2) == std::vector<int64_t>{0, 32});
  CHECK(rows(6) == std::vector<int64_t>{0, 11, 21, 32, 43, 53});
  CHECK(rows(12) == std::vector<int64_t>{0, 5, 11, 16, 21, 27, 32, 37, 43, 48, 53, 59});
  CHECK(rows(20, 11) == std::vector<int64_t>{0, 3, 6, 10, 13, 16, 19, 22, 26, 29, 32});
  CHECK(rows(24, 7) == std::vector<int64_t>{0, 3, 5, 8, 11, 13, 16});
  CHECK(rows(40, 11) == std::vector<int64_t>{0, 2, 3, 5, 6, 8, 10, 11, 13, 14, 16});
  CHECK(rows(48, 6) == std::vector<int64_t>{0, 1, 3, 4, 5, 7});
  std::vector<int64_t> r64 = rows(64);
  for (int64_t i = 0; i < 64; ++i) CHECK(r64[size_t(i)] == i);
  // padding rows of the table are zero, so padded tokens are multiplied by 0
  auto cs = nn::infinity_rope_cos_sin(nn::infinity_rope_positions({{1, 1}, {2, 2}}, 64, 64), 128, 1e4, 8);
  CHECK(cs.cos.shape() == Shape{8, 64});
  CHECK(sum(abs(cs.cos.narrow(0, 5, 3))).item() == 0);
  CHECK(cs.cos.select(0, 0).tolist<float>() == std::vector<float>(64, 1.0f));  // SOS at (0, 0)
}

TEST_CASE("M-RoPE with t = h = w is plain 1-D RoPE") {
  Tensor p1 = from_vector<int64_t>({0, 5, 9, 300, 7, 7}, {2, 3});
  auto a = nn::rope_cos_sin(p1, 128, 1e6);
  auto b = nn::mrope_cos_sin(stack({p1, p1, p1}), 128, 1e6, {16, 24, 24});
  CHECK(test::compare(a.cos, b.cos, 0, 0) == "");
  CHECK(test::compare(a.sin, b.sin, 0, 0) == "");
}

TEST_CASE("conv2d is bitwise identical with 1, 2 and 4 threads (image-parallel and GEMM-parallel paths)") {
  Generator g(3);
  Tensor x = randn({2, 16, 19, 17}, DType::F32, &g), w = randn({8, 16, 3, 3}, DType::F32, &g);
  nn::Conv2dOptions o{2, 2, {0, 1, 0, 1}};
  auto run = [&](int threads) {
    omp_set_num_threads(threads);
    Tensor xl = x.clone().requires_grad_(), wl = w.clone().requires_grad_();
    Tensor y = nn::conv2d(xl, wl, Tensor(), o);
    sum(mul(y, y)).backward();
    return std::vector<Tensor>{y.detach(), xl.grad(), wl.grad()};
  };
  auto one = run(1), two = run(2), four = run(4);  // 2 images: 4 threads take the GEMM-parallel path
  omp_set_num_threads(2);
  for (size_t i = 0; i < one.size(); ++i) {
    CHECK(test::compare(one[i], two[i], 0, 0) == "");
    CHECK(test::compare(one[i], four[i], 0, 0) == "");
  }
}

// f32 conv2d on both CPU paths: the default phase planes, and im2col when VT_CONV_IM2COL=1 (read at
// each call). Each must match the float64 computation of the same inputs (the f64 kernels are
// im2col's), forward, dx, dw and db.
TEST_CASE("conv2d f32 phase-plane path matches im2col (VT_CONV_IM2COL=1) and float64") {
  struct Case {
    const char* what;
    int64_t n, c, h, w, o, kh, kw;
    nn::Conv2dOptions opt;
  };
  const Case cases[] = {
      {"3x3 pad 1, rows of 11 (panels wrap rows)", 2, 5, 9, 11, 7, 3, 3, {1, 1, nn::Padding2d::same(1)}},
      {"3x3 pad 1, 37 wide, 3 images", 3, 16, 20, 37, 13, 3, 3, {1, 1, nn::Padding2d::same(1)}},
      {"3x3 pad 1, K and P over one cache block", 2, 40, 24, 24, 20, 3, 3, {1, 1, nn::Padding2d::same(1)}},
      {"5x5 pad 2, rows of 32 (whole panels)", 2, 3, 12, 32, 6, 5, 5, {1, 1, nn::Padding2d::same(2)}},
      {"3x3 pad 3 (wider than the kernel)", 1, 4, 7, 8, 5, 3, 3, {1, 1, nn::Padding2d::same(3)}},
      {"3x2 kernel, stride (1, 2), pad (2, 0, 1, 1)", 2, 3, 6, 9, 4, 3, 2, {1, 2, {2, 0, 1, 1}}},
      {"Down: stride 2, pad (0, 1, 0, 1)", 2, 6, 17, 18, 8, 3, 3, {2, 2, {0, 1, 0, 1}}},
      {"1x1 stride 2", 2, 5, 9, 10, 3, 1, 1, {2, 2, {}}},
      {"3x3 stride 3, pad (1, 2, 0, 2)", 1, 4, 13, 14, 5, 3, 3, {3, 3, {1, 2, 0, 2}}},
  };
  int seed = 100;
  for (const Case& k : cases) {
    const std::string what = k.what;
    CAPTURE(what);
    Tensor x = rnd({k.n, k.c, k.h, k.w}, seed++), w = rnd({k.o, k.c, k.kh, k.kw}, seed++), b = rnd({k.o}, seed++);
    Tensor gout;
    // -> {y, dx, dw, db} of sum(y * gout), inputs cast to `t`
    auto run = [&](DType t) {
      Tensor xl = x.to(t).detach().requires_grad_(), wl = w.to(t).detach().requires_grad_();
      Tensor bl = b.to(t).detach().requires_grad_();
      Tensor y = nn::conv2d(xl, wl, bl, k.opt);
      if (!gout.defined()) gout = rnd(y.shape(), seed++);
      sum(mul(y, gout.to(t))).backward();
      return std::vector<Tensor>{y.detach().to(DType::F64), xl.grad().to(DType::F64), wl.grad().to(DType::F64),
                                 bl.grad().to(DType::F64)};
    };
    const auto want = run(DType::F64), planes = run(DType::F32);
    setenv("VT_CONV_IM2COL", "1", 1);
    const auto im2col = run(DType::F32);
    unsetenv("VT_CONV_IM2COL");
    // The switch took the other path: with several images dw is summed in another order there
    // (per-image GEMMs then a sum, against one accumulating GEMM), so its bits differ somewhere.
    if (k.n > 1) CHECK(test::compare(planes[2], im2col[2], 0, 0) != "");
    const std::string names[] = {"y", "dx", "dw", "db"};
    for (size_t i = 0; i < want.size(); ++i) {
      CAPTURE(names[i]);
      CHECK(test::compare(planes[i], want[i], 1e-4, 1e-3) == "");
      CHECK(test::compare(im2col[i], want[i], 1e-4, 1e-3) == "");
    }
  }
}

TEST_CASE("conv2d f32, stride 1: bitwise identical with 1, 2 and 4 threads (phase planes)") {
  Generator g(4);
  Tensor x = randn({3, 16, 24, 40}, DType::F32, &g), w = randn({24, 16, 3, 3}, DType::F32, &g);
  auto run = [&](int threads) {
    omp_set_num_threads(threads);
    Tensor xl = x.clone().requires_grad_(), wl = w.clone().requires_grad_();
    Tensor y = nn::conv2d(xl, wl, Tensor(), 1, 1);
    sum(mul(y, y)).backward();
    return std::vector<Tensor>{y.detach(), xl.grad(), wl.grad()};
  };
  auto one = run(1), two = run(2), four = run(4);  // 3 images: 2 threads by image, 4 in the GEMMs
  omp_set_num_threads(2);
  for (size_t i = 0; i < one.size(); ++i) {
    CHECK(test::compare(one[i], two[i], 0, 0) == "");
    CHECK(test::compare(one[i], four[i], 0, 0) == "");
  }
}

TEST_CASE("bad inputs raise vt::Error naming the op and the sizes") {
  Tensor x = zeros({1, 3, 8, 8}), w = zeros({4, 5, 3, 3});
  auto msg = [](auto&& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  std::string m = msg([&] { nn::conv2d(x, w); });
  CHECK(m.find("conv2d") != std::string::npos);
  CHECK(m.find("3 channels") != std::string::npos);
  CHECK(m.find("expects 5") != std::string::npos);
  CHECK(msg([&] { nn::conv2d(x, zeros({4, 3, 3, 3}), zeros({5})); }).find("bias shape (5)") != std::string::npos);
  CHECK(msg([&] { nn::conv2d(x, zeros({4, 3, 9, 9})); }).find("larger than the padded input (8, 8)") !=
        std::string::npos);
  CHECK(msg([&] { nn::conv2d(zeros({3, 8, 8}), zeros({4, 3, 3, 3})); }).find("(N, C, H, W)") != std::string::npos);
  CHECK(msg([&] { nn::conv2d(x, zeros({4, 3, 3, 3}, DType::BF16)); }).find("differs from weight dtype bfloat16") !=
        std::string::npos);
  CHECK(msg([&] { nn::conv3d_patch_embed(zeros({4, 100}), zeros({8, 3, 2, 4, 4})); }).find("(S, 96)") !=
        std::string::npos);
  CHECK(msg([&] { nn::interpolate(x, {4, 4}, "trilinear"); }).find("'trilinear' expects 5-D") != std::string::npos);
  CHECK(msg([&] { nn::interpolate(x, {4}, "nearest"); }).find("size (4) has 1") != std::string::npos);
  CHECK(msg([&] { nn::interpolate(x, {4, 4}, "cubic"); }).find("unknown mode 'cubic'") != std::string::npos);
  CHECK(msg([&] { nn::interpolate_scale(x, {2, 2, 2}, "nearest"); }).find("3 scale factors for 2") !=
        std::string::npos);
  auto cs = nn::rope_cos_sin(zeros({1, 4}, DType::I64), 8, 1e4);
  CHECK(msg([&] { nn::apply_rope_half(zeros({1, 2, 4, 6}), cs.cos, cs.sin); }).find("must end in 6") !=
        std::string::npos);
  CHECK(msg([&] { nn::apply_rope_half(zeros({1, 2, 5, 8}), cs.cos.unsqueeze(1), cs.sin.unsqueeze(1)); })
            .find("do not broadcast to x (1, 2, 5, 8)") != std::string::npos);
  CHECK(msg([&] { nn::mrope_cos_sin(zeros({3, 1, 4}, DType::I64), 128, 1e6, {16, 24, 23}); }).find("sum to") !=
        std::string::npos);
  CHECK(msg([&] { nn::rope_cos_sin(zeros({1, 4}), 8, 1e4); }).find("integer tensor") != std::string::npos);
}
