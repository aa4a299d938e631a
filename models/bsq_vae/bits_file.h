// bits_file.h: per-scale BSQ bits on disk (what `vargpt vae --encode` writes and `--decode` reads).
//
// A bits file is a safetensors file: one U8 tensor "scale.<k>" (B, h_k, w_k, d) of 0/1 per scale,
// k = 0, 1, ... coarse to fine, and the metadata
//   format        "vt.bsq_bits"          version  "1"
//   codebook_dim  d                      scales   "1x1,2x2,4x4,..." (h x w of each scale)
// The metadata is redundant with the shapes on purpose: a reader checks that they agree, so a file
// cut, edited or written by something else fails with a message naming the file and the scale.
// Files are written atomically (temp file, then rename), so an interrupted write never leaves a
// half file under the name.
#pragma once
#include <string>
#include <vector>

#include "infinity/scale_schedule.h"
#include "vt/tensor.h"

namespace vt::bsq {

struct BitsFile {
  std::vector<Tensor> bits;              // per scale: (B, h_k, w_k, d) Bool
  std::vector<infinity::ScaleHW> scales; // (h_k, w_k)
  int64_t codebook_dim = 0;              // d
  int64_t batch() const { return bits.empty() ? 0 : bits[0].size(0); }
};

// bits: per scale (B, h_k, w_k, d), Bool or any 0/1 integer type, one B and d throughout.
void save_bits(const std::string& path, const std::vector<Tensor>& bits);
// Reads and validates a bits file (format, version, d, the scale list against the tensor shapes,
// values 0/1). Errors name the path and what is wrong.
BitsFile load_bits(const std::string& path);

// Checks `file` against what a decoder expects: codebook_dim `d`, and the scales `expected`
// (empty: any coarse-to-fine list). The error names `what` (usually the path).
void check_bits(const BitsFile& file, int64_t d, const std::vector<infinity::ScaleHW>& expected,
                const std::string& what);

std::string scales_to_string(const std::vector<infinity::ScaleHW>& scales);  // "1x1,2x2,..."

}  // namespace vt::bsq
