// bits_file.cpp: reading and writing per-scale BSQ bits; see bits_file.h.
#include "bsq_vae/bits_file.h"

#include <sstream>

#include "vt/io/tensor_io.h"
#include "vt/ops.h"

namespace vt::bsq {
namespace {

constexpr const char* kFormat = "vt.bsq_bits";
constexpr const char* kVersion = "1";

std::string scale_key(size_t k) { return "scale." + std::to_string(k); }

int64_t parse_int(const std::string& s, const std::string& what) {
  size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  VT_CHECK(used == s.size() && !s.empty() && v > 0, what, ": '", s, "' is not a positive integer");
  return v;
}

std::vector<infinity::ScaleHW> parse_scales(const std::string& text, const std::string& what) {
  std::vector<infinity::ScaleHW> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const size_t x = item.find('x');
    VT_CHECK(x != std::string::npos, what, ": scale '", item, "' is not of the form HxW");
    out.push_back({parse_int(item.substr(0, x), what), parse_int(item.substr(x + 1), what)});
  }
  VT_CHECK(!out.empty(), what, ": the scale list is empty");
  return out;
}

}  // namespace

std::string scales_to_string(const std::vector<infinity::ScaleHW>& scales) {
  std::string s;
  for (size_t k = 0; k < scales.size(); ++k) {
    if (k) s += ',';
    s += std::to_string(scales[k].h);
    s += 'x';
    s += std::to_string(scales[k].w);
  }
  return s;
}

void save_bits(const std::string& path, const std::vector<Tensor>& bits) {
  VT_CHECK(!bits.empty(), "save_bits(", path, "): no scales");
  const int64_t B = bits[0].dim() == 4 ? bits[0].size(0) : -1, d = bits[0].dim() == 4 ? bits[0].size(3) : -1;
  std::map<std::string, Tensor> tensors;
  std::vector<infinity::ScaleHW> scales;
  for (size_t k = 0; k < bits.size(); ++k) {
    const Tensor& b = bits[k];
    VT_CHECK(b.dim() == 4 && b.size(0) == B && b.size(3) == d, "save_bits(", path, "): scale ", k, " is ",
             b.shape().str(), ", expected (", B, ", h, w, ", d, ") like scale 0");
    VT_CHECK(b.dtype() == DType::Bool || !is_floating(b.dtype()), "save_bits(", path, "): scale ", k,
             " has dtype ", dtype_name(b.dtype()), "; bits are Bool or integer 0/1");
    tensors[scale_key(k)] = b.to(Device::cpu()).to(DType::U8).contiguous();
    scales.push_back({b.size(1), b.size(2)});
  }
  io::save_safetensors(path, tensors,
                       {{"format", kFormat},
                        {"version", kVersion},
                        {"codebook_dim", std::to_string(d)},
                        {"scales", scales_to_string(scales)}});
}

BitsFile load_bits(const std::string& path) {
  const std::string what = "bits file " + path;
  const std::shared_ptr<io::SafetensorsFile> file = io::SafetensorsFile::open(path);  // parsed once
  const auto& meta = file->metadata();
  auto field = [&](const char* key) {
    auto it = meta.find(key);
    VT_CHECK(it != meta.end(), what, ": metadata has no '", key, "' (not written by vargpt vae --encode?)");
    return it->second;
  };
  VT_CHECK(field("format") == kFormat, what, ": format is '", field("format"), "', expected '", kFormat, "'");
  VT_CHECK(field("version") == kVersion, what, ": version ", field("version"), " is not supported (this build reads ",
           kVersion, ")");
  BitsFile out;
  out.codebook_dim = parse_int(field("codebook_dim"), what + " codebook_dim");
  out.scales = parse_scales(field("scales"), what + " scales");
  std::map<std::string, Tensor> tensors;
  for (const io::TensorEntry& e : file->entries())
    tensors[e.name] = io::tensor_from_entry(e, file->data(e), file, /*zero_copy=*/false, path);
  VT_CHECK(tensors.size() == out.scales.size(), what, ": holds ", tensors.size(), " tensors for ",
           out.scales.size(), " scales");
  for (size_t k = 0; k < out.scales.size(); ++k) {
    auto it = tensors.find(scale_key(k));
    VT_CHECK(it != tensors.end(), what, ": tensor '", scale_key(k), "' is missing");
    const Tensor& t = it->second;
    const int64_t B = k ? out.bits[0].size(0) : (t.dim() == 4 ? t.size(0) : -1);
    VT_CHECK(t.dim() == 4 && t.size(0) == B && t.size(1) == out.scales[k].h && t.size(2) == out.scales[k].w &&
                 t.size(3) == out.codebook_dim,
             what, ": ", scale_key(k), " is ", t.shape().str(), ", the metadata says (B, ", out.scales[k].h, ", ",
             out.scales[k].w, ", ", out.codebook_dim, ")");
    VT_CHECK(t.dtype() == DType::U8, what, ": ", scale_key(k), " has dtype ", dtype_name(t.dtype()), ", expected U8");
    VT_CHECK(B > 0, what, ": batch size 0");
    VT_CHECK(t.numel() == 0 || amax(t).item() <= 1.0, what, ": ", scale_key(k), " holds values other than 0 and 1");
    out.bits.push_back(t.to(DType::Bool));
  }
  return out;
}

void check_bits(const BitsFile& file, int64_t d, const std::vector<infinity::ScaleHW>& expected,
                const std::string& what) {
  VT_CHECK(file.codebook_dim == d, what, ": bits have depth d = ", file.codebook_dim, ", the VAE expects d = ", d);
  if (!expected.empty())
    VT_CHECK(file.scales == expected, what, ": scales ", scales_to_string(file.scales),
             " are not the schedule expected here (", scales_to_string(expected), ")");
  for (size_t k = 1; k < file.scales.size(); ++k)
    VT_CHECK(file.scales[k].h >= file.scales[k - 1].h && file.scales[k].w >= file.scales[k - 1].w, what,
             ": scales must grow coarse to fine, got ", scales_to_string(file.scales));
}

}  // namespace vt::bsq
