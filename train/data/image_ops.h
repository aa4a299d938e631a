// train/data/image_ops.h: the pixel operations of the training data path, each equal to the Pillow /
// torchvision call upstream makes (VT:src/llamafactory/data/mm_plugin.py, vargpt.md §10 step 1, Q17).
//
//   ViT image:         decode --cap_pixels_nearest (Q17, optional)--> regularize_min_side
//                      --> qwen2_vl::preprocess (smart_resize, Pillow BICUBIC, CLIP normalisation)
//   generation target: decode --cap_pixels_nearest (Q17, optional)--> regularize_min_side
//                      --Resize(shorter side = round(1.125 res), LANCZOS)--> RandomCrop(res) (CenterCrop
//                      for eval) --ToTensor--> x·2-1 --> (3, res, res) f32 in [-1, 1]
//
// resize_pillow reproduces Pillow's ImagingResample (<= 12.x: horizontal pass first, 22-bit fixed-point
// weights, uint8 between the passes) for BICUBIC and LANCZOS, and ImagingScaleAffine for NEAREST,
// bit for bit on 8-bit RGB (checked against Pillow 12.3 in tests/test_train_data.cpp).
#pragma once
#include <cstdint>

#include "qwen2_vl/image_processor.h"
#include "vt/tensor.h"

namespace vt::train {

using qwen2_vl::RgbImage;

enum class ResampleFilter { Nearest, Bicubic, Lanczos };

// Pillow's image.resize((width, height), filter) on 8-bit RGB. The same size returns a copy.
RgbImage resize_pillow(const RgbImage& image, int64_t height, int64_t width, ResampleFilter filter);

// LLaMA-Factory's _preprocess_image cap (Q17): when width·height > max_pixels, NEAREST-resize to
// (int(width·f), int(height·f)) with f = sqrt(max_pixels / (width·height)); otherwise unchanged.
RgbImage cap_pixels_nearest(const RgbImage& image, int64_t max_pixels = 512 * 512);

// VargptQwen2vlPlugin._preprocess_image after the cap: a side below 28 grows to 28 and an aspect ratio
// above 200 shrinks the long side to 180x the short one, both by NEAREST (smart_resize refuses both).
RgbImage regularize_min_side(const RgbImage& image);

// Rows [top, top + height), columns [left, left + width); the box must lie inside the image.
RgbImage crop(const RgbImage& image, int64_t top, int64_t left, int64_t height, int64_t width);

// torchvision ToTensor then x·2-1, in f32 as upstream: (3, H, W) in [-1, 1].
Tensor to_tensor_pm1(const RgbImage& image);

struct GenTargetOptions {
  int64_t size = 256;            // res: the Infinity schedule's image side (256 or 512 for 1:1)
  double mid_ratio = 1.125;      // shorter side before the crop = round(mid_ratio · res)
  bool random_crop = true;       // false: CenterCrop (upstream's validation transform)
  bool identity_at_size = true;  // an image already res x res is taken as is (no upscale and crop)
};

// Where the target transform resizes to and crops: the resized (h, w) and the crop's top-left.
struct CropPlan {
  int64_t resized_h = 0, resized_w = 0, top = 0, left = 0;
  bool identity = false;
};
// torchvision Resize(int) on (h, w): shorter side -> mid, longer -> int(mid · long / short); then the
// crop offsets: uniform in [0, resized - res] from `seed` (RandomCrop) or round((resized - res) / 2)
// half-to-even (CenterCrop).
CropPlan plan_gen_crop(int64_t height, int64_t width, const GenTargetOptions& opt, uint64_t seed);

// The generation-target transform on an image already capped and regularised: (3, res, res) f32.
Tensor gen_target_transform(const RgbImage& image, const GenTargetOptions& opt, uint64_t seed);

// SplitMix64 finaliser, the loader's one source of randomness (shuffles, mixing, crops): fully
// specified, so a seed means the same batches with every standard library.
inline uint64_t mix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
// A key from several words; distinct tuples give unrelated streams.
inline uint64_t hash_key(uint64_t a, uint64_t b = 0, uint64_t c = 0, uint64_t d = 0) {
  return mix64(mix64(mix64(mix64(a) ^ b) ^ c) ^ d);
}
// Uniform integer in [0, n) from a 64-bit draw (Lemire's multiply-shift).
inline uint64_t draw_below(uint64_t bits, uint64_t n) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(bits) * n) >> 64);
}

}  // namespace vt::train
