// bench_gpu_models: whole models on the GPU, random weights, against bench/torch_gpu_models.py
// (transformers / the torch reference network on the same card). Output lines are
// "vt <key> <value> <unit> <ms> ms", the format bench/torch_gpu_nn.py-style scripts join.
//
//   ./bench_gpu_models [--only qwen2|vae] [--prompt 2048] [--decode 128] [--layers 28] [--rope1d]
//   python3 bench/torch_gpu_models.py --vt vt.txt      (the joined vt / torch table)
// The VAE section runs first (short), then the LLM; a failing section prints "# <name> FAILED: ..."
// and the other still runs (exit status 1). No visible GPU: one skip line, exit status 0.
//
// qwen2_7b: the Qwen2-VL-7B language model (hidden 3584, 28 layers, 28 heads, 4 KV heads, head 128,
//   intermediate 18944, vocab 152064, untied lm_head, rope_theta 1e6, rms_eps 1e-6, mrope_section
//   [16, 24, 24]) in bf16, weights N(0, 0.02) drawn on the device (norm weights stay 1). B = 1.
//   Positions are M-RoPE (3, 1, T) with t = h = w = past + 0..T-1 (equal to 1-D RoPE; --rope1d feeds
//   (1, T) positions instead), as Qwen2-VL's text tokens. transformers' Qwen2ForCausalLM uses 1-D.
//     qwen2_7b_prefill   tok/s over one forward of `prompt` random ids into empty KV caches, logits
//                        of the last position only (one warm-up prefill + 8 decode steps first).
//                        ms = that forward.
//     qwen2_7b_decode    tok/s over `decode` greedy single-token steps after that prompt
//                        (argmax on the device, fed back; caches reserved for prompt + decode rows
//                        outside the timing). ms = the whole loop.
//     qwen2_7b_weights   GB of parameters (1e9 bytes).
//     qwen2_7b_peak      GB, vt::cuda::memory_stats().peak_allocated over prefill + decode (weights
//                        included); qwen2_7b_peak_x = the same in units of the weights' bytes.
//   Wall time: synchronize + steady_clock around the call / the loop (host work included, as in a
//   real generation loop).
// vae: Infinity's BSQ-VAE d32 decoder (models/bsq_vae) at 512x512 (the 0.25M 1:1 schedule, 10
//   scales to a 32x32 latent), f32 as upstream decodes. Median of 5 after 2 warm-ups.
//     vae_decode_512        ms: random per-scale bits (host) -> latent (multiscale_bits_to_latent,
//                           on the host: it builds its accumulator on the CPU) -> device -> decoder
//                           -> clamp, synchronized.
//     vae_decoder_512       ms: the decoder + clamp alone, from a latent already on the device.
//     vae_decoder_512_bf16  ms: the same with the module and latent in bf16 (skipped with a line
//                           when some op refuses bf16).
#ifdef VT_WITH_CUDA
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "bsq_vae/bsq_vae.h"
#include "bsq_vae/multiscale_bsq.h"
#include "infinity/scale_schedule.h"
#include "qwen2/qwen2.h"
#include "vt/autograd.h"
#include "gpu_bench.h"
#include "vt/cuda.h"
#include "vt/ops.h"
#include "vt/random.h"

using namespace vt;
using namespace vt::bench;

namespace {


struct Options {
  std::string only;  // "", "qwen2", "vae"
  int64_t prompt = 2048, decode = 128, layers = 28;
  bool rope1d = false;
};

// ---- Qwen2-7B ----------------------------------------------------------------------------------

qwen2::Qwen2Config qwen2_7b(int64_t layers) {
  qwen2::Qwen2Config c;
  c.model_type = "qwen2_vl";
  c.vocab_size = 152064, c.hidden_size = 3584, c.intermediate_size = 18944, c.num_hidden_layers = layers;
  c.num_attention_heads = 28, c.num_key_value_heads = 4, c.head_dim = 128;
  c.rope_theta = 1e6, c.rms_norm_eps = 1e-6, c.tie_word_embeddings = false;
  c.max_position_embeddings = 32768;
  c.mrope_section = std::array<int64_t, 3>{16, 24, 24};
  c.dtype = DType::BF16;
  return c;
}

// Positions past .. past + T - 1 on `dev`: (3, 1, T) for M-RoPE with t = h = w, or (1, T).
Tensor positions(int64_t T, int64_t past, bool rope1d, Device dev) {
  Tensor p = qwen2::sequential_positions(1, T, past);  // (1, T) int64, host
  if (!rope1d) p = p.unsqueeze(0).expand({3, 1, T}).contiguous();
  return p.to(dev);
}

void bench_qwen2(const Options& o) {
  const Device gpu = Device::cuda();
  const qwen2::Qwen2Config cfg = qwen2_7b(o.layers);
  cfg.validate("qwen2_7b");
  const double need_gb = 16.5 * double(o.layers) / 28.0 + 2.5;
  const double free_gb = free_device_gb();
  if (free_gb >= 0 && free_gb < need_gb) {
    note("qwen2_7b skipped: " + std::to_string(free_gb) + " GB free on the device, about " +
         std::to_string(need_gb) + " GB needed");
    return;
  }
  note("qwen2_7b: layers " + std::to_string(o.layers) + ", prompt " + std::to_string(o.prompt) + ", decode " +
       std::to_string(o.decode) + ", positions " + (o.rope1d ? "1-D (1, T)" : "M-RoPE (3, 1, T), t = h = w"));

  NoGradGuard no_grad;
  const auto t_build = std::chrono::steady_clock::now();
  auto model = std::make_shared<qwen2::Qwen2ForCausalLM>(cfg, DType::BF16);  // zeros on the host
  model->eval();
  model->to(gpu);
  int64_t weight_bytes = 0;
  {
    Generator g(0);
    for (auto& [name, p] : model->named_parameters()) {
      weight_bytes += int64_t(p.nbytes());
      if (name.find("norm") != std::string::npos) continue;  // RMSNorm weights stay 1
      Tensor dst = p.detach();
      copy_(dst, normal(p.shape(), 0, 0.02, {DType::BF16, gpu}, &g));
    }
  }
  vt::cuda::synchronize();
  vt::cuda::empty_cache();
  note("qwen2_7b: model built and randomised on the device in " +
       std::to_string(std::chrono::duration<double>(std::chrono::steady_clock::now() - t_build).count()) + " s");

  const int64_t V_ids = 151643;  // ordinary text ids
  Generator gi(1);
  const Tensor ids = randint(0, V_ids, {1, o.prompt}, {DType::I64, gpu}, &gi);
  const Tensor prompt_pos = positions(o.prompt, 0, o.rope1d, gpu);

  auto run_prefill = [&](std::vector<nn::KVCache>& caches) {
    return model->forward(ids, prompt_pos, Tensor(), &caches, /*last_only=*/true);  // (1, 1, V)
  };
  auto decode_steps = [&](std::vector<nn::KVCache>& caches, Tensor logits, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
      const Tensor next = argmax(logits.select(1, 0), -1, true);  // (1, 1) int64 on the device
      logits = model->forward(next, positions(1, o.prompt + i, o.rope1d, gpu), Tensor(), &caches, true);
    }
    return logits;
  };

  // Warm-up: one prefill and a few decode steps (cuBLAS handles, allocator cache, kernels).
  {
    auto caches = model->make_caches();
    Tensor logits = run_prefill(caches);
    logits = decode_steps(caches, logits, std::min<int64_t>(8, o.decode));
    vt::cuda::synchronize();
  }
  vt::cuda::synchronize();
  vt::cuda::reset_peak_stats();

  auto caches = model->make_caches();
  Tensor logits;
  const double prefill_ms = wall_ms([&] { logits = run_prefill(caches); });
  report("qwen2_7b_prefill", double(o.prompt) / (prefill_ms * 1e-3), "tok/s", prefill_ms);

  for (auto& c : caches) c.reserve(o.prompt + o.decode);  // no regrowth inside the timed loop
  vt::cuda::synchronize();
  Tensor last;
  const double decode_ms = wall_ms([&] { last = decode_steps(caches, logits, o.decode); });
  report("qwen2_7b_decode", double(o.decode) / (decode_ms * 1e-3), "tok/s", decode_ms);

  vt::cuda::synchronize();
  const auto st = vt::cuda::memory_stats();
  report("qwen2_7b_weights", double(weight_bytes) / 1e9, "GB", 0.0);
  report("qwen2_7b_peak", double(st.peak_allocated) / 1e9, "GB", 0.0);
  report("qwen2_7b_peak_x", double(st.peak_allocated) / double(weight_bytes), "x_weights", 0.0);
  {  // a sanity line: the last greedy token (random weights, so any id) and the cache length
    const Tensor tok = argmax(last.select(1, 0), -1, false).to(Device::cpu());
    note("qwen2_7b: last greedy id " + std::to_string(int64_t(tok.item())) + ", cache length " +
         std::to_string(caches[0].length));
  }
}

// ---- BSQ-VAE d32 decoder ----------------------------------------------------------------------

void bench_vae() {
  const Device gpu = Device::cuda();
  NoGradGuard no_grad;
  vt::manual_seed(0);
  auto vae = std::make_shared<bsq::BsqVae>(bsq::BsqVaeConfig::infinity_d32());  // random init, host, f32
  vae->eval();
  vae->to(gpu);

  const auto sched = infinity::schedule_for_image(512, 512);
  Generator g(1);
  std::vector<Tensor> bits;  // host (multiscale_bits_to_latent accumulates on the CPU)
  for (const auto& s : sched.scales) bits.push_back(gt(rand({1, s.h, s.w, 32}, DType::F32, &g), 0.5));
  note("vae: 512x512, " + std::to_string(sched.num_scales()) + " scales to " + std::to_string(sched.scales.back().h) +
       "x" + std::to_string(sched.scales.back().w));

  Tensor img;
  const double full_ms = median_ms([&] {
    const Tensor latent = bsq::multiscale_bits_to_latent(bits).to(gpu);
    img = vae->decode_latent(latent);
  }, 2, 5);
  report("vae_decode_512", full_ms, "ms", full_ms);
  if (img.dim() != 4 || img.size(2) != 512 || img.size(3) != 512)
    note("vae: unexpected image shape " + img.shape().str());

  const Tensor latent = bsq::multiscale_bits_to_latent(bits).to(gpu);
  const double dec_ms = median_ms([&] { img = vae->decode_latent(latent); }, 2, 5);
  report("vae_decoder_512", dec_ms, "ms", dec_ms);

  try {
    vae->to(DType::BF16);
    const Tensor latent16 = latent.to(DType::BF16);
    const double ms16 = median_ms([&] { img = vae->decode_latent(latent16); }, 2, 5);
    report("vae_decoder_512_bf16", ms16, "ms", ms16);
  } catch (const std::exception& e) {
    note(std::string("vae_decoder_512_bf16 skipped: ") + e.what());
  }
}

// Between sections: wait for the device and return cached blocks (a sticky CUDA error after a
// failed section is reported, not thrown out of main).
void release() {
  try {
    vt::cuda::synchronize();
    vt::cuda::empty_cache();
  } catch (const std::exception& e) {
    std::printf("# device error after the section: %s\n", e.what());
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&] { return option_value(argc, argv, i, "bench_gpu_models"); };
    if (a == "--only") o.only = value();
    else if (a == "--prompt") o.prompt = std::atoll(value().c_str());
    else if (a == "--decode") o.decode = std::atoll(value().c_str());
    else if (a == "--layers") o.layers = std::atoll(value().c_str());
    else if (a == "--rope1d") o.rope1d = true;
    else {
      std::fprintf(stderr, "usage: bench_gpu_models [--only qwen2|vae] [--prompt N] [--decode N] [--layers N] [--rope1d]\n");
      return 2;
    }
  }
  if (o.prompt < 1 || o.decode < 1 || o.layers < 1) {
    std::fprintf(stderr, "bench_gpu_models: --prompt, --decode and --layers must be positive\n");
    return 2;
  }
  if (!vt::cuda::is_available()) {
    std::printf("no CUDA device visible: GPU model benchmarks skipped\n");
    return 0;
  }
  // The VAE first: it is short, so a run cut off by a timeout still reports it.
  int rc = 0;
  if (o.only.empty() || o.only == "vae") {
    try {
      bench_vae();
    } catch (const std::exception& e) {
      std::printf("# vae FAILED: %s\n", e.what());
      rc = 1;
    }
    release();
  }
  if (o.only.empty() || o.only == "qwen2") {
    try {
      bench_qwen2(o);
    } catch (const std::exception& e) {
      std::printf("# qwen2_7b FAILED: %s\n", e.what());
      rc = 1;
    }
    release();
  }
  std::fflush(stdout);
  return rc;
}
#else
#include <cstdio>
int main() {
  std::printf("CUDA not built: bench_gpu_models has nothing to run (configure with -DVT_CUDA=ON)\n");
  return 0;
}
#endif
