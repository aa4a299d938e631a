// train/data/image_ops.cpp: Pillow-exact resizes and the generation-target transform (image_ops.h).
//
// Convolution resize (Pillow src/libImaging/Resample.c, <= 12.x): per output pixel, taps over
// [center - support, center + support] where support = the filter radius (2 bicubic, 3 Lanczos) times
// the downscale factor; weights normalised in double, turned into 22-bit fixed point (rounded half
// away from zero); a horizontal pass then a vertical pass, each accumulating integers from 1 << 21
// and clipping to uint8. qwen2_vl/image_processor.cpp holds the same machinery for BICUBIC only; the
// tests check that this copy agrees with it, so the two cannot drift apart silently.
//
// NEAREST (Pillow ImagingScaleAffine through ImagingTransform): source coordinate accumulated in
// double, x_k = in/out · (k + 0.5) built by repeated addition, truncated to int. The repeated addition
// (not a product) is reproduced because it decides the pixel at exact halves.
#include "data/image_ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "vt/error.h"

namespace vt::train {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // Pillow's PRECISION_BITS

double bicubic_filter(double x) {  // Keys' cubic, a = -0.5
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

double sinc_filter(double x) {
  if (x == 0.0) return 1.0;
  x = x * M_PI;
  return std::sin(x) / x;
}

double lanczos_filter(double x) {  // truncated sinc, a = 3
  if (-3.0 <= x && x < 3.0) return sinc_filter(x) * sinc_filter(x / 3);
  return 0.0;
}

struct Taps {  // output i reads input [first[i], first[i] + count[i]) with weights k[i * ksize + j]
  int64_t ksize = 0;
  std::vector<int64_t> first, count;
  std::vector<int32_t> k;
};

Taps precompute_taps(int64_t in_size, int64_t out_size, ResampleFilter filter) {
  const double radius = filter == ResampleFilter::Lanczos ? 3.0 : 2.0;
  double (*fn)(double) = filter == ResampleFilter::Lanczos ? lanczos_filter : bicubic_filter;
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
  const double filterscale = std::max(scale, 1.0);
  const double support = radius * filterscale;
  Taps t;
  t.ksize = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  t.first.resize(out_size), t.count.resize(out_size), t.k.assign(out_size * t.ksize, 0);
  std::vector<double> w(t.ksize);
  for (int64_t xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale, ss = 1.0 / filterscale;
    double ww = 0.0;
    int64_t xmin = std::max<int64_t>(static_cast<int>(center - support + 0.5), 0);  // C truncation
    int64_t xmax = std::min<int64_t>(static_cast<int>(center + support + 0.5), in_size) - xmin;
    for (int64_t x = 0; x < xmax; ++x) ww += (w[x] = fn((x + xmin - center + 0.5) * ss));
    for (int64_t x = 0; x < xmax; ++x) {
      const double kx = ww != 0.0 ? w[x] / ww : w[x];
      const double fixed = kx * (1 << kPrecisionBits);
      t.k[xx * t.ksize + x] = static_cast<int32_t>(kx < 0 ? -0.5 + fixed : 0.5 + fixed);
    }
    t.first[xx] = xmin, t.count[xx] = xmax;
  }
  return t;
}

// One pass along an axis of an interleaved RGB image.
RgbImage resample_pass(const RgbImage& in, int64_t out_size, bool horizontal, ResampleFilter filter) {
  const Taps t = precompute_taps(horizontal ? in.width : in.height, out_size, filter);
  RgbImage out;
  out.height = horizontal ? in.height : out_size;
  out.width = horizontal ? out_size : in.width;
  out.pixels.resize(out.height * out.width * 3);
  for (int64_t y = 0; y < out.height; ++y)
    for (int64_t x = 0; x < out.width; ++x) {
      const int64_t i = horizontal ? x : y;
      const int32_t* k = &t.k[i * t.ksize];
      for (int c = 0; c < 3; ++c) {
        int64_t acc = int64_t{1} << (kPrecisionBits - 1);
        for (int64_t j = 0; j < t.count[i]; ++j) {
          const int64_t src = t.first[i] + j;
          acc += static_cast<int64_t>(horizontal ? in.at(y, src, c) : in.at(src, x, c)) * k[j];
        }
        out.pixels[(y * out.width + x) * 3 + c] =
            static_cast<uint8_t>(std::clamp<int64_t>(acc >> kPrecisionBits, 0, 255));
      }
    }
  return out;
}

// Source index of each output index (ImagingScaleAffine's pretabulation, COORD truncation).
std::vector<int64_t> nearest_index(int64_t in_size, int64_t out_size) {
  const double a = static_cast<double>(in_size) / static_cast<double>(out_size);
  std::vector<int64_t> idx(out_size);
  double o = 0.0 + a * 0.5;
  for (int64_t k = 0; k < out_size; ++k, o += a) idx[k] = std::min<int64_t>(o < 0.0 ? 0 : static_cast<int>(o), in_size - 1);
  return idx;
}

void check_image(const RgbImage& im, const char* op) {
  VT_CHECK(im.height > 0 && im.width > 0 && static_cast<int64_t>(im.pixels.size()) == im.height * im.width * 3,
           op, ": image of ", im.height, "x", im.width, " has ", im.pixels.size(), " bytes");
}

}  // namespace

RgbImage resize_pillow(const RgbImage& image, int64_t height, int64_t width, ResampleFilter filter) {
  check_image(image, "resize_pillow");
  VT_CHECK(height > 0 && width > 0, "resize_pillow: target size ", height, "x", width, " must be positive");
  if (image.height == height && image.width == width) return image;
  if (filter == ResampleFilter::Nearest) {
    const std::vector<int64_t> ys = nearest_index(image.height, height), xs = nearest_index(image.width, width);
    RgbImage out;
    out.height = height, out.width = width;
    out.pixels.resize(height * width * 3);
    for (int64_t y = 0; y < height; ++y)
      for (int64_t x = 0; x < width; ++x)
        for (int c = 0; c < 3; ++c) out.pixels[(y * width + x) * 3 + c] = image.at(ys[y], xs[x], c);
    return out;
  }
  RgbImage r = image.width != width ? resample_pass(image, width, true, filter) : image;
  return r.height != height ? resample_pass(r, height, false, filter) : r;
}

RgbImage cap_pixels_nearest(const RgbImage& image, int64_t max_pixels) {
  check_image(image, "cap_pixels_nearest");
  if (image.width * image.height <= max_pixels) return image;
  // Python: math.sqrt(image_resolution / (w * h)), then int(w * f), int(h * f)
  const double f = std::sqrt(static_cast<double>(max_pixels) / static_cast<double>(image.width * image.height));
  const int64_t w = static_cast<int64_t>(static_cast<double>(image.width) * f);
  const int64_t h = static_cast<int64_t>(static_cast<double>(image.height) * f);
  VT_CHECK(w > 0 && h > 0, "cap_pixels_nearest: ", image.height, "x", image.width, " image shrinks to ", h, "x", w);
  return resize_pillow(image, h, w, ResampleFilter::Nearest);
}

RgbImage regularize_min_side(const RgbImage& image) {
  check_image(image, "regularize_min_side");
  RgbImage im = image;
  if (std::min(im.width, im.height) < 28)
    im = resize_pillow(im, std::max<int64_t>(im.height, 28), std::max<int64_t>(im.width, 28), ResampleFilter::Nearest);
  if (static_cast<double>(im.width) / static_cast<double>(im.height) > 200)
    im = resize_pillow(im, im.height, im.height * 180, ResampleFilter::Nearest);
  if (static_cast<double>(im.height) / static_cast<double>(im.width) > 200)
    im = resize_pillow(im, im.width * 180, im.width, ResampleFilter::Nearest);
  return im;
}

RgbImage crop(const RgbImage& image, int64_t top, int64_t left, int64_t height, int64_t width) {
  check_image(image, "crop");
  VT_CHECK(top >= 0 && left >= 0 && height > 0 && width > 0 && top + height <= image.height &&
               left + width <= image.width,
           "crop: box (top ", top, ", left ", left, ", ", height, "x", width, ") outside the ", image.height, "x",
           image.width, " image");
  RgbImage out;
  out.height = height, out.width = width;
  out.pixels.resize(height * width * 3);
  for (int64_t y = 0; y < height; ++y)
    std::copy_n(&image.pixels[((top + y) * image.width + left) * 3], width * 3, &out.pixels[y * width * 3]);
  return out;
}

Tensor to_tensor_pm1(const RgbImage& image) {
  check_image(image, "to_tensor_pm1");
  const int64_t H = image.height, W = image.width;
  std::vector<float> v(3 * H * W);  // (3, H, W)
  for (int c = 0; c < 3; ++c)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x) {
        const float u = static_cast<float>(image.at(y, x, c)) / 255.0f;  // ToTensor: div(255) in f32
        v[(c * H + y) * W + x] = (u + u) - 1.0f;                         // x.add(x).add_(-1)
      }
  return from_vector(v, Shape{3, H, W});
}

CropPlan plan_gen_crop(int64_t height, int64_t width, const GenTargetOptions& opt, uint64_t seed) {
  const int64_t res = opt.size;
  VT_CHECK(res > 0, "generation target: size ", res, " must be positive");
  CropPlan p;
  if (opt.identity_at_size && height == res && width == res) {
    p.resized_h = p.resized_w = res;
    p.identity = true;
    return p;
  }
  const int64_t mid = static_cast<int64_t>(std::nearbyint(opt.mid_ratio * static_cast<double>(res)));  // half-even
  const int64_t short_side = std::min(height, width), long_side = std::max(height, width);
  const int64_t new_long =
      static_cast<int64_t>(static_cast<double>(mid * long_side) / static_cast<double>(short_side));
  p.resized_h = height <= width ? mid : new_long;
  p.resized_w = height <= width ? new_long : mid;
  VT_CHECK(p.resized_h >= res && p.resized_w >= res, "generation target: ", height, "x", width, " resizes to ",
           p.resized_h, "x", p.resized_w, ", smaller than the ", res, "x", res, " crop (mid_ratio ", opt.mid_ratio, ")");
  if (opt.random_crop) {
    p.top = static_cast<int64_t>(draw_below(hash_key(seed, 1), static_cast<uint64_t>(p.resized_h - res + 1)));
    p.left = static_cast<int64_t>(draw_below(hash_key(seed, 2), static_cast<uint64_t>(p.resized_w - res + 1)));
  } else {
    p.top = static_cast<int64_t>(std::nearbyint((p.resized_h - res) / 2.0));
    p.left = static_cast<int64_t>(std::nearbyint((p.resized_w - res) / 2.0));
  }
  return p;
}

Tensor gen_target_transform(const RgbImage& image, const GenTargetOptions& opt, uint64_t seed) {
  check_image(image, "generation target");
  const CropPlan p = plan_gen_crop(image.height, image.width, opt, seed);
  if (p.identity) return to_tensor_pm1(image);
  const RgbImage resized = resize_pillow(image, p.resized_h, p.resized_w, ResampleFilter::Lanczos);
  return to_tensor_pm1(crop(resized, p.top, p.left, opt.size, opt.size));
}

}  // namespace vt::train
