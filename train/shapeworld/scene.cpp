// scene.cpp: names, placement and the position rule of the ShapeWorld scene model (see scene.h).
#include "shapeworld/scene.h"

#include <algorithm>
#include <cmath>

#include "vt/error.h"

namespace vt::shapes {

const std::array<PaletteColor, kNumColors>& palette() {
  // Hues (degrees, chroma plane): red 0, yellow 52, green 128, cyan 185, blue 237, purple 291.
  static const std::array<PaletteColor, kNumColors> p{{{"red", 215, 40, 40},
                                                       {"yellow", 230, 200, 30},
                                                       {"green", 40, 175, 60},
                                                       {"cyan", 30, 185, 200},
                                                       {"blue", 50, 60, 220},
                                                       {"purple", 170, 45, 195}}};
  return p;
}

static const char* const kShapeNames[kNumShapes] = {"circle", "square", "triangle", "diamond", "cross"};
static const char* const kShapePlurals[kNumShapes] = {"circles", "squares", "triangles", "diamonds",
                                                      "crosses"};
static const char* const kRelationNames[kNumRelations] = {"left of", "right of", "above", "below"};

const char* shape_name(Shape s) { return kShapeNames[int(s)]; }
const char* shape_plural(Shape s) { return kShapePlurals[int(s)]; }
const char* size_name(SizeClass s) { return s == SizeClass::small ? "small" : "large"; }
const char* color_name(int color) {
  VT_CHECK(color >= 0 && color < kNumColors, "shapeworld: colour index ", color, " out of range");
  return palette()[color].name;
}
const char* relation_name(Relation r) { return kRelationNames[int(r)]; }

Shape parse_shape(std::string_view name, std::string_view what) {
  for (int i = 0; i < kNumShapes; ++i)
    if (name == kShapeNames[i] || name == kShapePlurals[i]) return Shape(i);
  VT_FAIL(what, ": unknown shape '", name, "' (expected circle, square, triangle, diamond or cross)");
}
int parse_color(std::string_view name, std::string_view what) {
  for (int i = 0; i < kNumColors; ++i)
    if (name == palette()[i].name) return i;
  VT_FAIL(what, ": unknown colour '", name, "' (expected red, yellow, green, cyan, blue or purple)");
}
SizeClass parse_size(std::string_view name, std::string_view what) {
  if (name == "small") return SizeClass::small;
  if (name == "large") return SizeClass::large;
  VT_FAIL(what, ": unknown size '", name, "' (expected small or large)");
}
Relation parse_relation(std::string_view name, std::string_view what) {
  for (int i = 0; i < kNumRelations; ++i)
    if (name == kRelationNames[i]) return Relation(i);
  VT_FAIL(what, ": unknown relation '", name, "' (expected left of, right of, above or below)");
}
Relation opposite(Relation r) {
  switch (r) {
    case Relation::left_of: return Relation::right_of;
    case Relation::right_of: return Relation::left_of;
    case Relation::above: return Relation::below;
    default: return Relation::above;
  }
}

float half_extent(SizeClass s, int image_size, float object_scale) {
  return (s == SizeClass::small ? 0.08f : 0.13f) * object_scale * float(image_size);
}
float object_gap(int image_size) { return std::max(3.0f, 0.04f * float(image_size)); }

Background sample_background(Rng& rng, float noise_sigma, bool plain) {
  Background b;
  // Low chroma keeps every background pixel far below the detector's chroma floor (detect.h).
  float grey0 = rng.uniform(95, 175);
  float grey1 = std::clamp(grey0 + rng.uniform(-40, 40), 95.0f, 175.0f);
  for (int c = 0; c < 3; ++c) {
    float tint = rng.uniform(-6, 6);
    b.c0[c] = grey0 + tint;
    b.c1[c] = grey1 + tint + rng.uniform(-3, 3);
  }
  // A direction from a table of 16 unit vectors avoids sin/cos, whose last bits vary by libm.
  static const float kDirs[16][2] = {
      {1, 0},           {0.9239f, 0.3827f},  {0.7071f, 0.7071f},  {0.3827f, 0.9239f},
      {0, 1},           {-0.3827f, 0.9239f}, {-0.7071f, 0.7071f}, {-0.9239f, 0.3827f},
      {-1, 0},          {-0.9239f, -0.3827f}, {-0.7071f, -0.7071f}, {-0.3827f, -0.9239f},
      {0, -1},          {0.3827f, -0.9239f}, {0.7071f, -0.7071f}, {0.9239f, -0.3827f}};
  int d = rng.below(16);
  b.dir_x = kDirs[d][0];
  b.dir_y = kDirs[d][1];
  b.texture = rng.uniform(3, 8);
  b.texture_key = rng.next();
  b.noise_sigma = noise_sigma;
  b.noise_key = rng.next();
  if (plain) {
    b.c1 = b.c0;
    b.texture = 0;
  }
  return b;
}

Object make_object(Shape shape, int color, SizeClass size, int image_size, Rng& rng, float object_scale) {
  Object o;
  o.shape = shape;
  o.color = color;
  o.size = size;
  o.r = half_extent(size, image_size, object_scale);
  o.shade = rng.uniform(0.9f, 1.08f);
  o.cx = o.cy = 0.5f * float(image_size);
  return o;
}

bool fits(const Scene& scene, const Object& o, int skip) {
  float gap = object_gap(scene.size);
  float lo = o.r + gap, hi = float(scene.size) - o.r - gap;
  if (o.cx < lo || o.cx > hi || o.cy < lo || o.cy > hi) return false;
  for (size_t i = 0; i < scene.objects.size(); ++i) {
    if (int(i) == skip) continue;
    const Object& p = scene.objects[i];
    float need = o.r + p.r + gap;
    if (std::fabs(o.cx - p.cx) < need && std::fabs(o.cy - p.cy) < need) return false;
  }
  return true;
}

bool place_object(Scene& scene, Object o, Rng& rng, int tries) {
  float gap = object_gap(scene.size);
  float lo = o.r + gap, hi = float(scene.size) - o.r - gap;
  for (int t = 0; t < tries; ++t) {
    o.cx = rng.uniform(lo, hi);
    o.cy = rng.uniform(lo, hi);
    if (fits(scene, o)) {
      scene.objects.push_back(o);
      return true;
    }
  }
  return false;
}

unsigned relations(float ax, float ay, float aw, float ah, float bx, float by, float bw, float bh) {
  float ox = ax - bx, oy = ay - by;
  float norm = std::sqrt(ox * ox + oy * oy);
  if (norm < 1e-6f) return 0;
  auto revise = [](float off, float dims) {
    float m = std::max(std::fabs(off) - 0.1f * dims, 0.0f);
    return off < 0 ? -m : m;
  };
  float dx = revise(ox, aw + bw) / norm, dy = revise(oy, ah + bh) / norm;
  unsigned bits = 0;
  if (dx < -0.5f) bits |= 1u << int(Relation::left_of);
  if (dx > 0.5f) bits |= 1u << int(Relation::right_of);
  if (dy < -0.5f) bits |= 1u << int(Relation::above);
  if (dy > 0.5f) bits |= 1u << int(Relation::below);
  return bits;
}
unsigned relations(const Object& a, const Object& b) {
  return relations(a.cx, a.cy, 2 * a.r, 2 * a.r, b.cx, b.cy, 2 * b.r, 2 * b.r);
}

bool clearly(const Object& a, const Object& b, Relation r) {
  float dx = a.cx - b.cx, dy = a.cy - b.cy;
  bool horizontal = r == Relation::left_of || r == Relation::right_of;
  float major = horizontal ? dx : dy, minor = horizontal ? dy : dx;
  bool sign_ok = (r == Relation::left_of || r == Relation::above) ? major < 0 : major > 0;
  return sign_ok && std::fabs(minor) < 0.7f * std::fabs(major) && (relations(a, b) >> int(r) & 1u);
}

HeldOut make_heldout(uint64_t seed) {
  // Shape s holds out colour (s + k) mod 6: five distinct colours, one per shape, k from the seed.
  HeldOut h;
  int k = int(mix64(seed ^ 0x48454C444F5554ull) % kNumColors);
  for (int s = 0; s < kNumShapes; ++s) h.color_of_shape[s] = (s + k) % kNumColors;
  return h;
}

nlohmann::json object_to_json(const Object& o) {
  // Coordinates rounded to 1/100 px so the JSON stays short and prints the same everywhere.
  auto r2 = [](float v) { return std::round(double(v) * 100.0) / 100.0; };
  return {{"shape", shape_name(o.shape)}, {"color", color_name(o.color)}, {"size", size_name(o.size)},
          {"x", r2(o.cx)}, {"y", r2(o.cy)}, {"r", r2(o.r)}};
}

Object object_from_json(const nlohmann::json& j, std::string_view what) {
  VT_CHECK(j.is_object(), what, ": object entry is not a JSON object");
  for (const char* key : {"shape", "color", "size", "x", "y", "r"})
    VT_CHECK(j.contains(key), what, ": object entry lacks '", key, "'");
  Object o;
  try {
    o.shape = parse_shape(j.at("shape").get<std::string>(), what);
    o.color = parse_color(j.at("color").get<std::string>(), what);
    o.size = parse_size(j.at("size").get<std::string>(), what);
    o.cx = j.at("x").get<float>();
    o.cy = j.at("y").get<float>();
    o.r = j.at("r").get<float>();
  } catch (const nlohmann::json::exception& e) {
    VT_FAIL(what, ": malformed object entry: ", e.what());
  }
  return o;
}

nlohmann::json background_to_json(const Background& b) {
  auto r1 = [](float v) { return std::round(double(v) * 10.0) / 10.0; };
  return {{"from", {r1(b.c0[0]), r1(b.c0[1]), r1(b.c0[2])}},
          {"to", {r1(b.c1[0]), r1(b.c1[1]), r1(b.c1[2])}},
          {"direction", {b.dir_x, b.dir_y}},
          {"texture", r1(b.texture)},
          {"noise_sigma", r1(b.noise_sigma)}};
}

}  // namespace vt::shapes
