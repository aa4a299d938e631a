// fuzz_safetensors_index.cpp: model.safetensors.index.json. Each input is the index of a folder
// that holds two real shards (links to tests/fixtures/vargpt_tiny). CheckpointReader either opens
// it or throws vt::Error; what opens must give, for every name it lists, an entry whose bytes can
// all be read (ASan checks they lie inside the shard).
#include <string>

#include "fuzz_util.h"
#include "vt/io/safetensors.h"

#ifndef VT_FUZZ_FIXTURES
#error "VT_FUZZ_FIXTURES (tests/fixtures) must be defined by the build"
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = vt::fuzz::fixture_dir(
      "index", "vargpt_tiny", {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"});
  (void)dir;  // made once: the shards the index names
  const std::string path = vt::fuzz::write_input("index/model.safetensors.index.json", data, size);
  vt::fuzz::expect_vt_errors_only([&] {
    vt::io::CheckpointReader reader(path);
    uint8_t sum = 0;
    for (const std::string& name : reader.names()) {
      vt::fuzz::require(reader.contains(name), "every listed name is contained");
      const vt::io::TensorEntry& e = reader.entry(name);
      const uint8_t* p = reader.data(name);
      for (uint64_t i = 0; i < e.end - e.begin; ++i) sum ^= p[i];
    }
    volatile uint8_t sink = sum;
    (void)sink;
  });
  return 0;
}
