// op_table_nn_attention.h: the op table of attention and AdaLN (include/vt/nn/{attention,adaln}.h),
// run against tests/fixtures/nn_attention.{json,safetensors} from tools/gen_nn_attention_fixtures.py
// through vt::test::run_case (op_table.h).
//
// args: "mask" one of none / causal / causal_from_end / block_causal / varlen, "lengths" (scale
// lengths or cu_seqlens), "cu_k" (cu_seqlens of the keys), "scale", and "has_mask" when the 4th
// input is an explicit mask tensor combined with the structural one.
#pragma once
#include "op_table.h"
#include "vt/nn/adaln.h"
#include "vt/nn/attention.h"

namespace vt::test {

inline nn::AttentionMask mask_arg(const Args& a, const std::vector<Tensor>& x) {
  using M = nn::AttentionMask;
  std::string kind = a.value("mask", std::string("none"));
  std::vector<int64_t> lengths = a.value("lengths", std::vector<int64_t>{});
  std::vector<int64_t> cu_k = a.value("cu_k", std::vector<int64_t>{});
  M m = kind == "causal"            ? M::causal()
        : kind == "causal_from_end" ? M::causal_from_end()
        : kind == "block_causal"    ? M::block_causal(lengths)
        : kind == "varlen"          ? M::varlen(lengths, cu_k)
                                    : M::none();
  if (a.value("has_mask", false)) m = m.with_tensor(x.at(3));
  return m;
}

inline const std::map<std::string, OpFn>& op_table_nn_attention() {
  using V = std::vector<Tensor>;
  static const std::map<std::string, OpFn> t = {
      {"sdpa",
       [](const V& x, const Args& a) {
         std::optional<double> scale;
         if (a.contains("scale")) scale = a["scale"].get<double>();
         return V{nn::scaled_dot_product_attention(x[0], x[1], x[2], mask_arg(a, x), scale)};
       }},
      {"cosine_attention",
       [](const V& x, const Args& a) { return V{nn::cosine_attention(x[0], x[1], x[2], x[3], mask_arg(a, {}))}; }},
      {"modulate", [](const V& x, const Args&) { return V{nn::modulate(x[0], x[1], x[2])}; }},
      {"gated_residual", [](const V& x, const Args&) { return V{nn::gated_residual(x[0], x[1], x[2])}; }},
  };
  return t;
}

}  // namespace vt::test
