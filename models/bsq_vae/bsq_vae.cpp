// bsq_vae.cpp: the BSQ-VAE encoder, decoder and checkpoint loading; see bsq_vae.h.
#include "bsq_vae/bsq_vae.h"

#include <cmath>

#include "vt/io/tensor_io.h"
#include "vt/nn/conv.h"
#include "vt/nn/functional.h"
#include "vt/nn/interpolate.h"
#include "vt/nn/norm.h"
#include "vt/ops.h"

namespace vt::bsq {

void BsqVaeConfig::validate() const {
  VT_CHECK(!channel_mult.empty(), "BsqVaeConfig: channel_mult is empty");
  VT_CHECK(codebook_dim > 0, "BsqVaeConfig: codebook_dim must be positive, got ", codebook_dim);
  int64_t log2_p = 0;
  while ((int64_t{1} << log2_p) < patch_size) ++log2_p;
  VT_CHECK((int64_t{1} << log2_p) == patch_size && log2_p == num_levels() - 1, "BsqVaeConfig: patch_size ",
           patch_size, " must be 2^(levels - 1) = ", int64_t{1} << (num_levels() - 1), " for ", num_levels(),
           " levels (both upstream tokenizers satisfy this)");
  for (int64_t m : channel_mult)
    VT_CHECK(base_channels * m % norm_groups == 0, "BsqVaeConfig: ", base_channels * m,
             " channels are not divisible into ", norm_groups, " norm groups");
}

// ---- primitives ---------------------------------------------------------------------------------

Conv::Conv(int64_t in, int64_t out, int64_t k) : kernel(k) {
  // Default-initialised like torch's Conv2d (uniform +-1/sqrt(fan_in)); checkpoints overwrite it.
  const double bound = 1.0 / std::sqrt(static_cast<double>(in * k * k));
  weight = register_parameter("weight", uniform({out, in, k, k}, -bound, bound));  // (O, I, k, k)
  bias = register_parameter("bias", uniform({out}, -bound, bound));                // (O)
}

Tensor Conv::forward(const Tensor& x, int64_t stride, const nn::Padding2d* pad) const {
  nn::Conv2dOptions opt{stride, stride, pad ? *pad : nn::Padding2d::same(kernel / 2)};
  return nn::conv2d(x, weight, bias, opt);
}

GroupNorm::GroupNorm(int64_t channels, int64_t g, double e) : groups(g), eps(e) {
  weight = register_parameter("weight", ones({channels}));  // (C)
  bias = register_parameter("bias", zeros({channels}));     // (C)
}

Tensor GroupNorm::forward(const Tensor& x) const { return nn::group_norm(x, groups, weight, bias, eps); }

ResBlock::ResBlock(int64_t in, int64_t out, const BsqVaeConfig& cfg) {
  norm1 = register_module("norm1", std::make_shared<GroupNorm>(in, cfg.norm_groups, cfg.norm_eps));
  conv1 = register_module("conv1", std::make_shared<Conv>(in, out, 3));
  norm2 = register_module("norm2", std::make_shared<GroupNorm>(out, cfg.norm_groups, cfg.norm_eps));
  conv2 = register_module("conv2", std::make_shared<Conv>(out, out, 3));
  if (in != out) nin_shortcut = register_module("nin_shortcut", std::make_shared<Conv>(in, out, 1));
}

Tensor ResBlock::forward(const Tensor& x) const {
  Tensor h = conv1->forward(nn::silu(norm1->forward(x)));
  h = conv2->forward(nn::silu(norm2->forward(h)));
  return (nin_shortcut ? nin_shortcut->forward(x) : x) + h;
}

// ---- encoder ------------------------------------------------------------------------------------

Encoder::Encoder(const BsqVaeConfig& cfg) {
  cfg.validate();
  const int64_t ch = cfg.base_channels, levels = cfg.num_levels();
  conv_in_ = register_module("conv_in", std::make_shared<Conv>(cfg.in_channels, ch, 3));
  int64_t block_in = ch;
  for (int64_t i = 0; i < levels; ++i) {
    Level level;
    const int64_t block_out = ch * cfg.channel_mult[i];
    for (int64_t j = 0; j < cfg.num_res_blocks; ++j) {
      const std::string name = "down." + std::to_string(i) + ".block." + std::to_string(j);
      level.blocks.push_back(register_module(name, std::make_shared<ResBlock>(block_in, block_out, cfg)));
      block_in = block_out;
    }
    if (i < levels - 1)  // only levels < log2(patch_size) downsample
      level.downsample = register_module("down." + std::to_string(i) + ".downsample.conv",
                                         std::make_shared<Conv>(block_in, block_in, 3));
    levels_.push_back(std::move(level));
  }
  mid1_ = register_module("mid.block_1", std::make_shared<ResBlock>(block_in, block_in, cfg));
  mid2_ = register_module("mid.block_2", std::make_shared<ResBlock>(block_in, block_in, cfg));
  norm_out_ = register_module("norm_out", std::make_shared<GroupNorm>(block_in, cfg.norm_groups, cfg.norm_eps));
  conv_out_ = register_module("conv_out", std::make_shared<Conv>(block_in, cfg.codebook_dim, 3));
}

Tensor Encoder::forward(const Tensor& image) const {
  VT_CHECK(image.dim() == 4 && image.size(1) == conv_in_->weight.size(1), "BSQ-VAE encoder: expected an image (B, ",
           conv_in_->weight.size(1), ", H, W), got ", image.shape().str());
  static const nn::Padding2d kDownPad{0, 1, 0, 1};  // F.pad(x, (0, 1, 0, 1)): right and bottom only
  Tensor h = conv_in_->forward(image);
  for (const Level& level : levels_) {
    for (const auto& block : level.blocks) h = block->forward(h);
    if (level.downsample) h = level.downsample->forward(h, 2, &kDownPad);
  }
  h = mid2_->forward(mid1_->forward(h));
  return conv_out_->forward(nn::silu(norm_out_->forward(h)));
}

// ---- decoder ------------------------------------------------------------------------------------

Decoder::Decoder(const BsqVaeConfig& cfg) {
  cfg.validate();
  const int64_t ch = cfg.base_channels, levels = cfg.num_levels();
  int64_t block_in = ch * cfg.channel_mult.back();
  conv_in_ = register_module("conv_in", std::make_shared<Conv>(cfg.codebook_dim, block_in, 3));
  mid1_ = register_module("mid.block_1", std::make_shared<ResBlock>(block_in, block_in, cfg));
  mid2_ = register_module("mid.block_2", std::make_shared<ResBlock>(block_in, block_in, cfg));
  levels_.resize(levels);
  for (int64_t i = levels - 1; i >= 0; --i) {
    Level& level = levels_[i];
    const int64_t block_out = ch * cfg.channel_mult[i];
    for (int64_t j = 0; j < cfg.num_res_blocks + 1; ++j) {
      const std::string name = "up." + std::to_string(i) + ".block." + std::to_string(j);
      level.blocks.push_back(register_module(name, std::make_shared<ResBlock>(block_in, block_out, cfg)));
      block_in = block_out;
    }
    if (i != 0)
      level.upsample = register_module("up." + std::to_string(i) + ".upsample.conv",
                                       std::make_shared<Conv>(block_in, block_in, 3));
  }
  norm_out_ = register_module("norm_out", std::make_shared<GroupNorm>(block_in, cfg.norm_groups, cfg.norm_eps));
  conv_out_ = register_module("conv_out", std::make_shared<Conv>(block_in, cfg.in_channels, 3));
}

Tensor Decoder::forward(const Tensor& latent) const {
  VT_CHECK(latent.dim() == 4 && latent.size(1) == conv_in_->weight.size(1), "BSQ-VAE decoder: expected a latent (B, ",
           conv_in_->weight.size(1), ", h, w), got ", latent.shape().str());
  Tensor h = mid2_->forward(mid1_->forward(conv_in_->forward(latent)));
  for (auto level = levels_.rbegin(); level != levels_.rend(); ++level) {
    for (const auto& block : level->blocks) h = block->forward(h);
    if (level->upsample) h = level->upsample->forward(nn::interpolate(h, {2 * h.size(2), 2 * h.size(3)}, "nearest"));
  }
  return conv_out_->forward(nn::silu(norm_out_->forward(h)));
}

// ---- the autoencoder with its quantiser ---------------------------------------------------------

BsqVae::BsqVae(BsqVaeConfig cfg) : cfg_(std::move(cfg)) {
  cfg_.validate();
  encoder = register_module("encoder", std::make_shared<Encoder>(cfg_));
  decoder = register_module("decoder", std::make_shared<Decoder>(cfg_));
}

Tensor BsqVae::encode_latent(const Tensor& image) const {
  VT_CHECK(image.dim() == 4 && image.size(2) % cfg_.patch_size == 0 && image.size(3) % cfg_.patch_size == 0,
           "BsqVae: image ", image.shape().str(), " must be (B, 3, H, W) with H and W multiples of ", cfg_.patch_size);
  return encoder->forward(image.to(DType::F32));  // the reference encoder runs in f32
}

Tensor BsqVae::decode_latent(const Tensor& latent) const {
  return clamp(decoder->forward(latent), -1.0, 1.0);
}

std::vector<Tensor> BsqVae::encode_bits(const Tensor& image, const std::vector<infinity::ScaleHW>& scales) const {
  return multiscale_quantize(encode_latent(image), scales).bits;
}

std::vector<Tensor> BsqVae::encode_bits(const Tensor& image) const {
  VT_CHECK(image.dim() == 4, "BsqVae: expected an image (B, 3, H, W), got ", image.shape().str());
  VT_CHECK(cfg_.patch_size == infinity::kLatentStride, "BsqVae: the standard schedules assume patch size ",
           infinity::kLatentStride, ", this model has ", cfg_.patch_size, "; pass the scales explicitly");
  return encode_bits(image, infinity::schedule_for_image(image.size(2), image.size(3)).scales);
}

Tensor BsqVae::decode_bits(const std::vector<Tensor>& bits) const {
  for (size_t k = 0; k < bits.size(); ++k)
    VT_CHECK(bits[k].dim() == 4 && bits[k].size(3) == cfg_.codebook_dim, "BsqVae: bits of scale ", k, " are ",
             bits[k].shape().str(), "; this model expects (B, h, w, ", cfg_.codebook_dim, ")");
  return decode_latent(multiscale_bits_to_latent(bits));
}

std::map<std::string, Tensor> unwrap_bsq_vae_names(const std::map<std::string, Tensor>& state,
                                                   const nn::Module& module) {
  const std::map<std::string, Tensor> own = module.state_dict();
  std::map<std::string, Tensor> out;
  for (const auto& [name, t] : state) {
    std::string target = name;
    if (!own.count(name)) {
      // `<path>.conv.<leaf>` / `<path>.norm.<leaf>` -> `<path>.<leaf>` when that is a module tensor.
      const size_t leaf = name.rfind('.');
      const size_t wrap = leaf == std::string::npos || leaf == 0 ? std::string::npos : name.rfind('.', leaf - 1);
      if (wrap != std::string::npos) {
        const std::string level = name.substr(wrap + 1, leaf - wrap - 1);
        const std::string plain = name.substr(0, wrap) + name.substr(leaf);
        if ((level == "conv" || level == "norm") && own.count(plain)) target = plain;
      }
    }
    VT_CHECK(!out.count(target), "BsqVae checkpoint: tensor '", target, "' appears twice (plain and wrapped names)");
    out.emplace(target, t);
  }
  return out;
}

BsqVaeConfig infer_bsq_vae_config(const std::map<std::string, Tensor>& state, const std::string& source,
                                  int64_t norm_groups) {
  // A conv weight under its plain or wrapped name; null when neither is present.
  auto conv_weight = [&](const std::string& name) -> const Tensor* {
    for (const std::string& key : {name + ".weight", name + ".conv.weight"}) {
      auto it = state.find(key);
      if (it != state.end()) return &it->second;
    }
    return nullptr;
  };
  auto need = [&](const std::string& name) -> const Tensor& {
    const Tensor* w = conv_weight(name);
    VT_CHECK(w, source, ": not a BSQ-VAE checkpoint: '", name, ".weight' (or '", name, ".conv.weight') is missing");
    VT_CHECK(w->dim() == 4, source, ": '", name, "' is ", w->shape().str(), ", expected a conv weight (O, I, k, k)");
    return *w;
  };
  BsqVaeConfig cfg;
  const Tensor& conv_in = need("encoder.conv_in");
  cfg.in_channels = conv_in.size(1);
  cfg.base_channels = conv_in.size(0);
  cfg.codebook_dim = need("encoder.conv_out").size(0);
  cfg.channel_mult.clear();
  for (int64_t i = 0;; ++i) {
    const Tensor* w = conv_weight("encoder.down." + std::to_string(i) + ".block.0.conv1");
    if (!w) break;
    VT_CHECK(w->size(0) % cfg.base_channels == 0, source, ": encoder.down.", i, " has ", w->size(0),
             " channels, not a multiple of the base ", cfg.base_channels);
    cfg.channel_mult.push_back(w->size(0) / cfg.base_channels);
  }
  need("encoder.down.0.block.0.conv1");
  cfg.num_res_blocks = 0;
  while (conv_weight("encoder.down.0.block." + std::to_string(cfg.num_res_blocks) + ".conv1")) ++cfg.num_res_blocks;
  cfg.patch_size = int64_t{1} << (cfg.num_levels() - 1);
  cfg.norm_groups = norm_groups;
  cfg.validate();
  return cfg;
}

nn::LoadResult BsqVae::load_checkpoint(const std::map<std::string, Tensor>& state, bool strict,
                                       const std::string& source) {
  return load_state_dict(unwrap_bsq_vae_names(state, *this), strict, source);
}

nn::LoadResult BsqVae::load_checkpoint(const std::string& path, bool strict) {
  return load_checkpoint(io::load_safetensors(path), strict, path);
}

}  // namespace vt::bsq
