// cmd_vae.cpp: `vargpt vae`: the BSQ-VAE tokenizer on its own: an image to per-scale bits, bits
// back to an image, and a round-trip report (bits per image, PSNR).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "bsq_vae/bits_file.h"
#include "bsq_vae/bsq_vae.h"
#include "commands.h"
#include "options.h"
#include "shapeworld/render.h"
#include "vargpt/vargpt.h"
#include "vt/io/tensor_io.h"
#include "vt/ops.h"

namespace {

using namespace vt;
namespace vg = vt::vargpt;  // the model; ::vargpt is the command line
using vt::infinity::ScaleHW;

const char* const kUsage =
    "usage:\n"
    "  vargpt vae --vae CKPT --encode IMAGE --out BITS    [--scales LIST] [--device D]\n"
    "  vargpt vae --vae CKPT --decode BITS --out IMAGE    [--scales LIST] [--device D]\n"
    "  vargpt vae --vae CKPT --roundtrip IMAGE [--out IMAGE] [--scales LIST] [--device D]\n"
    "\n"
    "CKPT    a BSQ-VAE safetensors file (plain or upstream-wrapped tensor names; the architecture is\n"
    "        read from the tensor shapes, e.g. d = 32 for infinity_vae_d32reg), or a VARGPT checkpoint\n"
    "        directory (its vae_local.* tensors; GroupNorm groups from its config.json)\n"
    "IMAGE   PNG/JPEG/BMP/TGA in (the format is read from the bytes; vt/io/image.h); PNG out (written\n"
    "        atomically)\n"
    "BITS    a bits file (safetensors, one U8 (1, h, w, d) tensor per scale; see models/bsq_vae/bits_file.h)\n"
    "--scales  the scale sides strictly coarse to fine (no side shrinks, the area grows), '1,2,4,8' or\n"
    "          '1x1,2x2,...'; default: Infinity's schedule for the image size (the image must match a\n"
    "          template: 256x256, 512x512, 1024x1024, ...)\n"
    "--device  cpu (default) or cuda; --threads N: OpenMP threads\n";

std::vector<ScaleHW> parse_scale_list(const std::string& text) {
  std::vector<ScaleHW> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const size_t x = item.find('x');
    char* end = nullptr;
    const long long h = std::strtoll(item.c_str(), &end, 10);
    const bool h_whole = end == item.c_str() + (x == std::string::npos ? item.size() : x);
    const long long w = x == std::string::npos ? h : std::strtoll(item.c_str() + x + 1, &end, 10);
    VT_CHECK(h > 0 && w > 0 && h_whole && end && *end == '\0', "--scales: '", item, "' is not a side N or HxW");
    VT_CHECK(h <= 65536 && w <= 65536, "--scales: '", item, "' has a side above 65536");
    out.push_back({h, w});
    // Coarse to fine: each scale refines the residual the coarser ones left (Infinity's
    // bitwise multi-scale quantisation), so no side may shrink and the area must grow.
    if (out.size() >= 2) {
      const ScaleHW a = out[out.size() - 2], b = out.back();
      VT_CHECK(b.h >= a.h && b.w >= a.w && b.h * b.w > a.h * a.w, "--scales must go strictly coarse to fine: scale ",
               out.size() - 1, " (", b.h, "x", b.w, ") is not finer than scale ", out.size() - 2, " (", a.h, "x",
               a.w, ")");
    }
  }
  VT_CHECK(!out.empty(), "--scales is empty");
  return out;
}

struct Vae {
  std::unique_ptr<bsq::BsqVae> model;
  Device device;
};

Vae load_vae(const ::vargpt::Options& o) {
  const std::string path = o.required("vae");
  // Only encoder.* and decoder.* belong to the autoencoder; other tensors (a training checkpoint's
  // discriminator or EMA copies, fixtures' reference outputs) are listed and skipped.
  // A VARGPT checkpoint (its directory, or its model.safetensors) holds the tokenizer as vae_local.*:
  // that prefix is dropped, and the GroupNorm group count, which no tensor shape shows, comes from
  // the directory's config.json (vt_vae_norm_groups) when it sets one.
  std::map<std::string, Tensor> state;
  std::vector<std::string> skipped;
  for (auto& [full, t] : io::load_safetensors(path)) {
    const std::string name = full.rfind("vae_local.", 0) == 0 ? full.substr(10) : full;
    if (name.rfind("encoder.", 0) == 0 || name.rfind("decoder.", 0) == 0) state[name] = t;
    else skipped.push_back(full);
  }
  if (!skipped.empty())
    std::fprintf(stderr, "vae: %s: skipped %zu tensors outside encoder./decoder. (first: %s)\n", path.c_str(),
                 skipped.size(), skipped[0].c_str());
  const std::filesystem::path dir = std::filesystem::is_directory(path) ? std::filesystem::path(path)
                                                                        : std::filesystem::path(path).parent_path();
  const std::filesystem::path config = dir / "config.json";  // a VARGPT checkpoint's, when there is one
  std::ifstream in(config);
  const int64_t groups = vg::vae_norm_groups(
      in ? nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false) : nlohmann::json(), config.string());
  Vae v{std::make_unique<bsq::BsqVae>(bsq::infer_bsq_vae_config(state, path, groups)),
        Device::parse(o.value_or("device", "cpu"))};
  v.model->load_checkpoint(state, true, path);
  v.model->eval();
  v.model->to(v.device);
  return v;
}

// The schedule for an image of (H, W) pixels: --scales, or Infinity's standard one.
std::vector<ScaleHW> schedule(const ::vargpt::Options& o, const bsq::BsqVae& vae, int64_t H, int64_t W) {
  if (o.has("scales")) return parse_scale_list(o.value_or("scales", ""));
  const int64_t p = vae.config().patch_size;
  VT_CHECK(p == infinity::kLatentStride, "this VAE down-samples by ", p, ", Infinity's schedules assume ",
           infinity::kLatentStride, ": pass --scales");
  return infinity::schedule_for_image(H, W).scales;
}

// (1, 3, H, W) f32 in [-1, 1] from 8-bit RGB.
Tensor image_to_tensor(const shapes::Image& img) {
  Tensor hwc = from_blob(img.rgb.data(), {img.height, img.width, 3}, DType::U8).to(DType::F32);
  return (hwc.permute({2, 0, 1}).unsqueeze(0) * (1.0 / 127.5) - 1.0).contiguous();
}

// 8-bit RGB from one image (3, H, W) in [-1, 1]: (x + 1) * 127.5 rounded half to even, clamped.
shapes::Image tensor_to_image(const Tensor& chw) {
  const Tensor x = chw.to(Device::cpu()).to(DType::F32).contiguous();  // (3, H, W)
  const int64_t H = x.size(1), W = x.size(2);
  shapes::Image img{int(W), int(H)};
  const float* p = x.data<float>();
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t i = 0; i < H * W; ++i) {
      const double v = std::nearbyint((double(p[c * H * W + i]) + 1.0) * 127.5);
      img.rgb[size_t(i) * 3 + c] = uint8_t(std::clamp(v, 0.0, 255.0));
    }
  return img;
}

double psnr(const shapes::Image& a, const shapes::Image& b) {
  double se = 0;
  for (size_t i = 0; i < a.rgb.size(); ++i) se += std::pow(double(a.rgb[i]) - double(b.rgb[i]), 2);
  const double mse = se / double(a.rgb.size());
  return mse == 0 ? INFINITY : 10.0 * std::log10(255.0 * 255.0 / mse);
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

std::vector<Tensor> encode(const Vae& v, const ::vargpt::Options& o, const shapes::Image& img) {
  const auto scales = schedule(o, *v.model, img.height, img.width);
  NoGradGuard no_grad;
  return v.model->encode_bits(image_to_tensor(img).to(v.device), scales);
}

Tensor decode(const Vae& v, const std::vector<Tensor>& bits) {
  NoGradGuard no_grad;
  std::vector<Tensor> on_device;
  for (const Tensor& b : bits) on_device.push_back(b.to(v.device));
  return v.model->decode_bits(on_device);
}

}  // namespace

int cmd_vae(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help") {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  auto o = ::vargpt::parse_options(argc, argv, 1, {"vae", "encode", "decode", "roundtrip", "out", "scales", "device", "threads"},
                                 {}, kUsage);
  ::vargpt::set_threads(o);
  VT_CHECK(o.has("encode") + o.has("decode") + o.has("roundtrip") == 1,
           "give exactly one of --encode, --decode, --roundtrip\n", kUsage);
  const auto start = std::chrono::steady_clock::now();
  Vae v = load_vae(o);
  const int64_t d = v.model->config().codebook_dim;
  if (o.has("encode")) {
    const std::string in = o.value_or("encode", ""), out = o.required("out");
    const shapes::Image img = shapes::read_image(in);
    const std::vector<Tensor> bits = encode(v, o, img);
    bsq::save_bits(out, bits);
    int64_t tokens = 0;
    for (const Tensor& b : bits) tokens += b.size(1) * b.size(2);
    std::printf("%s: %dx%d -> %zu scales, %lld tokens x %lld bits -> %s (%.2f s)\n", in.c_str(), img.width,
                img.height, bits.size(), (long long)tokens, (long long)d, out.c_str(), seconds_since(start));
    return 0;
  }
  if (o.has("decode")) {
    const std::string in = o.value_or("decode", ""), out = o.required("out");
    bsq::BitsFile file = bsq::load_bits(in);
    VT_CHECK(file.batch() == 1, "bits file ", in, ": holds ", file.batch(), " images; --decode writes one");
    const int64_t p = v.model->config().patch_size;
    std::vector<ScaleHW> expected;
    if (o.has("scales")) expected = parse_scale_list(o.value_or("scales", ""));
    else if (p == infinity::kLatentStride)
      expected = infinity::schedule_for_image(file.scales.back().h * p, file.scales.back().w * p).scales;
    bsq::check_bits(file, d, expected, "bits file " + in);
    const Tensor image = decode(v, file.bits);
    shapes::write_png(out, tensor_to_image(image.select(0, 0)));
    std::printf("%s -> %s (%lldx%lld, %.2f s)\n", in.c_str(), out.c_str(), (long long)image.size(3),
                (long long)image.size(2), seconds_since(start));
    return 0;
  }
  const std::string in = o.value_or("roundtrip", "");
  const shapes::Image img = shapes::read_image(in);
  const std::vector<Tensor> bits = encode(v, o, img);
  const shapes::Image recon = tensor_to_image(decode(v, bits).select(0, 0));
  if (o.has("out")) shapes::write_png(o.value_or("out", ""), recon);
  int64_t tokens = 0;
  for (const Tensor& b : bits) tokens += b.size(1) * b.size(2);
  std::printf("%s: %dx%d, %zu scales, %lld tokens x %lld bits = %lld bits (%.4f bits/pixel), PSNR %.2f dB (%.2f s)\n",
              in.c_str(), img.width, img.height, bits.size(), (long long)tokens, (long long)d,
              (long long)(tokens * d), double(tokens * d) / (double(img.width) * img.height), psnr(img, recon),
              seconds_since(start));
  return 0;
}
