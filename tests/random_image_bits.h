// random_image_bits.h: teacher-forcing inputs and labels of images whose bits are fair coin flips,
// for the tests that need a batch of generation targets without a VAE (test_dpo, test_dpo_ref_mpi).
#pragma once
#include <utility>
#include <vector>

#include "infinity/self_correction.h"
#include "vt/ops.h"
#include "vt/random.h"

namespace vt::testing {

// `images` images on `schedule` with d bits per token, drawn in order from `gen`: the Infinity inputs
// (images, L - 1, d) and the bit labels (images, L, d) Bool.
inline std::pair<Tensor, Tensor> random_image_bits(const infinity::ScaleSchedule& schedule, int64_t d, int64_t images,
                                                   Generator& gen) {
  std::vector<Tensor> inputs, labels;
  for (int64_t image = 0; image < images; ++image) {
    std::vector<Tensor> bits, flat;
    for (const infinity::ScaleHW& s : schedule.scales) {
      bits.push_back(lt(rand({1, s.h, s.w, d}, {}, &gen), 0.5));  // (1, h, w, d) Bool
      flat.push_back(bits.back().reshape({1, s.h * s.w, d}));
    }
    inputs.push_back(infinity::teacher_inputs_from_bits(bits, schedule));  // (1, L - 1, d)
    labels.push_back(cat(flat, 1));                                        // (1, L, d)
  }
  return {cat(inputs, 0), cat(labels, 0)};
}

}  // namespace vt::testing
