// render.h: ShapeWorld images: the RGB buffer, the anti-aliased scene renderer, the degradations
// the evaluator is tested against, and PNG/text file I/O (every write is atomic: temp, then rename).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "shapeworld/scene.h"

namespace vt::shapes {

struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;  // rgb: (H, W, 3), row-major, 8-bit sRGB values

  Image() = default;
  Image(int w, int h) : width(w), height(h), rgb(size_t(w) * h * 3, 0) {}
  uint8_t* px(int x, int y) { return rgb.data() + (size_t(y) * width + x) * 3; }
  const uint8_t* px(int x, int y) const { return rgb.data() + (size_t(y) * width + x) * 3; }
};

// Signed distance to the canonical shape in units of the half extent: (u, v) in [-1, 1]^2 is the
// object box, v grows downwards; negative inside. Exact for circle, square and diamond; a lower
// bound near the vertices of the triangle and cross, which only affects anti-aliasing there.
float shape_sdf(Shape s, float u, float v);

// Renders the scene: gradient + value-noise texture background, objects with area coverage
// clamp(0.5 - distance_px, 0, 1) as alpha, then the optional noise. Pure arithmetic (no libm
// transcendental), so the bytes depend only on the scene and the compiled arithmetic.
Image render_scene(const Scene& scene);

// Degradations with documented strengths (docs/shapeworld.md), applied in this order:
//   jitter: per channel gain in [1 - jitter, 1 + jitter] and offset in +-(120 x jitter) grey levels
//   blur:   `blur_passes` passes of the separable binomial [1 2 1] / 4 (sigma = sqrt(passes / 2) px)
//   noise:  per-pixel, per-channel noise with standard deviation `noise_sigma` grey levels
struct Degradation {
  float jitter = 0;
  int blur_passes = 0;
  float noise_sigma = 0;
  uint64_t seed = 0;
};
Image degrade(const Image& image, const Degradation& d);

// Image I/O: PNG encoding by png.cpp (8-bit RGB); decoding of PNG, JPEG, BMP, TGA, ... by vt's one
// loader, vt::io::load_image (vt/io/image.h), which throws vt::Error naming the path when the file is
// missing or undecodable. Gray is replicated and alpha composited onto white, giving RGB.
void write_png(const std::string& path, const Image& image);
std::vector<uint8_t> encode_png(const Image& image);
Image decode_image(const uint8_t* bytes, size_t size, const std::string& what);
Image read_image(const std::string& path);

// Writes `bytes` to path + ".tmp.<pid>.<thread>" and renames it over `path`, so a reader never sees
// a half-written file; throws vt::Error naming the path on failure.
void write_file_atomic(const std::string& path, const void* bytes, size_t size);
void write_text_atomic(const std::string& path, const std::string& text);
std::string read_text(const std::string& path);

}  // namespace vt::shapes
