// bench_qwen2.cpp: the Qwen2 decoder (models/qwen2) on the CPU, 2 threads, Qwen2-0.5B shapes with
// random weights (hidden 896, 24 layers, 14 heads, 2 KV heads, intermediate 4864, vocab 151936,
// tied), against bench/torch_qwen2.py (transformers eager, same config, same measurements).
//
//   ./bench_qwen2 [--benchmark_filter=bf16]      then   python3 bench/torch_qwen2.py
//
// Cases, for f32 and bf16 weights:
//   qwen2_0.5b/<dtype>/prefill512   one forward over a 512-token prompt into empty KV caches,
//                                   logits of the last position; counter tok_s = 512 / time
//   qwen2_0.5b/<dtype>/decode<N>    N single-token steps after that prompt (N = 128, or
//                                   VT_QWEN2_DECODE_TOKENS), greedy; tok_s = N / time
// Counters weights_mb (parameter bytes) and peak_rss_mb (VmHWM since the model was built and
// randomised, the high-water mark reset through /proc/self/clear_refs then), so peak - weights is
// what the activations, KV caches and temporaries of inference add. Run one dtype per process
// (--benchmark_filter) for a peak that belongs to that dtype alone.
#include <benchmark/benchmark.h>

#include "cpu_bench.h"
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include "qwen2/qwen2.h"
#include "vt/autograd.h"
#include "vt/random.h"

using namespace vt;
using namespace vt::bench;

namespace {

constexpr int kThreads = 2;
constexpr int64_t kPrompt = 512;

int64_t decode_tokens() {
  const char* env = std::getenv("VT_QWEN2_DECODE_TOKENS");
  return env ? std::atoll(env) : 128;
}


qwen2::Qwen2Config qwen2_0_5b() {
  qwen2::Qwen2Config c;
  c.vocab_size = 151936, c.hidden_size = 896, c.intermediate_size = 4864, c.num_hidden_layers = 24;
  c.num_attention_heads = 14, c.num_key_value_heads = 2, c.head_dim = 64;
  c.rope_theta = 1e6, c.rms_norm_eps = 1e-6, c.tie_word_embeddings = true;
  return c;
}

// One model at a time (the f32 one is 2 GB): built on first use of a dtype, replaced on a switch.
struct Bench {
  DType dtype;
  std::shared_ptr<qwen2::Qwen2ForCausalLM> model;
  double weights_mb = 0;
};
Bench& bench_for(DType dtype) {
  static Bench b{DType::F32, nullptr};
  if (b.model && b.dtype == dtype) return b;
  b.model.reset();
  b.dtype = dtype;
  b.model = std::make_shared<qwen2::Qwen2ForCausalLM>(qwen2_0_5b(), dtype);
  b.model->eval();
  NoGradGuard no_grad;
  Generator g(0);
  size_t bytes = 0;
  for (auto& [name, p] : b.model->named_parameters()) {
    // N(0, 0.02) in blocks of rows, so no weight-sized temporary lingers in the allocator's cache
    // and inflates the RSS that the peak is compared against (norm weights stay 1).
    bytes += p.nbytes();
    if (name.find("norm") != std::string::npos) continue;
    for (int64_t r = 0; r < p.size(0); r += 1024) {
      const int64_t n = std::min<int64_t>(1024, p.size(0) - r);
      Tensor dst = p.detach().narrow(0, r, n);
      Shape s = dst.shape();
      copy_(dst, normal(s, 0, 0.02, DType::F32, &g));
    }
  }
  b.weights_mb = bytes / 1e6;
  reset_peak_rss();  // the peak from here on: weights + inference
  return b;
}

Tensor prompt_ids() {
  Generator g(1);
  return randint(0, 151643, {1, kPrompt}, DType::I64, &g);
}

void prefill(benchmark::State& state, DType dtype) {
  omp_set_num_threads(kThreads);
  Bench& b = bench_for(dtype);
  NoGradGuard no_grad;
  const Tensor ids = prompt_ids();
  for (auto _ : state) {
    auto caches = b.model->make_caches();
    Tensor logits = b.model->forward(ids, qwen2::sequential_positions(1, kPrompt), Tensor(), &caches, true);
    benchmark::DoNotOptimize(logits.raw_data());
  }
  state.counters["tok_s"] = benchmark::Counter(double(kPrompt * state.iterations()), benchmark::Counter::kIsRate);
  state.counters["weights_mb"] = b.weights_mb;
  state.counters["peak_rss_mb"] = proc_status_bytes("VmHWM:") / 1e6;
}

void decode(benchmark::State& state, DType dtype) {
  omp_set_num_threads(kThreads);
  Bench& b = bench_for(dtype);
  NoGradGuard no_grad;
  const int64_t n = decode_tokens();
  const Tensor ids = prompt_ids();
  for (auto _ : state) {
    state.PauseTiming();
    auto caches = b.model->make_caches();
    Tensor logits = b.model->forward(ids, qwen2::sequential_positions(1, kPrompt), Tensor(), &caches, true);
    for (auto& c : caches) c.reserve(kPrompt + n);  // no regrowth inside the timed loop
    state.ResumeTiming();
    for (int64_t i = 0; i < n; ++i) {
      const Tensor next = argmax(logits.select(1, 0), -1, true);  // (1, 1)
      logits = b.model->forward(next, qwen2::sequential_positions(1, 1, kPrompt + i), Tensor(), &caches, true);
    }
    benchmark::DoNotOptimize(logits.raw_data());
  }
  state.counters["tok_s"] = benchmark::Counter(double(n * state.iterations()), benchmark::Counter::kIsRate);
  state.counters["weights_mb"] = b.weights_mb;
  state.counters["peak_rss_mb"] = proc_status_bytes("VmHWM:") / 1e6;
}

}  // namespace

BENCHMARK_CAPTURE(prefill, f32, DType::F32)->Name("qwen2_0.5b/f32/prefill512")->Unit(benchmark::kSecond)
    ->UseRealTime()->Iterations(1);
BENCHMARK_CAPTURE(decode, f32, DType::F32)->Name("qwen2_0.5b/f32/decode")->Unit(benchmark::kSecond)
    ->UseRealTime()->Iterations(1);
BENCHMARK_CAPTURE(prefill, bf16, DType::BF16)->Name("qwen2_0.5b/bf16/prefill512")->Unit(benchmark::kSecond)
    ->UseRealTime()->Iterations(1);
BENCHMARK_CAPTURE(decode, bf16, DType::BF16)->Name("qwen2_0.5b/bf16/decode")->Unit(benchmark::kSecond)
    ->UseRealTime()->Iterations(1);

int main(int argc, char** argv) { return vt::bench::run_benchmarks(argc, argv, kThreads); }
