// scene.h: the ShapeWorld scene model: shape kinds, the colour palette, two sizes, objects placed
// without overlap, the background, the GenEval position rule and the held-out colour/shape pairs.
//
// Geometry convention: pixel (x, y) covers [x, x+1) x [y, y+1), y grows downwards. An object is
// centred at (cx, cy) and every kind fills (touches all four sides of) the square box
// [cx-r, cx+r] x [cy-r, cy+r], where r is the half extent. "No overlap" means the boxes, grown by a
// gap, are disjoint; that keeps connected components apart even after blur.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "shapeworld/rng.h"

namespace vt::shapes {

enum class Shape : uint8_t { circle, square, triangle, diamond, cross };
inline constexpr int kNumShapes = 5;
inline constexpr int kNumColors = 6;

enum class SizeClass : uint8_t { small, large };

struct PaletteColor {
  const char* name;
  uint8_t r, g, b;
};

// Six colours whose hues (in the chroma plane, see detect.h) are >= 48 degrees apart, so that
// colour jitter and blending with the grey background cannot move one into another's bin.
const std::array<PaletteColor, kNumColors>& palette();

const char* shape_name(Shape s);
const char* shape_plural(Shape s);
const char* size_name(SizeClass s);
const char* color_name(int color);
// Parsers accept the names above (and plurals for shapes); they throw vt::Error naming `what`.
Shape parse_shape(std::string_view name, std::string_view what);
int parse_color(std::string_view name, std::string_view what);
SizeClass parse_size(std::string_view name, std::string_view what);

// Half extent of an object of a size class in an image of `image_size` pixels: 0.08 (small) and 0.13
// (large) of the side, times `object_scale` (shapes make --object-scale; the miniature draws larger
// objects so that its 16x16 latent resolves their outlines).
float half_extent(SizeClass s, int image_size, float object_scale = 1.0f);
// The object scales a dataset may use: larger ones leave no room for four objects and their gaps.
inline constexpr float kMinObjectScale = 0.5f, kMaxObjectScale = 2.0f;
// Objects keep this many pixels between their boxes and this far from the border.
float object_gap(int image_size);

struct Object {
  Shape shape = Shape::circle;
  int color = 0;  // index into palette()
  SizeClass size = SizeClass::small;
  float cx = 0, cy = 0;  // centre, pixels
  float r = 0;           // half extent, pixels
  float shade = 1;       // brightness factor in [0.9, 1.08]: varies luminance only, never hue
};

struct Background {
  std::array<float, 3> c0{}, c1{};  // gradient end colours, RGB 0..255, low chroma
  float dir_x = 1, dir_y = 0;       // gradient direction (unit)
  float texture = 0;                // amplitude of the value-noise texture, in grey levels
  uint64_t texture_key = 0;
  float noise_sigma = 0;            // per-pixel Gaussian-like noise, 0 = off
  uint64_t noise_key = 0;
};

struct Scene {
  int size = 128;  // width = height in pixels
  Background background;
  std::vector<Object> objects;
};

// A random background: grey levels 95..175, tint chroma below ~12, texture amplitude 3..8.
// plain: one uniform tinted grey (no gradient, no texture); the draws are the same either way.
Background sample_background(Rng& rng, float noise_sigma, bool plain = false);
Object make_object(Shape shape, int color, SizeClass size, int image_size, Rng& rng, float object_scale = 1.0f);
// Whether `o` lies inside the image margin and clear of every object except index `skip`.
bool fits(const Scene& scene, const Object& o, int skip = -1);
// Draws positions for `o` until it fits (at most `tries`); appends it and returns true on success.
bool place_object(Scene& scene, Object o, Rng& rng, int tries = 400);

// GenEval's relative-position rule on two boxes (centre and full width/height): offsets shrink by
// 0.1 x the summed extents; a direction counts when its normalised component exceeds 0.5.
enum class Relation : uint8_t { left_of, right_of, above, below };
inline constexpr int kNumRelations = 4;
const char* relation_name(Relation r);  // "left of", "right of", "above", "below"
Relation parse_relation(std::string_view name, std::string_view what);
Relation opposite(Relation r);
// Bit i set when Relation(i) holds for a relative to b.
unsigned relations(float ax, float ay, float aw, float ah, float bx, float by, float bw, float bh);
unsigned relations(const Object& a, const Object& b);
// Whether a clearly stands in exactly relation `r` to b: the dominant axis matches and the minor
// offset is below 0.7 x the major one. Used to make and ask about unambiguous positions.
bool clearly(const Object& a, const Object& b, Relation r);

// Held-out pairs: one colour per shape kind never appears in the train split (any object of any
// image), and test prompts name them, so compositional generalisation can be measured.
struct HeldOut {
  std::array<int, kNumShapes> color_of_shape{};
  bool contains(Shape s, int color) const { return color_of_shape[int(s)] == color; }
};
HeldOut make_heldout(uint64_t seed);

nlohmann::json object_to_json(const Object& o);
Object object_from_json(const nlohmann::json& j, std::string_view what);
nlohmann::json background_to_json(const Background& b);

}  // namespace vt::shapes
