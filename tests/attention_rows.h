// attention_rows.h: what the attention kernel tests share: a mask's per-row key ranges (the
// AttentionRows contract of include/vt/nn/attention.h) read off the mask's visible matrix, not
// through the library's own key_ranges, so the kernels are fed an independent derivation.
#pragma once
#include <cstdint>
#include <vector>

#include "vt/nn/attention.h"

namespace vt::test {

// Each row's visible keys form one range for every structural mask; a row that sees none gets
// [0, 0). A None mask gives empty vectors (every key).
inline nn::AttentionRows rows_of(const nn::AttentionMask& m, int64_t Tq, int64_t Tk) {
  nn::AttentionRows r;
  if (m.kind == nn::AttentionMask::Kind::None) return r;
  const std::vector<float> vis = m.visible(Tq, Tk).to(DType::F32).tolist<float>();
  r.key_begin.assign(Tq, 0), r.key_end.assign(Tq, 0);
  for (int64_t i = 0; i < Tq; ++i) {
    int64_t a = -1, e = -1;
    for (int64_t j = 0; j < Tk; ++j)
      if (vis[i * Tk + j] != 0.f) {
        if (a < 0) a = j;
        e = j + 1;
      }
    if (a >= 0) r.key_begin[i] = a, r.key_end[i] = e;
  }
  return r;
}

}  // namespace vt::test
