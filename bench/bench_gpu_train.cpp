// bench_gpu_train: one training step of two model shapes on the GPU, with random bf16 weights built in
// memory (issue 14): model FLOPs utilisation and tokens per second, against bench/torch_gpu_train.py
// (transformers' Qwen2ForCausalLM and a trainable Infinity in PyTorch, the same precision setup, the
// same card). Output lines are "vt <key> <value> <unit> <ms> ms", the format the torch script joins:
//
//   ./bench_gpu_train [--only qwen2_sft|infinity_gen] [--steps 10] [--warmup 2] [--batch 4] [--seq 1024]
//                     [--gen-batch 8] [--text-len 64] [--layers N] [--depth N] [--seed 0]
//                     [--lr X] [--peak-tflops X] [--device cuda|cpu] [--tiny]
//   python3 bench/torch_gpu_train.py --vt vt.txt       (the joined vt / torch table)
//   ./bench_gpu_train --device cpu --tiny              a CPU smoke test of the same code at small shapes
//
// qwen2_sft: a Qwen2-0.5B-shaped causal LM (hidden 896, 24 layers, 14 heads / 2 KV heads of 64,
//   FFN 4864, vocab 151936, embeddings tied to the LM head as Qwen2-0.5B, RoPE theta 1e6); one fixed
//   batch of B x T random token ids; loss = CE(logits[:, t], ids[:, t + 1]) over the B (T - 1)
//   positions (the last position's logits are computed and ignored, as transformers does).
// infinity_gen: Infinity-2B (depth 32, C 2048, 16 heads, FFN 8192, d 32) trained as text-to-image at
//   256x256: the 0.06M 1:1 schedule (7 scales 1..16, L = 521 tokens), teacher-forced in one
//   block-causal sequence (no padding to 128), random teacher inputs ((2b - 1) / sqrt(d) for random
//   bits b) and random target bits, bitwise CE (the mean over tokens and bits). The condition is
//   Infinity's own text path (text_norm, text_proj_for_sos, text_proj_for_ca) on --text-len random
//   rows of the model's text width 2048 per sample, as models/infinity/infinity.h runs stand-alone;
//   VARGPT's LLM-side projector (3584 -> 2048) is not part of this step. cfg_uncond (unused without
//   condition dropout) is frozen on both sides.
// Both: weights drawn on the device by vargpt_bench.h's rule (std 1/sqrt(fan_in), norms 1 + N(0, 0.1),
//   1-D N(0, 0.1), scale_mul ln 4); bf16 parameters, activations and gradients; the loss in f32; the
//   optimizer is optim::AdamW (constant lr 1e-5, betas 0.9 / 0.95, eps 1e-8, weight decay 0.1) with
//   fp32 master weights and moments, each bf16 parameter rewritten from its master after the step
//   (train/trainer.cpp's setup). One step = forward, loss, backward, clip_grad_norm_ 1.0, AdamW step,
//   zero_grad: exactly the trainer's order, without data loading. The lr: at full width Adam's first
//   steps at 3e-4 raised Infinity's loss (seen on the CPU at depth 1: 0.94 -> 3.98 after two steps;
//   1e-4 and 3e-5 at depth 2 also rose, 1e-5 fell); --tiny uses 3e-4, since its 64-wide bf16 weights
//   do not move at 1e-5 within a few steps; --lr sets it.
//
// Model FLOPs per step (what MFU counts; recomputation and padding would not count):
//   qwen2_sft     6 N B T + 6 n_layers T (n_heads D) B T         (llm.c's gpt2_estimate_mfu and PaLM's
//                 appendix B: 6 FLOPs per parameter per token for forward + backward, N all parameters
//                 with the tied embedding once, since its use as the LM head is a (V, C) matmul; the
//                 attention term is PaLM's 12 n_layers T (n_heads D) per token halved for the causal
//                 mask, as llm.c counts it)
//   infinity_gen  6 B [L (depth (6 C^2 + 2 C F) + 3 d C)                          token-wise matmuls
//                      + Tm (depth 2 C^2 + 3 Ct C + C^2) + 9 C^2]                memory rows, per sample
//                 + 12 B depth C (P + L Tm)                                       attention
//                 with P = sum_k n_k (n_0 + ... + n_k) the block-causal (query, key) pairs of the
//                 schedule and Tm the text rows: every matmul counted as 2 FLOPs per multiply-add
//                 forward and twice that backward; attention QK^T and PV likewise.
// MFU = achieved FLOP/s over the card's dense bf16 peak: 989 TFLOP/s for the H100 SXM and H200
// (datasheet), 756 for the H100 PCIe, 835 for the H100 NVL; --peak-tflops for any other card (no MFU
// row without a peak). A note also times one 8192^3 bf16 matmul, the ceiling the GEMMs can reach.
//
// Rows (K = qwen2_sft or infinity_gen):
//   K_step     ms, median of --steps timed steps after --warmup untimed ones (device synchronised
//              around each step)
//   K_tok      tokens per second: B T (qwen2_sft) or B L image tokens (infinity_gen) per step time
//   K_tflops   model TFLOP/s (the counts above over the step time)
//   K_mfu      %, K_tflops over the peak
//   K_peak     GiB, vt::cuda::memory_stats().peak_allocated from just before the warm-up to the end:
//              weights, gradients, the AdamW state and the activations
// Notes ("# ..."): shapes, parameter count, FLOPs per step, the loss at the first step and after the
// timed ones (the batch is fixed, so it must fall: otherwise the row is reported FAILED and the exit
// status is 1), the gradient norm, and one more step timed phase by phase (forward, backward, clip,
// AdamW) with a device synchronisation after each.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "infinity/infinity.h"
#include "qwen2/qwen2.h"
#include "device_flow.h"
#include "vargpt_bench.h"  // randomize_weights
#include "vt/nn/loss.h"
#include "vt/optim/adamw.h"
#include "vt/optim/clip.h"
#ifdef VT_WITH_CUDA
#include <cuda_runtime.h>

#include "vt/cuda.h"
#endif

using namespace vt;
using namespace vt::bench;

namespace {

std::string device_name(Device d) {
#ifdef VT_WITH_CUDA
  cudaDeviceProp p{};
  if (d.is_cuda() && cudaGetDeviceProperties(&p, d.index) == cudaSuccess) return p.name;
#endif
  return d.str();
}

std::string sci(double v) {  // 4 significant digits: 1.273e+13
  char b[64];
  std::snprintf(b, sizeof b, "%.4g", v);
  return b;
}

struct Options {
  std::string only, device = "cuda";
  int steps = 10, warmup = 2;
  int64_t batch = 4, seq = 1024, gen_batch = 8, text_len = 64, layers = -1, depth = -1;
  double peak_tflops = 0;  // 0: from the device name
  double lr = 0;           // 0: the row's default
  uint64_t seed = 0;
  bool tiny = false;
};

// Dense bf16 peak of the card in TFLOP/s (datasheet, without sparsity); 0 when unknown.
double peak_tflops(const std::string& name, const Options& o) {
  if (o.peak_tflops > 0) return o.peak_tflops;
  if (name.find("H100") != std::string::npos) {
    if (name.find("PCIe") != std::string::npos) return 756;
    if (name.find("NVL") != std::string::npos) return 835;
    return 989;  // SXM5 (the "H100 80GB HBM3" of nvidia-smi)
  }
  if (name.find("H200") != std::string::npos) return 989;
  return 0;
}

// The fixed optimizer of both rows (see the header).
optim::AdamWOptions adamw_options(double lr) { return {lr, 0.9, 0.95, 1e-8, 0.1}; }

// ---- one training step, timed --------------------------------------------------------------------------
struct StepTimes {
  double ms = 0, first_loss = 0, last_loss = 0, grad_norm = 0, peak = -1;
  std::string phases;
};

// loss_fn() runs the forward and returns the 0-d loss. Steps: --warmup untimed, --steps timed (the
// very first step gives first_loss), then one more with a synchronisation after each phase.
StepTimes time_steps(Device dev, const Options& o, const std::function<Tensor()>& loss_fn,
                     const std::vector<Tensor>& params, optim::AdamW& opt) {
  StepTimes r;
  Tensor loss;
  bool first = true;
  auto step = [&] {
    loss = loss_fn();
    if (first) r.first_loss = loss.item(), first = false;
    loss.backward();
    r.grad_norm = optim::clip_grad_norm_(params, 1.0);
    opt.step();
    opt.zero_grad();
  };
  reset_peak(dev);
  for (int i = 0; i < o.warmup; ++i) step();
  std::vector<double> ms;
  for (int i = 0; i < o.steps; ++i) ms.push_back(wall_ms(dev, step));
  r.last_loss = loss.item();  // of the last timed step
  r.peak = peak_gib(dev);
  std::sort(ms.begin(), ms.end());
  r.ms = ms[ms.size() / 2];
  const double fwd = wall_ms(dev, [&] { loss = loss_fn(); });
  const double bwd = wall_ms(dev, [&] { loss.backward(); });
  const double clip = wall_ms(dev, [&] { r.grad_norm = optim::clip_grad_norm_(params, 1.0); });
  const double upd = wall_ms(dev, [&] { opt.step(), opt.zero_grad(); });
  r.phases = "forward " + fmt(fwd) + ", backward " + fmt(bwd) + ", clip " + fmt(clip) + ", AdamW " + fmt(upd);
  return r;
}


void report_rows(const std::string& key, const StepTimes& t, double tokens, double flops, double peak) {
  const double tflops = flops / (t.ms * 1e-3) / 1e12;
  report(key + "_step", t.ms, "ms", t.ms);
  report(key + "_tok", tokens / (t.ms * 1e-3), "tok/s", t.ms);
  report(key + "_tflops", tflops, "TFLOP/s", t.ms);
  if (peak > 0) report(key + "_mfu", 100.0 * tflops / peak, "%", t.ms);
  if (t.peak >= 0) report(key + "_peak", t.peak, "GiB", 0.0);
  note(key + ": loss " + fmt(t.first_loss, 4) + " at the first step, " + fmt(t.last_loss, 4) +
       " after the timed steps; gradient norm " + fmt(t.grad_norm, 4) + " (before clipping, the last step)");
  note(key + ": one more step, phase by phase (ms): " + t.phases);
  // The batch is fixed, so a working step lowers the loss: a broken one fails the row (after its numbers).
  VT_CHECK(std::isfinite(t.last_loss), key, ": the loss is not finite after the timed steps");
  VT_CHECK(t.last_loss < t.first_loss, key, ": the loss did not fall on its fixed batch (", t.first_loss, " -> ",
           t.last_loss, ")");
}

// ---- qwen2_sft ---------------------------------------------------------------------------------------------
qwen2::Qwen2Config qwen2_config(const Options& o) {
  qwen2::Qwen2Config c;
  if (o.tiny) {
    c.vocab_size = 512, c.hidden_size = 64, c.intermediate_size = 128, c.num_hidden_layers = 2;
    c.num_attention_heads = 4, c.num_key_value_heads = 2, c.head_dim = 16;
  } else {  // Qwen2-0.5B
    c.vocab_size = 151936, c.hidden_size = 896, c.intermediate_size = 4864, c.num_hidden_layers = 24;
    c.num_attention_heads = 14, c.num_key_value_heads = 2, c.head_dim = 64;
  }
  if (o.layers > 0) c.num_hidden_layers = o.layers;
  c.rope_theta = 1e6, c.rms_norm_eps = 1e-6, c.tie_word_embeddings = true, c.dtype = DType::BF16;
  c.validate("bench_gpu_train qwen2_sft");
  return c;
}

void run_qwen2(const Options& o, Device dev, double peak) {
  const qwen2::Qwen2Config c = qwen2_config(o);
  const int64_t B = o.batch, T = o.seq, L = c.num_hidden_layers;
  auto model = std::make_shared<qwen2::Qwen2ForCausalLM>(c, DType::BF16);  // host, zeros
  model->to(dev);
  bench::randomize_weights(*model, o.seed + 100);
  model->train();
  const std::vector<Tensor> params = model->parameters(/*trainable_only=*/true);
  optim::AdamW opt(params, adamw_options(o.lr));
  const double N = double(model->num_parameters(true));  // the tied embedding once
  const double flops = 6.0 * N * double(B * T) + 6.0 * double(L * T * c.q_size()) * double(B * T);
  note("qwen2_sft: hidden " + std::to_string(c.hidden_size) + ", " + std::to_string(L) + " layers, " +
       std::to_string(c.num_attention_heads) + " / " + std::to_string(c.num_key_value_heads) + " heads of " +
       std::to_string(c.head_dim) + ", FFN " + std::to_string(c.intermediate_size) + ", vocab " +
       std::to_string(c.vocab_size) + " (tied); " + fmt(N / 1e6, 2) + "M parameters; batch " + std::to_string(B) +
       " x " + std::to_string(T) + " tokens; " + sci(flops) + " model FLOPs per step");

  Generator g(o.seed + 1);
  const Tensor ids_host = randint(0, c.vocab_size, {B, T}, DType::I64, &g);
  // targets[:, t] = ids[:, t + 1]; the last position counts no loss (-100), as transformers shifts.
  const Tensor ids = ids_host.to(dev);
  const Tensor targets = cat({ids_host.narrow(1, 1, T - 1), full({B, 1}, -100, DType::I64)}, 1).to(dev);
  const Tensor positions = qwen2::sequential_positions(B, T).to(dev);
  auto loss_fn = [&] {
    const Tensor logits = model->forward(ids, positions);  // (B, T, V) bf16
    return nn::cross_entropy(logits, targets);             // mean over B (T - 1) positions, f32 inside
  };
  const StepTimes t = time_steps(dev, o, loss_fn, params, opt);
  // Part of every forward above: vt computes the (B, T, D) cos/sin tables on the host and copies them.
  const double rope_ms = wall_ms(dev, [&] { (void)model->rope(positions); });
  note("qwen2_sft: the RoPE tables of one forward (host, then copied to the device): " + fmt(rope_ms, 2) + " ms");
  report_rows("qwen2_sft", t, double(B * T), flops, peak);
}

// ---- infinity_gen ------------------------------------------------------------------------------------------
void run_infinity(const Options& o, Device dev, double peak) {
  using namespace vt::infinity;
  InfinityConfig cfg = o.tiny ? InfinityConfig::tiny() : InfinityConfig::infinity_2b();
  if (o.depth > 0) {
    cfg.depth = o.depth;
    if (cfg.depth % cfg.block_chunks != 0) cfg.block_chunks = 1;
  }
  cfg.validate();
  const ScaleSchedule sched = scale_schedule(1.0, "0.06M");  // 256x256: 7 scales, 521 tokens
  const int64_t B = o.gen_batch, Tm = o.text_len, L = sched.total_tokens;
  const int64_t C = cfg.embed_dim, F = cfg.ffn_hidden(), d = cfg.codebook_dim, Ct = cfg.text_channels;
  std::shared_ptr<Infinity> model;
  {
    SkipInitGuard skip;  // every parameter is redrawn on the device below
    model = std::make_shared<Infinity>(cfg);
  }
  model->to(dev);
  model->to(DType::BF16);
  bench::randomize_weights(*model, o.seed + 100);
  model->freeze("cfg_uncond");  // no condition dropout in this step: it would get no gradient
  model->train();
  const std::vector<Tensor> params = model->parameters(/*trainable_only=*/true);
  optim::AdamW opt(params, adamw_options(o.lr));

  // Model FLOPs (the header's formula): P block-causal (query, key) pairs of one sample.
  double P = 0, seen = 0;
  for (int64_t n : sched.tokens) seen += double(n), P += double(n) * seen;
  const double Cd = double(C), depth = double(cfg.depth);
  const double per_token = depth * (6 * Cd * Cd + 2 * Cd * double(F)) + 3 * double(d) * Cd;
  const double per_memory_row = depth * 2 * Cd * Cd + 3 * double(Ct) * Cd + Cd * Cd;
  const double per_sample = 9 * Cd * Cd;
  const double flops = 6 * double(B) * (double(L) * per_token + double(Tm) * per_memory_row + per_sample) +
                       12 * double(B) * depth * Cd * (P + double(L) * double(Tm));
  note("infinity_gen: depth " + std::to_string(cfg.depth) + ", C " + std::to_string(C) + ", " +
       std::to_string(cfg.num_heads) + " heads, FFN " + std::to_string(F) + ", d " + std::to_string(d) +
       ", text width " + std::to_string(Ct) + "; " + fmt(double(model->num_parameters(true)) / 1e6, 2) +
       "M trainable parameters; 256x256 (0.06M 1:1, " + std::to_string(sched.num_scales()) + " scales, " +
       std::to_string(L) + " tokens, " + fmt(P, 0) + " block-causal pairs), batch " + std::to_string(B) + ", " +
       std::to_string(Tm) + " text rows each; " + sci(flops) + " model FLOPs per step");

  Generator g(o.seed + 1);
  std::vector<Tensor> rows;
  for (int64_t b = 0; b < B; ++b) rows.push_back(randn({Tm, Ct}, {DType::BF16, dev}, &g));
  const PackedText text = pack_text(rows);
  const Tensor in_bits = lt(rand({B, L - 1, d}, {DType::F32, dev}, &g), 0.5);
  const Tensor inputs = (cast(in_bits, DType::F32) * 2.0 - 1.0) * (1.0 / std::sqrt(double(d)));  // (B, L-1, d)
  const Tensor labels = lt(rand({B, L, d}, {DType::F32, dev}, &g), 0.5);                        // (B, L, d)
  auto loss_fn = [&] {
    const Tensor logits = model->forward(model->condition(text), inputs, sched);  // (B, L, 2d) bf16
    return nn::bitwise_cross_entropy(logits.reshape({B, L, d, 2}), labels);
  };
  const StepTimes t = time_steps(dev, o, loss_fn, params, opt);
  report_rows("infinity_gen", t, double(B * L), flops, peak);
}

// The GEMM ceiling of this card through vt: one 8192^3 bf16 product, median of 5 groups of 5.
void gemm_ceiling(Device dev) {
  Generator g(7);
  const Tensor a = randn({8192, 8192}, {DType::BF16, dev}, &g), b = randn({8192, 8192}, {DType::BF16, dev}, &g);
  Tensor c = matmul(a, b);
  std::vector<double> ms;
  for (int i = 0; i < 5; ++i)
    ms.push_back(wall_ms(dev, [&] {
                   for (int j = 0; j < 5; ++j) c = matmul(a, b);
                 }) / 5);
  std::sort(ms.begin(), ms.end());
  note("GEMM ceiling: an 8192^3 bf16 matmul runs at " + fmt(2.0 * 8192.0 * 8192.0 * 8192.0 / (ms[2] * 1e-3) / 1e12) +
       " TFLOP/s on this card through vt");
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  int64_t batch = 0, seq = 0, gen_batch = 0, text_len = 0;  // 0: not given (the shape's default)
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_gpu_train: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    auto positive = [&]() -> int64_t {
      const int64_t v = std::atoll(value().c_str());
      if (v < 1) {
        std::fprintf(stderr, "bench_gpu_train: %s must be a positive integer, got %s\n", a.c_str(), argv[i]);
        std::exit(2);
      }
      return v;
    };
    if (a == "--only") o.only = value();
    else if (a == "--steps") o.steps = std::atoi(value().c_str());
    else if (a == "--warmup") o.warmup = std::atoi(value().c_str());
    else if (a == "--batch") batch = positive();
    else if (a == "--seq") seq = positive();
    else if (a == "--gen-batch") gen_batch = positive();
    else if (a == "--text-len") text_len = positive();
    else if (a == "--layers") o.layers = std::atoll(value().c_str());
    else if (a == "--depth") o.depth = std::atoll(value().c_str());
    else if (a == "--seed") o.seed = std::strtoull(value().c_str(), nullptr, 10);
    else if (a == "--peak-tflops") o.peak_tflops = std::atof(value().c_str());
    else if (a == "--lr") o.lr = std::atof(value().c_str());
    else if (a == "--device") o.device = value();
    else if (a == "--tiny") o.tiny = true;
    else {
      std::fprintf(stderr,
                   "usage: bench_gpu_train [--only qwen2_sft|infinity_gen] [--steps N] [--warmup N] [--batch N] "
                   "[--seq N] [--gen-batch N] [--text-len N] [--layers N] [--depth N] [--seed N] [--lr X] [--peak-tflops X] "
                   "[--device cuda|cpu] [--tiny]\n");
      return 2;
    }
  }
  // --tiny: small shapes and batches, and a larger lr (flags given still win).
  if (o.lr <= 0) o.lr = o.tiny ? 3e-4 : 1e-5;
  o.batch = batch > 0 ? batch : o.tiny ? 2 : 4;
  o.seq = seq > 0 ? seq : o.tiny ? 64 : 1024;
  o.gen_batch = gen_batch > 0 ? gen_batch : o.tiny ? 2 : 8;
  o.text_len = text_len > 0 ? text_len : o.tiny ? 8 : 64;
  if (o.steps < 1 || o.warmup < 0 || o.warmup + o.steps < 2 || o.seq < 2 ||
      (!o.only.empty() && o.only != "qwen2_sft" && o.only != "infinity_gen")) {
    std::fprintf(stderr, "bench_gpu_train: --steps >= 1, --warmup >= 0, 2 steps at least, --seq >= 2, --only "
                         "qwen2_sft or infinity_gen\n");
    return 2;
  }
  if (o.device != "cpu" && !cuda_available()) {
    std::printf("no CUDA device visible (or CUDA not built): GPU training benchmark skipped\n");
    return 0;
  }
  int rc = 0;
  try {
    const Device dev = Device::parse(o.device);
    const std::string name = device_name(dev);
    const double peak = peak_tflops(name, o);
    note("device: " + name + "; dense bf16 peak " + (peak > 0 ? fmt(peak, 0) + " TFLOP/s" : "unknown (no MFU rows)") +
         "; " + (o.tiny ? "tiny shapes" : "full shapes") + ", " + std::to_string(o.warmup) + " warm-up + " +
         std::to_string(o.steps) + " timed steps, lr " + sci(o.lr));
    if (dev.is_cuda()) gemm_ceiling(dev);
    const std::vector<std::pair<std::string, std::function<void()>>> rows = {
        {"qwen2_sft", [&] { run_qwen2(o, dev, peak); }}, {"infinity_gen", [&] { run_infinity(o, dev, peak); }}};
    for (const auto& [key, run] : rows) {
      if (!o.only.empty() && o.only != key) continue;
      try {  // one row failing (out of memory, ...) keeps the other
        run();
      } catch (const std::exception& e) {
        std::printf("# %s FAILED: %s\n", key.c_str(), e.what());
        rc = 1;
      }
      reset_peak(dev);  // the model of this row is gone: give its memory back before the next
    }
  } catch (const std::exception& e) {
    std::printf("# bench_gpu_train FAILED: %s\n", e.what());
    return 1;
  }
  return rc;
}
