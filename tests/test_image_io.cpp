// test_image_io.cpp: vt's one image loader (vt/io/image.h).
//
// References are independent of stb_image's decoder: Pillow wrote tests/fixtures/images/
// (tools/gen_image_fixtures.py) and decoded its JPEG; stb_image_write writes the in-memory JPEGs
// and the pixels they came from are known. Lossless formats must give the PNG's bytes exactly.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <unistd.h>

#include "vt/error.h"
#include "vt/io/image.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-function"
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

namespace fs = std::filesystem;
using vt::io::Image;

namespace {

const std::string kDir = std::string(VT_FIXTURES) + "/images";

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in, "cannot open ", path, " (regenerate with tools/gen_image_fixtures.py)");
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

std::string error_of(auto&& f) {
  try {
    f();
  } catch (const vt::Error& e) {
    return e.what();
  }
  return "(no error)";
}

fs::path scratch() {
  fs::path d = fs::temp_directory_path() / ("vt_test_image_io_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

// Mean and max absolute difference of two same-sized 8-bit images.
std::pair<double, int> diff(const Image& a, const Image& b) {
  REQUIRE(a.pixels.size() == b.pixels.size());
  double sum = 0;
  int worst = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i) {
    const int d = std::abs(int(a.pixels[i]) - int(b.pixels[i]));
    sum += d, worst = std::max(worst, d);
  }
  return {sum / double(a.pixels.size()), worst};
}

}  // namespace

TEST_CASE("load_image: PNG, BMP and TGA give the same pixels; JPEG is close to Pillow's decode") {
  const Image png = vt::io::load_image(kDir + "/picture.png");
  REQUIRE(png.width == 64);
  REQUIRE(png.height == 64);
  REQUIRE(png.channels == 3);
  for (const char* lossless : {"picture.bmp", "picture.tga"}) {
    CAPTURE(lossless);
    const Image im = vt::io::load_image(kDir + "/" + lossless);
    CHECK(im.width == 64);
    CHECK(im.channels == 3);
    CHECK(im.pixels == png.pixels);
  }
  const Image jpg = vt::io::load_image(kDir + "/picture.jpg");
  const auto [mean_pil, max_pil] = diff(jpg, vt::io::load_image(kDir + "/picture_jpg.png"));
  MESSAGE("JPEG vs Pillow's decode: mean ", mean_pil, ", max ", max_pil, " levels");
  CHECK(mean_pil < 1.5);  // different IDCT and chroma upsampling, same image
  CHECK(max_pil <= 24);
  const auto [mean_src, max_src] = diff(jpg, png);
  CHECK(mean_src < 4.0);  // quality 90 from the source pixels
}

TEST_CASE("load_image: the format comes from the bytes, not the file name") {
  const fs::path dir = scratch();
  const std::string misnamed = (dir / "really_a_jpeg.png").string();
  write_bytes(misnamed, read_bytes(kDir + "/picture.jpg"));
  CHECK(vt::io::load_image(misnamed).pixels == vt::io::load_image(kDir + "/picture.jpg").pixels);
  fs::remove_all(dir);
}

// fuzz_image: stb_image writes past its 257-slot Huffman size list when a table's 16 code counts sum
// to more than 256. vt refuses such a JPEG, naming it, before stb sees it.
TEST_CASE("load_image: a JPEG Huffman table with more than 256 codes is an error, not an overflow") {
  std::vector<uint8_t> bytes = read_bytes(kDir + "/picture.jpg");
  REQUIRE(vt::io::load_image_from_memory(bytes.data(), bytes.size(), "ok").width > 0);
  size_t dht = 2;
  while (dht + 1 < bytes.size() && !(bytes[dht] == 0xFF && bytes[dht + 1] == 0xC4)) ++dht;
  REQUIRE(dht + 21 < bytes.size());
  for (int k = 1; k <= 16; ++k) bytes[dht + 4 + size_t(k)] = 0x20;  // 16 x 32 = 512 codes
  std::string msg;
  try {
    vt::io::load_image_from_memory(bytes.data(), bytes.size(), "bad.jpg");
  } catch (const vt::Error& e) {
    msg = e.what();
  }
  CHECK_MESSAGE(msg.find("bad.jpg: corrupt JPEG: a Huffman table lists 512 codes") != std::string::npos, msg);
}

TEST_CASE("load_image_from_memory: JPEGs from stb_image_write at quality 30 (4:2:0) and 95") {
  // A smooth picture with an edge: what ShapeWorld scenes look like, at the size they come in.
  const int w = 96, h = 80;
  std::vector<uint8_t> src(size_t(w) * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* p = &src[(size_t(y) * w + x) * 3];
      const bool square = x > 30 && x < 60 && y > 20 && y < 50;
      p[0] = square ? 220 : uint8_t(x * 2), p[1] = square ? 200 : uint8_t(y * 3), p[2] = square ? 30 : 128;
    }
  for (int quality : {30, 95}) {
    CAPTURE(quality);
    std::vector<uint8_t> jpg;
    const auto sink = [](void* ctx, void* data, int size) {
      auto* out = static_cast<std::vector<uint8_t>*>(ctx);
      out->insert(out->end(), static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + size);
    };
    REQUIRE(stbi_write_jpg_to_func(sink, &jpg, w, h, 3, src.data(), quality));
    const Image im = vt::io::load_image_from_memory(jpg.data(), jpg.size(), "stb jpeg");
    REQUIRE(im.width == w);
    REQUIRE(im.height == h);
    REQUIRE(im.channels == 3);
    Image want;
    want.width = w, want.height = h, want.channels = 3, want.pixels = src;
    const auto [mean, worst] = diff(im, want);
    MESSAGE("quality ", quality, ": mean error ", mean, ", max ", worst);
    CHECK(mean < (quality == 30 ? 6.0 : 2.0));
  }
}

TEST_CASE("to_rgb: gray is replicated, alpha is composited onto white") {
  const Image la = vt::io::load_image(kDir + "/gray_alpha.png");  // gray x * 16, alpha y * 17
  REQUIRE(la.channels == 2);
  const Image rgb = vt::io::to_rgb(la);
  REQUIRE(rgb.channels == 3);
  const auto at = [&](int x, int y, int c) { return int(rgb.pixels[(size_t(y) * 16 + x) * 3 + c]); };
  for (int x = 0; x < 16; ++x) {
    CHECK(at(x, 0, 0) == 255);     // alpha 0: white
    CHECK(at(x, 15, 1) == x * 16);  // alpha 255: the gray value in every channel
    // In between, Pillow's rounding keeps within half a level of gray * a + 255 * (1 - a).
    const double a = 8 * 17 / 255.0, want = x * 16 * a + 255 * (1 - a);
    CHECK(std::abs(at(x, 8, 2) - want) <= 1.0);
  }
}

TEST_CASE("load_image: bad files are refused with the file and the reason") {
  const fs::path dir = scratch();
  const std::string missing = (dir / "missing.png").string();
  CHECK(error_of([&] { vt::io::load_image(missing); }) == "load_image: " + missing + ": no such file");

  const std::string empty = (dir / "empty.jpg").string();
  write_bytes(empty, {});
  CHECK(error_of([&] { vt::io::load_image(empty); }).find(empty + ": empty file") != std::string::npos);

  const std::string text = (dir / "text.png").string();
  write_bytes(text, {'h', 'e', 'l', 'l', 'o'});
  CHECK(error_of([&] { vt::io::load_image(text); }).find(text + ": cannot decode") != std::string::npos);

  std::vector<uint8_t> jpg = read_bytes(kDir + "/picture.jpg");
  jpg.resize(jpg.size() * 2 / 3);
  const std::string cut = (dir / "cut.jpg").string();
  write_bytes(cut, jpg);
  CHECK(error_of([&] { vt::io::load_image(cut); }).find(cut + ": truncated JPEG") != std::string::npos);

  // A PNG whose header claims 17000 x 17000 pixels (IHDR width and height, big-endian, at 16):
  // within stb_image's own limit (2^30 bytes), beyond vt's kMaxImagePixels, refused before decoding.
  std::vector<uint8_t> png = read_bytes(kDir + "/picture.png");
  for (int k : {16, 20}) png[k] = 0, png[k + 1] = 0, png[k + 2] = 0x42, png[k + 3] = 0x68;
  const std::string e = error_of([&] { vt::io::load_image_from_memory(png.data(), png.size(), "huge.png"); });
  CHECK_MESSAGE(e.find("huge.png: claims 17000x17000 pixels") != std::string::npos, e);
  fs::remove_all(dir);
}
