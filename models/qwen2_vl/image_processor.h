// image_processor.h: Qwen2-VL image preprocessing (qwen2_vl.md §9), equal to transformers'
// Qwen2VLImageProcessor with the PIL backend ("slow" processor):
//
//   file --vt::io::load_image--> RGB uint8 (alpha composited onto white, as transformers' convert_to_rgb)
//        --smart_resize--> (h̄, w̄), multiples of 28 with min_pixels <= h̄·w̄ <= max_pixels
//        --Pillow BICUBIC resize (uint8, Pillow's fixed-point arithmetic)-->
//        --x/255, (x - CLIP mean) / CLIP std, f32-->  frame repeated temporal_patch_size times
//        --patch flattening--> pixel_values (gh·gw, C·T·14·14), image_grid_thw (1, gh, gw)
//
// Rows of pixel_values are 2x2-merge-window-major (windows in raster order, then the 4 patches of
// a window in raster order); columns are (C, T, py, px). The merger of the vision encoder
// concatenates 4 consecutive rows, so this order is part of the model (qwen2_vl.md §9.3).
// Several images give their rows concatenated and one grid row each.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "vt/tensor.h"

namespace vt::qwen2_vl {

// OPENAI_CLIP_MEAN / OPENAI_CLIP_STD of transformers' image_utils.
inline constexpr std::array<float, 3> kClipMean = {0.48145466f, 0.4578275f, 0.40821073f};
inline constexpr std::array<float, 3> kClipStd = {0.26862954f, 0.26130258f, 0.27577711f};

struct ImageProcessorConfig {
  int64_t min_pixels = 56 * 56;          // class default; hub preprocessor_config.json: 3136
  int64_t max_pixels = 28 * 28 * 1280;   // class default; hub: 12845056; VARGPT lmms-eval: 3211264
  int64_t patch_size = 14;
  int64_t temporal_patch_size = 2;
  int64_t merge_size = 2;
  std::array<float, 3> image_mean = kClipMean;
  std::array<float, 3> image_std = kClipStd;

  int64_t factor() const { return patch_size * merge_size; }  // 28
  int64_t patch_dim() const { return 3 * temporal_patch_size * patch_size * patch_size; }  // 1176
  // A hub preprocessor_config.json: min_pixels / max_pixels (or size.shortest_edge / longest_edge),
  // patch_size, temporal_patch_size, merge_size, image_mean, image_std; absent keys keep defaults.
  static ImageProcessorConfig from_json_file(const std::string& path);
};

// An 8-bit RGB image, row-major (height, width, 3).
struct RgbImage {
  int64_t height = 0, width = 0;
  std::vector<uint8_t> pixels;

  uint8_t at(int64_t y, int64_t x, int c) const { return pixels[(y * width + x) * 3 + c]; }
  // Copies raw interleaved 8-bit memory of 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA)
  // channels; gray is replicated and alpha is composited onto white as transformers does.
  static RgbImage from_memory(const uint8_t* data, int64_t height, int64_t width, int channels = 3);
};

// PNG, JPEG, BMP, GIF (first frame), TGA, PNM through vt::io::load_image (vt/io/image.h), then RGB.
// A missing, unreadable or truncated file throws vt::Error naming the path and the reason. (JPEG decoders differ in their
// IDCT and chroma upsampling, so a JPEG may differ from PIL's decode by a few levels; PNG is exact.)
RgbImage load_image(const std::string& path);

// transformers' smart_resize (4.46, the version VARGPT embeds): both sides multiples of `factor`,
// round-half-to-even first, then scaled down (floor) into max_pixels or up (ceil) into min_pixels,
// keeping the aspect ratio. Throws when a side is < factor or the aspect ratio exceeds 200.
// Returns (height, width).
std::pair<int64_t, int64_t> smart_resize(int64_t height, int64_t width, int64_t factor = 28,
                                         int64_t min_pixels = 56 * 56, int64_t max_pixels = 28 * 28 * 1280);

// Pillow's Image.resize((width, height), Image.BICUBIC) on 8-bit RGB, bit for bit (Pillow <= 12.x,
// horizontal pass first; see image_processor.cpp).
RgbImage resize_bicubic(const RgbImage& image, int64_t height, int64_t width);

struct ProcessedImages {
  Tensor pixel_values;    // (sum of t·gh·gw, C·T·P·P) f32
  Tensor image_grid_thw;  // (num_images, 3) int64: (t, gh, gw) in patches (t = 1 for an image)
};

ProcessedImages preprocess(const std::vector<RgbImage>& images, const ImageProcessorConfig& cfg = {});
ProcessedImages preprocess_files(const std::vector<std::string>& paths, const ImageProcessorConfig& cfg = {});
// One image given as interleaved RGB bytes (height, width, 3).
ProcessedImages preprocess_rgb(const uint8_t* rgb, int64_t height, int64_t width,
                               const ImageProcessorConfig& cfg = {});

}  // namespace vt::qwen2_vl
