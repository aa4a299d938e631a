// image_processor.cpp: Qwen2-VL preprocessing. The resize reproduces Pillow's ImagingResample
// (src/libImaging/Resample.c) for 8-bit images, which transformers' PIL backend calls:
//   - per output pixel, filter taps over [center - support, center + support], support = 2 (the
//     bicubic's radius) times the scale factor when downscaling (the kernel is stretched so it
//     averages every input pixel it covers), weights normalised to sum 1 in double;
//   - the weights turned into fixed point with PRECISION_BITS = 22 (rounded half away from zero);
//   - a horizontal pass, then a vertical pass, each accumulating in integers from 1 << 21 (so the
//     shift rounds) and clipping to uint8 between the passes; a pass is skipped when that side
//     keeps its size.
// All arithmetic follows Pillow's operation order, so results are bit-identical to Pillow <= 12.x
// (the fixtures use 12.2). Pillow 13.0 chooses the pass order by a size heuristic instead of always
// horizontal first, so an image that shrinks vertically can differ from it by a few levels.
#include "qwen2_vl/image_processor.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "vt/error.h"
#include "vt/io/image.h"

namespace vt::qwen2_vl {

// ---- configuration -------------------------------------------------------------------------------

ImageProcessorConfig ImageProcessorConfig::from_json_file(const std::string& path) {
  std::ifstream in(path);
  VT_CHECK(in.good(), "qwen2_vl image processor: cannot open '", path, "'");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    VT_FAIL("qwen2_vl image processor: '", path, "' is not valid JSON: ", e.what());
  }
  ImageProcessorConfig c;
  if (j.contains("size") && j["size"].is_object()) {
    c.min_pixels = j["size"].value("shortest_edge", c.min_pixels);
    c.max_pixels = j["size"].value("longest_edge", c.max_pixels);
  }
  c.min_pixels = j.value("min_pixels", c.min_pixels);
  c.max_pixels = j.value("max_pixels", c.max_pixels);
  c.patch_size = j.value("patch_size", c.patch_size);
  c.temporal_patch_size = j.value("temporal_patch_size", c.temporal_patch_size);
  c.merge_size = j.value("merge_size", c.merge_size);
  for (auto [key, dst] : {std::pair{"image_mean", &c.image_mean}, std::pair{"image_std", &c.image_std}}) {
    if (!j.contains(key)) continue;
    VT_CHECK(j[key].is_array() && j[key].size() == 3, "qwen2_vl image processor: '", path, "': ", key,
             " must be a list of 3 numbers");
    for (int i = 0; i < 3; ++i) (*dst)[i] = j[key][i].get<float>();
  }
  VT_CHECK(c.patch_size > 0 && c.temporal_patch_size > 0 && c.merge_size > 0 && c.min_pixels > 0 &&
               c.max_pixels >= c.min_pixels,
           "qwen2_vl image processor: '", path, "': bad sizes");
  return c;
}

// ---- decoding ----------------------------------------------------------------------------------------

RgbImage RgbImage::from_memory(const uint8_t* data, int64_t height, int64_t width, int channels) {
  VT_CHECK(height > 0 && width > 0, "RgbImage::from_memory: empty image ", height, "x", width);
  RgbImage im;
  im.height = height, im.width = width;
  im.pixels.resize(height * width * 3);
  io::to_rgb(data, height * width, channels, im.pixels.data());  // alpha onto white, as convert_to_rgb
  return im;
}

RgbImage load_image(const std::string& path) {
  const io::Image im = io::load_image(path);
  return RgbImage::from_memory(im.pixels.data(), im.height, im.width, im.channels);
}

// ---- smart_resize ------------------------------------------------------------------------------------

std::pair<int64_t, int64_t> smart_resize(int64_t height, int64_t width, int64_t factor, int64_t min_pixels,
                                         int64_t max_pixels) {
  VT_CHECK(height >= factor && width >= factor, "smart_resize: height ", height, " or width ", width,
           " is smaller than factor ", factor);
  double h = static_cast<double>(height), w = static_cast<double>(width), f = static_cast<double>(factor);
  double aspect = std::max(h, w) / std::min(h, w);
  VT_CHECK(aspect <= 200, "smart_resize: absolute aspect ratio must be at most 200, got ", aspect, " (", height,
           "x", width, ")");
  // Python's round() is round-half-to-even: nearbyint under the default rounding mode.
  int64_t hb = static_cast<int64_t>(std::nearbyint(h / f)) * factor;
  int64_t wb = static_cast<int64_t>(std::nearbyint(w / f)) * factor;
  if (hb * wb > max_pixels) {
    double beta = std::sqrt(h * w / static_cast<double>(max_pixels));
    // max(factor, .): newer transformers' guard against a zero side; a no-op wherever 4.46 works.
    hb = std::max(factor, static_cast<int64_t>(std::floor(h / beta / f)) * factor);
    wb = std::max(factor, static_cast<int64_t>(std::floor(w / beta / f)) * factor);
  } else if (hb * wb < min_pixels) {
    double beta = std::sqrt(static_cast<double>(min_pixels) / (h * w));
    hb = static_cast<int64_t>(std::ceil(h * beta / f)) * factor;
    wb = static_cast<int64_t>(std::ceil(w * beta / f)) * factor;
  }
  return {hb, wb};
}

// ---- Pillow BICUBIC resize ---------------------------------------------------------------------------

namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // Pillow's PRECISION_BITS

double bicubic_filter(double x) {  // Keys' cubic with a = -0.5, support 2
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

// Taps of each output pixel along one axis: input indices [first[i], first[i] + count[i]),
// fixed-point weights k[i * ksize + j].
struct Taps {
  int64_t ksize = 0;
  std::vector<int64_t> first, count;
  std::vector<int32_t> k;
};

Taps precompute_taps(int64_t in_size, int64_t out_size) {
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
  const double filterscale = std::max(scale, 1.0);
  const double support = 2.0 * filterscale;
  Taps t;
  t.ksize = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  t.first.resize(out_size), t.count.resize(out_size), t.k.assign(out_size * t.ksize, 0);
  std::vector<double> w(t.ksize);
  for (int64_t xx = 0; xx < out_size; ++xx) {
    double center = (xx + 0.5) * scale;
    double ss = 1.0 / filterscale, ww = 0.0;
    int64_t xmin = std::max<int64_t>(static_cast<int>(center - support + 0.5), 0);  // C truncation, as Pillow
    int64_t xmax = std::min<int64_t>(static_cast<int>(center + support + 0.5), in_size) - xmin;
    for (int64_t x = 0; x < xmax; ++x) {
      w[x] = bicubic_filter((x + xmin - center + 0.5) * ss);
      ww += w[x];
    }
    for (int64_t x = 0; x < xmax; ++x) {
      double kx = ww != 0.0 ? w[x] / ww : w[x];
      double fixed = kx * (1 << kPrecisionBits);
      t.k[xx * t.ksize + x] = static_cast<int32_t>(kx < 0 ? -0.5 + fixed : 0.5 + fixed);
    }
    t.first[xx] = xmin, t.count[xx] = xmax;
  }
  return t;
}

uint8_t clip8(int64_t acc) { return static_cast<uint8_t>(std::clamp<int64_t>(acc >> kPrecisionBits, 0, 255)); }

// One pass along an axis of an interleaved RGB image; `horizontal` picks the axis.
RgbImage resample_pass(const RgbImage& in, int64_t out_size, bool horizontal) {
  Taps t = precompute_taps(horizontal ? in.width : in.height, out_size);
  RgbImage out;
  out.height = horizontal ? in.height : out_size;
  out.width = horizontal ? out_size : in.width;
  out.pixels.resize(out.height * out.width * 3);
#pragma omp parallel for schedule(static)
  for (int64_t y = 0; y < out.height; ++y) {
    for (int64_t x = 0; x < out.width; ++x) {
      int64_t i = horizontal ? x : y;
      const int32_t* k = &t.k[i * t.ksize];
      for (int c = 0; c < 3; ++c) {
        int64_t acc = int64_t{1} << (kPrecisionBits - 1);
        for (int64_t j = 0; j < t.count[i]; ++j) {
          int64_t src = t.first[i] + j;
          acc += static_cast<int64_t>(horizontal ? in.at(y, src, c) : in.at(src, x, c)) * k[j];
        }
        out.pixels[(y * out.width + x) * 3 + c] = clip8(acc);
      }
    }
  }
  return out;
}

}  // namespace

RgbImage resize_bicubic(const RgbImage& image, int64_t height, int64_t width) {
  VT_CHECK(height > 0 && width > 0, "resize_bicubic: target size ", height, "x", width, " must be positive");
  VT_CHECK(image.height > 0 && image.width > 0 &&
               static_cast<int64_t>(image.pixels.size()) == image.height * image.width * 3,
           "resize_bicubic: image of ", image.height, "x", image.width, " has ", image.pixels.size(), " bytes");
  // Pillow resamples rows first; it limits that pass to the rows the vertical pass reads, which
  // gives the same values for those rows, so every row is done here.
  RgbImage r = image.width != width ? resample_pass(image, width, true) : image;
  return r.height != height ? resample_pass(r, height, false) : r;
}

// ---- the whole pipeline ------------------------------------------------------------------------------

ProcessedImages preprocess(const std::vector<RgbImage>& images, const ImageProcessorConfig& cfg) {
  VT_CHECK(!images.empty(), "qwen2_vl preprocess: no images");
  const int64_t P = cfg.patch_size, T = cfg.temporal_patch_size, M = cfg.merge_size, D = cfg.patch_dim();
  std::vector<float> values;
  std::vector<int64_t> grids;
  for (const RgbImage& im : images) {
    auto [rh, rw] = smart_resize(im.height, im.width, cfg.factor(), cfg.min_pixels, cfg.max_pixels);
    RgbImage r = resize_bicubic(im, rh, rw);
    const int64_t gh = rh / P, gw = rw / P;
    // rescale then normalise as transformers' numpy code: x * (1/255) in f64 rounded to f32, then
    // (x - mean) / std in f32.
    float lut[3][256];
    for (int c = 0; c < 3; ++c)
      for (int v = 0; v < 256; ++v)
        lut[c][v] = (static_cast<float>(v * (1.0 / 255.0)) - cfg.image_mean[c]) / cfg.image_std[c];
    size_t base = values.size();
    values.resize(base + gh * gw * D);
    float* out = values.data() + base;
    // row = ((bh * gw/M + bw) * M + mh) * M + mw, column = ((c * T + t) * P + py) * P + px
    for (int64_t bh = 0; bh < gh / M; ++bh)
      for (int64_t bw = 0; bw < gw / M; ++bw)
        for (int64_t mh = 0; mh < M; ++mh)
          for (int64_t mw = 0; mw < M; ++mw) {
            float* row = out + (((bh * (gw / M) + bw) * M + mh) * M + mw) * D;
            int64_t y0 = (bh * M + mh) * P, x0 = (bw * M + mw) * P;
            for (int c = 0; c < 3; ++c)
              for (int64_t t = 0; t < T; ++t)  // the one frame repeated temporal_patch_size times
                for (int64_t py = 0; py < P; ++py)
                  for (int64_t px = 0; px < P; ++px)
                    row[((c * T + t) * P + py) * P + px] = lut[c][r.at(y0 + py, x0 + px, c)];
          }
    grids.insert(grids.end(), {1, gh, gw});
  }
  int64_t rows = static_cast<int64_t>(values.size()) / D, n = static_cast<int64_t>(images.size());
  return {from_vector(values, Shape{rows, D}), from_vector(grids, Shape{n, 3})};
}

ProcessedImages preprocess_files(const std::vector<std::string>& paths, const ImageProcessorConfig& cfg) {
  std::vector<RgbImage> images;
  for (const auto& p : paths) images.push_back(load_image(p));
  return preprocess(images, cfg);
}

ProcessedImages preprocess_rgb(const uint8_t* rgb, int64_t height, int64_t width, const ImageProcessorConfig& cfg) {
  return preprocess({RgbImage::from_memory(rgb, height, width, 3)}, cfg);
}

}  // namespace vt::qwen2_vl
