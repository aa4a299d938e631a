// bench_nn_functional.cpp: forward+backward time of vt's fused norms and the fused cross-entropy,
// 2 threads, against bench/torch_nn_functional.py (PyTorch eager, 2 threads) on the same machine.
//
//   ./bench_nn_functional                     then   python3 bench/torch_nn_functional.py
//
// Cases (f32, one iteration = forward, backward, then the gradients are dropped):
//   rms_norm/8192x2048     y = rms_norm(x, w);       backward of sum(y * gy)
//   layer_norm/8192x2048   y = layer_norm(x, w, b);  backward of sum(y * gy)
//   cross_entropy/2048x152064  loss = cross_entropy(z, y) (mean, 5% ignored rows); loss.backward()
//   add_rms_norm/8192x2048/fwd       {normed, sum} = add_rms_norm(x, r, w), no grad: one pass
//   add_then_rms_norm/8192x2048/fwd  sum = x + r, then rms_norm(sum, w): the two ops it replaces
// Memory (cross_entropy only): counter peak_over_logits = (peak RSS during one forward+backward -
// RSS before it) / logits bytes. The peak is reset first by writing "5" to /proc/self/clear_refs
// (Linux resets VmHWM to the current RSS), so it is the high-water mark of that one step. The
// first step is the one measured: its buffers are fresh mappings, so RSS counts exactly the pages
// the step touched (later steps reuse the gradient's block from the allocator's cache, which is
// also why the timed steps are faster than first_step_ms).
#include <benchmark/benchmark.h>

#include "cpu_bench.h"
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

#include "vt/autograd.h"
#include "vt/nn/loss.h"
#include "vt/nn/norm.h"
#include "vt/random.h"

using namespace vt;
using namespace vt::bench;

namespace {

constexpr int kThreads = 2;


void BM_rms_norm(benchmark::State& state) {
  omp_set_num_threads(kThreads);
  Generator g(1);
  Tensor x = randn({8192, 2048}, DType::F32, &g).requires_grad_();
  Tensor w = randn({2048}, DType::F32, &g).requires_grad_();
  Tensor gy = randn({8192, 2048}, DType::F32, &g);
  auto step = [&] {
    Tensor y = nn::rms_norm(x, w, 1e-6);
    y.backward(gy);
    benchmark::DoNotOptimize(x.grad().raw_data());
    x.zero_grad();
    w.zero_grad();
  };
  step();  // warm-up: the first step's fresh pages cost page faults, later ones come from the cache
  for (auto _ : state) step();
}

void BM_layer_norm(benchmark::State& state) {
  omp_set_num_threads(kThreads);
  Generator g(2);
  Tensor x = randn({8192, 2048}, DType::F32, &g).requires_grad_();
  Tensor w = randn({2048}, DType::F32, &g).requires_grad_(), b = randn({2048}, DType::F32, &g).requires_grad_();
  Tensor gy = randn({8192, 2048}, DType::F32, &g);
  auto step = [&] {
    Tensor y = nn::layer_norm(x, {2048}, w, b, 1e-5);
    y.backward(gy);
    benchmark::DoNotOptimize(x.grad().raw_data());
    x.zero_grad();
    w.zero_grad();
    b.zero_grad();
  };
  step();  // warm-up
  for (auto _ : state) step();
}

void BM_cross_entropy(benchmark::State& state) {
  omp_set_num_threads(kThreads);
  const int64_t N = 2048, C = 152064;
  Generator g(3);
  Tensor z = randn({N, C}, DType::F32, &g).requires_grad_();
  Tensor y = randint(0, C, {N}, DType::I64, &g);
  Tensor ignore = lt(rand({N}, DType::F32, &g), 0.05);
  y = where(ignore, full({N}, -100, DType::I64), y);
  auto step = [&] {
    Tensor loss = nn::cross_entropy(z, y);
    loss.backward();
    benchmark::DoNotOptimize(z.grad().raw_data());
    z.zero_grad();
  };
  // The first step is measured: later ones reuse the gradient's block from the CPU allocator's
  // cache (src/cpu_allocator.cpp), which RSS would not show as new memory.
  // Its time (first_step_ms) includes the page faults of the fresh gradient, as every PyTorch step does.
  double peak_ratio = -1;
  bool peak_ok = reset_peak_rss();
  int64_t before = proc_status_bytes("VmRSS:");
  auto t0 = std::chrono::steady_clock::now();
  step();
  double first_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (peak_ok) peak_ratio = double(proc_status_bytes("VmHWM:") - before) / double(z.nbytes());
  for (auto _ : state) step();
  state.counters["peak_over_logits"] = peak_ratio;
  state.counters["first_step_ms"] = first_ms;
}

// The pre-norm residual step, fused or as two ops (forward, no autograd).
void BM_add_rms_norm(benchmark::State& state) {
  omp_set_num_threads(kThreads);
  const bool fused = state.range(0) == 1;
  Generator g(3);
  Tensor x = randn({8192, 2048}, DType::F32, &g), r = randn({8192, 2048}, DType::F32, &g);
  Tensor w = randn({2048}, DType::F32, &g);
  NoGradGuard no_grad;
  auto step = [&] {
    if (fused) {
      nn::AddNorm o = nn::add_rms_norm(x, r, w, 1e-6);
      benchmark::DoNotOptimize(o.normed.raw_data());
    } else {
      Tensor s = add(x, r), y = nn::rms_norm(s, w, 1e-6);
      benchmark::DoNotOptimize(y.raw_data());
    }
  };
  step();
  for (auto _ : state) step();
}

}  // namespace

BENCHMARK(BM_add_rms_norm)->Name("add_rms_norm/8192x2048/fwd")->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime()
    ->MinTime(2.0);
BENCHMARK(BM_add_rms_norm)->Name("add_then_rms_norm/8192x2048/fwd")->Arg(0)->Unit(benchmark::kMillisecond)
    ->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_rms_norm)->Name("rms_norm/8192x2048/fwd+bwd")->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_layer_norm)->Name("layer_norm/8192x2048/fwd+bwd")->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_cross_entropy)->Name("cross_entropy/2048x152064/fwd+bwd")->Unit(benchmark::kMillisecond)->UseRealTime()
    ->MinTime(3.0);

int main(int argc, char** argv) { return vt::bench::run_benchmarks(argc, argv, kThreads); }
