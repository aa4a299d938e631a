// image.h: the one image loader of vt. Every command that reads an image file (vae, chat, eval,
// shapes eval, report, training data) goes through load_image, so they accept the same formats and
// fail with the same messages.
//
//   bytes --sniffed--> PNG | JPEG | BMP | TGA | GIF (first frame) | PNM --stb_image--> 8-bit pixels
//
// The format is read from the bytes, never from the file name. Pixels keep the file's channel count
// (1 gray, 2 gray + alpha, 3 RGB, 4 RGBA); to_rgb() makes RGB the way transformers' convert_to_rgb
// does (gray replicated, alpha composited onto white with Pillow's arithmetic). 16-bit files are
// reduced to 8 bits. Every failure is a vt::Error naming the file (or `what`) and the reason: missing,
// empty, not an image, truncated (a JPEG without its end marker, which PIL refuses and stb_image
// would fill with grey), or larger than kMaxImagePixels.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace vt::io {

struct Image {
  int width = 0, height = 0, channels = 0;
  std::vector<uint8_t> pixels;  // pixels: (height, width, channels), row-major, interleaved
};

// 2^28 pixels (16384 x 16384): a header may claim more than any file vt will meet; refusing it
// before decoding keeps a hostile file from asking for gigabytes.
inline constexpr int64_t kMaxImagePixels = int64_t(1) << 28;

Image load_image(const std::string& path);
// The same from bytes in memory; `what` names them in errors (a file name, "request image 2").
Image load_image_from_memory(const uint8_t* bytes, size_t size, const std::string& what);

// Interleaved 8-bit pixels of 1 to 4 channels -> RGB, (n, 3); `rgb` holds n * 3 bytes.
void to_rgb(const uint8_t* pixels, int64_t n, int channels, uint8_t* rgb);
Image to_rgb(const Image& image);

}  // namespace vt::io
