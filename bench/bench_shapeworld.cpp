// bench_shapeworld.cpp: ShapeWorld's two throughput targets (issue 7):
//   - writing 10,000 scenes at 128x128 with all annotations (generation, understanding, editing
//     and preference records, three PNGs per scene): under 30 s on 2 cores;
//   - evaluating 1,000 generated images GenEval-style (PNG decode, detection, judging): under 10 s.
// Both run with the OpenMP threads the environment gives (OMP_NUM_THREADS); wall time is reported.
#include <benchmark/benchmark.h>
#include <omp.h>
#include <unistd.h>

#include <filesystem>

#include "shapeworld/dataset.h"
#include "shapeworld/evaluate.h"

namespace fs = std::filesystem;
using namespace vt::shapes;

namespace {

fs::path scratch(const char* tag) {
  return fs::temp_directory_path() / (std::string("vt_bench_shapeworld_") + tag + "_" + std::to_string(getpid()));
}

void BM_WriteScenes(benchmark::State& state) {
  const fs::path dir = scratch("write");
  MakeOptions m;
  m.out_dir = dir.string();
  m.size = int(state.range(1));
  m.train = int(state.range(0));
  m.test = 0;
  m.seed = 1;
  size_t images = 0;
  for (auto _ : state) {
    nlohmann::json manifest = make_dataset(m);
    images = manifest["splits"]["train"]["images"].get<size_t>();
  }
  state.counters["scenes"] = double(m.train);
  state.counters["images"] = double(images);
  state.counters["threads"] = omp_get_max_threads();
  state.counters["scenes_per_s"] = benchmark::Counter(double(m.train) * state.iterations(), benchmark::Counter::kIsRate);
  fs::remove_all(dir);
}
BENCHMARK(BM_WriteScenes)->Args({10000, 128})->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();

void BM_EvaluateImages(benchmark::State& state) {
  const fs::path dir = scratch("eval");
  MakeOptions m;
  m.out_dir = dir.string();
  m.size = int(state.range(1));
  m.train = 0;
  m.test = int(state.range(0));
  m.seed = 2;
  make_dataset(m);  // not timed
  EvalOptions e;
  e.data_dir = dir.string();
  double accuracy = 0;
  for (auto _ : state) accuracy = evaluate_generation(e).overall();
  state.counters["images"] = double(m.test);
  state.counters["overall"] = accuracy;  // 1.0: the references themselves are scored
  state.counters["images_per_s"] = benchmark::Counter(double(m.test) * state.iterations(), benchmark::Counter::kIsRate);
  fs::remove_all(dir);
}
BENCHMARK(BM_EvaluateImages)->Args({1000, 128})->Iterations(3)->Unit(benchmark::kSecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
