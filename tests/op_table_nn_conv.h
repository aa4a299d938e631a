// op_table_nn_conv.h: the nn_conv op family (conv2d, Conv3d patch embedding, interpolate, rotary
// embeddings) as a table for run_case(), against tests/fixtures/nn_conv.{json,safetensors} from
// tools/gen_nn_conv_fixtures.py.
#pragma once
#include "op_table.h"
#include "vt/nn/conv.h"
#include "vt/nn/interpolate.h"
#include "vt/nn/rope.h"

namespace vt::test {

inline const std::map<std::string, OpFn>& op_table_nn_conv() {
  using V = std::vector<Tensor>;
  static const std::map<std::string, OpFn> t = {
      {"conv2d",
       [](const V& x, const Args& a) {
         nn::Conv2dOptions o;
         o.stride_h = a["stride"][0], o.stride_w = a["stride"][1];
         o.pad = {a["pad"][0], a["pad"][1], a["pad"][2], a["pad"][3]};
         return V{nn::conv2d(x[0], x[1], x.size() > 2 ? x[2] : Tensor(), o)};
       }},
      {"conv3d_patch_embed", [](const V& x, const Args&) { return V{nn::conv3d_patch_embed(x[0], x[1])}; }},
      {"interpolate",
       [](const V& x, const Args& a) {
         const std::string mode = a["mode"];
         if (a.contains("size")) return V{nn::interpolate(x[0], shape_arg(a, "size"), mode)};
         return V{nn::interpolate_scale(x[0], a["scale"].get<std::vector<double>>(), mode)};
       }},
      {"rope_qwen2",  // x (B, H, T, D), positions (B, T); HF casts cos/sin to x's dtype
       [](const V& x, const Args& a) {
         auto cs = nn::rope_cos_sin(x[1], x[0].size(-1), a["theta"], x[0].dtype());
         return V{nn::apply_rope_half(x[0], cs.cos.unsqueeze(1), cs.sin.unsqueeze(1))};
       }},
      {"mrope",  // x (B, H, T, D), positions (3, B, T)
       [](const V& x, const Args& a) {
         auto s = a["sections"];
         auto cs = nn::mrope_cos_sin(x[1], x[0].size(-1), a["theta"], {s[0], s[1], s[2]}, x[0].dtype());
         return V{nn::apply_rope_half(x[0], cs.cos.unsqueeze(1), cs.sin.unsqueeze(1))};
       }},
      {"rope_vision",  // x (S, heads, 80); positions from the (t, h, w) grid; f32 tables
       [](const V& x, const Args& a) {
         Tensor pos = nn::vision_rope_positions(a["grid"][0], a["grid"][1], a["grid"][2]);
         auto cs = nn::vision_rope_cos_sin(pos.to(x[0].device()), x[0].size(-1));
         return V{nn::apply_rope_half(x[0], cs.cos.unsqueeze(1), cs.sin.unsqueeze(1))};
       }},
      {"rope_infinity",  // x (B, H, L, D); the table may be padded past L
       [](const V& x, const Args& a) {
         std::vector<std::array<int64_t, 2>> scales;
         for (auto& s : a["scales"]) scales.push_back({s[0].get<int64_t>(), s[1].get<int64_t>()});
         Tensor pos = nn::infinity_rope_positions(scales, a["grid"][0], a["grid"][1]);
         auto cs = nn::infinity_rope_cos_sin(pos.to(x[0].device()), x[0].size(-1), 1e4, a["pad_to"]);
         const int64_t L = x[0].size(-2);
         return V{nn::apply_rope_interleaved(x[0], cs.cos.narrow(0, 0, L), cs.sin.narrow(0, 0, L))};
       }},
  };
  return t;
}

}  // namespace vt::test
