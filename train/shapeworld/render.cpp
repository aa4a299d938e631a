// render.cpp: the ShapeWorld renderer, degradations and file I/O (see render.h).
//
// Images are decoded by vt::io::load_image (vt/io/image.h), vt's one loader; PNGs are encoded by
// png.cpp, which says why it is not stb_image_write.
#include "shapeworld/render.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "vt/error.h"
#include "vt/io/image.h"

namespace vt::shapes {

static float box_sdf(float u, float v, float hx, float hy) {
  float qx = std::fabs(u) - hx, qy = std::fabs(v) - hy;
  float ox = std::max(qx, 0.0f), oy = std::max(qy, 0.0f);
  return std::sqrt(ox * ox + oy * oy) + std::min(std::max(qx, qy), 0.0f);
}

float shape_sdf(Shape s, float u, float v) {
  switch (s) {
    case Shape::circle: return std::sqrt(u * u + v * v) - 1.0f;
    case Shape::square: return box_sdf(u, v, 1, 1);
    case Shape::diamond: return (std::fabs(u) + std::fabs(v) - 1.0f) * 0.70710678f;
    case Shape::triangle: {
      // Apex (0,-1), base from (-1,1) to (1,1). The right edge has outward normal (2,-1)/sqrt(5)
      // (mirrored in u); the max of the edge-line distances is the convex-polygon bound.
      float slanted = (2.0f * std::fabs(u) - v - 1.0f) * 0.44721360f;
      return std::max(slanted, v - 1.0f);
    }
    case Shape::cross: {
      // A plus sign: arms one third of the box wide.
      const float t = 1.0f / 3.0f;
      return std::min(box_sdf(u, v, 1, t), box_sdf(u, v, t, 1));
    }
  }
  return 1.0f;
}

// Smooth value noise in [-1, 1] over `cells` lattice cells across the unit square: hashed lattice
// values, smoothstep-interpolated. The lattice is tabulated once per image.
struct ValueNoise {
  int cells;
  std::vector<float> lattice;  // lattice: (cells + 2, cells + 2)

  ValueNoise(uint64_t key, int cells) : cells(cells), lattice(size_t(cells + 2) * (cells + 2)) {
    for (int b = 0; b < cells + 2; ++b)
      for (int a = 0; a < cells + 2; ++a)
        lattice[size_t(b) * (cells + 2) + a] = 2.0f * hash_uniform(key, (uint64_t(uint32_t(a)) << 32) | uint32_t(b)) - 1.0f;
  }
  // (x, y) in [0, 1)^2.
  float at(float x, float y) const {
    x *= float(cells), y *= float(cells);
    int ix = int(x), iy = int(y);
    float fx = x - float(ix), fy = y - float(iy);
    float sx = fx * fx * (3 - 2 * fx), sy = fy * fy * (3 - 2 * fy);
    const float* r0 = &lattice[size_t(iy) * (cells + 2) + ix];
    const float* r1 = r0 + (cells + 2);
    float top = r0[0] + sx * (r0[1] - r0[0]);
    float bot = r1[0] + sx * (r1[1] - r1[0]);
    return top + sy * (bot - top);
  }
};

// Approximately Gaussian with unit variance: Irwin-Hall of 4 uniforms, centred and rescaled.
static float hash_normal(uint64_t key, uint64_t i) {
  float s = 0;
  for (uint64_t k = 0; k < 4; ++k) s += hash_uniform(key, i * 4 + k);
  return (s - 2.0f) * 1.7320508f;
}

static uint8_t to_byte(float v) { return uint8_t(std::clamp(v + 0.5f, 0.0f, 255.0f)); }

Image render_scene(const Scene& scene) {
  const int S = scene.size;
  VT_CHECK(S >= 16 && S <= 4096, "render_scene: image size ", S, " outside [16, 4096]");
  const Background& bg = scene.background;
  // canvas: (S, S, 3) in float so that object edges blend before the one rounding at the end.
  std::vector<float> canvas(size_t(S) * S * 3);
  const float inv = 1.0f / float(S);
  // Texture: 6 lattice cells across, plus a finer octave of 15 cells.
  const ValueNoise coarse(bg.texture_key, 6), fine(bg.texture_key ^ 1, 15);
  for (int y = 0; y < S; ++y) {
    for (int x = 0; x < S; ++x) {
      float fx = (float(x) + 0.5f) * inv, fy = (float(y) + 0.5f) * inv;
      float t = std::clamp((fx - 0.5f) * bg.dir_x + (fy - 0.5f) * bg.dir_y + 0.5f, 0.0f, 1.0f);
      float tex = bg.texture * (0.7f * coarse.at(fx, fy) + 0.3f * fine.at(fx, fy));
      float* p = &canvas[(size_t(y) * S + x) * 3];
      for (int c = 0; c < 3; ++c) p[c] = bg.c0[c] + t * (bg.c1[c] - bg.c0[c]) + tex;
    }
  }
  for (const Object& o : scene.objects) {
    const PaletteColor& pc = palette()[o.color];
    const float col[3] = {pc.r * o.shade, pc.g * o.shade, pc.b * o.shade};
    int x0 = std::max(0, int(std::floor(o.cx - o.r - 1))), x1 = std::min(S, int(std::ceil(o.cx + o.r + 1)));
    int y0 = std::max(0, int(std::floor(o.cy - o.r - 1))), y1 = std::min(S, int(std::ceil(o.cy + o.r + 1)));
    const float inv_r = 1.0f / o.r;
    for (int y = y0; y < y1; ++y) {
      for (int x = x0; x < x1; ++x) {
        float u = (float(x) + 0.5f - o.cx) * inv_r, v = (float(y) + 0.5f - o.cy) * inv_r;
        float alpha = std::clamp(0.5f - shape_sdf(o.shape, u, v) * o.r, 0.0f, 1.0f);
        if (alpha <= 0) continue;
        float* p = &canvas[(size_t(y) * S + x) * 3];
        for (int c = 0; c < 3; ++c) p[c] += alpha * (col[c] - p[c]);
      }
    }
  }
  Image img(S, S);
  const size_t n = size_t(S) * S * 3;
  if (bg.noise_sigma > 0) {
    for (size_t i = 0; i < n; ++i) img.rgb[i] = to_byte(canvas[i] + bg.noise_sigma * hash_normal(bg.noise_key, i));
  } else {
    for (size_t i = 0; i < n; ++i) img.rgb[i] = to_byte(canvas[i]);
  }
  return img;
}

Image degrade(const Image& image, const Degradation& d) {
  const int W = image.width, H = image.height;
  std::vector<float> buf(image.rgb.begin(), image.rgb.end());  // buf: (H, W, 3)
  if (d.jitter > 0) {
    Rng rng(stream_key(d.seed, 0x4A49545445ull));
    float gain[3], offset[3];
    for (int c = 0; c < 3; ++c) {
      gain[c] = rng.uniform(1 - d.jitter, 1 + d.jitter);
      offset[c] = rng.uniform(-120 * d.jitter, 120 * d.jitter);
    }
    for (size_t i = 0; i < buf.size(); ++i) buf[i] = buf[i] * gain[i % 3] + offset[i % 3];
  }
  std::vector<float> tmp(buf.size());
  for (int pass = 0; pass < d.blur_passes; ++pass) {
    // Separable [1 2 1] / 4 with clamped borders: horizontal into tmp, vertical back into buf.
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x)
        for (int c = 0; c < 3; ++c) {
          int xl = std::max(x - 1, 0), xr = std::min(x + 1, W - 1);
          size_t row = size_t(y) * W;
          tmp[(row + x) * 3 + c] =
              0.25f * buf[(row + xl) * 3 + c] + 0.5f * buf[(row + x) * 3 + c] + 0.25f * buf[(row + xr) * 3 + c];
        }
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x)
        for (int c = 0; c < 3; ++c) {
          int yu = std::max(y - 1, 0), yd = std::min(y + 1, H - 1);
          buf[(size_t(y) * W + x) * 3 + c] = 0.25f * tmp[(size_t(yu) * W + x) * 3 + c] +
                                             0.5f * tmp[(size_t(y) * W + x) * 3 + c] +
                                             0.25f * tmp[(size_t(yd) * W + x) * 3 + c];
        }
  }
  Image out(W, H);
  uint64_t key = stream_key(d.seed, 0x4E4F495345ull);
  for (size_t i = 0; i < buf.size(); ++i) {
    float v = buf[i];
    if (d.noise_sigma > 0) v += d.noise_sigma * hash_normal(key, i);
    out.rgb[i] = to_byte(v);
  }
  return out;
}

void write_png(const std::string& path, const Image& image) {
  std::vector<uint8_t> bytes = encode_png(image);
  write_file_atomic(path, bytes.data(), bytes.size());
}

static Image from_io(const io::Image& decoded) {
  const io::Image rgb = io::to_rgb(decoded);
  Image img(rgb.width, rgb.height);
  img.rgb = rgb.pixels;
  return img;
}

Image decode_image(const uint8_t* bytes, size_t size, const std::string& what) {
  return from_io(io::load_image_from_memory(bytes, size, what));
}

Image read_image(const std::string& path) { return from_io(io::load_image(path)); }

void write_file_atomic(const std::string& path, const void* bytes, size_t size) {
  std::ostringstream tmp_name;
  tmp_name << path << ".tmp." << getpid() << "." << std::hash<std::thread::id>{}(std::this_thread::get_id());
  const std::string tmp = tmp_name.str();
  FILE* f = std::fopen(tmp.c_str(), "wb");
  VT_CHECK(f != nullptr, path, ": cannot open temporary file ", tmp, " for writing");
  bool ok = std::fwrite(bytes, 1, size, f) == size;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    VT_FAIL(path, ": write failed (disk full?)");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    VT_FAIL(path, ": cannot rename temporary file into place: ", ec.message());
  }
}

void write_text_atomic(const std::string& path, const std::string& text) {
  write_file_atomic(path, text.data(), text.size());
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  VT_CHECK(in.good(), path, ": cannot open for reading");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace vt::shapes
