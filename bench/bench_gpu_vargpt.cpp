// bench_gpu_vargpt: VARGPT-v1.1 at its full shape (Qwen2-VL-7B LLM and ViT, Infinity-2B, BSQ-VAE d32)
// with random bf16 weights built in memory (no checkpoint file), generating one 512x512 image with
// classifier-free guidance on the GPU; against bench/torch_gpu_vargpt.py (transformers' Qwen2 for the
// LLM, the reference Infinity blocks with KV caches, the reference VAE decoder, bf16, the same card).
// Output lines are "vt <key> <value> <unit> <ms> ms", the format the torch script joins:
//
//   ./bench_gpu_vargpt [--runs 3] [--prompt-len 64] [--seed 0] [--layers 28] [--depth 32]
//                      [--config full|small] [--size 512] [--device cuda|cpu]
//   python3 bench/torch_gpu_vargpt.py --vt vt.txt        (the joined vt / torch table)
//   ./bench_gpu_vargpt --device cpu --config small --size 256 --runs 1   a CPU smoke test of the flow
//
// Model (bench/vargpt_bench.h): vargpt_full_config(): LLM hidden 3584, 28 layers, 28 heads / 4 KV
// heads, FFN 18944, vocab 152064, untied lm_head, M-RoPE [16, 24, 24]; ViT depth 32, 1280 wide (held,
// unused by text-to-image); Infinity depth 32, C 2048, 16 heads, d 32, 512 cfg_uncond rows; VAE base
// 128, ch_mult (1, 2, 4, 4, 4), 2 res blocks. Built on the host (LLM zeros, Infinity and VAE drawn by
// their constructors), moved to the device, every parameter redrawn there by randomize_weights (std
// 1/sqrt(fan_in), norms 1 + N(0, 0.1), biases N(0, 0.1), scale_mul ln 4). Numerics as
// vargpt::generate_image: bf16 weights and activations, the VAE in f32 (vargpt.md §16).
//
// Work (both sides): a prompt of --prompt-len ordinary text ids ((i * 7919) % 150000 + 1000) ending
// with <|image_gen_start|>; decode_text prefills the ids before it and feeds the start token (the
// hand-off); generate_image at 512x512 (0.25M schedule: 10 scales, 2521 tokens): per scale the LLM
// on the persistent cache (conditional) and without context (unconditional, Q4), image_gen_projector_out,
// the 32 Infinity blocks with per-block KV caches on both rows, CFG 3, tau 0.5, top-p 0.97, seed 0;
// the VAE decode to uint8 pixels on the host.
//
// Rows:
//   vargpt_512          ms, median of `runs` after one warm-up: prompt to pixels (the goal: 500 ms)
//   vargpt_512_latent   ms, the same without the VAE decode (ImageOptions::decode = false)
//   vargpt_weights      GiB of the state dict (parameters and persistent buffers)
//   vargpt_512_peak     GiB, vt::cuda::memory_stats().peak_allocated over the timed generations,
//                       weights included (the goal: 22 GiB)
// Notes ("# ..."): the time of each phase of one more generation (prefill + hand-off, each scale,
// the VAE decode), with a device synchronisation after each, and a sanity line.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "device_flow.h"
#include "vargpt_bench.h"
#ifdef VT_WITH_CUDA
#include <cuda_runtime.h>

#include "vt/cuda.h"
#endif

using namespace vt;
using namespace vt::bench;

namespace {

double free_gib(Device d) {  // -1 when unknown
#ifdef VT_WITH_CUDA
  size_t free_b = 0, total_b = 0;
  if (d.is_cuda() && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) return double(free_b) / double(1 << 30);
#endif
  (void)d;
  return -1;
}

template <class F>
double median_ms(Device d, int runs, F&& f) {
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) ms.push_back(wall_ms(d, f));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

struct Options {
  int runs = 3;
  int64_t prompt_len = 64, layers = -1, depth = -1, size = 512;
  uint64_t seed = 0;
  std::string config = "full", device = "cuda";
};

std::vector<int64_t> prompt_ids(const Options& o, const vargpt::VargptConfig& c) {
  if (o.config == "small") return vargpt_bench_prompt();  // the tiny tokenizer's ids
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < o.prompt_len - 1; ++i) ids.push_back((i * 7919) % 150000 + 1000);
  ids.push_back(c.tokens.start);
  return ids;
}

int run(const Options& o) {
  const Device dev = Device::parse(o.device);
  vargpt::VargptConfig cfg = o.config == "small" ? vargpt_small_config() : vargpt_full_config();
  if (o.layers > 0) cfg.llm.num_hidden_layers = o.layers;
  if (o.depth > 0) {
    cfg.gen.depth = o.depth;
    if (cfg.gen.depth % cfg.gen.block_chunks != 0) cfg.gen.block_chunks = 1;
  }
  const double free = free_gib(dev);
  const double need = o.config == "full" ? 15.5 * double(cfg.llm.num_hidden_layers) / 28.0 + 4.0 * double(cfg.gen.depth) / 32.0 + 4.0 : 1.0;
  if (free >= 0 && free < need) {
    note("skipped: " + fmt(free) + " GiB free on the device, about " + fmt(need) + " GiB needed");
    return 0;
  }
  note("vargpt " + o.config + ": LLM " + std::to_string(cfg.llm.hidden_size) + " x " +
       std::to_string(cfg.llm.num_hidden_layers) + " layers (" + std::to_string(cfg.llm.num_attention_heads) + "/" +
       std::to_string(cfg.llm.num_key_value_heads) + " heads, FFN " + std::to_string(cfg.llm.intermediate_size) +
       ", vocab " + std::to_string(cfg.llm.vocab_size) + "), ViT " + std::to_string(cfg.vision.embed_dim) + " x " +
       std::to_string(cfg.vision.depth) + ", Infinity C " + std::to_string(cfg.gen.embed_dim) + " depth " +
       std::to_string(cfg.gen.depth) + " d " + std::to_string(cfg.gen.codebook_dim) + ", VAE base " +
       std::to_string(cfg.vae.base_channels));

  NoGradGuard no_grad;
  const auto t_build = std::chrono::steady_clock::now();
  const DType dtype = o.config == "full" ? DType::BF16 : DType::F32;
  auto model = std::make_shared<vargpt::Vargpt>(cfg, dtype);  // host
  model->eval();
  model->to(dev);
  const int64_t weight_bytes = randomize_weights(*model, o.seed + 100);
  reset_peak(dev);
  note("model: " + fmt(double(model->num_parameters()) / 1e9, 3) + "B parameters, " +
       fmt(double(weight_bytes) / double(1 << 30), 2) + " GiB, " + std::string(dtype_name(dtype)) + " (VAE f32), built on " +
       dev.str() + " in " +
       fmt(std::chrono::duration<double>(std::chrono::steady_clock::now() - t_build).count()) + " s");

  const std::vector<int64_t> ids = prompt_ids(o, cfg);
  GenerationSettings s;
  s.size = o.size, s.seed = o.seed;  // cfg 3, tau 0.5, top-p 0.97
  note("work: prompt " + std::to_string(ids.size()) + " ids ending with <|image_gen_start|>, image " +
       std::to_string(o.size) + "x" + std::to_string(o.size) + ", CFG 3, tau 0.5, top-p 0.97, seed " +
       std::to_string(o.seed));

  vargpt::ImageResult out;
  const double first = wall_ms(dev, [&] { out = generate_one(*model, ids, s); });
  {
    const double ones = mean(cast(out.bits.back(), DType::F32)).to(Device::cpu()).item();
    const double lmax = amax(abs(out.logits.back())).to(Device::cpu()).item();
    note("warm-up generation " + fmt(first) + " ms; sanity: " + std::to_string(out.bits.size()) +
         " scales, last-scale guided |logit| max " + fmt(lmax, 3) + ", fraction of 1-bits " + fmt(ones, 3) +
         ", pixels " + out.pixels.shape().str());
    if (!std::isfinite(lmax)) note("WARNING: non-finite logits");
  }
  const int runs = first > 20000.0 ? 1 : o.runs;
  if (runs != o.runs) note("the warm-up took over 20 s: 1 timed run per row");
  reset_peak(dev);
  const double ms = median_ms(dev, runs, [&] { out = generate_one(*model, ids, s); });
  report(("vargpt_" + std::to_string(o.size)).c_str(), ms, "ms", ms);
  GenerationSettings latent = s;
  latent.decode = false;
  const double ms_latent = median_ms(dev, runs, [&] { out = generate_one(*model, ids, latent); });
  report(("vargpt_" + std::to_string(o.size) + "_latent").c_str(), ms_latent, "ms", ms_latent);
  report("vargpt_weights", double(weight_bytes) / double(1 << 30), "GiB", 0.0);
  if (peak_gib(dev) >= 0) report(("vargpt_" + std::to_string(o.size) + "_peak").c_str(), peak_gib(dev), "GiB", 0.0);

  // One more generation, phase by phase (a synchronisation after each phase).
  {
    std::vector<int64_t> head = ids;
    head.pop_back();
    sync(dev);
    auto t = std::chrono::steady_clock::now();
    auto lap = [&] {
      sync(dev);
      const auto now = std::chrono::steady_clock::now();
      const double v = std::chrono::duration<double, std::milli>(now - t).count();
      t = now;
      return v;
    };
    vargpt::TextOptions text;
    text.max_new_tokens = 1;
    text.force_image = true;
    vargpt::TextResult r = vargpt::decode_text(*model, {vargpt::Prompt{head, {}, {}}}, text);
    std::string phases = "phases (ms): prefill " + std::to_string(head.size()) + " + hand-off " + fmt(lap());
    vargpt::ImageOptions opt;
    opt.height = opt.width = o.size;
    opt.seeds = {o.seed};
    opt.cfg = s.cfg, opt.tau = s.tau, opt.top_p = s.top_p;
    opt.decode = false;
    opt.on_scale = [&](int64_t k, int64_t, int64_t h, int64_t) {
      phases += ", scale " + std::to_string(k) + " (" + std::to_string(h) + "²) " + fmt(lap());
    };
    vargpt::ImageResult img = vargpt::generate_image(*model, r.state, opt);
    lap();
    Tensor image = model->vae_local->decode_latent(img.latent);
    Tensor pixels = vargpt::to_pixels(image, false);
    phases += ", VAE decode + pixels " + fmt(lap());
    note(phases);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_gpu_vargpt: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--runs") o.runs = std::atoi(value().c_str());
    else if (a == "--prompt-len") o.prompt_len = std::atoll(value().c_str());
    else if (a == "--seed") o.seed = std::strtoull(value().c_str(), nullptr, 10);
    else if (a == "--layers") o.layers = std::atoll(value().c_str());
    else if (a == "--depth") o.depth = std::atoll(value().c_str());
    else if (a == "--size") o.size = std::atoll(value().c_str());
    else if (a == "--config") o.config = value();
    else if (a == "--device") o.device = value();
    else {
      std::fprintf(stderr,
                   "usage: bench_gpu_vargpt [--runs N] [--prompt-len N] [--seed N] [--layers N] [--depth N] "
                   "[--size 256|512] [--config full|small] [--device cuda|cpu]\n");
      return 2;
    }
  }
  if (o.runs < 1 || o.prompt_len < 2 || o.prompt_len > 512 || (o.config != "full" && o.config != "small") ||
      (o.size != 256 && o.size != 512)) {
    std::fprintf(stderr, "bench_gpu_vargpt: --runs >= 1, --prompt-len in 2..512, --config full|small, --size 256|512\n");
    return 2;
  }
  if (o.device != "cpu" && !cuda_available()) {
    std::printf("no CUDA device visible (or CUDA not built): GPU VARGPT benchmark skipped\n");
    return 0;
  }
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::printf("# vargpt FAILED: %s\n", e.what());
    return 1;
  }
}
