// fuzz_config.cpp: config.json for every model kind that has one. Each input is written as
// config.json in a folder that also holds the tiny VARGPT checkpoint (links to
// tests/fixtures/vargpt_tiny), and read as a Qwen2 config, as Qwen2-VL's vision_config, and as a
// whole VARGPT-v1.1 config (whose Infinity part is read off the checkpoint's tensor shapes, as is
// the BSQ-VAE's: those two kinds have no config.json of their own). Each either loads or throws
// vt::Error; what loads must pass its own validate().
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
  static const std::string dir = vt::fuzz::fixture_dir(
      "model", "vargpt_tiny",
      {"model.safetensors.index.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"});
  const std::string text(reinterpret_cast<const char*>(data), size);
  vt::fuzz::write_input("model/config.json", data, size);
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
