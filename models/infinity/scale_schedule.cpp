// scale_schedule.cpp: the template tables of INF:utils/dynamic_resolution.py (infinity_bsq.md §5)
// and the schedules built from them.
#include "infinity/scale_schedule.h"

#include <cmath>
#include <map>
#include <sstream>

#include "vt/error.h"

namespace vt::infinity {
namespace {

using Grid = std::vector<ScaleHW>;

// Templates with h >= w (key >= 1), 13 grids each, as the spec's tables give them. For the rows
// 1.5 .. 3.0 the first two entries (1,1), (2,2) are inferred in the spec, as in the 1.25 row.
const std::map<double, Grid>& tall_templates() {
  static const std::map<double, Grid> t = {
      {1.0, {{1, 1}, {2, 2}, {4, 4}, {6, 6}, {8, 8}, {12, 12}, {16, 16}, {20, 20}, {24, 24}, {32, 32},
             {40, 40}, {48, 48}, {64, 64}}},
      {1.25, {{1, 1}, {2, 2}, {3, 3}, {5, 4}, {10, 8}, {15, 12}, {20, 16}, {25, 20}, {30, 24}, {35, 28},
              {45, 36}, {55, 44}, {70, 56}}},
      {1.333, {{1, 1}, {2, 2}, {4, 3}, {8, 6}, {12, 9}, {16, 12}, {20, 15}, {24, 18}, {28, 21}, {36, 27},
               {48, 36}, {60, 45}, {72, 54}}},
      {1.5, {{1, 1}, {2, 2}, {3, 2}, {6, 4}, {9, 6}, {15, 10}, {21, 14}, {27, 18}, {33, 22}, {39, 26},
             {48, 32}, {63, 42}, {78, 52}}},
      {1.75, {{1, 1}, {2, 2}, {3, 3}, {7, 4}, {11, 6}, {14, 8}, {21, 12}, {28, 16}, {35, 20}, {42, 24},
              {56, 32}, {70, 40}, {84, 48}}},
      {2.0, {{1, 1}, {2, 2}, {4, 2}, {6, 3}, {10, 5}, {16, 8}, {22, 11}, {30, 15}, {38, 19}, {46, 23},
             {60, 30}, {74, 37}, {90, 45}}},
      {2.5, {{1, 1}, {2, 2}, {5, 2}, {10, 4}, {15, 6}, {20, 8}, {25, 10}, {30, 12}, {40, 16}, {50, 20},
             {65, 26}, {80, 32}, {100, 40}}},
      {3.0, {{1, 1}, {2, 2}, {6, 2}, {9, 3}, {15, 5}, {21, 7}, {27, 9}, {36, 12}, {45, 15}, {54, 18},
             {72, 24}, {90, 30}, {111, 37}}},
  };
  return t;
}

// Upstream names a wide template by int(1/r * 1000) / 1000 of its tall twin and transposes it.
double reciprocal_key(double r) { return std::floor(1.0 / r * 1000.0) / 1000.0; }

const std::map<double, Grid>& all_templates() {
  static const std::map<double, Grid> all = [] {
    std::map<double, Grid> m = tall_templates();
    for (const auto& [key, grid] : tall_templates()) {
      if (key == 1.0) continue;
      Grid wide;
      for (const ScaleHW& s : grid) wide.push_back({s.w, s.h});
      m[reciprocal_key(key)] = wide;
    }
    return m;
  }();
  return all;
}

const char* const kPns[] = {"0.06M", "0.25M", "0.60M", "1M"};

}  // namespace

const std::vector<double>& template_keys() {
  static const std::vector<double> keys = [] {
    std::vector<double> k;
    for (const auto& [key, grid] : all_templates()) k.push_back(key);
    return k;
  }();
  return keys;
}

const std::vector<ScaleHW>& template_scales(double key) {
  auto it = all_templates().find(key);
  if (it == all_templates().end()) {
    std::ostringstream keys;
    for (double k : template_keys()) keys << " " << k;
    VT_FAIL("scale schedule: no aspect template with key ", key, "; keys are", keys.str());
  }
  return it->second;
}

int64_t num_scales_for_pn(std::string_view pn) {
  if (pn == "0.06M") return 7;
  if (pn == "0.25M") return 10;
  if (pn == "0.60M") return 12;
  if (pn == "1M") return 13;
  VT_FAIL("scale schedule: unknown pixel budget '", pn, "' (expected 0.06M, 0.25M, 0.60M or 1M)");
}

double nearest_template_key(double h_div_w) {
  VT_CHECK(h_div_w > 0 && std::isfinite(h_div_w), "scale schedule: aspect ratio h/w must be positive, got ",
           h_div_w);
  double best = template_keys().front();
  for (double k : template_keys())
    if (std::abs(h_div_w - k) < std::abs(h_div_w - best)) best = k;
  return best;
}

ScaleSchedule custom_schedule(const std::vector<ScaleHW>& scales) {
  VT_CHECK(!scales.empty(), "scale schedule: empty list of scales");
  ScaleSchedule s;
  s.scales = scales;
  for (const ScaleHW& g : scales) {
    VT_CHECK(g.h > 0 && g.w > 0, "scale schedule: scale ", g.h, "x", g.w, " is empty");
    s.offsets.push_back(s.total_tokens);
    s.tokens.push_back(g.h * g.w);
    s.total_tokens += g.h * g.w;
  }
  s.template_key = static_cast<double>(scales.back().h) / static_cast<double>(scales.back().w);
  s.rope_grid_h = scales.back().h;
  s.rope_grid_w = scales.back().w;
  return s;
}

ScaleSchedule scale_schedule(double h_div_w, std::string_view pn) {
  const double key = nearest_template_key(h_div_w);
  const Grid& grid = template_scales(key);
  const int64_t n = num_scales_for_pn(pn);
  ScaleSchedule s = custom_schedule(Grid(grid.begin(), grid.begin() + n));
  s.template_key = key;
  s.pn = std::string(pn);
  s.rope_grid_h = grid.back().h;  // the 1M schedule's last grid, for every pn
  s.rope_grid_w = grid.back().w;
  return s;
}

ScaleSchedule schedule_for_image(int64_t image_h, int64_t image_w) {
  VT_CHECK(image_h > 0 && image_w > 0, "scale schedule: image size ", image_h, "x", image_w, " is empty");
  const double key = nearest_template_key(static_cast<double>(image_h) / static_cast<double>(image_w));
  std::ostringstream allowed;
  for (const char* pn : kPns) {
    ScaleSchedule s = scale_schedule(key, pn);
    if (s.image_h() == image_h && s.image_w() == image_w) return s;
    allowed << " " << s.image_h() << "x" << s.image_w() << " (" << pn << ")";
  }
  VT_FAIL("scale schedule: image of ", image_h, "x", image_w, " pixels (h x w) matches no schedule; its aspect ",
          "template ", key, " takes", allowed.str());
}

std::vector<int64_t> vae_fallback_sides(int64_t latent_side) {
  switch (latent_side) {
    case 16: return {1, 2, 3, 4, 5, 6, 8, 10, 13, 16};
    case 32: return {1, 2, 3, 4, 6, 9, 13, 18, 24, 32};
    case 64: return {1, 2, 3, 4, 5, 7, 9, 12, 16, 21, 27, 36, 48, 64};
    default: VT_FAIL("scale schedule: no VAE fallback schedule for a ", latent_side, "x", latent_side,
                     " latent (16, 32 or 64)");
  }
}

}  // namespace vt::infinity
