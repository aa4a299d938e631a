// fuzz_bits.cpp: BSQ bits files (models/bsq_vae/bits_file.h), safetensors files with vt's bits
// metadata. A file either loads or throws vt::Error; what loads must hold one Bool tensor per scale
// of shape (B, h_k, w_k, d), and pass check_bits unless its scales shrink.
#include <string>

#include "bsq_vae/bits_file.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = vt::fuzz::write_input("fuzz.bits", data, size);
  vt::fuzz::expect_vt_errors_only([&] {
    const vt::bsq::BitsFile f = vt::bsq::load_bits(path);
    vt::fuzz::require(f.bits.size() == f.scales.size() && !f.bits.empty(), "one tensor per scale");
    for (size_t k = 0; k < f.bits.size(); ++k) {
      const vt::Tensor& t = f.bits[k];
      vt::fuzz::require(t.dtype() == vt::DType::Bool && t.dim() == 4 && t.size(0) == f.batch() &&
                            t.size(1) == f.scales[k].h && t.size(2) == f.scales[k].w && t.size(3) == f.codebook_dim,
                        "scale k is (B, h_k, w_k, d) Bool");
    }
    vt::bsq::check_bits(f, f.codebook_dim, {}, path);  // may refuse shrinking scales (vt::Error)
  });
  return 0;
}
