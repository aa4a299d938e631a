// bench_vargpt.cpp: VARGPT-v1.1 generating one 256x256 image on the CPU, 2 threads, f32, against
// bench/torch_vargpt.py (the spec-written PyTorch reference tools/vargpt_reference.py: transformers'
// Qwen2-VL, the reference Infinity loop and BSQ-VAE, f32, 2 threads, the same checkpoint files).
//
//   ./bench_vargpt --small-dir DIR --benchmark_filter=small      then
//   python3 bench/torch_vargpt.py --small-dir DIR --vt <this program's --benchmark_out json>
//   ./bench_vargpt --make-small DIR     only write the small random checkpoint directory
//   ./bench_vargpt --profile tiny|small the peak RSS of the load, the loop and the VAE decode, then
//                                       one generation timed phase by phase (wall and process CPU)
//
// Also vargpt/tiny/train_step (recompute 0 and 1): one training step of the tiny fixture, forward +
// backward, against bench/torch_vargpt_train.py (see train_step below).
// Configurations (bench/vargpt_bench.h): tiny = tests/fixtures/vargpt_tiny; small = a random
// checkpoint (LLM 256 x 4 layers, Infinity C 256 depth 4 d 32, BSQ-VAE base 64), written by this
// program into --small-dir (default: vargpt_small beside the executable) when it is not there yet,
// so that both sides load the same weights.
//
// Case vargpt/<config>/256/cfg3: the tiny fixture's t2i prompt (92 ids ending with
// <|image_gen_start|>) -> decode_text (prefill, the start token forced and fed) -> generate_image
// at 256x256 (0.06M schedule: 7 scales, 521 tokens; CFG 3, tau 0.5, top-p 0.97, seed 0; per scale a
// cached conditional LLM pass, a context-free unconditional one, the Infinity blocks on both rows)
// -> the VAE decode to pixels. Wall and process CPU time per image: on a shared machine the CPU
// time is the steadier number; run both sides with OMP_WAIT_POLICY=passive there (spinning OpenMP
// workers bill their waits as CPU time), as scripts/bench_report.sh does.
// Counters (the first generation in the process, so run one config per process):
//   weights_mb       bytes of the state dict (parameters + persistent buffers)
//   base_rss_mb      VmRSS before from_pretrained (the program, its libraries, the prompt)
//   peak_rss_mb      VmHWM over from_pretrained + the first generation (the high-water mark is reset
//                    through /proc/self/clear_refs before the load)
//   rss_x_weights    peak_rss / weights (goal <= 1.15; only meaningful when the weights dwarf
//                    base_rss: not for tiny)
//   added_x_weights  (peak_rss - base_rss) / weights: what loading and generating add, per weight byte
#include <benchmark/benchmark.h>
#include <omp.h>

#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cpu_bench.h"
#include "vargpt_bench.h"
#include "vargpt/training.h"
#include "vt/io/tensor_io.h"

using namespace vt;
using namespace vt::bench;

namespace {

constexpr int kThreads = 2;
std::string g_small_dir;  // --small-dir

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Wall and process CPU milliseconds since the last lap() (or construction).
struct Lap {
  std::chrono::steady_clock::time_point t = std::chrono::steady_clock::now();
  double cpu = cpu_ms();
  static double cpu_ms() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return double(ts.tv_sec) * 1e3 + double(ts.tv_nsec) / 1e6;
  }
  std::string lap() {
    const double w = ms_since(t), c = cpu_ms() - cpu;
    t = std::chrono::steady_clock::now();
    cpu = cpu_ms();
    char b[64];
    std::snprintf(b, sizeof b, "%9.2f ms wall %9.2f ms cpu", w, c);
    return b;
  }
};

void make_small(const std::string& dir) {
  const auto t0 = std::chrono::steady_clock::now();
  vargpt::Vargpt model(vargpt_small_config(), DType::F32);
  const int64_t bytes = randomize_weights(model, 20240601);
  write_vargpt_checkpoint(model, dir);
  std::printf("# wrote %s: %.1f MB of f32 weights in %.1f s\n", dir.c_str(), double(bytes) / 1e6, ms_since(t0) / 1e3);
}

std::string checkpoint_of(const std::string& which) {
  if (which == "tiny") return vargpt_tiny_dir();
  // The checkpoint is deterministic (fixed seed): an existing directory is reused. A missing one is
  // written by a child process, so that the writer's memory (and vt's cache of freed blocks) is not
  // in this process's RSS figures.
  if (!std::filesystem::exists(g_small_dir + "/config.json")) {
    const std::string cmd = std::filesystem::read_symlink("/proc/self/exe").string() + " --make-small '" + g_small_dir + "'";
    VT_CHECK(std::system(cmd.c_str()) == 0, "bench_vargpt: '", cmd, "' failed");
  }
  return g_small_dir;
}

// One loaded model per process, and the memory figures of its load and first generation.
struct Loaded {
  std::string which;
  std::shared_ptr<vargpt::Vargpt> model;
  std::vector<int64_t> prompt;
  int64_t weight_bytes = 0, base_rss = 0, peak_rss = 0;
  bool peak_reset = false, generated = false;
  double load_ms = 0;
};

Loaded& loaded(const std::string& which) {
  static Loaded l;
  if (l.model && l.which == which) return l;
  l = Loaded{};
  l.which = which;
  const std::string dir = checkpoint_of(which);  // may write the small checkpoint (not counted)
  l.prompt = vargpt_bench_prompt();
  l.peak_reset = reset_peak_rss();
  l.base_rss = proc_status_bytes("VmRSS:");
  const auto t0 = std::chrono::steady_clock::now();
  l.model = vargpt::Vargpt::from_pretrained(dir, DType::F32);
  l.load_ms = ms_since(t0);
  for (const auto& [name, t] : l.model->state_dict()) l.weight_bytes += int64_t(t.nbytes());
  return l;
}

void generate(benchmark::State& state, const std::string& which) {
  omp_set_num_threads(kThreads);
  Loaded& l = loaded(which);
  GenerationSettings s;  // 256², cfg 3, tau 0.5, top-p 0.97, seed 0
  auto step = [&] {
    vargpt::ImageResult r = generate_one(*l.model, l.prompt, s);
    benchmark::DoNotOptimize(r.pixels.raw_data());
  };
  if (!l.generated) {  // the first generation: its high-water mark is the one reported
    step();
    l.peak_rss = proc_status_bytes("VmHWM:");
    l.generated = true;
  }
  for (auto _ : state) step();
  const double w = double(l.weight_bytes);
  state.counters["weights_mb"] = w / 1e6;
  state.counters["base_rss_mb"] = double(l.base_rss) / 1e6;
  state.counters["peak_rss_mb"] = double(l.peak_rss) / 1e6;
  state.counters["rss_x_weights"] = double(l.peak_rss) / w;
  state.counters["added_x_weights"] = double(l.peak_rss - l.base_rss) / w;
  state.counters["load_ms"] = l.load_ms;
  if (!l.peak_reset) state.SetLabel("VmHWM not reset: peak since the program started");
}

// --profile: the peak RSS of the load, of a first generation without the VAE decode and of a first
// VAE decode (each measured from a reset high-water mark), then one generation timed phase by phase
// (prefill + hand-off, each scale of the loop, the VAE decode + pixels).
int profile(const std::string& which) {
  omp_set_num_threads(kThreads);
  NoGradGuard no_grad;  // as inside generate_image (the parameters require grad)
  Loaded& l = loaded(which);
  std::printf("# %s: %.1f MB of weights, loaded in %.1f ms; RSS before the load %.1f MB, peak over the load %.1f MB, "
              "now %.1f MB\n",
              which.c_str(), double(l.weight_bytes) / 1e6, l.load_ms, double(l.base_rss) / 1e6,
              double(proc_status_bytes("VmHWM:")) / 1e6, double(proc_status_bytes("VmRSS:")) / 1e6);
  GenerationSettings s;
  s.decode = false;
  reset_peak_rss();
  vargpt::ImageResult first = generate_one(*l.model, l.prompt, s);  // warm-up
  std::printf("# peak RSS over the first generation without the VAE decode: %.1f MB\n",
              double(proc_status_bytes("VmHWM:")) / 1e6);
  reset_peak_rss();
  (void)l.model->vae_local->decode_latent(first.latent);
  std::printf("# peak RSS over the first VAE decode: %.1f MB (latent %s)\n", double(proc_status_bytes("VmHWM:")) / 1e6,
              first.latent.shape().str().c_str());
  std::vector<int64_t> ids = l.prompt;
  ids.pop_back();
  Lap lap;
  vargpt::TextOptions text;
  text.max_new_tokens = 1;
  text.force_image = true;
  vargpt::TextResult r = vargpt::decode_text(*l.model, {vargpt::Prompt{ids, {}, {}}}, text);
  std::printf("prefill %zu ids + hand-off        %s\n", ids.size(), lap.lap().c_str());
  vargpt::ImageOptions opt;
  opt.height = opt.width = s.size;
  opt.cfg = s.cfg, opt.tau = s.tau, opt.top_p = s.top_p;
  opt.seeds = {s.seed};
  opt.on_scale = [&](int64_t k, int64_t K, int64_t h, int64_t w) {
    std::printf("scale %lld/%lld (%lldx%lld, %4lld tokens)   %s\n", (long long)k + 1, (long long)K, (long long)h,
                (long long)w, (long long)(h * w), lap.lap().c_str());
  };
  opt.decode = false;
  vargpt::ImageResult out = vargpt::generate_image(*l.model, r.state, opt);
  lap.lap();
  out.image = l.model->vae_local->decode_latent(out.latent);
  out.pixels = vargpt::to_pixels(out.image, false);
  std::printf("VAE decode + pixels              %s\n", lap.lap().c_str());
  benchmark::DoNotOptimize(out.pixels.raw_data());
  return 0;
}

// vargpt/tiny/train_step: one teacher-forced training step of the tiny fixture (its reference batch:
// 2 sequences with an understanding image and a 256² generation span of 521 tokens each, with the
// fixture's self-correction labels), forward + backward over every parameter but vae_local, as
// bench/torch_vargpt_train.py times tools/vargpt_reference.py's train_forward. Tokens = the batch's
// non-padding positions; tokens_per_s counts them per wall second.
void train_step(benchmark::State& state) {
  omp_set_num_threads(kThreads);
  auto model = vargpt::Vargpt::from_pretrained(vargpt_tiny_dir(), DType::F32);
  const auto ref = io::load_safetensors(vargpt_tiny_dir() + "/reference.safetensors");
  vargpt::TrainingBatch b;
  b.input_ids = ref.at("train.input_ids");
  b.attention_mask = ref.at("train.attention_mask");
  b.pixel_values = ref.at("train.pixel_values");
  b.image_grid_thw = qwen2_vl::grid_rows(ref.at("train.image_grid_thw"));
  b.gen_inputs = ref.at("train.inputs");
  b.gen_labels = ref.at("train.labels");
  b.schedule = infinity::schedule_for_image(256, 256);
  model->unfreeze("*");
  model->freeze("vae_local");
  model->gradient_checkpointing_enable(state.range(0) != 0);
  const double tokens = sum(b.attention_mask).item();
  for (auto _ : state) {
    model->zero_grad();
    vargpt::TrainingOutput out = vargpt::training_forward(*model, b);
    out.loss.backward();
    benchmark::DoNotOptimize(out.loss.item());
  }
  state.counters["tokens_per_s"] = benchmark::Counter(tokens, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["tokens"] = tokens;
}

std::string default_small_dir() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return (ec ? std::filesystem::current_path() : exe.parent_path()).string() + "/vargpt_small";
}

}  // namespace

BENCHMARK_CAPTURE(generate, tiny, std::string("tiny"))
    ->Name("vargpt/tiny/256/cfg3")->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime()->MinTime(3.0);
BENCHMARK_CAPTURE(generate, small, std::string("small"))
    ->Name("vargpt/small/256/cfg3")->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime()->MinTime(5.0);

BENCHMARK(train_step)->Name("vargpt/tiny/train_step")->Arg(0)->ArgName("recompute")->Unit(benchmark::kMillisecond)
    ->UseRealTime()->MeasureProcessCPUTime()->MinTime(3.0);
BENCHMARK(train_step)->Name("vargpt/tiny/train_step")->Arg(1)->ArgName("recompute")->Unit(benchmark::kMillisecond)
    ->UseRealTime()->MeasureProcessCPUTime()->MinTime(3.0);

int main(int argc, char** argv) {
  g_small_dir = default_small_dir();
  std::vector<char*> rest{argv[0]};
  std::string make, prof;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_vargpt: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--small-dir") g_small_dir = value();
    else if (a == "--make-small") make = value();
    else if (a == "--profile") prof = value();
    else rest.push_back(argv[i]);
  }
  try {
    if (!make.empty()) return make_small(make), 0;
    if (!prof.empty()) {
      if (prof != "tiny" && prof != "small") {
        std::fprintf(stderr, "bench_vargpt: --profile takes tiny or small\n");
        return 2;
      }
      return profile(prof);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_vargpt: %s\n", e.what());
    return 1;
  }
  int n = static_cast<int>(rest.size());
  return run_benchmarks(n, rest.data(), kThreads);
}
