// bench_infinity.cpp: one teacher-forced training step of a small Infinity decoder on the CPU,
// 2 threads, against bench/torch_infinity.py (the spec-written PyTorch reference
// tools/infinity_reference.py, eager, f32, 2 threads).
//
//   ./bench_infinity                          then   python3 bench/torch_infinity.py
//
// Case (f32): depth 4, C 256, 4 heads (head_dim 64), d 32, text width 256; the 0.06M (256px) 1:1
// schedule 1, 2, 4, 6, 8, 12, 16 (L = 521); batch 2 with condition lengths 12 and 20.
//   infinity/d4w256/L521xB2/fwd+bwd    condition() + forward + bitwise loss + backward
//   infinity/d4w256/L521xB2/fwd        the same forward without grad
// The teacher inputs and labels come from bitwise self-correction of a random latent, outside the
// timed step. Wall time and process CPU time (all threads) are reported: on a shared machine the
// CPU time is the steadier number; run both scripts with OMP_WAIT_POLICY=passive there, as
// spinning OpenMP workers otherwise bill their waits to whichever process spins.
#include <benchmark/benchmark.h>

#include "cpu_bench.h"
#include <omp.h>

#include "infinity/infinity.h"
#include "infinity/self_correction.h"
#include "vt/autograd.h"
#include "vt/random.h"

using namespace vt;
using namespace vt::infinity;

namespace {

constexpr int kThreads = 2;

struct Setup {
  Infinity model{InfinityConfig::bench()};
  ScaleSchedule schedule = scale_schedule(1.0, "0.06M");
  PackedText text;
  TeacherBatch batch;
  Setup() {
    Generator g(3);
    text = pack_text({randn({12, 256}, DType::F32, &g), randn({20, 256}, DType::F32, &g)});
    batch = bitwise_self_correction(randn({2, 32, 16, 16}, DType::F32, &g), schedule, SelfCorrectionConfig{}, &g);
  }
};

void fwd_bwd(benchmark::State& state) {
  omp_set_num_threads(kThreads);
  manual_seed(1);
  Setup s;
  auto step = [&] {
    TrainingOutput out = training_forward(s.model, s.model.condition(s.text), s.batch, s.schedule);
    out.loss.backward();
    benchmark::DoNotOptimize(s.model.head->weight.grad().raw_data());
    s.model.zero_grad();
  };
  step();  // warm-up
  for (auto _ : state) step();
}

void fwd(benchmark::State& state) {
  omp_set_num_threads(kThreads);
  manual_seed(1);
  Setup s;
  auto step = [&] {
    NoGradGuard no_grad;
    benchmark::DoNotOptimize(s.model.forward(s.model.condition(s.text), s.batch.inputs, s.schedule).raw_data());
  };
  step();
  for (auto _ : state) step();
}

}  // namespace

BENCHMARK(fwd_bwd)->Name("infinity/d4w256/L521xB2/fwd+bwd")->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime()->MinTime(3.0);
BENCHMARK(fwd)->Name("infinity/d4w256/L521xB2/fwd")->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime()->MinTime(2.0);

int main(int argc, char** argv) { return vt::bench::run_benchmarks(argc, argv, kThreads); }
