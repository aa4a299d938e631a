// qwen2_vl.h: Qwen2VLForConditionalGeneration (qwen2_vl.md §5, §8): the ViT and the Qwen2 decoder
// joined by scattering image embeddings into the <|image_pad|> slots of the prompt.
//
//   ids (B, L) --embed--> (B, L, C);  pixel_values --visual--> (N, C), N = number of image_pad ids
//   row r of the embeddings := image row k when ids[r] is the k-th <|image_pad|> (row-major over
//   the batch: images in order of appearance)          [an index_select, so it is differentiable]
//   positions: get_rope_index (3-D M-RoPE), or plain 0..L-1 on all three axes (VARGPT training's
//   choice, vargpt.md §9), then the Qwen2 decoder and lm_head.
//
// Checkpoint names are the hub's: visual.*, model.*, lm_head.weight. A VARGPT-v1.1 checkpoint also
// holds the generation half (vargpt_gen., vae_local., image_gen_projector., image_gen_projector_out.,
// sos_embedding.); from_pretrained() skips exactly those prefixes and is strict about the rest.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "qwen2/config.h"
#include "qwen2/generate.h"
#include "qwen2/qwen2.h"
#include "qwen2/rope_index.h"
#include "qwen2_vl/vision.h"

namespace vt::qwen2_vl {

enum class PositionMode { MRope, Sequential };

// A batch of (left-padded) prompts and the images their <|image_pad|> runs stand for.
struct MultimodalInputs {
  Tensor input_ids;                  // (B, L) int
  Tensor attention_mask;             // (B, L) nonzero = token, or undefined (no padding)
  Tensor pixel_values;               // (sum t·h·w, 1176) f32, or undefined (no images)
  std::vector<GridTHW> image_grid_thw;  // one per image, in order of appearance
};

class Qwen2VLForConditionalGeneration : public nn::Module {
 public:
  Qwen2VLForConditionalGeneration(const qwen2::Qwen2Config& llm, const VisionConfig& vision,
                                  DType dtype = DType::F32);
  // dir: config.json + safetensors (single or sharded). Tensors under `skip_prefixes` are ignored
  // (by default VARGPT-v1.1's generation half); every other tensor must match by name and shape.
  static std::shared_ptr<Qwen2VLForConditionalGeneration> from_pretrained(
      const std::string& dir, std::optional<DType> dtype = std::nullopt,
      std::vector<std::string> skip_prefixes = default_skip_prefixes());
  static std::vector<std::string> default_skip_prefixes();

  const qwen2::Qwen2Config& config() const { return lm->config(); }
  DType dtype() const { return lm->dtype(); }

  // (B, L, C): token embeddings with the image rows scattered in. Errors when the number of
  // <|image_pad|> ids differs from the number of image embeddings (naming both counts).
  Tensor embed(const MultimodalInputs& in) const;
  // (3, B, L) positions and the per-row decode deltas, for `mode`.
  qwen2::RopeIndex positions(const MultimodalInputs& in, PositionMode mode) const;
  // Logits (B, L, V), or (B, 1, V) with last_only. With caches (one per layer, empty), the
  // prompt is cached for decoding and *rope_deltas receives the deltas decode steps need.
  Tensor forward(const MultimodalInputs& in, PositionMode mode = PositionMode::MRope, bool last_only = false,
                 std::vector<nn::KVCache>* caches = nullptr, std::vector<int64_t>* rope_deltas = nullptr) const;

  // A StepFn for qwen2::generate: step 0 runs `prompt` (with its images), later steps feed one token
  // per row at position cache_len + delta. `caches` must outlive the generation.
  qwen2::StepFn step_fn(const MultimodalInputs& prompt, std::vector<nn::KVCache>& caches,
                        PositionMode mode = PositionMode::MRope) const;

  std::shared_ptr<VisionTransformer> visual;
  std::shared_ptr<qwen2::Qwen2ForCausalLM> lm;  // its "model" and "lm_head" are registered here

 private:
  qwen2::RopeIndexTokens tokens_;
};

}  // namespace vt::qwen2_vl
