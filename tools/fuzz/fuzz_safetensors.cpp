// fuzz_safetensors.cpp: libFuzzer target for the safetensors header parser.
//
// Treats each input as a whole safetensors file. parse_header must either throw vt::Error or
// return a header whose every tensor lies inside the buffer; reading all those bytes under ASan
// proves it. Any other exception, crash or sanitizer report is a finding.
// Build and run with tools/fuzz/run_fuzz.sh (or cmake -DVT_FUZZ=ON with clang).
#include <cstddef>
#include <cstdint>

#include "vt/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    vt::io::SafetensorsHeader h = vt::io::parse_header(data, size, "fuzz-input");
    uint8_t sum = 0;
    for (const vt::io::TensorEntry& e : h.entries) {
      const uint8_t* p = data + h.data_offset + e.begin;
      for (uint64_t i = 0; i < e.end - e.begin; ++i) sum ^= p[i];
    }
    for (const auto& [k, v] : h.metadata) sum ^= static_cast<uint8_t>(k.size() + v.size());
    volatile uint8_t sink = sum;
    (void)sink;
  } catch (const vt::Error&) {
  }
  return 0;
}
