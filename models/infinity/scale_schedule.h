// scale_schedule.h: Infinity's dynamic-resolution scale schedules (infinity_bsq.md §5).
//
// An image is tokenised on a pyramid of latent grids (t, h, w), coarse to fine, with t = 1 for
// images. Each aspect-ratio template (key = h/w of the image) holds 13 grids; a pixel budget `pn`
// ("0.06M", "0.25M", "0.60M", "1M") takes a prefix of 7, 10, 12 or 13 of them. The image is the
// last grid times the latent stride 16. Tokens of all scales are concatenated in raster order, so
// scale k starts at offset sum_{j<k} h_j w_j; the training sequence is padded to a multiple of 128.
//
// The RoPE of the transformer normalises every scale's positions to the last grid of the *1M*
// schedule of the same template (64x64 for 1:1), whatever pn is used: `rope_grid_h/w`.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace vt::infinity {

constexpr int64_t kLatentStride = 16;  // pixels per latent cell of the d32 BSQ-VAE
constexpr int64_t kSequencePadMultiple = 128;

struct ScaleHW {
  int64_t h = 1, w = 1;
  bool operator==(const ScaleHW&) const = default;
};

struct ScaleSchedule {
  double template_key = 1.0;    // h/w key of the aspect template (e.g. 1.333)
  std::string pn;               // "0.06M" | "0.25M" | "0.60M" | "1M" (empty for a custom list)
  std::vector<ScaleHW> scales;  // (h_k, w_k), coarse to fine; t = 1
  std::vector<int64_t> tokens;  // h_k * w_k
  std::vector<int64_t> offsets; // start of scale k in the concatenated sequence
  int64_t total_tokens = 0;     // L
  int64_t rope_grid_h = 0, rope_grid_w = 0;  // last grid of the template's 1M schedule

  int64_t num_scales() const { return static_cast<int64_t>(scales.size()); }
  ScaleHW latent() const { return scales.back(); }  // the full latent grid
  int64_t image_h() const { return scales.back().h * kLatentStride; }
  int64_t image_w() const { return scales.back().w * kLatentStride; }
  int64_t padded_tokens(int64_t multiple = kSequencePadMultiple) const {
    return (total_tokens + multiple - 1) / multiple * multiple;
  }
};

// The 15 template keys, ascending: 0.333 ... 3.0.
const std::vector<double>& template_keys();
// The 13 grids of a template key (exact key from template_keys(); error otherwise).
const std::vector<ScaleHW>& template_scales(double key);
// Number of scales of a pixel budget: 0.06M -> 7, 0.25M -> 10, 0.60M -> 12, 1M -> 13.
int64_t num_scales_for_pn(std::string_view pn);
// The key nearest to h/w (by |h/w - key|; the first of a tie, as numpy argmin).
double nearest_template_key(double h_div_w);

// Schedule for a template (any h/w; the nearest key is used) and a pixel budget.
ScaleSchedule scale_schedule(double h_div_w, std::string_view pn);
// A schedule from an explicit list of grids (VAE-internal or test schedules); the RoPE grid is
// the last grid.
ScaleSchedule custom_schedule(const std::vector<ScaleHW>& scales);
// The standard schedule whose image is exactly H x W pixels (template nearest to H/W, then the pn
// whose last grid times 16 equals (H, W)); an error listing the sizes that template allows when
// none does.
ScaleSchedule schedule_for_image(int64_t image_h, int64_t image_w);

// Infinity's VAE-internal 'original' square schedules (not used by the transformer): side lengths
// for a 16, 32 or 64 latent grid.
std::vector<int64_t> vae_fallback_sides(int64_t latent_side);

}  // namespace vt::infinity
