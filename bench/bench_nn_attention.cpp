// bench_nn_attention.cpp: scaled_dot_product_attention on the CPU, 2 threads, against
// bench/torch_nn_attention.py (PyTorch eager F.scaled_dot_product_attention, 2 threads).
//
//   ./bench_nn_attention                      then   python3 bench/torch_nn_attention.py
//
// Cases (f32):
//   sdpa/causal/B2xH8xT1024xD64/fwd+bwd     out = sdpa(q, k, v, causal); backward of sum(out * g)
//   sdpa/causal/B2xH8xT1024xD64/fwd         forward only, no grad
//   sdpa/causal/B1xH4xT8192xD64/fwd         the 8k LLM sequence; counter peak_mb = peak RSS during
//                                           the forward minus RSS before it (a (T, T) f32 score
//                                           matrix per head would be 256 MB each, 1 GB in all)
//   sdpa/block_causal/B1xH16xT2521xD128/fwd+bwd   Infinity-2B's 512^2 scale schedule (peak_mb too)
// Peak RSS is reset with /proc/self/clear_refs ("5"), as in bench_nn_functional.cpp; the measured
// step is the first, so its buffers are fresh pages.
#include <benchmark/benchmark.h>

#include "cpu_bench.h"
#include <omp.h>

#include <fstream>
#include <string>

#include "vt/nn/attention.h"
#include "vt/random.h"

using namespace vt;
using namespace vt::bench;

namespace {

constexpr int kThreads = 2;

template <class F>
double peak_mb(F&& step) {
  if (!reset_peak_rss()) return step(), -1.0;
  int64_t before = proc_status_bytes("VmRSS:");
  step();
  return double(proc_status_bytes("VmHWM:") - before) / 1e6;
}

// Infinity's scale schedule at 512^2 (1, 2^2, 4^2, ..., 32^2): 2521 tokens (infinity_bsq.md §5).
std::vector<int64_t> infinity_scales() {
  std::vector<int64_t> s;
  for (int64_t side : {1, 2, 4, 6, 8, 12, 16, 20, 24, 32}) s.push_back(side * side);
  return s;
}

void fwd_bwd(benchmark::State& state, int64_t B, int64_t H, int64_t T, int64_t D, nn::AttentionMask mask, bool memory) {
  omp_set_num_threads(kThreads);
  Generator g(1);
  Tensor q = randn({B, H, T, D}, DType::F32, &g).requires_grad_();
  Tensor k = randn({B, H, T, D}, DType::F32, &g).requires_grad_();
  Tensor v = randn({B, H, T, D}, DType::F32, &g).requires_grad_();
  Tensor gout = randn({B, H, T, D}, DType::F32, &g);
  auto step = [&] {
    Tensor out = nn::scaled_dot_product_attention(q, k, v, mask);
    out.backward(gout);
    benchmark::DoNotOptimize(q.grad().raw_data());
    q.zero_grad(), k.zero_grad(), v.zero_grad();
  };
  if (memory) state.counters["peak_mb"] = peak_mb(step);
  for (auto _ : state) step();
}

void fwd(benchmark::State& state, int64_t B, int64_t H, int64_t T, int64_t D, nn::AttentionMask mask, bool memory) {
  omp_set_num_threads(kThreads);
  Generator g(2);
  Tensor q = randn({B, H, T, D}, DType::F32, &g), k = randn({B, H, T, D}, DType::F32, &g);
  Tensor v = randn({B, H, T, D}, DType::F32, &g);
  auto step = [&] { benchmark::DoNotOptimize(nn::scaled_dot_product_attention(q, k, v, mask).raw_data()); };
  if (memory) state.counters["peak_mb"] = peak_mb(step);
  for (auto _ : state) step();
}

}  // namespace

BENCHMARK_CAPTURE(fwd_bwd, causal_1024, 2, 8, 1024, 64, nn::AttentionMask::causal(), false)
    ->Name("sdpa/causal/B2xH8xT1024xD64/fwd+bwd")->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK_CAPTURE(fwd, causal_1024, 2, 8, 1024, 64, nn::AttentionMask::causal(), false)
    ->Name("sdpa/causal/B2xH8xT1024xD64/fwd")->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);
BENCHMARK_CAPTURE(fwd, causal_8192, 1, 4, 8192, 64, nn::AttentionMask::causal(), true)
    ->Name("sdpa/causal/B1xH4xT8192xD64/fwd")->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(2);
BENCHMARK_CAPTURE(fwd_bwd, block_causal_2521, 1, 16, 2521, 128, nn::AttentionMask::block_causal(infinity_scales()), true)
    ->Name("sdpa/block_causal/B1xH16xT2521xD128/fwd+bwd")->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(2);

int main(int argc, char** argv) { return vt::bench::run_benchmarks(argc, argv, kThreads); }
