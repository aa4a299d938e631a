// vargpt/init.h: a VARGPT-v1.1 model of any size from random weights, written as a Hugging Face
// model directory that every vt command loads: the start of training from scratch (the ShapeWorld
// miniature, scripts/main_job.sh).
//
//   spec (JSON, sizes only) + tokenizer.json --make_config--> VargptConfig + config.json
//   --random_init--> weights: linear / conv / embedding matrices N(0, 1/fan_in) (the LLM, ViT,
//   projectors and sos_embedding, which vt constructs zeroed), norms 1, biases 0; Infinity and the
//   BSQ-VAE keep the initialisation their constructors draw (upstream's)
//   --write_model_dir--> DIR/config.json, tokenizer.json, preprocessor_config.json, model.safetensors
//
// spec keys (defaults in brackets):
//   llm:    hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
//           num_key_value_heads [= heads], rope_theta [1e6], mrope_section [head_dim/2 split 1:1.5:1.5]
//   vision: depth, embed_dim, num_heads, patch_size [14], spatial_merge_size [2]
//   gen:    depth, embed_dim, num_heads, codebook_dim, text_maxlen [512], num_levels [15], block_chunks [1]
//   vae:    base_channels, channel_mult, num_res_blocks, (codebook_dim = gen.codebook_dim)
//   gen_sides: [1, 2, 4, 8]  (vt_gen_sides: square scales; image side = last x VAE patch)
//   image:  min_pixels, max_pixels (the ViT's preprocessing)
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "vargpt/vargpt.h"

namespace vt::tok {
class Tokenizer;
}

namespace vt::vargpt {

struct ModelDir {
  VargptConfig config;
  nlohmann::json config_json;        // config.json as written
  nlohmann::json preprocessor_json;  // preprocessor_config.json as written
};

// The configuration of a model of `spec`'s sizes for `tokenizer` (its generation tokens must be
// present: the ids come from it; vocab_size = its size rounded up to a multiple of 64).
ModelDir make_config(const nlohmann::json& spec, const tok::Tokenizer& tokenizer);
// Random weights as described above, from `seed` (the same seed gives the same bytes).
void random_init(Vargpt& model, uint64_t seed);
// Writes the directory (atomically per file); tokenizer_path is copied as tokenizer.json.
void write_model_dir(const std::string& dir, const Vargpt& model, const ModelDir& files,
                     const std::string& tokenizer_path);

}  // namespace vt::vargpt
