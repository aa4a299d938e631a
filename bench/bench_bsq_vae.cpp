// bench_bsq_vae.cpp: BSQ-VAE decode (Infinity's d32 tokenizer: base 128, channel_mult 1,2,4,4,4,
// 2 res blocks, patch 16) from per-scale bits to a clamped image, f32, 2 threads, random weights:
// the issue-6 row "VAE decode at 256 and 512 against the PyTorch reference". The baseline is
// bench/torch_bsq_vae.py (the same network written from the spec in torch, same thread count):
//   ./build/bench_bsq_vae && python3 bench/torch_bsq_vae.py
// Also encode (image -> bits) at 256 for context.
#include <benchmark/benchmark.h>
#include <omp.h>

#include "bsq_vae/bsq_vae.h"
#include "vt/autograd.h"
#include "vt/ops.h"
#include "vt/random.h"

namespace {

constexpr int kThreads = 2;

vt::bsq::BsqVae& model() {
  static vt::bsq::BsqVae vae = [] {
    vt::manual_seed(0);
    return vt::bsq::BsqVae(vt::bsq::BsqVaeConfig::infinity_d32());
  }();
  return vae;
}

void BM_vae_decode(benchmark::State& state) {
  omp_set_num_threads(kThreads);
  const int64_t side = state.range(0);
  const auto sched = vt::infinity::schedule_for_image(side, side);
  vt::Generator g(1);
  std::vector<vt::Tensor> bits;
  for (const auto& s : sched.scales) bits.push_back(vt::gt(vt::rand({1, s.h, s.w, 32}, vt::DType::F32, &g), 0.5));
  vt::NoGradGuard no_grad;
  benchmark::DoNotOptimize(model().decode_bits(bits));  // warm-up, as the torch script does
  for (auto _ : state) benchmark::DoNotOptimize(model().decode_bits(bits));
  state.counters["scales"] = double(sched.num_scales());
}

void BM_vae_encode(benchmark::State& state) {
  omp_set_num_threads(kThreads);
  const int64_t side = state.range(0);
  vt::Generator g(2);
  const vt::Tensor image = vt::clamp(vt::randn({1, 3, side, side}, vt::DType::F32, &g) * 0.5, -1.0, 1.0);
  vt::NoGradGuard no_grad;
  benchmark::DoNotOptimize(model().encode_bits(image));  // warm-up
  for (auto _ : state) benchmark::DoNotOptimize(model().encode_bits(image));
}

// The CPU column is the process's CPU time (both threads): the fairer number on a shared machine.
BENCHMARK(BM_vae_decode)->Arg(256)->Arg(512)->Unit(benchmark::kMillisecond)->Iterations(2)->MeasureProcessCPUTime();
BENCHMARK(BM_vae_encode)->Arg(256)->Unit(benchmark::kMillisecond)->Iterations(2)->MeasureProcessCPUTime();

}  // namespace

BENCHMARK_MAIN();
