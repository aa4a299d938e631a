// bench_tensor.cpp: the tensor core's speed targets (issue 2), each against a baseline measured in
// the same run:
//   - elementwise add on 16M floats vs memcpy of the same bytes (target: add >= 0.7x memcpy GB/s,
//     counting the bytes each moves: add reads 2 and writes 1 buffer, memcpy reads 1 writes 1);
//   - small-op overhead: a chain of 1000 adds and multiplies on 16-element tensors, forward plus
//     backward, in microseconds per op (bench/small_ops_torch.py times the same chain in PyTorch
//     eager; target: vt <= 0.25x PyTorch).
// Run: OMP_NUM_THREADS=2 ./bench_tensor
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstring>

#include "vt/ops.h"

using namespace vt;

static constexpr int64_t kN = int64_t(1) << 24;  // 16M floats = 64 MiB per buffer

static void BM_add_16M(benchmark::State& st) {
  Tensor a = rand({kN}), b = rand({kN});
  for (auto _ : st) {
    Tensor c = add(a, b);
    benchmark::DoNotOptimize(c.raw_data());
  }
  st.SetBytesProcessed(st.iterations() * kN * 4 * 3);
}
BENCHMARK(BM_add_16M)->Unit(benchmark::kMillisecond)->UseRealTime();

static void BM_memcpy_16M(benchmark::State& st) {
  std::vector<float> a(kN, 1.f), c(kN);
  for (auto _ : st) {
    std::memcpy(c.data(), a.data(), kN * 4);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(st.iterations() * kN * 4 * 2);
}
BENCHMARK(BM_memcpy_16M)->Unit(benchmark::kMillisecond)->UseRealTime();

// x <- x * w + b, 500 times (1000 ops), then backward to w and b.
static void BM_small_op_chain(benchmark::State& st) {
  Tensor w = rand({16}).requires_grad_(), b = rand({16}).requires_grad_();
  Tensor x0 = rand({16});
  for (auto _ : st) {
    Tensor x = x0;
    for (int i = 0; i < 500; ++i) x = add(mul(x, w), b);
    sum(x).backward();
    w.zero_grad();
    b.zero_grad();
  }
  st.counters["us_per_op"] = benchmark::Counter(1000 * st.iterations(), benchmark::Counter::kIsRate |
                                                                            benchmark::Counter::kInvert);
  st.counters["us_per_op"] = benchmark::Counter(double(st.iterations()) * 1000,
                                                benchmark::Counter::kIsRate | benchmark::Counter::kInvert,
                                                benchmark::Counter::kIs1000);
}
BENCHMARK(BM_small_op_chain)->Unit(benchmark::kMicrosecond)->UseRealTime();

BENCHMARK_MAIN();
