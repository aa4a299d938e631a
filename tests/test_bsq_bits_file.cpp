// Bits files (models/bsq_vae/bits_file.h) and reading a BSQ-VAE's architecture from its
// checkpoint: save/load round trip on real encoder output, and every malformed-file case the
// reader must name (wrong depth, wrong schedule, truncation, non-binary values, foreign files).
#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <iterator>

#include "bsq_vae/bits_file.h"
#include "bsq_vae/bsq_vae.h"
#include "vt/io/tensor_io.h"
#include "vt/ops.h"
#include "vt/random.h"

using namespace vt;
using infinity::ScaleHW;

namespace {

std::map<std::string, Tensor> fixture_weights() {
  std::map<std::string, Tensor> w;
  for (const auto& [k, v] : io::load_safetensors(std::string(VT_FIXTURES) + "/bsq_vae.safetensors"))
    if (k.rfind("encoder.", 0) == 0 || k.rfind("decoder.", 0) == 0) w[k] = v;
  return w;
}

std::string tmp_path(const std::string& name) {
  return std::string("/tmp/vt_bits_") + std::to_string(::getpid()) + "_" + name;
}

std::vector<Tensor> random_bits(const std::vector<int64_t>& sides, int64_t B, int64_t d, uint64_t seed) {
  manual_seed(seed);
  std::vector<Tensor> bits;
  for (int64_t s : sides) bits.push_back(gt(rand({B, s, s, d}), 0.5));
  return bits;
}

int64_t count_different(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  return static_cast<int64_t>(sum(ne(a.to(DType::F32), b.to(DType::F32)).to(DType::F64)).item());
}

}  // namespace

TEST_CASE("infer_bsq_vae_config reads the tiny fixture's architecture from its tensor shapes") {
  const bsq::BsqVaeConfig c = bsq::infer_bsq_vae_config(fixture_weights(), "fixture");
  CHECK(c.in_channels == 3);
  CHECK(c.base_channels == 32);
  CHECK(c.channel_mult == std::vector<int64_t>{1, 2});
  CHECK(c.num_res_blocks == 1);
  CHECK(c.codebook_dim == 16);
  CHECK(c.patch_size == 2);
  // The model built from it loads the checkpoint strictly (every tensor has its place).
  bsq::BsqVae vae(c);
  CHECK(vae.load_checkpoint(fixture_weights(), true, "fixture").unexpected.empty());

  // The real Infinity d32 architecture, from a module's own (plain-name) state dict.
  bsq::BsqVae real(bsq::BsqVaeConfig::infinity_d32());
  const bsq::BsqVaeConfig r = bsq::infer_bsq_vae_config(real.state_dict(), "d32");
  CHECK(r.base_channels == 128);
  CHECK(r.channel_mult == std::vector<int64_t>{1, 2, 4, 4, 4});
  CHECK(r.num_res_blocks == 2);
  CHECK(r.codebook_dim == 32);
  CHECK(r.patch_size == 16);

  auto w = fixture_weights();
  w.erase("encoder.conv_out.conv.weight");
  CHECK_THROWS_WITH_AS(bsq::infer_bsq_vae_config(w, "broken.safetensors"),
                       doctest::Contains("broken.safetensors: not a BSQ-VAE checkpoint: 'encoder.conv_out.weight'"),
                       Error);
}

TEST_CASE("bits files: encoder output survives save and load; decoding the loaded bits is identical") {
  bsq::BsqVae vae(bsq::infer_bsq_vae_config(fixture_weights(), "fixture"));
  vae.load_checkpoint(fixture_weights(), true, "fixture");
  manual_seed(3);
  const Tensor image = clamp(randn({2, 3, 32, 32}) * 0.5, -1.0, 1.0);
  const std::vector<ScaleHW> scales = {{1, 1}, {2, 2}, {3, 3}, {5, 5}, {8, 8}, {16, 16}};
  NoGradGuard no_grad;
  const std::vector<Tensor> bits = vae.encode_bits(image, scales);
  const std::string path = tmp_path("roundtrip.bits");
  bsq::save_bits(path, bits);
  const bsq::BitsFile f = bsq::load_bits(path);
  CHECK(f.codebook_dim == 16);
  CHECK(f.scales == scales);
  CHECK(f.batch() == 2);
  REQUIRE(f.bits.size() == bits.size());
  for (size_t k = 0; k < bits.size(); ++k) {
    CHECK(f.bits[k].dtype() == DType::Bool);
    CHECK(count_different(f.bits[k], bits[k]) == 0);
  }
  CHECK(count_different(vae.decode_bits(f.bits), vae.decode_bits(bits)) == 0);
  CHECK_NOTHROW(bsq::check_bits(f, 16, scales, path));
  CHECK_NOTHROW(bsq::check_bits(f, 16, {}, path));
  std::remove(path.c_str());
}

TEST_CASE("bits files: wrong depth, wrong schedule, truncation and foreign files are named errors") {
  const std::string path = tmp_path("bad.bits");
  bsq::save_bits(path, random_bits({1, 2, 4}, 1, 24, 7));
  const bsq::BitsFile f = bsq::load_bits(path);
  CHECK_THROWS_WITH_AS(bsq::check_bits(f, 32, {}, "bits file x"),
                       doctest::Contains("bits file x: bits have depth d = 24, the VAE expects d = 32"), Error);
  CHECK_THROWS_WITH_AS(bsq::check_bits(f, 24, {{1, 1}, {2, 2}, {3, 3}}, "bits file x"),
                       doctest::Contains("scales 1x1,2x2,4x4 are not the schedule expected here (1x1,2x2,3x3)"),
                       Error);

  // Truncated: the header promises more bytes than the file holds.
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string cut = tmp_path("cut.bits");
  std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() - 10);
  CHECK_THROWS_WITH_AS(bsq::load_bits(cut), doctest::Contains("cut.bits"), Error);

  // A safetensors file that is not a bits file (no metadata).
  const std::string foreign = tmp_path("foreign.bits");
  io::save_safetensors(foreign, {{"scale.0", zeros({1, 1, 1, 8}, DType::U8)}});
  CHECK_THROWS_WITH_AS(bsq::load_bits(foreign), doctest::Contains("metadata has no 'format'"), Error);

  // Shapes that disagree with the metadata, and values other than 0/1.
  const std::map<std::string, std::string> meta = {
      {"format", "vt.bsq_bits"}, {"version", "1"}, {"codebook_dim", "8"}, {"scales", "1x1,2x2"}};
  io::save_safetensors(foreign, {{"scale.0", zeros({1, 1, 1, 8}, DType::U8)}, {"scale.1", zeros({1, 3, 2, 8}, DType::U8)}},
                       meta);
  CHECK_THROWS_WITH_AS(bsq::load_bits(foreign), doctest::Contains("scale.1 is (1, 3, 2, 8), the metadata says (B, 2, 2, 8)"),
                       Error);
  io::save_safetensors(foreign,
                       {{"scale.0", zeros({1, 1, 1, 8}, DType::U8)}, {"scale.1", full({1, 2, 2, 8}, 2.0, DType::U8)}},
                       meta);
  CHECK_THROWS_WITH_AS(bsq::load_bits(foreign), doctest::Contains("scale.1 holds values other than 0 and 1"), Error);
  io::save_safetensors(foreign, {{"scale.0", zeros({1, 1, 1, 8}, DType::U8)}}, meta);
  CHECK_THROWS_WITH_AS(bsq::load_bits(foreign), doctest::Contains("holds 1 tensors for 2 scales"), Error);

  // Writing refuses inconsistent scales.
  auto mixed = random_bits({1, 2}, 1, 8, 1);
  mixed.push_back(random_bits({4}, 1, 16, 2)[0]);
  CHECK_THROWS_WITH_AS(bsq::save_bits(path, mixed), doctest::Contains("scale 2 is (1, 4, 4, 16)"), Error);
  for (const auto& p : {path, cut, foreign}) std::remove(p.c_str());
}
