// bench_nn_conv.cpp: conv2d 3x3, 128 -> 128 channels, 64x64, padding 1, N = 4, f32, 2 threads:
// forward alone and forward + backward (dx, dw, db through autograd), the issue-3 benchmark row.
// The PyTorch baseline is bench/torch_nn_conv.py (same shapes, torch.set_num_threads(2)); run both
// on the same machine and compare the ms/iter columns:
//   ./build/bench_nn_conv && python3 bench/torch_nn_conv.py
// Also a VAE-style stride-2 Down conv (F.pad (0,1,0,1)) and a bilinear/area resize for context.
//
// The BM_conv_pass rows (issue #18) time the CPU kernels alone, one pass each: forward (with bias),
// grad-input, grad-weight (with grad-bias), on 1 and 2 threads, for the shape and the
// ShapeWorld BSQ-VAE's (base 32 channels, mult 1 1 2 2, batch 4). torch_nn_conv.py times the same
// passes through aten.convolution / aten.convolution_backward; the stride-2 rows there get an input
// padded beforehand (vt pads inside the conv), so their torch time leaves out the F.pad.
#include <benchmark/benchmark.h>
#include <immintrin.h>
#include <omp.h>

#include <string>
#include <utility>

#include "vt/backend.h"
#include "vt/nn/conv.h"
#include "vt/nn/interpolate.h"
#include "vt/ops.h"
#include "vt/random.h"

namespace {

constexpr int kThreads = 2;
constexpr int64_t N = 4, C = 128, HW = 64;

struct Conv {
  vt::Tensor x, w, b, gout;
  vt::nn::Conv2dOptions opt;
  Conv(int64_t stride, vt::nn::Padding2d pad) {
    vt::Generator g(0);
    x = vt::randn({N, C, HW, HW}, vt::DType::F32, &g);
    w = vt::mul(vt::randn({C, C, 3, 3}, vt::DType::F32, &g), 0.03);
    b = vt::randn({C}, vt::DType::F32, &g);
    opt = {stride, stride, pad};
    const int64_t ho = (HW + pad.top + pad.bottom - 3) / stride + 1;
    gout = vt::randn({N, C, ho, ho}, vt::DType::F32, &g);
  }
};

void set_flops(benchmark::State& state, double passes, int64_t ho) {
  // one pass = 2 * N * O * Ho * Wo * C * 9
  state.counters["GFLOP/s"] = benchmark::Counter(passes * 2e-9 * N * C * ho * ho * C * 9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

void BM_conv_forward(benchmark::State& state, int64_t stride, vt::nn::Padding2d pad) {
  omp_set_num_threads(kThreads);
  Conv c(stride, pad);
  vt::NoGradGuard ng;
  vt::Tensor y;
  for (auto _ : state) {
    y = vt::nn::conv2d(c.x, c.w, c.b, c.opt);
    benchmark::DoNotOptimize(y.raw_data());
  }
  set_flops(state, 1, y.size(2));
}

void BM_conv_forward_backward(benchmark::State& state, int64_t stride, vt::nn::Padding2d pad) {
  omp_set_num_threads(kThreads);
  Conv c(stride, pad);
  c.x.requires_grad_(), c.w.requires_grad_(), c.b.requires_grad_();
  for (auto _ : state) {
    vt::Tensor y = vt::nn::conv2d(c.x, c.w, c.b, c.opt);
    y.backward(c.gout);
    benchmark::DoNotOptimize(c.w.grad().raw_data());
    c.x.zero_grad(), c.w.zero_grad(), c.b.zero_grad();
  }
  set_flops(state, 3, c.gout.size(2));
}

void BM_interpolate(benchmark::State& state, const char* mode, int64_t out) {
  omp_set_num_threads(kThreads);
  vt::Generator g(1);
  vt::Tensor x = vt::randn({N, C, HW, HW}, vt::DType::F32, &g).requires_grad_();
  vt::Tensor gout = vt::randn({N, C, out, out}, vt::DType::F32, &g);
  for (auto _ : state) {
    vt::Tensor y = vt::nn::interpolate(x, {out, out}, mode);
    y.backward(gout);
    benchmark::DoNotOptimize(x.grad().raw_data());
    x.zero_grad();
  }
}

// One pass of the registered CPU kernel on (N, C, hw, hw) -> (N, C, ., .), 3x3, f32.
enum class Pass { forward, grad_input, grad_weight };
void BM_conv_pass(benchmark::State& state, int64_t n, int64_t c, int64_t hw, int64_t stride, Pass pass) {
  const int threads = int(state.range(0));
  omp_set_num_threads(threads);
  const vt::nn::Padding2d pad = stride == 1 ? vt::nn::Padding2d::same(1) : vt::nn::Padding2d{0, 1, 0, 1};
  const vt::nn::Conv2dOptions opt{stride, stride, pad};
  const int64_t ho = (hw + pad.top + pad.bottom - 3) / stride + 1;
  vt::Generator g(0);
  vt::Tensor x = vt::randn({n, c, hw, hw}, vt::DType::F32, &g);
  vt::Tensor w = vt::mul(vt::randn({c, c, 3, 3}, vt::DType::F32, &g), 0.03).contiguous();
  vt::Tensor b = vt::randn({c}, vt::DType::F32, &g);
  vt::Tensor gout = vt::randn({n, c, ho, ho}, vt::DType::F32, &g);
  vt::Tensor out = vt::empty({n, c, ho, ho}, vt::DType::F32), dx = vt::empty_like(x), dw = vt::empty_like(w),
             db = vt::empty_like(b);
  static const vt::kernels::Kernel<vt::kernels::Conv2dForward> fwd("conv2d_forward");
  static const vt::kernels::Kernel<vt::kernels::Conv2dBackward> bwd("conv2d_backward");
  const vt::Device cpu = vt::Device::cpu();
  for (auto _ : state) {
    if (pass == Pass::forward) fwd(cpu)(x, w, b, opt, out);
    else if (pass == Pass::grad_input) bwd(cpu)(x, w, gout, opt, dx, vt::Tensor(), vt::Tensor());
    else bwd(cpu)(x, w, gout, opt, vt::Tensor(), dw, db);
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2e-9 * n * c * ho * ho * c * 9, benchmark::Counter::kIsIterationInvariantRate);
  omp_set_num_threads(kThreads);
}

void conv_pass_rows() {
  struct Shape {
    const char* name;
    int64_t n, c, hw, stride;
  };
  const Shape shapes[] = {{"n4_c128_64x64", 4, 128, 64, 1}, {"n4_c32_64x64", 4, 32, 64, 1},
                          {"n4_c64_32x32", 4, 64, 32, 1},   {"n4_c64_16x16", 4, 64, 16, 1},
                          {"n4_c32_64x64_s2", 4, 32, 64, 2}};
  const std::pair<const char*, Pass> passes[] = {
      {"forward", Pass::forward}, {"grad_input", Pass::grad_input}, {"grad_weight", Pass::grad_weight}};
  for (const Shape& s : shapes)
    for (const auto& [pname, pass] : passes)
      benchmark::RegisterBenchmark((std::string("BM_conv_pass/") + s.name + "/" + pname).c_str(), BM_conv_pass, s.n,
                                   s.c, s.hw, s.stride, pass)
          ->ArgName("threads")->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime()->MinTime(0.5);
}
const bool registered = (conv_pass_rows(), true);

#if defined(__AVX2__) && defined(__FMA__)
// The FMA peak as this machine delivers it now: 12 independent chains of 8-lane f32 FMAs per thread
// (2 pipes x 4 cycles latency need 8), registers only. The conv rows' GFLOP/s over this row's is
// their fraction of peak, under the same load and the same clock.
void BM_fma_peak(benchmark::State& state) {
  const int threads = int(state.range(0));
  constexpr int64_t kIters = 1 << 22;
  for (auto _ : state) {
    float sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    {
      __m256 acc[12];
      for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(float(i));
      const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
      for (int64_t k = 0; k < kIters; ++k)
#pragma GCC unroll 12
        for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
      for (int i = 1; i < 12; ++i) acc[0] = _mm256_add_ps(acc[0], acc[i]);
      sink += _mm256_cvtss_f32(acc[0]);
    }
    benchmark::DoNotOptimize(sink);
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(threads * kIters * 12.0 * 16 * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_fma_peak)->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime()->MeasureProcessCPUTime()->MinTime(0.5);
#endif

}  // namespace

BENCHMARK_CAPTURE(BM_conv_forward, 3x3_p1, 1, vt::nn::Padding2d::same(1))->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime()->MinTime(2.0);
BENCHMARK_CAPTURE(BM_conv_forward_backward, 3x3_p1, 1, vt::nn::Padding2d::same(1))->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime()->MinTime(3.0);
BENCHMARK_CAPTURE(BM_conv_forward_backward, 3x3_s2_pad0101, 2, vt::nn::Padding2d{0, 1, 0, 1})->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime()->MinTime(2.0);
BENCHMARK_CAPTURE(BM_interpolate, bilinear_64_to_45, "bilinear", 45)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime()->MinTime(1.0);
BENCHMARK_CAPTURE(BM_interpolate, area_64_to_24, "area", 24)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime()->MinTime(1.0);
BENCHMARK_MAIN();
