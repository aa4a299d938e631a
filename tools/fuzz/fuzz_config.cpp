// fuzz_config.cpp: config.json for every model kind that has one. Each input is written as
// config.json in a folder that also holds the tiny VARGPT checkpoint (links to
// tests/fixtures/vargpt_tiny), and read as a Qwen2 config, as Qwen2-VL's vision_config, and as a
// whole VARGPT-v1.1 config (whose Infinity part is read off the checkpoint's tensor shapes, as is
// the BSQ-VAE's: those two kinds have no config.json of their own). Each either loads or throws
// vt::Error; what loads must pass its own validate().
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "fuzz_util.h"
#include "qwen2/config.h"
#include "qwen2_vl/vision.h"
#include "vargpt/vargpt.h"

#ifndef VT_FUZZ_FIXTURES
#error "VT_FUZZ_FIXTURES (tests/fixtures) must be defined by the build"
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace fs = std::filesystem;
  static const std::string dir = [] {
    const std::string d = vt::fuzz::scratch_dir() + "/model";
    fs::create_directories(d);
    for (const char* f : {"model.safetensors.index.json", "model-00001-of-00002.safetensors",
                          "model-00002-of-00002.safetensors"})
      fs::create_symlink(std::string(VT_FUZZ_FIXTURES) + "/vargpt_tiny/" + f, d + "/" + f);
    return d;
  }();
  const std::string text(reinterpret_cast<const char*>(data), size);
  {
    std::ofstream out(dir + "/config.json", std::ios::binary | std::ios::trunc);
    out << text;
  }
  vt::fuzz::expect_vt_errors_only([&] {
    vt::qwen2::Qwen2Config c = vt::qwen2::Qwen2Config::from_json_text(text, "fuzz config.json");
    c.validate();
  });
  vt::fuzz::expect_vt_errors_only([&] {
    const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return;
    vt::qwen2_vl::VisionConfig v = vt::qwen2_vl::VisionConfig::from_json(j);
    v.validate();
  });
  vt::fuzz::expect_vt_errors_only([&] { (void)vt::vargpt::VargptConfig::load(dir); });
  return 0;
}
