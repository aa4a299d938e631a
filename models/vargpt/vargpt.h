// vargpt/vargpt.h: VARGPTQwen2VLForConditionalGeneration (vargpt.md §1-§4, §15): Qwen2-VL for
// understanding, with Infinity's bitwise next-scale decoder and the BSQ-VAE for generation, joined
// by two GenPatchMerger projectors. The LLM stays in the loop at every scale.
//
//   understanding:  ids + images --visual, model--> hidden (B, T, Cl) --lm_head--> logits
//   generation (one image, spec §6; Cl = LLM width 3584, C = Infinity width 2048, d = 32 bits):
//     prefix hidden H_prefix (L, Cl) --image_gen_projector_out--> cross-attention memory (L, C)
//     sos_embedding[<|image_gen_start|>] --text_norm, text_proj_for_sos--> cond_BD (C)   (constant, Q3)
//     per scale k:  X_k (n_k, d) --word_embed--> (n_k, C) --image_gen_projector--> (n_k, Cl)
//                   --model (KV cache of the prompt and earlier scales)--> (n_k, Cl)
//                   --image_gen_projector_out--> (n_k, C) --vargpt_gen blocks, head--> (n_k, 2d)
//                   CFG against an unconditional row, bits sampled, accumulated into S (d, h, w)
//     S --vae_local decoder--> image (3, 16 h, 16 w)
//
// The attribute names are upstream's and are also the checkpoint prefixes: visual, model, lm_head,
// vargpt_gen, vae_local, image_gen_projector, image_gen_projector_out, sos_embedding. The files of
// this folder: vargpt.{h,cpp} (configuration, projectors, conditions, loading), generate.{h,cpp}
// (text decoding with the hand-off and the per-scale loop), training.{h,cpp} (the teacher-forced
// forward, its loss and the stage freeze presets).
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "bsq_vae/bsq_vae.h"
#include "infinity/infinity.h"
#include "qwen2/config.h"
#include "qwen2_vl/qwen2_vl.h"
#include "qwen2_vl/vision.h"

namespace vt::tok {
class Tokenizer;
}

namespace vt::vargpt {

// The three generation tokens (vargpt.md §2), read from config.json's "special_tokens".
struct GenerationTokens {
  int64_t start = 151657;  // <|image_gen_start|>: switches the model to image generation
  int64_t end = 151658;    // <|image_gen_end|>: closes an image span in training sequences
  int64_t pad = 151659;    // <|image_gen_pad|>: one per Infinity token slot in training sequences
};

struct VargptConfig {
  qwen2::Qwen2Config llm;            // config.json (model_type vargpt_qwen2_vl)
  qwen2_vl::VisionConfig vision;     // config.json "vision_config"
  infinity::InfinityConfig gen;      // read off the vargpt_gen.* tensor shapes (upstream hard-codes it)
  bsq::BsqVaeConfig vae;             // read off the vae_local.* tensor shapes
  GenerationTokens tokens;
  int64_t sos_rows = 0;              // sos_embedding rows: tokens.start + 1 (Q2: only the last is read)
  // vt's extension for small models (config.json "vt_gen_sides", e.g. [1, 2, 4, 8]): square scale
  // sides ending at the largest latent grid, instead of Infinity's templates. A smaller image takes
  // the prefix of sides up to its latent side. Empty: Infinity's templates (every released model).
  std::vector<int64_t> gen_sides;

  // The schedule of an h x w image (0 x 0: the model's default size, 512 x 512 for templates).
  // Errors list the sizes the model allows.
  infinity::ScaleSchedule schedule_for(int64_t h = 0, int64_t w = 0) const;

  // dir/config.json and the checkpoint's tensor shapes (no tensor data is read). Errors name the
  // file and field; a checkpoint without generation tensors is an error that says `vargpt chat`
  // still runs it.
  static VargptConfig load(const std::string& dir);
  // True when dir's config.json declares a VARGPT model (model_type vargpt_qwen2_vl or a
  // "special_tokens" entry) and its checkpoint holds vargpt_gen.* tensors.
  static bool has_generation(const std::string& dir);
};

// Refuses a tokenizer whose generation tokens are not the config's: a Qwen2.5 tokenizer maps
// 151657.. to <tool_call> etc., and a tokenizer without the three added tokens cannot write them.
void check_tokenizer(const tok::Tokenizer& tokenizer, const GenerationTokens& tokens, const std::string& source);

// The VAE's GroupNorm group count, which no tensor shape shows: the parsed config.json's
// "vt_vae_norm_groups" (a positive integer, else an error naming `source`), or upstream's 32.
int64_t vae_norm_groups(const nlohmann::json& config, const std::string& source);

// A reply's text: special tokens and a trailing <|image_gen_start|> dropped, outer whitespace
// trimmed. The embedding has more rows than the tokenizer has tokens (152064 vs 151660 upstream);
// an id past the tokenizer, which a sampled reply can hold, shows as <id N>.
std::string decode_reply(const tok::Tokenizer& tokenizer, std::vector<int64_t> tokens, int64_t start_id);

// GenPatchMerger (M:1444): y = mlp.2(GELU_erf(mlp.0(x))). ln_q is built, loaded and saved but never
// applied upstream (Q1), so it is kept here for the checkpoint only.
class GenPatchMerger : public nn::Module {
 public:
  GenPatchMerger(int64_t dim_out, int64_t in_dim, DType dtype);
  Tensor forward(const Tensor& x) const;  // (..., in_dim) -> (..., dim_out)
  std::shared_ptr<nn::Linear> fc1, fc2;   // mlp.0 (in, in), mlp.2 (out, in)
  Tensor ln_q_weight, ln_q_bias;          // (in) each, unused (Q1)
};

// How the model stores what it trains; none of it is in config.json, and a checkpoint written with
// any of these options is upstream's layout.
struct VargptOptions {
  // Q2 fix (vargpt.md §14): sos_embedding has tokens.start + 1 rows and only row tokens.start is
  // read. With sos_single_row the table "sos_embedding.weight" becomes a persistent buffer (loaded
  // and saved whole, no gradient, no optimizer state) and the read row is the trainable parameter
  // "sos_embedding.row" (1, C), which is not saved itself: state_dict() writes it into the table's
  // row, a load reads it back from there, so every other row is saved exactly as it was loaded.
  // Trains as the faithful table does when weight decay is 0 (the other rows get zero gradients);
  // with decay the faithful model also shrinks the unread rows. At Infinity-2B's width it drops
  // 151657 x 2048 = 311M elements of training state: 3.7 GB of fp32 master and moments plus the
  // gradient (1.2 GB in f32, 0.6 GB in bf16).
  bool sos_single_row = false;
};

class VARGPTQwen2VLForConditionalGeneration : public nn::Module {
 public:
  // Parameters in `dtype` except vae_local, which stays f32 (vargpt.md §16: sign decisions of the
  // training labels are taken on its latent).
  VARGPTQwen2VLForConditionalGeneration(const VargptConfig& cfg, DType dtype = DType::F32,
                                        const VargptOptions& options = {});
  // dir: config.json, tokenizer.json (optional here; checked when present), and model.safetensors
  // or shards + model.safetensors.index.json, read by mmap. Every missing, unexpected or mis-shaped
  // tensor is listed in one error. The vae_local.quantizer.lfq.mask buffer is accepted and ignored.
  static std::shared_ptr<VARGPTQwen2VLForConditionalGeneration> from_pretrained(
      const std::string& dir, std::optional<DType> dtype = std::nullopt, const VargptOptions& options = {});

  const VargptConfig& config() const { return cfg_; }
  const GenerationTokens& tokens() const { return cfg_.tokens; }
  DType dtype() const { return lm->dtype(); }
  Device device() const { return lm->model->embed_tokens.device(); }

  // ---- the conditions of the decoder (vargpt.md §4.2, §4.3) --------------------------------------
  // cond_BD (B, C) of the sos row (or, for condition dropout and the CFG row, of cfg_uncond[0:1]):
  // text_norm then text_proj_for_sos over that single row, repeated for B rows.
  Tensor sos_condition(int64_t batch, bool unconditional = false) const;
  // The cross-attention memory of the conditional rows: image_gen_projector_out of each sample's
  // prefix hidden states (L_b, Cl), packed (ΣL, C) with cu_seqlens.
  infinity::PackedText prefix_memory(const std::vector<Tensor>& prefix_hidden) const;

  // ---- the language half, shared with Qwen2-VL -----------------------------------------------------
  std::shared_ptr<qwen2_vl::Qwen2VLForConditionalGeneration> vl;  // embed(), positions()
  std::shared_ptr<qwen2_vl::VisionTransformer> visual;
  std::shared_ptr<qwen2::Qwen2ForCausalLM> lm;  // lm->model is "model", lm->lm_head is "lm_head"

  // ---- the generation half --------------------------------------------------------------------------
  std::shared_ptr<infinity::Infinity> vargpt_gen;
  std::shared_ptr<bsq::BsqVae> vae_local;
  std::shared_ptr<GenPatchMerger> image_gen_projector;      // Infinity -> LLM: C -> C -> Cl
  std::shared_ptr<GenPatchMerger> image_gen_projector_out;  // LLM -> Infinity: Cl -> Cl -> C
  Tensor sos_embedding;  // (tokens.start + 1, C) "sos_embedding.weight": a parameter, or with sos_single_row a buffer
  Tensor sos_row;        // (1, C) "sos_embedding.row", the trainable row with sos_single_row; else undefined

  // Activation checkpointing of every transformer block (the ViT's, the LLM's, Infinity's), as HF's
  // gradient_checkpointing_enable(): activations kept per block drop to its input, the blocks run
  // twice in training; gradients are unchanged. Inference (no grad, KV caches) is not affected.
  void gradient_checkpointing_enable(bool on = true) {
    visual->gradient_checkpointing = on;
    lm->model->gradient_checkpointing = on;
    vargpt_gen->gradient_checkpointing = on;
  }

 protected:
  void before_state_dict() const override;  // sos_single_row: sos_row into the table's row
  void after_load() override;               // sos_single_row: the table's row into sos_row

 private:
  VargptConfig cfg_;
  VargptOptions options_;
};

using Vargpt = VARGPTQwen2VLForConditionalGeneration;

}  // namespace vt::vargpt
