// vision.cpp: the Qwen2-VL ViT, read against transformers' modeling_qwen2_vl.py
// (PatchEmbed, VisionAttention, Qwen2VLVisionBlock, PatchMerger,
// Qwen2VisionTransformerPretrainedModel.forward).
#include "qwen2_vl/vision.h"
#include "vt/nn/block.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "vt/io/safetensors.h"
#include "vt/nn/conv.h"
#include "vt/nn/functional.h"
#include "vt/nn/norm.h"

namespace vt::qwen2_vl {

// ---- configuration -------------------------------------------------------------------------------

namespace {
VisionConfig parse_vision_config(const nlohmann::json& config, const std::string& source) {
  VT_CHECK(config.is_object(), source, ": expected a JSON object");
  const bool model_config = config.contains("model_type") || config.contains("text_config") || config.contains("vocab_size");
  VT_CHECK(config.contains("vision_config") || !model_config, source,
           ": no \"vision_config\"; a Qwen2-VL config.json names its vision tower's sizes there (depth, embed_dim, "
           "num_heads, ...), and vt does not guess them");
  const nlohmann::json& v = config.contains("vision_config") ? config["vision_config"] : config;
  VT_CHECK(v.is_object(), source, ": \"vision_config\" must be an object, got ", v.dump().substr(0, 100));
  VisionConfig c;
  c.depth = v.value("depth", c.depth);
  c.embed_dim = v.value("embed_dim", c.embed_dim);
  c.num_heads = v.value("num_heads", c.num_heads);
  c.mlp_ratio = v.value("mlp_ratio", c.mlp_ratio);
  c.in_channels = v.value("in_chans", v.value("in_channels", c.in_channels));  // hub: in_chans
  c.patch_size = v.value("patch_size", v.value("spatial_patch_size", c.patch_size));
  c.temporal_patch_size = v.value("temporal_patch_size", c.temporal_patch_size);
  c.spatial_merge_size = v.value("spatial_merge_size", c.spatial_merge_size);
  if (v.contains("hidden_size")) {
    c.hidden_size = v["hidden_size"].get<int64_t>();
  } else if (config.contains("text_config") && config["text_config"].contains("hidden_size")) {
    c.hidden_size = config["text_config"]["hidden_size"].get<int64_t>();
  } else if (&v != &config && config.contains("hidden_size")) {
    c.hidden_size = config["hidden_size"].get<int64_t>();
  }
  if (v.contains("rope_parameters") && v["rope_parameters"].contains("rope_theta"))
    c.rope_theta = v["rope_parameters"]["rope_theta"].get<double>();
  std::string act = v.value("hidden_act", std::string("quick_gelu"));
  VT_CHECK(act == "quick_gelu", source, ": vision_config.hidden_act '", act, "' (only quick_gelu is implemented)");
  c.validate(source + ": vision_config");
  return c;
}
}  // namespace

VisionConfig VisionConfig::from_json(const nlohmann::json& config, const std::string& source) {
  try {
    return parse_vision_config(config, source);
  } catch (const nlohmann::json::exception& e) {  // a value of the wrong type or range
    VT_FAIL(source, ": vision_config: ", e.what());
  }
}

VisionConfig VisionConfig::from_file(const std::string& path) {
  std::string file = std::filesystem::is_directory(path) ? path + "/config.json" : path;
  std::ifstream in(file);
  VT_CHECK(in.good(), "qwen2_vl vision config: cannot open '", file, "'");
  try {
    return from_json(nlohmann::json::parse(in), file);
  } catch (const nlohmann::json::exception& e) {
    VT_FAIL("qwen2_vl vision config: '", file, "': ", e.what());
  }
}

void VisionConfig::validate(const std::string& source) const {
  VT_CHECK(depth >= 0 && embed_dim > 0 && num_heads > 0 && embed_dim % num_heads == 0, source, ": embed_dim ",
           embed_dim, " must be a positive multiple of num_heads ", num_heads);
  VT_CHECK(head_dim() % 4 == 0, source, ": head_dim ", head_dim(),
           " must be a multiple of 4 (2-D rotary: h and w halves of each rotate_half half)");
  VT_CHECK(patch_size > 0 && temporal_patch_size > 0 && spatial_merge_size > 0 && in_channels > 0 &&
               hidden_size > 0 && mlp_hidden() > 0,
           source, ": sizes must be positive");
  // 2^16 bounds every size, so that no weight's element count can overflow (the 7B tower: 1280).
  for (int64_t v : {depth, embed_dim, num_heads, in_channels, patch_size, temporal_patch_size, spatial_merge_size,
                    hidden_size, mlp_hidden()})
    VT_CHECK(v <= 65536, source, ": a size is ", v, ", beyond 65536");
}

void VisionConfig::check_checkpoint(io::CheckpointReader& reader, const std::string& source) const {
  const auto dims_str = [](const std::vector<int64_t>& d) {
    std::string s = "(";
    for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
    return s + ")";
  };
  const auto expect = [&](const std::string& name, const std::vector<int64_t>& want, const char* fields) {
    if (!reader.contains(name)) return;  // a missing tensor is the loader's to report, with all others
    const std::vector<int64_t>& got = reader.entry(name).shape;
    VT_CHECK(got == want, source, ": vision_config's ", fields, " give ", dims_str(want), " for ", name, ", but ",
             reader.path(), " holds ", dims_str(got), " (the config.json does not belong to these weights)");
  };
  expect("visual.patch_embed.proj.weight", {embed_dim, in_channels, temporal_patch_size, patch_size, patch_size},
         "embed_dim, in_chans, temporal_patch_size and patch_size");
  expect("visual.blocks.0.attn.qkv.weight", {3 * embed_dim, embed_dim}, "embed_dim");
  expect("visual.blocks.0.mlp.fc1.weight", {mlp_hidden(), embed_dim}, "embed_dim and mlp_ratio");
  expect("visual.merger.mlp.2.weight", {hidden_size, embed_dim * merge_area()}, "hidden_size and embed_dim");
  int64_t blocks = 0;  // 1 + the largest N of visual.blocks.N.*
  const std::string prefix = "visual.blocks.";
  for (const std::string& name : reader.names())
    if (name.rfind(prefix, 0) == 0) blocks = std::max<int64_t>(blocks, std::strtoll(name.c_str() + prefix.size(), nullptr, 10) + 1);
  VT_CHECK(blocks == 0 || blocks == depth, source, ": vision_config.depth is ", depth, ", but ", reader.path(),
           " holds ", blocks, " vision blocks");
}

// ---- layers -----------------------------------------------------------------------------------------

namespace {
struct Conv3dWeight : nn::Module {
  Tensor weight;
};
}  // namespace

PatchEmbed::PatchEmbed(const VisionConfig& cfg, DType dtype) {
  auto p = std::make_shared<Conv3dWeight>();
  weight = p->weight = p->register_parameter(
      "weight", zeros({cfg.embed_dim, cfg.in_channels, cfg.temporal_patch_size, cfg.patch_size, cfg.patch_size}, dtype));
  proj = register_module("proj", std::static_pointer_cast<nn::Module>(p));
}

Tensor PatchEmbed::forward(const Tensor& pixel_values) const { return nn::conv3d_patch_embed(pixel_values, weight); }

VisionAttention::VisionAttention(const VisionConfig& cfg, DType dtype)
    : heads_(cfg.num_heads), head_dim_(cfg.head_dim()) {
  qkv = register_module("qkv", std::make_shared<Linear>(cfg.embed_dim, 3 * cfg.embed_dim, true, dtype));
  proj = register_module("proj", std::make_shared<Linear>(cfg.embed_dim, cfg.embed_dim, true, dtype));
}

Tensor VisionAttention::forward(const Tensor& x, const nn::RopeCosSin& rope, const nn::AttentionMask& mask) const {
  const int64_t S = x.size(0);
  Tensor qkv_s = qkv->forward(x).view({S, 3, heads_, head_dim_});  // (S, 3, H, D)
  Tensor cos = rope.cos.unsqueeze(1), sin = rope.sin.unsqueeze(1);  // (S, 1, D) f32
  Tensor q = nn::apply_rope_half(qkv_s.select(1, 0), cos, sin);     // (S, H, D), f32 math, x's dtype
  Tensor k = nn::apply_rope_half(qkv_s.select(1, 1), cos, sin);
  Tensor v = qkv_s.select(1, 2);
  // (H, S, D) views; each frame of each image attends only to itself (varlen mask)
  Tensor o = nn::scaled_dot_product_attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), mask);
  return proj->forward(o.transpose(0, 1).reshape({S, heads_ * head_dim_}));  // (S, E)
}

VisionMlp::VisionMlp(const VisionConfig& cfg, DType dtype) {
  fc1 = register_module("fc1", std::make_shared<Linear>(cfg.embed_dim, cfg.mlp_hidden(), true, dtype));
  fc2 = register_module("fc2", std::make_shared<Linear>(cfg.mlp_hidden(), cfg.embed_dim, true, dtype));
}

Tensor VisionMlp::forward(const Tensor& x) const { return fc2->forward(nn::quick_gelu(fc1->forward(x))); }

VisionBlock::VisionBlock(const VisionConfig& cfg, DType dtype) {
  norm1 = register_module("norm1", std::make_shared<LayerNorm>(cfg.embed_dim, cfg.norm_eps, dtype));
  norm2 = register_module("norm2", std::make_shared<LayerNorm>(cfg.embed_dim, cfg.norm_eps, dtype));
  attn = register_module("attn", std::make_shared<VisionAttention>(cfg, dtype));
  mlp = register_module("mlp", std::make_shared<VisionMlp>(cfg, dtype));
}

nn::ResidualStream VisionBlock::forward(const nn::ResidualStream& in, const nn::RopeCosSin& rope,
                                       const nn::AttentionMask& mask) const {
  // Each residual add runs in one pass with the norm after it (bitwise the two ops): h = residual
  // + the previous block's MLP output with norm1, x = h + attention with norm2.
  const nn::AddNorm h = norm1->forward(in);  // h = in.residual + in.delta: the pending add lands here
  const nn::AddNorm x = norm2->forward_add(h.sum, attn->forward(h.normed, rope, mask));
  // h += mlp(x) is left pending: the next block's norm1 (or the merger's ln_q) performs it.
  return {x.sum, mlp->forward(x.normed)};
}

PatchMerger::PatchMerger(const VisionConfig& cfg, DType dtype) : merged_dim_(cfg.embed_dim * cfg.merge_area()) {
  ln_q = register_module("ln_q", std::make_shared<LayerNorm>(cfg.embed_dim, cfg.norm_eps, dtype));
  fc0 = register_module("mlp.0", std::make_shared<Linear>(merged_dim_, merged_dim_, true, dtype));
  fc2 = register_module("mlp.2", std::make_shared<Linear>(merged_dim_, cfg.hidden_size, true, dtype));
}

Tensor PatchMerger::forward(const Tensor& h) const { return forward(nn::ResidualStream{h, Tensor()}); }

Tensor PatchMerger::forward(const nn::ResidualStream& h) const {
  Tensor x = ln_q->forward(h).normed.reshape({-1, merged_dim_});  // (N/4, 4E): one 2x2 window per row
  return fc2->forward(nn::gelu(fc0->forward(x)));           // exact (erf) GELU, nn.GELU()
}

// ---- the tower --------------------------------------------------------------------------------------

std::vector<GridTHW> grid_rows(const Tensor& image_grid_thw) {
  VT_CHECK(image_grid_thw.defined() && image_grid_thw.dim() == 2 && image_grid_thw.size(1) == 3,
           "qwen2_vl vision: image_grid_thw must be (num_images, 3), got ",
           image_grid_thw.defined() ? image_grid_thw.shape().str() : std::string("undefined"));
  std::vector<int64_t> v = image_grid_thw.tolist<int64_t>();
  std::vector<GridTHW> rows;
  for (size_t i = 0; i < v.size(); i += 3) rows.push_back({v[i], v[i + 1], v[i + 2]});
  return rows;
}

VisionTransformer::VisionTransformer(const VisionConfig& cfg, DType dtype) : cfg_(cfg) {
  cfg_.validate();
  patch_embed = register_module("patch_embed", std::make_shared<PatchEmbed>(cfg_, dtype));
  blocks = register_module("blocks", std::make_shared<nn::ModuleList>());
  for (int64_t i = 0; i < cfg_.depth; ++i) blocks->push_back(std::make_shared<VisionBlock>(cfg_, dtype));
  merger = register_module("merger", std::make_shared<PatchMerger>(cfg_, dtype));
}

std::vector<int64_t> VisionTransformer::cu_seqlens(const std::vector<GridTHW>& grid_thw) {
  std::vector<int64_t> cu = {0};
  for (const auto& [t, h, w] : grid_thw)
    for (int64_t f = 0; f < t; ++f) cu.push_back(cu.back() + h * w);  // every frame is a segment
  return cu;
}

nn::RopeCosSin VisionTransformer::rope(const std::vector<GridTHW>& grid_thw) const {
  std::vector<Tensor> pos;
  for (const auto& [t, h, w] : grid_thw) pos.push_back(nn::vision_rope_positions(t, h, w, cfg_.spatial_merge_size));
  return nn::vision_rope_cos_sin(cat(pos, 0), cfg_.head_dim(), cfg_.rope_theta);  // (N, D) each
}

void VisionTransformer::check_inputs(const Tensor& pixel_values, const std::vector<GridTHW>& grid_thw) const {
  VT_CHECK(pixel_values.defined() && pixel_values.dim() == 2 && pixel_values.size(1) == cfg_.patch_dim(),
           "qwen2_vl vision: pixel_values must be (N, ", cfg_.patch_dim(), "), got ",
           pixel_values.defined() ? pixel_values.shape().str() : std::string("undefined"));
  VT_CHECK(!grid_thw.empty(), "qwen2_vl vision: no image_grid_thw rows");
  int64_t rows = 0, m = cfg_.spatial_merge_size;
  for (const auto& [t, h, w] : grid_thw) {
    VT_CHECK(t > 0 && h > 0 && w > 0 && h % m == 0 && w % m == 0, "qwen2_vl vision: grid (", t, ", ", h, ", ", w,
             ") must be positive with h and w multiples of spatial_merge_size ", m);
    rows += t * h * w;
  }
  VT_CHECK(rows == pixel_values.size(0), "qwen2_vl vision: image_grid_thw describes ", rows,
           " patches but pixel_values has ", pixel_values.size(0), " rows");
}

nn::ResidualStream VisionTransformer::run_blocks(const Tensor& pixel_values,
                                                const std::vector<GridTHW>& grid_thw) const {
  check_inputs(pixel_values, grid_thw);
  nn::ResidualStream h{patch_embed->forward(pixel_values), Tensor()};  // (N, E)
  nn::RopeCosSin r = rope(grid_thw);  // built on the host: move to the activations' device
  r = {r.cos.to(h.residual.device()), r.sin.to(h.residual.device())};
  nn::AttentionMask mask = nn::AttentionMask::varlen(cu_seqlens(grid_thw));
  for (size_t i = 0; i < blocks->size(); ++i) {
    const VisionBlock* block = &blocks->at<VisionBlock>(i);
    h = nn::run_block(*block, {gradient_checkpointing, false},
                      [block, r, mask](const nn::ResidualStream& s, const std::vector<Tensor>&) {
                        return block->forward(s, r, mask);
                      }, h);
  }
  return h;
}

Tensor VisionTransformer::forward_blocks(const Tensor& pixel_values, const std::vector<GridTHW>& grid_thw) const {
  const nn::ResidualStream h = run_blocks(pixel_values, grid_thw);
  return h.delta.defined() ? h.residual + h.delta : h.residual;
}

Tensor VisionTransformer::forward(const Tensor& pixel_values, const std::vector<GridTHW>& grid_thw) const {
  return merger->forward(run_blocks(pixel_values, grid_thw));  // (N/4, hidden_size)
}

// ---- loading ----------------------------------------------------------------------------------------

namespace {
// Holds the tower under `prefix` so that checkpoint names map onto it unchanged.
struct PrefixRoot : nn::Module {
  PrefixRoot(const std::string& prefix, std::shared_ptr<nn::Module> child) { register_module(prefix, child); }
};
}  // namespace

nn::LoadResult load_vision_tower(const std::shared_ptr<VisionTransformer>& tower, const std::string& path,
                                 const std::string& prefix) {
  PrefixRoot root(prefix, tower);
  nn::LoadResult r = root.load(path, /*strict=*/false);  // shape mismatches still throw
  if (!r.missing.empty()) {
    std::string list;
    for (const auto& m : r.missing) list += "\n  " + m + " " + root.parameter(m).shape().str();
    VT_FAIL("load_vision_tower: '", path, "' lacks ", r.missing.size(), " tensor(s) of the vision tower:", list);
  }
  return r;
}

}  // namespace vt::qwen2_vl
