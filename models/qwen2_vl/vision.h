// vision.h: the Qwen2-VL vision encoder (qwen2_vl.md §8), `Qwen2VisionTransformerPretrainedModel`,
// with the hub tensor names below the prefix `visual.`.
//
//   pixel_values (N, C·T·P·P) --patch_embed (Conv3d = matmul)--> h (N, E)
//   per block:  h += proj(attn(rope(q), rope(k), v)),   q, k, v = qkv(LN1(h)), bidirectional
//                   attention inside each frame of each image only (block-diagonal, cu_seqlens)
//               h += fc2(quick_gelu(fc1(LN2(h))))
//   merger:     LN(h) viewed (N/4, 4E) (a 2x2 window's 4 consecutive rows) -> Linear -> GELU(erf)
//               -> Linear -> (N/4, hidden_size), one row per LLM image token
//
// Rows arrive in the processor's 2x2-window-major order (image_processor.h); the 2-D rotary
// angles of each row come from nn::vision_rope_positions in that same order. Precision follows HF
// in the weights' dtype: linears and norms round to it, RoPE is applied in f32 and rounded once
// (HF's `.float()` in apply_rotary_pos_emb_vision), attention accumulates in f32.
//
// Typical use: a multimodal model registers the tower as its child "visual"; standalone,
// load_vision_tower() reads the `visual.*` tensors of a full Qwen2-VL checkpoint.
#pragma once
#include <array>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "vt/nn/attention.h"
#include "vt/nn/layers.h"
#include "vt/nn/module.h"
#include "vt/nn/rope.h"

namespace vt::io {
class CheckpointReader;
}

namespace vt::qwen2_vl {

struct VisionConfig {
  int64_t depth = 32;
  int64_t embed_dim = 1280;
  int64_t num_heads = 16;
  double mlp_ratio = 4;
  int64_t in_channels = 3;
  int64_t patch_size = 14;
  int64_t temporal_patch_size = 2;
  int64_t spatial_merge_size = 2;
  int64_t hidden_size = 3584;  // merger output = LLM width (1536 for Qwen2-VL-2B)
  double rope_theta = 1e4;
  double norm_eps = 1e-6;

  int64_t head_dim() const { return embed_dim / num_heads; }
  int64_t mlp_hidden() const { return static_cast<int64_t>(embed_dim * mlp_ratio); }
  int64_t patch_dim() const { return in_channels * temporal_patch_size * patch_size * patch_size; }
  int64_t merge_area() const { return spatial_merge_size * spatial_merge_size; }

  // From a Qwen2-VL config.json object: its "vision_config" (keys depth, embed_dim, num_heads,
  // mlp_ratio, in_chans or in_channels, patch_size, temporal_patch_size, spatial_merge_size,
  // hidden_size, rope_parameters.rope_theta); hidden_size falls back to the LLM's hidden_size.
  // A bare vision_config object is accepted too, but a model config (one with "model_type",
  // "text_config" or "vocab_size") without "vision_config" is refused: falling back to the class
  // defaults would build the 7B tower (2.7 GB) for weights that are not its. `source` names the file.
  static VisionConfig from_json(const nlohmann::json& config, const std::string& source = "config.json");
  // config.json, or a directory holding it.
  static VisionConfig from_file(const std::string& path);
  static VisionConfig qwen2_vl_7b() { return {}; }
  void validate(const std::string& source = "vision_config") const;
  // Compares the sizes with the checkpoint's visual.* tensor headers before anything is allocated
  // (patch embedding, block 0's qkv and fc1, the merger's output, the number of blocks).
  void check_checkpoint(io::CheckpointReader& reader, const std::string& source) const;
};

// torch.nn.Linear and torch.nn.LayerNorm (include/vt/nn/layers.h).
using nn::LayerNorm;
using nn::Linear;

// PatchEmbed.proj: Conv3d(C, E, kernel = stride = (T, P, P), bias=False). weight: (E, C, T, P, P).
class PatchEmbed : public nn::Module {
 public:
  PatchEmbed(const VisionConfig& cfg, DType dtype);
  Tensor forward(const Tensor& pixel_values) const;  // (N, C·T·P·P) -> (N, E)
  std::shared_ptr<nn::Module> proj;
  Tensor weight;  // = proj.weight
};

class VisionAttention : public nn::Module {
 public:
  VisionAttention(const VisionConfig& cfg, DType dtype);
  // x: (S, E); rope.cos, rope.sin: (S, head_dim) f32; mask: varlen over the S rows.
  Tensor forward(const Tensor& x, const nn::RopeCosSin& rope, const nn::AttentionMask& mask) const;
  std::shared_ptr<Linear> qkv, proj;  // (3E, E) + bias, (E, E) + bias

 private:
  int64_t heads_, head_dim_;
};

class VisionMlp : public nn::Module {
 public:
  VisionMlp(const VisionConfig& cfg, DType dtype);
  Tensor forward(const Tensor& x) const;  // (S, E) -> (S, E)
  std::shared_ptr<Linear> fc1, fc2;  // (F, E), (E, F), with bias; quick_gelu between
};

class VisionBlock : public nn::Module {
 public:
  VisionBlock(const VisionConfig& cfg, DType dtype);
  // HF's Qwen2VLVisionBlock on h = in.residual + in.delta (each (S, E)): returns {h + attention,
  // mlp(...)}, whose sum is the block's output; the adds run fused with the norms after them.
  nn::ResidualStream forward(const nn::ResidualStream& in, const nn::RopeCosSin& rope,
                             const nn::AttentionMask& mask) const;
  std::shared_ptr<LayerNorm> norm1, norm2;
  std::shared_ptr<VisionAttention> attn;
  std::shared_ptr<VisionMlp> mlp;
};

// ln_q, then mlp.0 (4E -> 4E), GELU (erf), mlp.2 (4E -> hidden_size).
class PatchMerger : public nn::Module {
 public:
  PatchMerger(const VisionConfig& cfg, DType dtype);
  Tensor forward(const Tensor& h) const;  // (N, E) -> (N/4, hidden_size)
  // The same on the last block's residual stream: its pending add runs fused with ln_q.
  Tensor forward(const nn::ResidualStream& h) const;
  std::shared_ptr<LayerNorm> ln_q;
  std::shared_ptr<Linear> fc0, fc2;  // registered as "mlp.0" and "mlp.2" (nn.Sequential indices)

 private:
  int64_t merged_dim_;
};

// (t, h, w) in patches, one per image (a row of image_grid_thw).
using GridTHW = std::array<int64_t, 3>;
// image_grid_thw (n, 3) integer tensor -> its rows.
std::vector<GridTHW> grid_rows(const Tensor& image_grid_thw);

class VisionTransformer : public nn::Module {
 public:
  explicit VisionTransformer(const VisionConfig& cfg, DType dtype = DType::F32);
  // pixel_values (N, C·T·P·P), N = Σ t·h·w over the grids -> merged embeddings (N/4, hidden_size).
  Tensor forward(const Tensor& pixel_values, const std::vector<GridTHW>& grid_thw) const;
  Tensor forward(const Tensor& pixel_values, const Tensor& image_grid_thw) const {
    return forward(pixel_values, grid_rows(image_grid_thw));
  }
  // The last block's output before the merger: (N, E) (HF's last_hidden_state).
  Tensor forward_blocks(const Tensor& pixel_values, const std::vector<GridTHW>& grid_thw) const;

  // The block-diagonal mask's segments: each frame of each image, (0, h0·w0, ..., N).
  static std::vector<int64_t> cu_seqlens(const std::vector<GridTHW>& grid_thw);
  // Rotary tables (N, head_dim) f32 in the rows' order.
  nn::RopeCosSin rope(const std::vector<GridTHW>& grid_thw) const;

  const VisionConfig& config() const { return cfg_; }
  std::shared_ptr<PatchEmbed> patch_embed;
  std::shared_ptr<nn::ModuleList> blocks;
  std::shared_ptr<PatchMerger> merger;
  // With grad on, each block keeps only its input and is recomputed in backward
  // (nn::checkpoint_layer); gradients are unchanged.
  bool gradient_checkpointing = false;

 private:
  void check_inputs(const Tensor& pixel_values, const std::vector<GridTHW>& grid_thw) const;
  nn::ResidualStream run_blocks(const Tensor& pixel_values, const std::vector<GridTHW>& grid_thw) const;
  VisionConfig cfg_;
};

// Loads the tensors `<prefix>.*` of a checkpoint (a .safetensors file, a directory, or a sharded
// index) into `tower`, ignoring the checkpoint's other tensors. A missing or mis-shaped tower
// tensor throws vt::Error naming the checkpoint and each tensor.
nn::LoadResult load_vision_tower(const std::shared_ptr<VisionTransformer>& tower, const std::string& path,
                                 const std::string& prefix = "visual");

}  // namespace vt::qwen2_vl
