// fuzz_image.cpp: PNG/JPEG/BMP/TGA/GIF/PNM bytes through vt's one image loader
// (vt::io::load_image_from_memory, src/image_io.cpp), then to RGB as the commands use it.
#include "fuzz_util.h"
#include "vt/io/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  vt::fuzz::expect_vt_errors_only([&] {
    const vt::io::Image image = vt::io::to_rgb(vt::io::load_image_from_memory(data, size, "fuzz image"));
    vt::fuzz::require(image.width > 0 && image.height > 0, "a decoded image has pixels");
    vt::fuzz::require(image.channels == 3, "to_rgb gives 3 channels");
    vt::fuzz::require(image.pixels.size() == size_t(image.width) * image.height * 3, "3 bytes per pixel");
    unsigned sum = 0;
    for (uint8_t v : image.pixels) sum += v;  // every byte readable (ASan)
    volatile unsigned sink = sum;
    (void)sink;
  });
  return 0;
}
