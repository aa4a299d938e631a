// vargpt_bench.h: what bench_vargpt (CPU) and bench_gpu_vargpt (GPU) share: the benchmark
// configurations of VARGPT-v1.1 as VargptConfig values, random weights for a model built from one
// (no checkpoint needed), a checkpoint directory written from such a model (so that the PyTorch
// baselines load the very same weights), the benchmark prompt, and one timed generation.
//
//   configurations   tiny    tests/fixtures/vargpt_tiny as it is (LLM 64 wide, Infinity C 64, VAE base 32)
//                    small   LLM hidden 256, 4 layers, 4 heads / 2 KV heads, FFN 1024, vocab 320 (the tiny
//                            tokenizer); ViT as tiny (depth 2, 32 wide) merging to 256; Infinity depth 4,
//                            C 256, 4 heads, d 32, text width 256, 128 cfg_uncond rows; BSQ-VAE base 64,
//                            ch_mult (1, 1, 2, 2, 4), 1 res block, d 32
//                    full    VARGPT-v1.1: Qwen2-VL-7B (LLM 3584 x 28 layers, vocab 152064, ViT 1280 x 32),
//                            Infinity-2B (depth 32, C 2048, d 32), BSQ-VAE d32 (base 128, 1 2 4 4 4)
//   random weights   std 1/sqrt(fan_in), fan_in = numel / size(0), or the last dimension when size(0)
//                    is 1 (pos_start, ada_gss, the sos query); norm and ln_q weights 1 + N(0, 0.1);
//                    other 1-D tensors (biases) N(0, 0.1); scale_mul_1H11 ln 4; buffers (zero_k_bias)
//                    untouched. Activations stay O(1) at every depth, so the sampled bits are not all
//                    decided by one saturated logit.
//   one generation   vargpt::decode_text of the prompt (prefill, then <|image_gen_start|> forced as the
//                    first reply token and fed once) + vargpt::generate_image at 256² or 512² with CFG 3,
//                    tau 0.5, top-p 0.97, one seed; the VAE decode to pixels included.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "vargpt/generate.h"
#include "vargpt/vargpt.h"
#include "vt/autograd.h"
#include "vt/ops.h"
#include "vt/random.h"

namespace vt::bench {

inline std::string vargpt_tiny_dir() { return std::string(VT_SOURCE_DIR) + "/tests/fixtures/vargpt_tiny"; }

// The small CPU configuration: the tiny fixture's tokens and ViT, everything else wider and deeper.
inline vargpt::VargptConfig vargpt_small_config() {
  vargpt::VargptConfig c = vargpt::VargptConfig::load(vargpt_tiny_dir());
  c.llm.hidden_size = 256, c.llm.intermediate_size = 1024, c.llm.num_hidden_layers = 4;
  c.llm.num_attention_heads = 4, c.llm.num_key_value_heads = 2, c.llm.head_dim = 64;
  c.llm.mrope_section = std::array<int64_t, 3>{8, 12, 12};  // sums to head_dim / 2
  c.llm.dtype = DType::F32;
  c.vision.hidden_size = 256;  // the merger writes LLM-wide rows
  c.gen.depth = 4, c.gen.embed_dim = 256, c.gen.num_heads = 4, c.gen.codebook_dim = 32;
  c.gen.text_channels = 256, c.gen.text_maxlen = 128, c.gen.block_chunks = 2;
  c.vae.base_channels = 64, c.vae.channel_mult = {1, 1, 2, 2, 4}, c.vae.num_res_blocks = 1;
  c.vae.codebook_dim = 32;
  c.llm.validate("vargpt small");
  c.gen.validate();
  c.vae.validate();
  return c;
}

// VARGPT-v1.1's shapes (Qwen2-VL-7B-Instruct + Infinity-2B + BSQ-VAE d32), tokens of the release.
inline vargpt::VargptConfig vargpt_full_config() {
  vargpt::VargptConfig c;
  c.llm.model_type = "qwen2_vl";
  c.llm.vocab_size = 152064, c.llm.hidden_size = 3584, c.llm.intermediate_size = 18944;
  c.llm.num_hidden_layers = 28, c.llm.num_attention_heads = 28, c.llm.num_key_value_heads = 4, c.llm.head_dim = 128;
  c.llm.rope_theta = 1e6, c.llm.rms_norm_eps = 1e-6, c.llm.tie_word_embeddings = false;
  c.llm.max_position_embeddings = 32768;
  c.llm.mrope_section = std::array<int64_t, 3>{16, 24, 24};
  c.llm.dtype = DType::BF16;
  c.llm.image_token_id = 151655, c.llm.video_token_id = 151656;
  c.llm.vision_start_token_id = 151652, c.llm.vision_end_token_id = 151653;
  c.vision = qwen2_vl::VisionConfig::qwen2_vl_7b();
  c.gen = infinity::InfinityConfig::infinity_2b();
  c.vae = bsq::BsqVaeConfig::infinity_d32();
  c.tokens = {151657, 151658, 151659};
  c.sos_rows = c.tokens.start + 1;
  c.llm.validate("vargpt full");
  c.gen.validate();
  c.vae.validate();
  return c;
}

// Redraws every parameter of `model` by the rule in the header, on the parameters' own device and
// dtype (rows in blocks, so no weight-sized temporary is left in the allocator's cache). Returns
// the bytes of the state dict (parameters and persistent buffers): the "weight bytes".
inline int64_t randomize_weights(nn::Module& model, uint64_t seed) {
  NoGradGuard no_grad;
  Generator g(seed);
  int64_t bytes = 0;
  for (auto& [name, t] : model.state_dict()) bytes += int64_t(t.nbytes());
  for (auto& [name, p] : model.named_parameters()) {
    if (!is_floating(p.dtype())) continue;
    const bool is_weight = name.size() >= 6 && name.compare(name.size() - 6, 6, "weight") == 0;
    const bool unit = p.dim() == 1 && is_weight &&
                      (name.find("norm") != std::string::npos || name.find("ln_q") != std::string::npos);
    Tensor dst = p.detach();
    if (name.find("scale_mul_1H11") != std::string::npos) {
      fill_(dst, std::log(4.0));
      continue;
    }
    double mean = 0, std = 0.1;
    if (unit) {
      mean = 1;
    } else if (p.dim() >= 2) {
      const int64_t fan_in = p.size(0) == 1 ? p.size(-1) : p.numel() / p.size(0);
      std = 1.0 / std::sqrt(double(fan_in));
    }
    const int64_t rows = p.dim() == 0 ? 1 : p.size(0), step = std::max<int64_t>(1, (int64_t(1) << 24) / std::max<int64_t>(1, p.numel() / rows));
    if (p.dim() == 0) {
      copy_(dst, normal(p.shape(), mean, std, {p.dtype(), p.device()}, &g));
      continue;
    }
    for (int64_t r = 0; r < rows; r += step) {
      Tensor part = dst.narrow(0, r, std::min(step, rows - r));
      copy_(part, normal(part.shape(), mean, std, {p.dtype(), p.device()}, &g));
    }
  }
  return bytes;
}

// The config.json of a checkpoint written from `c`: the tiny fixture's (special tokens, ids, ViT
// layout) with the LLM and ViT widths of `c`. The decoder and VAE hyper-parameters need no fields:
// VargptConfig::load reads them off the tensor shapes.
inline nlohmann::json vargpt_config_json(const vargpt::VargptConfig& c) {
  std::ifstream in(vargpt_tiny_dir() + "/config.json");
  nlohmann::json j = nlohmann::json::parse(in);
  j["vocab_size"] = c.llm.vocab_size;
  j["hidden_size"] = c.llm.hidden_size;
  j["intermediate_size"] = c.llm.intermediate_size;
  j["num_hidden_layers"] = c.llm.num_hidden_layers;
  j["max_window_layers"] = c.llm.num_hidden_layers;
  j["num_attention_heads"] = c.llm.num_attention_heads;
  j["num_key_value_heads"] = c.llm.num_key_value_heads;
  j["rms_norm_eps"] = c.llm.rms_norm_eps;
  j["rope_theta"] = c.llm.rope_theta;
  j["rope_scaling"]["mrope_section"] = {(*c.llm.mrope_section)[0], (*c.llm.mrope_section)[1], (*c.llm.mrope_section)[2]};
  j["torch_dtype"] = c.llm.dtype == DType::BF16 ? "bfloat16" : "float32";
  j["vision_config"]["depth"] = c.vision.depth;
  j["vision_config"]["embed_dim"] = c.vision.embed_dim;
  j["vision_config"]["num_heads"] = c.vision.num_heads;
  j["vision_config"]["hidden_size"] = c.vision.hidden_size;
  return j;
}

// A checkpoint directory the way upstream lays one out: config.json, the tiny fixture's tokenizer
// and preprocessor files, and the state dict in safetensors shards of at most 512 MB (vt's names;
// vt and the PyTorch baseline both read the VAE's plain conv names as well as upstream's wrapped ones).
inline void write_vargpt_checkpoint(const vargpt::Vargpt& model, const std::string& dir) {
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  model.save_sharded(dir, uint64_t(512) << 20, {{"format", "pt"}});
  std::ofstream(dir + "/config.json") << vargpt_config_json(model.config()).dump(2) << "\n";
  for (const char* f : {"tokenizer.json", "preprocessor_config.json"})
    fs::copy_file(vargpt_tiny_dir() + "/" + f, dir + "/" + f, fs::copy_options::overwrite_existing);
}

// The benchmark prompt: the tiny fixture's text-to-image prompt (92 ids of the tiny tokenizer, the
// last one <|image_gen_start|>), read from its reference.json.
inline std::vector<int64_t> vargpt_bench_prompt() {
  std::ifstream in(vargpt_tiny_dir() + "/reference.json");
  VT_CHECK(in.good(), "bench: cannot open ", vargpt_tiny_dir(), "/reference.json");
  return nlohmann::json::parse(in)["t2i"]["ids"].get<std::vector<int64_t>>();
}

struct GenerationSettings {
  int64_t size = 256;
  double cfg = 3.0, tau = 0.5, top_p = 0.97;
  uint64_t seed = 0;
  bool decode = true;  // the VAE decode to pixels
  std::function<void(int64_t scale, int64_t scales, int64_t h, int64_t w)> on_scale;
};

// One image from a prompt that ends with <|image_gen_start|>: the prefill of the rest, the start
// token forced and fed (the hand-off), then the per-scale loop with CFG and the VAE decode.
inline vargpt::ImageResult generate_one(const vargpt::Vargpt& model, std::vector<int64_t> ids,
                                        const GenerationSettings& s) {
  VT_CHECK(!ids.empty() && ids.back() == model.tokens().start, "bench: the prompt must end with <|image_gen_start|>");
  ids.pop_back();
  vargpt::TextOptions text;
  text.max_new_tokens = 1;
  text.force_image = true;
  vargpt::TextResult r = vargpt::decode_text(model, {vargpt::Prompt{ids, {}, {}}}, text);
  VT_CHECK(r.wants_image[0], "bench: the hand-off to image generation did not happen");
  vargpt::ImageOptions opt;
  opt.height = opt.width = s.size;
  opt.cfg = s.cfg, opt.tau = s.tau, opt.top_p = s.top_p;
  opt.seeds = {s.seed};
  opt.decode = s.decode;
  opt.on_scale = s.on_scale;
  return vargpt::generate_image(model, r.state, opt);
}

}  // namespace vt::bench
