// qwen2/config.h: the Qwen2 decoder's hyper-parameters, read from a Hugging Face config.json
// (qwen2_vl.md §1).
//
// Accepted layouts:
//   model_type "qwen2"     every field at the top level (transformers 4.x and 5.x);
//   model_type "qwen2_vl"  the LLM fields at the top level (4.x) or nested under "text_config"
//                          (5.x), plus image_token_id, video_token_id, vision_start_token_id and
//                          vision_end_token_id at the top level.
// A field is looked up in text_config first, then at the top level. RoPE settings come from
// "rope_theta" / "rope_scaling" (4.x) or "rope_parameters" (5.x: {"rope_theta", "rope_type",
// "mrope_section"}). Qwen2Config's class defaults match no released model, so the five size fields
// are required; num_key_value_heads defaults to num_attention_heads and head_dim to H / nh.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "vt/dtype.h"

namespace vt::io {
class CheckpointReader;
}

namespace vt::qwen2 {

struct Qwen2Config {
  std::string model_type = "qwen2";
  int64_t vocab_size = 0;         // V: embedding rows (exceeds the tokenizer's size)
  int64_t hidden_size = 0;        // C
  int64_t intermediate_size = 0;  // F
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;  // nh
  int64_t num_key_value_heads = 0;  // nkv: GQA groups of nh / nkv query heads
  int64_t head_dim = 0;             // D = C / nh unless given
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000;  // HF's class default; every released Qwen2 sets 1e6
  int64_t max_position_embeddings = 32768;
  bool tie_word_embeddings = false;  // lm_head shares model.embed_tokens.weight
  // M-RoPE (Qwen2-VL): the frequency split between the (t, h, w) axes, [16, 24, 24] for D = 128.
  std::optional<std::array<int64_t, 3>> mrope_section;
  DType dtype = DType::BF16;  // "torch_dtype" / "dtype": the checkpoint's storage type
  std::vector<int64_t> eos_token_ids;  // "eos_token_id" (int or list); empty when absent
  // Qwen2-VL special tokens; -1 when absent (plain Qwen2).
  int64_t image_token_id = -1, video_token_id = -1, vision_start_token_id = -1, vision_end_token_id = -1;

  // Parses a config.json text; `source` names the file in errors.
  static Qwen2Config from_json_text(const std::string& text, const std::string& source = "config.json");
  // `path` is a config.json or a directory holding one.
  static Qwen2Config load(const std::string& path);
  // Throws naming the inconsistent fields (heads not dividing, odd head_dim, bad mrope_section).
  void validate(const std::string& source = "config") const;
  // Compares the sizes with the checkpoint's tensor headers (nothing is read or allocated):
  // the sizes that drive the allocation: model.embed_tokens.weight and lm_head.weight (V, C), layer
  // 0's q_proj (nh * D, C) and gate_proj (F, C), and the number of model.layers.N. Call it before
  // building the model, so a config.json that does not belong to the weights fails naming `source`
  // and the tensor, not with an out-of-memory error. Other mis-shaped tensors are the loader's.
  void check_checkpoint(io::CheckpointReader& reader, const std::string& source) const;
  // The same for the checkpoint in directory `dir`, naming dir/config.json.
  void check_checkpoint(const std::string& dir) const;

  int64_t q_size() const { return num_attention_heads * head_dim; }   // nh * D
  int64_t kv_size() const { return num_key_value_heads * head_dim; }  // nkv * D
};

}  // namespace vt::qwen2
