// detect.cpp: palette matching, connected components and geometric shape classification (detect.h).
#include "shapeworld/detect.h"

#include <algorithm>
#include <array>
#include <cmath>

namespace vt::shapes {

static constexpr float kHalfSqrt3 = 0.86602540f;

float palette_hue_deg(int color) {
  const PaletteColor& p = palette()[color];
  float a = (2.0f * p.r - p.g - p.b) * 0.5f, b = kHalfSqrt3 * (float(p.g) - float(p.b));
  float deg = std::atan2(b, a) * 57.29577951f;
  return deg < 0 ? deg + 360.0f : deg;
}

// labels: (H, W); 0 = background, 1 + palette index otherwise.
static std::vector<uint8_t> label_pixels(const Image& image, const DetectOptions& opt) {
  // Compare angles through dot products with unit palette vectors: cos(angle) >= cos(max_hue).
  std::array<float, kNumColors> ua{}, ub{};
  for (int k = 0; k < kNumColors; ++k) {
    const PaletteColor& p = palette()[k];
    float a = (2.0f * p.r - p.g - p.b) * 0.5f, b = kHalfSqrt3 * (float(p.g) - float(p.b));
    float n = std::sqrt(a * a + b * b);
    ua[k] = a / n;
    ub[k] = b / n;
  }
  const float min_c2 = opt.min_chroma * opt.min_chroma;
  const float cos_max = std::cos(opt.max_hue_deg * 0.01745329f);
  const size_t n = size_t(image.width) * image.height;
  std::vector<uint8_t> labels(n, 0);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* p = &image.rgb[i * 3];
    float a = (2.0f * p[0] - p[1] - p[2]) * 0.5f, b = kHalfSqrt3 * (float(p[1]) - float(p[2]));
    float c2 = a * a + b * b;
    if (c2 < min_c2) continue;
    float inv = 1.0f / std::sqrt(c2);
    int best = 0;
    float best_cos = -2;
    for (int k = 0; k < kNumColors; ++k) {
      float c = (a * ua[k] + b * ub[k]) * inv;
      if (c > best_cos) best_cos = c, best = k;
    }
    if (best_cos >= cos_max) labels[i] = uint8_t(1 + best);
  }
  return labels;
}

// Classifies one component: `mask` is (h, w) over its bounding box, 1 inside the component.
static void classify_shape(Detection& d, const std::vector<uint8_t>& mask, int w, int h) {
  float half = 0.5f * float(std::max(w, h));
  float cx = 0.5f * float(w), cy = 0.5f * float(h);  // box centre in local coordinates
  // Evaluate over the square box so a template may cover pixels outside the component's box.
  int side = std::max(w, h);
  int ox = (w - side) / 2, oy = (h - side) / 2;  // offset of the square's corner (<= 0)
  float best_iou = -1;
  for (int k = 0; k < kNumShapes; ++k) {
    int inter = 0, uni = 0;
    for (int y = oy; y < oy + side; ++y) {
      for (int x = ox; x < ox + side; ++x) {
        bool in_mask = x >= 0 && x < w && y >= 0 && y < h && mask[size_t(y) * w + x];
        float u = (float(x) + 0.5f - cx) / half, v = (float(y) + 0.5f - cy) / half;
        bool in_shape = shape_sdf(Shape(k), u, v) <= 0;
        inter += in_mask && in_shape;
        uni += in_mask || in_shape;
      }
    }
    float iou = uni ? float(inter) / float(uni) : 0.0f;
    if (iou > best_iou) best_iou = iou, d.shape = Shape(k);
  }
  d.shape_iou = best_iou;
}

std::vector<Detection> detect_objects(const Image& image, const DetectOptions& opt) {
  const int W = image.width, H = image.height;
  std::vector<Detection> out;
  if (W <= 0 || H <= 0) return out;
  std::vector<uint8_t> labels = label_pixels(image, opt);
  const int min_area = std::max(opt.min_area_px, int(opt.min_area_frac * float(W) * float(H)));
  const float size_threshold = 0.5f * (half_extent(SizeClass::small, std::min(W, H)) +
                                       half_extent(SizeClass::large, std::min(W, H)));
  std::vector<int> comp(size_t(W) * H, -1);  // comp: (H, W) component id, -1 = none yet
  std::vector<int> stack, members;
  int next_id = 0;
  for (int start = 0; start < W * H; ++start) {
    if (labels[start] == 0 || comp[start] >= 0) continue;
    const uint8_t lab = labels[start];
    const int id = next_id++;
    stack.assign(1, start);
    members.clear();
    comp[start] = id;
    int x0 = W, y0 = H, x1 = -1, y1 = -1;
    while (!stack.empty()) {
      int i = stack.back();
      stack.pop_back();
      members.push_back(i);
      int x = i % W, y = i / W;
      x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
      auto visit = [&](int j) {
        if (labels[j] == lab && comp[j] < 0) comp[j] = id, stack.push_back(j);
      };
      if (x > 0) visit(i - 1);
      if (x + 1 < W) visit(i + 1);
      if (y > 0) visit(i - W);
      if (y + 1 < H) visit(i + W);
    }
    if (int(members.size()) < min_area) continue;
    Detection d;
    d.color = lab - 1;
    d.area = int(members.size());
    d.x0 = x0, d.y0 = y0, d.x1 = x1 + 1, d.y1 = y1 + 1;
    d.cx = 0.5f * float(d.x0 + d.x1), d.cy = 0.5f * float(d.y0 + d.y1);
    int w = d.x1 - d.x0, h = d.y1 - d.y0;
    std::vector<uint8_t> mask(size_t(w) * h, 0);
    for (int i : members) mask[size_t(i / W - d.y0) * w + (i % W - d.x0)] = 1;
    classify_shape(d, mask, w, h);
    d.size = 0.5f * float(std::max(w, h)) > size_threshold ? SizeClass::large : SizeClass::small;
    out.push_back(d);
  }
  std::stable_sort(out.begin(), out.end(), [](const Detection& a, const Detection& b) { return a.area > b.area; });
  return out;
}

unsigned relations(const Detection& a, const Detection& b) {
  return relations(a.cx, a.cy, a.width(), a.height(), b.cx, b.cy, b.width(), b.height());
}

}  // namespace vt::shapes
