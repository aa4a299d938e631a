// fuzz_image.cpp: PNG/JPEG bytes through vt's image loader. Today that is ShapeWorld's decode_png
// (train/shapeworld/render.cpp); when the commands share one loader, point LOADER at it.
#include "fuzz_util.h"
#include "shapeworld/render.h"

#define LOADER(bytes, size) vt::shapes::decode_png(bytes, size, "fuzz image")

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  vt::fuzz::expect_vt_errors_only([&] {
    auto image = LOADER(data, size);
    vt::fuzz::require(image.width > 0 && image.height > 0, "a decoded image has pixels");
    vt::fuzz::require(image.rgb.size() == size_t(image.width) * image.height * 3, "3 bytes per pixel");
    unsigned sum = 0;
    for (uint8_t v : image.rgb) sum += v;  // every byte readable (ASan)
    volatile unsigned sink = sum;
    (void)sink;
  });
  return 0;
}
