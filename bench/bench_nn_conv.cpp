// bench_nn_conv.cpp: conv2d 3x3, 128 -> 128 channels, 64x64, padding 1, N = 4, f32, 2 threads:
// forward alone and forward + backward (dx, dw, db through autograd), the issue-3 benchmark row.
// The PyTorch baseline is bench/torch_nn_conv.py (same shapes, torch.set_num_threads(2)); run both
// on the same machine and compare the ms/iter columns:
//   ./build/bench_nn_conv && python3 bench/torch_nn_conv.py
// Also a VAE-style stride-2 Down conv (F.pad (0,1,0,1)) and a bilinear/area resize for context.
#include <benchmark/benchmark.h>
#include <omp.h>

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

}  // namespace

BENCHMARK_CAPTURE(BM_conv_forward, 3x3_p1, 1, vt::nn::Padding2d::same(1))->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime()->MinTime(2.0);
BENCHMARK_CAPTURE(BM_conv_forward_backward, 3x3_p1, 1, vt::nn::Padding2d::same(1))->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime()->MinTime(3.0);
BENCHMARK_CAPTURE(BM_conv_forward_backward, 3x3_s2_pad0101, 2, vt::nn::Padding2d{0, 1, 0, 1})->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime()->MinTime(2.0);
BENCHMARK_CAPTURE(BM_interpolate, bilinear_64_to_45, "bilinear", 45)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime()->MinTime(1.0);
BENCHMARK_CAPTURE(BM_interpolate, area_64_to_24, "area", 24)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime()->MinTime(1.0);
BENCHMARK_MAIN();
