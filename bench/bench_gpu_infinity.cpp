// bench_gpu_infinity: the Infinity-2B decoder (VARGPT-v1.1's image decoder) with random bf16 weights
// generating one 512x512 image end to end on the GPU (issue 6), against bench/torch_gpu_infinity.py
// (tools/infinity_reference.py's network, bf16, on the same card). Output lines are
// "vt <key> <value> <unit> <ms> ms", the format the torch script joins:
//
//   ./bench_gpu_infinity [--runs 3] [--text-len 64] [--seed 0] [--depth 32] [--no-image] [--library]
//   python3 bench/torch_gpu_infinity.py --vt vt.txt      (the joined vt / torch table)
//
// Model: InfinityConfig::infinity_2b() (depth 32, C 2048, 16 heads of 128, FFN 8192, d 32 bits per
// token, text width 2048), built on the host, moved to the device, converted to bf16, then every
// parameter redrawn on the device as N(0, 0.02) except the norm affines (text_norm, ca_norm: 1 and
// 0) and scale_mul_1H11 (ln 4); the zero_k_bias buffers stay 0. torch_gpu_infinity.py uses the same
// rule. Numerics (vargpt.md §16 as far as the model code allows): bf16 weights AND activations,
// residual stream included (the model runs in its parameters' dtype; §16 recommends an f32
// residual, which vt's Infinity does not have), f32 norm statistics and attention softmax, cosine
// q/k normalised and rotated in f32, head logits cast to f32 for tau / CFG / sampling (§16).
//
// Work (both sides): the 0.25M 1:1 schedule (10 scales 1..32, L = 2521 tokens, 512x512 image), one
// image with classifier-free guidance = a batch of 2 rows [cond; uncond]; one random text condition
// of `text-len` rows (the uncond rows are cfg_uncond[:text-len]); a KV cache per block (each scale
// attends to itself and all earlier scales, no mask); cross-attention K/V of the memories computed
// once; per scale: tokens (start token or word_embed(next-scale input)) + lvl_embed[k] -> 32 blocks
// -> head; logits / tau (1), CFG l = 3 l_cond - 2 l_uncond (Infinity's constant form), per-bit
// top-p 0.97, Bernoulli draw on the device; bits -> codes -> bilinear accumulation on the 32x32
// latent (f32) -> next input.
//
// Rows:
//   generate_512        ms, median of `runs` after one warm-up: condition() of the text and of the
//                       uncond rows + the 10-scale cached decode + sampling, latent (1, 32, 32, 32) on
//                       the device (bits only, no image); synchronize + steady_clock around it
//   generate_512_tok    image tokens per second (2521 / generate_512; each token is computed for 2
//                       rows because of CFG)
//   generate_512_image  ms, the same generation + the BSQ-VAE d32 decoder (random weights, f32, as
//                       upstream decodes) to a (1, 3, 512, 512) image, median of `runs` after one
//                       warm-up decode (skipped with --no-image)
// When the warm-up generation takes over 10 s, each row is timed once (a note says so).
//   infinity_2b_weights GB of the decoder's parameters (1e9 bytes)
//   generate_512_peak   GB, vt::cuda::memory_stats().peak_allocated over the timed generations
//                       (weights and, with the image rows, the VAE included)
//
// The timed loop is written out from the model's public pieces (condition, shared_condition,
// cross_kv, run_blocks with KV caches, head_logits, cfg_combine), with lvl_embed[k] broadcast
// instead of the id lookup (every token of a step is of scale k). At the end, infinity::sample()
// itself runs once on the device (made device-safe after this bench was written) and its time is
// printed as a note; --no-library skips it.
#ifdef VT_WITH_CUDA
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "bsq_vae/bsq_vae.h"
#include "bsq_vae/multiscale_bsq.h"
#include "infinity/infinity.h"
#include "infinity/sampler.h"
#include "infinity/scale_schedule.h"
#include "vt/autograd.h"
#include "gpu_bench.h"
#include "vt/cuda.h"
#include "vt/nn/attention.h"
#include "vt/nn/interpolate.h"
#include "vt/ops.h"
#include "vt/random.h"

using namespace vt;
using namespace vt::bench;
using namespace vt::infinity;

namespace {


double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct Options {
  int runs = 3;
  int64_t text_len = 64;
  uint64_t seed = 0;
  int64_t depth = 32;
  bool image = true;
  bool library = true;
};

// sample_bits (sampler.cpp) with the uniform draws on the logits' device.
Tensor sample_bits_on_device(const Tensor& logits, double top_p, Generator* gen) {
  Shape pair_shape = logits.shape();
  pair_shape[pair_shape.size() - 1] /= 2;
  pair_shape.push_back(2);
  Tensor z = cast(logits, DType::F32).reshape(pair_shape);  // (..., d, 2)
  Tensor p1 = sigmoid(z.select(-1, 1) - z.select(-1, 0));   // P(bit = 1)
  Tensor one_larger = gt(p1, 0.5);
  if (top_p > 0) {
    Tensor small_prob = where(one_larger, 1.0 - p1, p1);
    Tensor decided = le(small_prob, 1.0 - top_p);
    p1 = where(decided, cast(one_larger, DType::F32), p1);
  }
  return lt(rand(p1.shape(), {DType::F32, p1.device()}, gen), p1);
}

struct GenOut {
  Tensor latent;       // (1, d, 32, 32) f32
  Tensor last_logits;  // guided f32 logits of the last scale (1, n, 2d)
  Tensor last_bits;    // (1, 32, 32, d) bool
};

// One image with CFG: rows [cond; uncond], KV-cached, scale by scale, everything on the device.
GenOut generate(const Infinity& model, const PackedText& text, const ScaleSchedule& sched,
                const nn::RopeCosSin& rope, double cfg_scale, double tau, double top_p, uint64_t seed) {
  NoGradGuard no_grad;
  const InfinityConfig& mc = model.config();
  const int64_t d = mc.codebook_dim, K = sched.num_scales();
  const ScaleHW full = sched.latent();
  const Device dev = model.pos_start.device();
  const Condition cond = model.condition(text);
  const Condition uncond = model.condition(model.unconditional_text(text.lengths()));
  const Condition rows = concat_conditions(cond, uncond);  // R = 2
  const Tensor cond6 = model.shared_condition(rows.cond_BD);
  const std::vector<CrossKV> ca_kv = model.cross_kv(rows.memory, rows.cu_seqlens);
  std::vector<nn::KVCache> caches(model.blocks.size());
  Generator gen(seed);
  Tensor sum = zeros({1, d, full.h, full.w}, {DType::F32, dev});
  Tensor inputs;  // (1, n_k, d) f32
  GenOut out;
  for (int64_t k = 0; k < K; ++k) {
    const ScaleHW s = sched.scales[k];
    const int64_t n = sched.tokens[k], off = sched.offsets[k];
    Tensor x = k == 0 ? model.embed_tokens(rows.cond_BD, Tensor())
                      : model.embed_inputs(cast(cat({inputs, inputs}, 0), model.word_embed->weight.dtype()));
    x = x + model.lvl_embed->weight.select(0, k);  // (2, n, C): all tokens of this step are of scale k
    const nn::RopeCosSin rk{rope.cos.narrow(0, off, n), rope.sin.narrow(0, off, n)};
    x = model.run_blocks(x, cond6, ca_kv, rk, nn::AttentionMask::none(), &caches);
    Tensor logits = cast(model.head_logits(x, rows.cond_BD), DType::F32);  // (2, n, 2d)
    if (tau != 1.0) logits = logits / tau;
    logits = cfg_combine(logits.narrow(0, 0, 1), logits.narrow(0, 1, 1), cfg_scale, k, K, false);
    Tensor bits = sample_bits_on_device(logits, top_p, &gen).reshape({1, s.h, s.w, d});
    Tensor codes = bsq::bits_to_codes(bits);  // (1, d, h, w) f32
    sum = sum + (s == full ? codes : nn::interpolate(codes, {full.h, full.w}, "bilinear"));
    if (k + 1 < K) {
      const ScaleHW nx = sched.scales[k + 1];
      Tensor m = nx == full ? sum : nn::interpolate(sum, {nx.h, nx.w}, "bilinear");
      inputs = m.flatten(2).transpose(1, 2).contiguous();  // (1, h w, d)
    } else {
      out.last_logits = logits;
      out.last_bits = bits;
    }
  }
  out.latent = sum;
  return out;
}

int run(const Options& o) {
  const Device gpu = Device::cuda();
  InfinityConfig cfg = InfinityConfig::infinity_2b();
  cfg.depth = o.depth;
  if (cfg.depth % cfg.block_chunks != 0) cfg.block_chunks = 1;
  cfg.validate();
  const double need_gb = 14.0 * double(cfg.depth) / 32.0 + 4.0;  // f32 copy during the bf16 cast + work
  const double free_gb = free_device_gb();
  if (free_gb >= 0 && free_gb < need_gb) {
    note("skipped: " + std::to_string(free_gb) + " GB free on the device, about " + std::to_string(need_gb) +
         " GB needed");
    return 0;
  }
  const ScaleSchedule sched = scale_schedule(1.0, "0.25M");
  const double cfg_scale = 3.0, tau = 1.0, top_p = 0.97;
  note("infinity_2b: depth " + std::to_string(cfg.depth) + ", C " + std::to_string(cfg.embed_dim) + ", heads " +
       std::to_string(cfg.num_heads) + " x " + std::to_string(cfg.head_dim()) + ", ffn " +
       std::to_string(cfg.ffn_hidden()) + ", d " + std::to_string(cfg.codebook_dim) + ", text width " +
       std::to_string(cfg.text_channels));
  {
    std::string sides;
    for (const ScaleHW& s : sched.scales) {
      if (!sides.empty()) sides += ',';
      sides += std::to_string(s.h);
    }
    note("schedule 0.25M 1:1: " + std::to_string(sched.num_scales()) + " scales [" + sides + "], " +
         std::to_string(sched.total_tokens) + " tokens, image " + std::to_string(sched.image_h()) + "x" +
         std::to_string(sched.image_w()) + "; rows 2 (CFG cond + uncond), text rows " +
         std::to_string(o.text_len) + ", cfg 3 (constant), tau 1, top_p 0.97, seed " + std::to_string(o.seed));
    note("numerics: bf16 weights and activations (residual stream bf16), f32 norm stats / softmax / cosine q,k + "
         "RoPE, f32 logits for CFG and sampling, f32 latent accumulation; KV-cached, cached on the device");
  }
  const int64_t L = sched.total_tokens;

  NoGradGuard no_grad;
  const auto t_build = std::chrono::steady_clock::now();
  auto model = std::make_shared<Infinity>(cfg);  // host, f32, random init
  model->eval();
  model->to(gpu);
  model->to(DType::BF16);
  vt::cuda::synchronize();
  vt::cuda::empty_cache();
  int64_t weight_bytes = 0, n_params = 0, n_random = 0;
  {
    Generator g(o.seed + 100);
    for (auto& [name, p] : model->named_parameters()) {
      weight_bytes += int64_t(p.nbytes());
      n_params += p.numel();
      if (name.find("norm") != std::string::npos || name.find("scale_mul") != std::string::npos) continue;
      Tensor dst = p.detach();
      copy_(dst, normal(p.shape(), 0, 0.02, {DType::BF16, gpu}, &g));
      ++n_random;
    }
  }
  vt::cuda::synchronize();
  vt::cuda::empty_cache();
  note("model: " + std::to_string(double(n_params) / 1e9) + "B parameters (" + std::to_string(n_random) +
       " tensors redrawn N(0, 0.02) on the device), built in " + std::to_string(seconds_since(t_build)) + " s");

  Generator gt(o.seed + 1);
  const PackedText text = pack_text({randn({o.text_len, cfg.text_channels}, {DType::BF16, gpu}, &gt)});
  nn::RopeCosSin rope = schedule_rope(sched, cfg.head_dim(), cfg.rope_theta);
  rope = {rope.cos.to(gpu).contiguous(), rope.sin.to(gpu).contiguous()};

  GenOut g;
  auto gen_bits = [&] { g = generate(*model, text, sched, rope, cfg_scale, tau, top_p, o.seed); };
  const double first_ms = wall_ms(gen_bits);  // warm-up (cuBLAS handles, allocator, kernels)
  note("warm-up generation: " + std::to_string(first_ms) + " ms");
  {  // sanity: finite logits, bit balance, latent range
    const double max_abs = amax(abs(g.last_logits)).to(Device::cpu()).item();
    const double ones = mean(cast(g.last_bits, DType::F32)).to(Device::cpu()).item();
    const double lat = amax(abs(g.latent)).to(Device::cpu()).item();
    note("sanity: last-scale guided |logit| max " + std::to_string(max_abs) + ", fraction of 1-bits " +
         std::to_string(ones) + ", latent |max| " + std::to_string(lat) + ", latent " + g.latent.shape().str());
    if (!std::isfinite(max_abs)) note("WARNING: non-finite logits (the random weights overflow bf16?)");
  }
  // Keep the program short when the generation is slow: one timed run per row past 10 s.
  const int runs = first_ms > 10000.0 ? 1 : o.runs;
  if (runs != o.runs) note("the warm-up took over 10 s: 1 timed run per row instead of " + std::to_string(o.runs));
  vt::cuda::synchronize();
  vt::cuda::reset_peak_stats();
  const double gen_ms = median_ms(gen_bits, 0, runs);
  report("generate_512", gen_ms, "ms", gen_ms);
  report("generate_512_tok", double(L) / (gen_ms * 1e-3), "tok/s", gen_ms);

  if (o.image) {
    std::shared_ptr<bsq::BsqVae> vae;
    try {
      vt::manual_seed(0);
      vae = std::make_shared<bsq::BsqVae>(bsq::BsqVaeConfig::infinity_d32());  // host, f32, random init
      vae->eval();
      vae->to(gpu);
    } catch (const std::exception& e) {
      note(std::string("generate_512_image skipped: the VAE could not be built: ") + e.what());
      vae.reset();
    }
    if (vae) {
      Tensor img = vae->decode_latent(g.latent);  // warm-up of the decoder alone
      auto gen_image = [&] {
        gen_bits();
        img = vae->decode_latent(g.latent);
      };
      const double img_ms = median_ms(gen_image, 0, runs);
      report("generate_512_image", img_ms, "ms", img_ms);
      note("image " + img.shape().str() + " " + std::string(dtype_name(img.dtype())));
    }
  }
  vt::cuda::synchronize();
  report("infinity_2b_weights", double(weight_bytes) / 1e9, "GB", 0.0);
  report("generate_512_peak", double(vt::cuda::memory_stats().peak_allocated) / 1e9, "GB", 0.0);

  if (o.library) {
    note("--library: trying infinity::sample() on the device once (not timed in the table)");
    try {
      SamplerConfig sc;
      sc.cfg = {cfg_scale};
      sc.tau = {tau};
      sc.top_p = top_p;
      sc.seed = o.seed;
      const double ms = wall_ms([&] { (void)sample(*model, text, sched, sc, nullptr); });
      note("infinity::sample() on the device: OK, " + std::to_string(ms) + " ms (first call)");
    } catch (const std::exception& e) {
      note(std::string("infinity::sample() on the device FAILED: ") + e.what());
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&] { return option_value(argc, argv, i, "bench_gpu_infinity"); };
    if (a == "--runs") o.runs = std::atoi(value().c_str());
    else if (a == "--text-len") o.text_len = std::atoll(value().c_str());
    else if (a == "--seed") o.seed = std::strtoull(value().c_str(), nullptr, 10);
    else if (a == "--depth") o.depth = std::atoll(value().c_str());
    else if (a == "--no-image") o.image = false;
    else if (a == "--library") o.library = true;
    else if (a == "--no-library") o.library = false;
    else {
      std::fprintf(stderr,
                   "usage: bench_gpu_infinity [--runs N] [--text-len N] [--seed N] [--depth N] [--no-image] "
                   "[--library]\n");
      return 2;
    }
  }
  if (o.runs < 1 || o.text_len < 1 || o.text_len > 512 || o.depth < 1) {
    std::fprintf(stderr, "bench_gpu_infinity: --runs and --depth must be positive, --text-len in 1..512\n");
    return 2;
  }
  if (!vt::cuda::is_available()) {
    std::printf("no CUDA device visible: GPU Infinity benchmark skipped\n");
    return 0;
  }
  int rc = 0;
  try {
    rc = run(o);
  } catch (const std::exception& e) {
    std::printf("# infinity_2b FAILED: %s\n", e.what());
    rc = 1;
  }
  std::fflush(stdout);
  return rc;
}
#else
#include <cstdio>
int main() {
  std::printf("CUDA not built: bench_gpu_infinity has nothing to run (configure with -DVT_CUDA=ON)\n");
  return 0;
}
#endif
