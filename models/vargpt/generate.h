// vargpt/generate.h: VARGPT-v1.1 inference: text decoding with the hand-off to image generation
// (vargpt.md §5), and the per-scale loop with the LLM in the loop (§6, §7).
//
//   decode_text:   prompts (left-padded batch, images through the ViT, 3-D M-RoPE at prefill)
//                  -> greedy or sampled reply tokens; a row that emits <|image_gen_start|> feeds it
//                  through the LLM once and stops (an explicit mode switch: no junk token, Q15)
//                  -> HandOff: the KV cache, the key mask, every row's prefix hidden states
//   generate_image, per scale k of the schedule (rows r = 0..B-1, all at once):
//     E_c = image_gen_projector(k == 0 ? cond_BD + pos_start : word_embed(X_k))          (B, n_k, Cl)
//     H_c = model(E_c) on the persistent cache, positions = raw cache positions (Q10)     (B, n_k, Cl)
//     E_u = the same with the unconditional cond_BD at k == 0;
//     H_u = model(E_u) with no cache, positions 0..n_k-1 (Q4)                             (B, n_k, Cl)
//     logits = vargpt_gen.blocks/head(image_gen_projector_out([H_c; H_u]))             (2B, n_k, 2d)
//     l = cfg l_c/tau + (1 - cfg) l_u/tau; bits per row from its own Philox stream (or given draws)
//     S += up(codes_k); X_{k+1} = bilinear(S -> scale k + 1)
//   image = clamp(vae_local.decode(S), -1, 1); pixels = uint8((image + 1) / 2 * 255), truncated (Q14)
//
// Beyond upstream (which generates one square 512² image per call): batches with a seed per row
// (a row's image does not depend on the other rows), every aspect-ratio template of Infinity at
// 256² and 512² budgets, and the documented fixes of the quirks as options.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "qwen2/generate.h"
#include "vargpt/vargpt.h"

namespace vt::vargpt {

// One conversation rendered with the chat template (ending with "<|im_start|>assistant\n", maybe
// followed by reply tokens the caller forces), and its understanding images in order.
struct Prompt {
  std::vector<int64_t> ids;
  Tensor pixel_values;                            // (Σ t h w, 1176) f32, or undefined
  std::vector<qwen2_vl::GridTHW> image_grid_thw;  // one per <|vision_start|> run
};

// Text decoding options.
struct TextOptions {
  int64_t max_new_tokens = 256;
  qwen2::SamplingOptions sampling;  // greedy by default; row r samples with seed sampling.seed + r
  std::vector<int64_t> stop_tokens; // end a row's reply without an image (<|im_end|>, <|endoftext|>)
  // `vargpt generate`: a stop token, or the last allowed token, becomes <|image_gen_start|>, so
  // every row asks for an image. Off (chat): a row makes an image only when the model asks.
  bool force_image = false;
  std::function<void(int64_t row, int64_t token)> on_token;
};

// The LLM's state at the hand-off, after <|image_gen_start|> went through it.
struct HandOff {
  std::vector<nn::KVCache> caches;    // one per layer, B rows
  Tensor key_mask;                    // (B, cache length) int64, 1 = a real token of the row (CPU)
  std::vector<Tensor> prefix_hidden;  // per row (L_b, Cl): final hidden states of the tokens before
                                      // <|image_gen_start|> (the start token's own is excluded, Q5)
  std::vector<int64_t> real_length;   // per row: real tokens in the cache
  std::vector<int64_t> mrope_shift;   // per row: M-RoPE position of the next text token minus real_length
  int64_t batch() const { return static_cast<int64_t>(prefix_hidden.size()); }
};

struct TextResult {
  std::vector<std::vector<int64_t>> tokens;  // per row: the reply; ends with <|image_gen_start|> when
                                             // the row asks for an image
  std::vector<bool> wants_image;
  HandOff state;  // every row; select_rows() keeps those that make images
};

// Prefills the prompts (left-padded) and decodes their replies. A prompt ending with
// <|image_gen_start|> (the caller forced the reply) hands off right after the prefill.
TextResult decode_text(const Vargpt& model, const std::vector<Prompt>& prompts, const TextOptions& opt);
// The rows `rows` of a hand-off, in that order.
HandOff select_rows(const HandOff& state, const std::vector<int64_t>& rows);

// How Q6's over-long memories get their unconditional rows.
enum class UncondLength {
  Truncate,  // faithful: cfg_uncond[:min(L, text_maxlen)], with a warning when L > text_maxlen
  Tile,      // cfg_uncond repeated up to L rows
};

struct ImageOptions {
  int64_t height = 0, width = 0;      // a size of Infinity's templates (256² and 512² budgets), or
                                       // of the model's vt_gen_sides; 0: the model's default (512²)
  double cfg = 3.0;                    // l = cfg l_c + (1 - cfg) l_u, on tau-scaled logits
  double tau = 0.5;
  double top_p = 0.97;                 // per bit: the smaller class is dropped when its p <= 1 - top_p
  int64_t top_k = 900;                 // per bit: 1 keeps the larger class; >= 2 is a no-op
  std::vector<uint64_t> seeds;         // one per row; empty: row r uses seed r
  Tensor uniforms;                     // (B, L, d) f32 draws used instead of the seeds (parity tests)
  bool uncond_llm_cache = false;       // Q4 fix: the unconditional LLM pass keeps its own cache
  UncondLength uncond_length = UncondLength::Truncate;  // Q6
  bool mrope_consistent = false;       // Q10 fix: image chunks continue the prompt's M-RoPE positions
  bool llm_block_causal = false;       // Q11 fix: the tokens of a scale see each other in the LLM
  bool round_pixels = false;           // Q14 fix: round instead of truncate
  bool decode = true;                  // false: stop at the latent (no VAE decode)
  std::function<void(int64_t scale, int64_t scales, int64_t h, int64_t w)> on_scale;  // after each scale
};

struct ImageResult {
  std::vector<Tensor> bits;         // per scale (B, h_k, w_k, d) Bool
  std::vector<Tensor> logits;       // per scale (B, n_k, 2d) f32: the guided, tau-scaled logits sampled from
  std::vector<Tensor> cond_logits;  // per scale (B, n_k, 2d): the conditional rows before tau and CFG
  infinity::PackedText memory;      // the conditional cross-attention memory (ΣL, C)
  Tensor latent;                    // S: (B, d, h, w)
  Tensor image;                     // (B, 3, 16 h, 16 w) f32 in [-1, 1]
  Tensor pixels;                    // (B, 16 h, 16 w, 3) uint8 RGB (CPU)
  std::vector<std::string> warnings;
};

// The per-scale loop from a hand-off (its caches grow by the image tokens).
ImageResult generate_image(const Vargpt& model, HandOff& state, const ImageOptions& opt);

// image (B, 3, H, W) in [-1, 1] -> (B, H, W, 3) uint8: (x + 1) / 2 * 255, truncated or rounded.
Tensor to_pixels(const Tensor& image, bool round);

}  // namespace vt::vargpt
