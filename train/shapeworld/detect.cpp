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

// Unit chroma vectors of the palette colours.
static void palette_units(std::array<float, kNumColors>& ua, std::array<float, kNumColors>& ub) {
  for (int k = 0; k < kNumColors; ++k) {
    const PaletteColor& p = palette()[k];
    float a = (2.0f * p.r - p.g - p.b) * 0.5f, b = kHalfSqrt3 * (float(p.g) - float(p.b));
    float n = std::sqrt(a * a + b * b);
    ua[k] = a / n;
    ub[k] = b / n;
  }
}

// labels: (H, W); 0 = background, 1 + palette index otherwise. Angles are compared through dot
// products with the unit palette vectors: cos(angle) >= cos(max_hue).
static std::vector<uint8_t> label_pixels(const Image& image, const DetectOptions& opt,
                                         const std::array<float, kNumColors>& ua,
                                         const std::array<float, kNumColors>& ub) {
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

// Fraction of the box (2r x 2r) each canonical shape covers, and its centroid's offset below the
// box centre in units of r (only the triangle's differs: the mean of its vertices' v is 1/3).
static const float kFill[kNumShapes] = {0.78539816f, 1.0f, 0.5f, 0.5f, 5.0f / 9.0f};
static const float kCentroidV[kNumShapes] = {0, 0, 1.0f / 3.0f, 0, 0};

// In-place [1 2 1] / 4 blur of a (h, w) map, clamped borders.
static void blur121(std::vector<float>& m, std::vector<float>& tmp, int w, int h) {
  tmp.resize(m.size());
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      tmp[size_t(y) * w + x] = 0.25f * m[size_t(y) * w + std::max(x - 1, 0)] + 0.5f * m[size_t(y) * w + x] +
                               0.25f * m[size_t(y) * w + std::min(x + 1, w - 1)];
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      m[size_t(y) * w + x] = 0.25f * tmp[size_t(std::max(y - 1, 0)) * w + x] + 0.5f * tmp[size_t(y) * w + x] +
                             0.25f * tmp[size_t(std::min(y + 1, h - 1)) * w + x];
}

// Luma's weight against chroma in the coverage projection (see classify).
static constexpr float kLumaWeight = 16;

// (Y, Cb, Cr) of an RGB difference, JPEG's (BT.601) matrix without the offsets.
static void ycbcr(const float* rgb, float* out) {
  out[0] = 0.299f * rgb[0] + 0.587f * rgb[1] + 0.114f * rgb[2];
  out[1] = -0.168736f * rgb[0] - 0.331264f * rgb[1] + 0.5f * rgb[2];
  out[2] = 0.5f * rgb[0] - 0.418688f * rgb[1] - 0.081312f * rgb[2];
}

// Classifies component `id` (bounding box [bx0, bx1) x [by0, by1)) by analysis by synthesis:
//  - coverage alpha over the box grown by 3 px, zero on pixels of other components: each pixel's
//    difference from the background colour (the free ring's per-channel median) projected on the
//    object's (the mean of the members at or above the robust peak chroma), in (Y, Cb, Cr) with
//    luma weighted kLumaWeight times. Luma carries the shape: JPEG (4:2:0) and most codecs keep it
//    at full resolution and quantise it finer, while chroma is halved and bleeds 2-3 px into a
//    cross's or a diamond's corners. Where the object's brightness equals the background's, the
//    projection falls back to chroma by itself. The anti-aliased and blurred fringe that fell below
//    the labelling threshold is counted too (issue #19: JPEG quality 30 ground truth at 128 px went
//    from 93.2% to 99.5% correct);
//  - for each kind, the template of equal area and centroid (blur and anti-aliasing preserve
//    both) is drawn with the renderer's coverage rule, unblurred and blurred by 1 and 2 passes;
//  - the kind whose best template has the highest soft IoU sum(min) / sum(max) wins.
static void classify(Detection& d, const Image& image, const std::vector<int>& comp, int id, float ua, float ub,
                     const std::vector<float>& member_proj) {
  const int W = image.width, H = image.height;
  const int x0 = std::max(0, d.x0 - 3), y0 = std::max(0, d.y0 - 3);
  const int x1 = std::min(W, d.x1 + 3), y1 = std::min(H, d.y1 + 3);
  const int w = x1 - x0, h = y1 - y0;
  // Robust peak: the 80th percentile of the members' projected chroma.
  std::vector<float> proj = member_proj;
  size_t q = proj.size() * 4 / 5;
  std::nth_element(proj.begin(), proj.begin() + q, proj.end());
  const float peak = std::max(proj[q], 1.0f);
  auto projected = [&](int x, int y) {
    const uint8_t* p = image.px(x, y);
    float a = (2.0f * p[0] - p[1] - p[2]) * 0.5f, b = kHalfSqrt3 * (float(p[1]) - float(p[2]));
    return a * ua + b * ub;
  };
  // Background colour: the per-channel median of the free pixels on the grown box's outer ring (a
  // colour cast or a gradient under the object is subtracted with it).
  float bg[3] = {0, 0, 0};
  std::vector<float> ring;
  for (int c = 0; c < 3; ++c) {
    ring.clear();
    for (int y = y0; y < y1; ++y)
      for (int x = x0; x < x1; ++x)
        if ((y == y0 || y == y1 - 1 || x == x0 || x == x1 - 1) && comp[size_t(y) * W + x] < 0)
          ring.push_back(image.px(x, y)[c]);
    if (ring.empty()) break;  // boxed in by other components: the chroma projection alone, below
    std::nth_element(ring.begin(), ring.begin() + ring.size() / 2, ring.end());
    bg[c] = ring[ring.size() / 2];
  }
  // Object colour: the mean of the members at or above the robust peak.
  float obj[3] = {0, 0, 0};
  int n_obj = 0;
  for (int y = d.y0; y < d.y1; ++y)
    for (int x = d.x0; x < d.x1; ++x)
      if (comp[size_t(y) * W + x] == id && projected(x, y) >= peak) {
        for (int c = 0; c < 3; ++c) obj[c] += image.px(x, y)[c];
        ++n_obj;
      }
  const float diff[3] = {obj[0] / float(std::max(n_obj, 1)) - bg[0], obj[1] / float(std::max(n_obj, 1)) - bg[1],
                         obj[2] / float(std::max(n_obj, 1)) - bg[2]};
  float dir[3];  // the object's difference from the background, weighted (Y, Cb, Cr)
  ycbcr(diff, dir);
  dir[0] *= kLumaWeight;
  float dir_norm2 = 0;
  for (int c = 0; c < 3; ++c) dir_norm2 += dir[c] * (c == 0 ? dir[c] / kLumaWeight : dir[c]);
  const bool use_ycbcr = !ring.empty() && n_obj > 0 && dir_norm2 > 1.0f;
  const auto coverage = [&](int x, int y) {
    if (!use_ycbcr) return projected(x, y) / peak;
    const uint8_t* p = image.px(x, y);
    const float dp[3] = {p[0] - bg[0], p[1] - bg[1], p[2] - bg[2]};
    float yp[3];
    ycbcr(dp, yp);
    return (yp[0] * dir[0] + yp[1] * dir[1] + yp[2] * dir[2]) / dir_norm2;
  };
  std::vector<float> alpha(size_t(w) * h, 0.0f);  // alpha: (h, w)
  double mass = 0, mx = 0, my = 0;
  for (int y = y0; y < y1; ++y) {
    for (int x = x0; x < x1; ++x) {
      int c = comp[size_t(y) * W + x];
      if (c >= 0 && c != id) continue;
      float al = std::clamp(coverage(x, y), 0.0f, 1.0f);
      // Outside the component, weak responses are background noise, not fringe.
      if (c < 0 && al < 0.2f) al = 0;
      alpha[size_t(y - y0) * w + (x - x0)] = al;
      mass += al, mx += al * (x + 0.5), my += al * (y + 0.5);
    }
  }
  const float cx = float(mx / mass), cy = float(my / mass);
  float best = -1;
  std::vector<float> tmpl(alpha.size()), tmp;
  for (int k = 0; k < kNumShapes; ++k) {
    const float r = std::sqrt(float(mass) / (4.0f * kFill[k]));
    const float ox = cx, oy = cy - kCentroidV[k] * r;
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        float u = (float(x + x0) + 0.5f - ox) / r, v = (float(y + y0) + 0.5f - oy) / r;
        tmpl[size_t(y) * w + x] = std::clamp(0.5f - shape_sdf(Shape(k), u, v) * r, 0.0f, 1.0f);
      }
    for (int pass = 0; pass <= 2; ++pass) {
      if (pass > 0) blur121(tmpl, tmp, w, h);
      double lo = 0, hi = 0;
      for (size_t i = 0; i < alpha.size(); ++i) lo += std::min(alpha[i], tmpl[i]), hi += std::max(alpha[i], tmpl[i]);
      float iou = hi > 0 ? float(lo / hi) : 0.0f;
      if (iou > best) best = iou, d.shape = Shape(k), d.cx = ox, d.cy = oy, d.r = r;
    }
  }
  d.shape_iou = best;
}

// Detections from the palette labels of step 1 (label_pixels).
static std::vector<Detection> detect_labelled(const Image& image, const DetectOptions& opt,
                                              const std::vector<uint8_t>& labels,
                                              const std::array<float, kNumColors>& ua,
                                              const std::array<float, kNumColors>& ub) {
  const int W = image.width, H = image.height;
  std::vector<Detection> out;
  struct Kept {
    Detection d;
    int id;
    std::vector<float> proj;  // projected chroma of the members
  };
  std::vector<Kept> kept;
  const int min_area = std::max(opt.min_area_px, int(opt.min_area_frac * float(W) * float(H)));
  const float size_threshold = 0.5f * (half_extent(SizeClass::small, std::min(W, H), opt.object_scale) +
                                       half_extent(SizeClass::large, std::min(W, H), opt.object_scale));
  std::vector<int> comp(size_t(W) * H, -1);  // comp: (H, W) component id, -1 = none yet
  std::vector<int> stack, members;
  std::vector<float> member_proj;
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
    member_proj.clear();
    for (int i : members) {
      const uint8_t* p = &image.rgb[size_t(i) * 3];
      float a = (2.0f * p[0] - p[1] - p[2]) * 0.5f, b = kHalfSqrt3 * (float(p[1]) - float(p[2]));
      member_proj.push_back(a * ua[d.color] + b * ub[d.color]);
    }
    kept.push_back({d, id, member_proj});
  }
  // Classification needs the final component map (to mask out neighbours), so it runs last.
  for (auto& [d, id, proj] : kept) {
    classify(d, image, comp, id, ua[d.color], ub[d.color], proj);
    if (d.shape_iou < opt.min_shape_iou) continue;
    d.size = d.r > size_threshold ? SizeClass::large : SizeClass::small;
    out.push_back(d);
  }
  std::stable_sort(out.begin(), out.end(), [](const Detection& a, const Detection& b) { return a.area > b.area; });
  return out;
}

// stray_color_fraction over labels already made.
static float stray_of_labels(const std::vector<uint8_t>& labels, int W, int H, const std::vector<Detection>& dets) {
  const int grow = std::max(2, int(0.03f * float(std::min(W, H)) + 0.5f));
  std::vector<uint8_t> covered(size_t(W) * H, 0);  // (H, W): inside some grown box
  for (const Detection& d : dets)
    for (int y = std::max(0, d.y0 - grow); y < std::min(H, d.y1 + grow); ++y)
      for (int x = std::max(0, d.x0 - grow); x < std::min(W, d.x1 + grow); ++x) covered[size_t(y) * W + x] = 1;
  // Uncovered labelled pixels in 4-connected runs of one colour of at least 1/1024 of the image (and
  // 4 pixels): per-pixel noise over a tinted background labels isolated pixels, speckle labels blobs.
  const size_t kMinBlob = std::max<size_t>(4, size_t(W) * size_t(H) / 1024);  // 4 px at 64², 64 at 256²
  std::vector<uint8_t> seen(labels.size(), 0);
  std::vector<int> stack;
  size_t stray = 0;
  for (int start = 0; start < W * H; ++start) {
    if (labels[start] == 0 || covered[start] || seen[start]) continue;
    const uint8_t lab = labels[start];
    size_t n = 0;
    stack.assign(1, start);
    seen[start] = 1;
    while (!stack.empty()) {
      const int i = stack.back();
      stack.pop_back();
      ++n;
      const int x = i % W, y = i / W;
      auto visit = [&](int j) {
        if (labels[j] == lab && !covered[j] && !seen[j]) seen[j] = 1, stack.push_back(j);
      };
      if (x > 0) visit(i - 1);
      if (x + 1 < W) visit(i + 1);
      if (y > 0) visit(i - W);
      if (y + 1 < H) visit(i + W);
    }
    if (n >= kMinBlob) stray += n;
  }
  return float(stray) / float(labels.size());
}

std::vector<Detection> detect_objects(const Image& image, const DetectOptions& opt) {
  if (image.width <= 0 || image.height <= 0) return {};
  std::array<float, kNumColors> ua{}, ub{};
  palette_units(ua, ub);
  return detect_labelled(image, opt, label_pixels(image, opt, ua, ub), ua, ub);
}

float stray_color_fraction(const Image& image, const std::vector<Detection>& dets, const DetectOptions& opt) {
  if (image.width <= 0 || image.height <= 0) return 0;
  std::array<float, kNumColors> ua{}, ub{};
  palette_units(ua, ub);
  return stray_of_labels(label_pixels(image, opt, ua, ub), image.width, image.height, dets);
}

Scan scan_image(const Image& image, const DetectOptions& opt) {
  Scan s;
  if (image.width <= 0 || image.height <= 0) return s;
  std::array<float, kNumColors> ua{}, ub{};
  palette_units(ua, ub);
  const std::vector<uint8_t> labels = label_pixels(image, opt, ua, ub);
  s.objects = detect_labelled(image, opt, labels, ua, ub);
  s.stray_color = stray_of_labels(labels, image.width, image.height, s.objects);
  return s;
}

unsigned relations(const Detection& a, const Detection& b) {
  return relations(a.cx, a.cy, 2 * a.r, 2 * a.r, b.cx, b.cy, 2 * b.r, 2 * b.r);
}

}  // namespace vt::shapes
