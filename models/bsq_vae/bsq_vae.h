// bsq_vae.h: Infinity's BSQ-VAE (infinity_bsq.md §1-§3): a convolutional autoencoder with no
// attention whose d-channel latent is quantised scale by scale into d bits per token.
//
//   image (B, 3, H, W) in [-1, 1] --encoder--> f (B, d, H/p, W/p) --multi-scale BSQ--> bits per
//   scale (B, h_k, w_k, d) --sum of upsampled codes--> F (B, d, H/p, W/p) --decoder--> image,
//   clamped to [-1, 1]
//
// Layers (Flux AE naming, which the checkpoints use):
//   Res(i, o):  h = conv1(swish(norm1(x))); h = conv2(swish(norm2(h))); out = shortcut(x) + h,
//               shortcut = nin_shortcut (1x1 conv) when i != o, else identity; no dropout
//   Down:       F.pad(x, (0, 1, 0, 1)) then 3x3 conv stride 2, padding 0
//   Up:         nearest x2 then 3x3 conv
//   norms:      GroupNorm(32 groups, eps 1e-6, affine); swish(x) = x sigmoid(x)
// Encoder level i has num_res_blocks Res blocks and downsamples when i < log2(p); the decoder
// has num_res_blocks + 1 per level, executed from the last level to level 0, and upsamples at
// every level except 0. There is no quant_conv / post_quant_conv and no mean/logvar (use_vae off).
//
// Checkpoints: upstream's module tree wraps each conv and norm one level deeper, so a tensor is
// either `encoder.down.0.block.0.conv1.weight` (plain) or `encoder.down.0.block.0.conv1.conv.weight`
// (wrapped). load_checkpoint() accepts both spellings, in one file or mixed.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bsq_vae/multiscale_bsq.h"
#include "infinity/scale_schedule.h"
#include "vt/nn/conv.h"
#include "vt/nn/module.h"

namespace vt::bsq {

struct BsqVaeConfig {
  int64_t in_channels = 3;
  int64_t base_channels = 128;
  std::vector<int64_t> channel_mult = {1, 2, 4, 4, 4};
  int64_t num_res_blocks = 2;   // per encoder level; decoder levels have one more
  int64_t codebook_dim = 32;    // d: latent channels = bits per token (16, 24, 32, 64, ...)
  int64_t patch_size = 16;      // total down-sampling; log2(patch_size) = levels - 1
  int64_t norm_groups = 32;
  double norm_eps = 1e-6;

  static BsqVaeConfig infinity_d32() { return {}; }  // Infinity-2B / VARGPT-v1.1 tokenizer
  int64_t num_levels() const { return static_cast<int64_t>(channel_mult.size()); }
  void validate() const;
};

// 3x3 (padding 1) or 1x1 convolution with bias. weight: (O, I, k, k), bias: (O).
class Conv : public nn::Module {
 public:
  Conv(int64_t in, int64_t out, int64_t kernel);
  Tensor forward(const Tensor& x, int64_t stride = 1, const nn::Padding2d* pad = nullptr) const;
  Tensor weight, bias;
  int64_t kernel;
};

// GroupNorm with affine weight, bias: (C).
class GroupNorm : public nn::Module {
 public:
  GroupNorm(int64_t channels, int64_t groups, double eps);
  Tensor forward(const Tensor& x) const;
  Tensor weight, bias;
  int64_t groups;
  double eps;
};

class ResBlock : public nn::Module {
 public:
  ResBlock(int64_t in, int64_t out, const BsqVaeConfig& cfg);
  Tensor forward(const Tensor& x) const;  // (B, in, H, W) -> (B, out, H, W)
  std::shared_ptr<GroupNorm> norm1, norm2;
  std::shared_ptr<Conv> conv1, conv2, nin_shortcut;  // nin_shortcut only when in != out
};

class Encoder : public nn::Module {
 public:
  explicit Encoder(const BsqVaeConfig& cfg);
  Tensor forward(const Tensor& image) const;  // (B, 3, H, W) -> (B, d, H/p, W/p)

 private:
  struct Level {
    std::vector<std::shared_ptr<ResBlock>> blocks;
    std::shared_ptr<Conv> downsample;  // null at the last levels
  };
  std::shared_ptr<Conv> conv_in_, conv_out_;
  std::vector<Level> levels_;
  std::shared_ptr<ResBlock> mid1_, mid2_;
  std::shared_ptr<GroupNorm> norm_out_;
};

class Decoder : public nn::Module {
 public:
  explicit Decoder(const BsqVaeConfig& cfg);
  Tensor forward(const Tensor& latent) const;  // (B, d, h, w) -> (B, 3, p h, p w), not clamped

 private:
  struct Level {
    std::vector<std::shared_ptr<ResBlock>> blocks;
    std::shared_ptr<Conv> upsample;  // null at level 0
  };
  std::shared_ptr<Conv> conv_in_, conv_out_;
  std::vector<Level> levels_;  // indexed by level; run from the last to 0
  std::shared_ptr<ResBlock> mid1_, mid2_;
  std::shared_ptr<GroupNorm> norm_out_;
};

class BsqVae : public nn::Module {
 public:
  explicit BsqVae(BsqVaeConfig cfg = {});
  const BsqVaeConfig& config() const { return cfg_; }

  // Continuous latent f: image (B, 3, H, W) in [-1, 1] -> (B, d, H/p, W/p), f32.
  Tensor encode_latent(const Tensor& image) const;
  // Image from a (quantised) latent: (B, d, h, w) -> (B, 3, p h, p w), clamped to [-1, 1].
  Tensor decode_latent(const Tensor& latent) const;

  // Per-scale bits (B, h_k, w_k, d) of an image on a schedule whose last scale is the latent grid.
  std::vector<Tensor> encode_bits(const Tensor& image, const std::vector<infinity::ScaleHW>& scales) const;
  // The same on Infinity's standard schedule for the image size (error when no template fits).
  std::vector<Tensor> encode_bits(const Tensor& image) const;
  // Image from per-scale bits; checks each has d bits.
  Tensor decode_bits(const std::vector<Tensor>& bits) const;

  // Loads a state dict holding either the plain or the wrapped (`.conv.` / `.norm.`) tensor names.
  // Errors name each missing, unexpected or mis-shaped tensor (see nn::Module::load_state_dict).
  nn::LoadResult load_checkpoint(const std::map<std::string, Tensor>& state, bool strict = true,
                                 const std::string& source = "state_dict");
  nn::LoadResult load_checkpoint(const std::string& safetensors_path, bool strict = true);

  std::shared_ptr<Encoder> encoder;
  std::shared_ptr<Decoder> decoder;

 private:
  BsqVaeConfig cfg_;
};

// The architecture of a checkpoint read from its tensor shapes (either name form): in_channels and
// base_channels from encoder.conv_in, codebook_dim from encoder.conv_out, channel_mult from the
// first block of each encoder.down.<i>, num_res_blocks from encoder.down.0, patch = 2^(levels-1).
// Errors name `source` and the tensor it could not find.
// norm_groups is not in any shape: the caller's (upstream's 32 by default).
BsqVaeConfig infer_bsq_vae_config(const std::map<std::string, Tensor>& state, const std::string& source,
                                  int64_t norm_groups = 32);

// Maps upstream's wrapped names (`...conv1.conv.weight`, `...norm1.norm.bias`) onto the plain
// names of `module` (`...conv1.weight`); names already plain, or unknown, pass through unchanged.
std::map<std::string, Tensor> unwrap_bsq_vae_names(const std::map<std::string, Tensor>& state,
                                                   const nn::Module& module);

}  // namespace vt::bsq
