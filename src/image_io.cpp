// image_io.cpp: vt's image loader (see image.h). This file owns vt's only copy of stb_image.
#include "vt/io/image.h"

#include <algorithm>
#include <climits>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "vt/error.h"

// stb is third-party C; its warnings are not ours. Static linkage keeps its symbols private here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_NO_HDR
#define STBI_NO_LINEAR
#define STBI_NO_PSD
#define STBI_NO_PIC
#include <stb/stb_image.h>
#pragma GCC diagnostic pop

namespace vt::io {

namespace {

// PIL refuses a JPEG without its end-of-image marker ("image file is truncated"); stb_image would
// decode the missing blocks as grey, so look for the marker near the end.
bool jpeg_has_end_marker(const uint8_t* b, size_t size) {
  const size_t lo = size > 4096 ? size - 4096 : 0;
  for (size_t i = size; i-- > lo + 1;)
    if (b[i - 1] == 0xFF && b[i] == 0xD9) return true;
  return false;
}

// stb_image builds each Huffman table into 257 slots without checking that the table's 16 code
// counts sum to at most 256 (the JPEG limit), so a corrupt DHT segment writes past the array (found
// by fuzz_image). Walks the JPEG's segments (skipping entropy-coded data after each SOS) and returns
// the first bad table's code count, or 0 when every table is valid or the file ends early (stb then
// reports the truncation itself).
int jpeg_bad_huffman_count(const uint8_t* b, size_t size) {
  size_t i = 2;  // after SOI
  while (i + 1 < size) {
    if (b[i] != 0xFF) {  // entropy-coded data: up to the next marker that is not a stuffed 0 or RSTn
      ++i;
      continue;
    }
    const uint8_t m = b[i + 1];
    if (m == 0xFF) { ++i; continue; }  // fill byte
    if (m == 0x00 || (m >= 0xD0 && m <= 0xD7) || m == 0x01) { i += 2; continue; }
    if (m == 0xD9) return 0;  // EOI
    if (i + 3 >= size) return 0;
    const size_t len = size_t(b[i + 2]) << 8 | b[i + 3], end = std::min(size, i + 2 + len);
    if (m == 0xC4) {  // DHT: tables of [class/id, 16 counts, symbols]
      size_t p = i + 4;
      while (p + 17 <= end) {
        int total = 0;
        for (int k = 1; k <= 16; ++k) total += b[p + k];
        if (total > 256) return total;
        p += 17 + size_t(total);
      }
    }
    i = i + 2 + len;
  }
  return 0;
}

// Pillow's Image.alpha_composite(white, rgba) per channel (libImaging/AlphaComposite.c, 7 extra bits
// of precision, divisions by 255 rounded), with the background's alpha fixed at 255.
uint8_t composite_on_white(uint8_t c, uint8_t a) {
  if (a == 0) return 255;
  constexpr uint32_t kBits = 7, dst = 255, dst_a = 255;
  const uint32_t blend = dst_a * (255 - a);
  const uint32_t outa255 = a * 255u + blend;
  const uint32_t coef1 = a * 255u * 255u * (1u << kBits) / outa255;
  const uint32_t coef2 = 255u * (1u << kBits) - coef1;
  const uint32_t tmp = c * coef1 + dst * coef2 + (0x80u << kBits);
  return uint8_t((((tmp >> 8) + tmp) >> 8) >> kBits);
}

}  // namespace

Image load_image_from_memory(const uint8_t* bytes, size_t size, const std::string& what) {
  VT_CHECK(size > 0, "load_image: ", what, ": empty file");
  VT_CHECK(size <= size_t(INT_MAX), "load_image: ", what, ": ", size, " bytes, more than ", INT_MAX,
           " (the decoder's limit)");
  const int len = int(size);
  const bool jpeg = size >= 2 && bytes[0] == 0xFF && bytes[1] == 0xD8;
  VT_CHECK(!jpeg || jpeg_has_end_marker(bytes, size), "load_image: ", what,
           ": truncated JPEG (no end-of-image marker)");
  if (jpeg) {
    const int codes = jpeg_bad_huffman_count(bytes, size);
    VT_CHECK(codes == 0, "load_image: ", what, ": corrupt JPEG: a Huffman table lists ", codes,
             " codes (at most 256)");
  }
  int w = 0, h = 0, n = 0;
  VT_CHECK(stbi_info_from_memory(bytes, len, &w, &h, &n), "load_image: ", what, ": cannot decode (",
           stbi_failure_reason(), "); expected a PNG, JPEG, BMP, TGA, GIF or PNM file");
  VT_CHECK(w > 0 && h > 0 && int64_t(w) * h <= kMaxImagePixels, "load_image: ", what, ": claims ", w, "x", h,
           " pixels, more than the ", kMaxImagePixels, " vt accepts");
  uint8_t* data = stbi_load_from_memory(bytes, len, &w, &h, &n, 0);
  VT_CHECK(data != nullptr, "load_image: ", what, ": cannot decode (", stbi_failure_reason(),
           "); expected a complete PNG, JPEG, BMP, TGA, GIF or PNM file");
  Image im;
  im.width = w, im.height = h, im.channels = n;
  try {
    im.pixels.assign(data, data + size_t(w) * h * n);
  } catch (...) {
    stbi_image_free(data);
    throw;
  }
  stbi_image_free(data);
  return im;
}

Image load_image(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in.good()) {
    std::error_code ec;
    VT_FAIL("load_image: ", path, std::filesystem::exists(path, ec) ? ": cannot open" : ": no such file");
  }
  const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  VT_CHECK(!in.bad(), "load_image: ", path, ": read error");
  return load_image_from_memory(bytes.data(), bytes.size(), path);
}

void to_rgb(const uint8_t* pixels, int64_t n, int channels, uint8_t* rgb) {
  VT_CHECK(channels >= 1 && channels <= 4, "to_rgb: ", channels, " channels (1 to 4 supported)");
  const bool alpha = channels == 2 || channels == 4;
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* p = pixels + i * channels;
    const uint8_t v[3] = {p[0], channels >= 3 ? p[1] : p[0], channels >= 3 ? p[2] : p[0]};
    for (int c = 0; c < 3; ++c) rgb[i * 3 + c] = alpha ? composite_on_white(v[c], p[channels - 1]) : v[c];
  }
}

Image to_rgb(const Image& image) {
  if (image.channels == 3) return image;
  Image out;
  out.width = image.width, out.height = image.height, out.channels = 3;
  out.pixels.resize(size_t(image.width) * image.height * 3);
  to_rgb(image.pixels.data(), int64_t(image.width) * image.height, image.channels, out.pixels.data());
  return out;
}

}  // namespace vt::io
