// op_table_nn_functional.h: the op table of the nn layers and losses (include/vt/nn/), run against
// tests/fixtures/nn_functional.{json,safetensors} from tools/gen_nn_functional_fixtures.py through
// vt::test::run_case (op_table.h). Optional inputs (bias, weight, token weights) are present when the
// case passes them.
#pragma once
#include "op_table.h"
#include "vt/nn/functional.h"
#include "vt/nn/loss.h"
#include "vt/nn/norm.h"

namespace vt::test {

inline nn::Reduction reduction_arg(const Args& a) {
  std::string r = a.value("reduction", std::string("mean"));
  if (r == "none") return nn::Reduction::None;
  if (r == "sum") return nn::Reduction::Sum;
  return nn::Reduction::Mean;
}

inline const std::map<std::string, OpFn>& op_table_nn_functional() {
  using V = std::vector<Tensor>;
  auto opt = [](const V& x, size_t i) { return x.size() > i ? x[i] : Tensor(); };
  static const std::map<std::string, OpFn> t = {
      {"linear", [opt](const V& x, const Args&) { return V{nn::linear(x[0], x[1], opt(x, 2))}; }},
      {"softmax", [](const V& x, const Args& a) { return V{nn::softmax(x[0], a["dim"].get<int64_t>())}; }},
      {"log_softmax", [](const V& x, const Args& a) { return V{nn::log_softmax(x[0], a["dim"].get<int64_t>())}; }},
      {"silu", [](const V& x, const Args&) { return V{nn::silu(x[0])}; }},
      {"gelu", [](const V& x, const Args& a) { return V{nn::gelu(x[0], a.value("tanh", false))}; }},
      {"quick_gelu", [](const V& x, const Args&) { return V{nn::quick_gelu(x[0])}; }},
      {"swiglu", [](const V& x, const Args&) { return V{nn::swiglu(x[0], x[1])}; }},
      {"rms_norm",
       [opt](const V& x, const Args& a) { return V{nn::rms_norm(x[0], opt(x, 1), a.value("eps", 1e-6))}; }},
      {"layer_norm",
       [opt](const V& x, const Args& a) {
         return V{nn::layer_norm(x[0], shape_arg(a, "shape"), opt(x, 1), opt(x, 2), a.value("eps", 1e-5))};
       }},
      {"group_norm",
       [opt](const V& x, const Args& a) {
         return V{nn::group_norm(x[0], a["groups"].get<int64_t>(), opt(x, 1), opt(x, 2), a.value("eps", 1e-5))};
       }},
      {"cross_entropy",
       [](const V& x, const Args& a) {
         return V{nn::cross_entropy(x[0], x[1], a.value("ignore_index", int64_t{-100}),
                                    a.value("label_smoothing", 0.0), reduction_arg(a))};
       }},
      {"bitwise_cross_entropy",
       [opt](const V& x, const Args& a) {
         return V{nn::bitwise_cross_entropy(x[0], x[1], opt(x, 2), a.value("label_smoothing", 0.0))};
       }},
      {"bit_accuracy", [](const V& x, const Args&) { return V{nn::bit_accuracy(x[0], x[1])}; }},
      {"dpo_sigmoid_loss",
       [](const V& x, const Args& a) {
         nn::DpoOutput o = nn::dpo_sigmoid_loss(x[0], x[1], x[2], x[3], a.value("beta", 0.1),
                                                a.value("label_smoothing", 0.0));
         return V{o.loss, o.chosen_rewards, o.rejected_rewards, o.rewards_chosen, o.rewards_rejected, o.margins,
                  o.accuracies};
       }},
  };
  return t;
}

}  // namespace vt::test
