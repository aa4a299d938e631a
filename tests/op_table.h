// op_table.h: the one table of core op cases, run against PyTorch fixtures on every backend.
//
// tests/fixtures/ops_core.json (from tools/gen_op_fixtures.py) lists cases: an op name, inputs
// stored contiguous in ops_core.safetensors and then viewed ("t": transpose the last two dims,
// "s2": every second row), parameters, PyTorch's outputs and the gradients of sum(out * gout).
// `op_table()` maps each op name to the vt call; tests run every case on each device and compare.
// Other op families (nn layers, losses, ...) keep their own table and fixture in the same format
// (tests/op_table_<family>.h, tests/fixtures/<family>.{json,safetensors}) and reuse run_case().
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "vt/io/tensor_io.h"
#include "vt/ops.h"

namespace vt::test {

using Args = nlohmann::json;
using OpFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&, const Args&)>;

inline Shape shape_arg(const Args& a, const char* k) {
  Shape s;
  if (a.contains(k))
    for (auto& v : a[k]) s.push_back(v.get<int64_t>());
  return s;
}

inline DType dtype_arg(const std::string& s) {
  static const std::map<std::string, DType> m = {{"f32", DType::F32}, {"f64", DType::F64}, {"bf16", DType::BF16},
                                                 {"f16", DType::F16}, {"i64", DType::I64}, {"i32", DType::I32},
                                                 {"u8", DType::U8},   {"bool", DType::Bool}};
  return m.at(s);
}

inline const std::map<std::string, OpFn>& op_table() {
  using V = std::vector<Tensor>;
  static const std::map<std::string, OpFn> t = {
      {"add", [](const V& x, const Args& a) { return V{add(x[0], x[1], a.value("alpha", 1.0))}; }},
      {"sub", [](const V& x, const Args& a) { return V{sub(x[0], x[1], a.value("alpha", 1.0))}; }},
      {"mul", [](const V& x, const Args&) { return V{mul(x[0], x[1])}; }},
      {"div", [](const V& x, const Args&) { return V{div(x[0], x[1])}; }},
      {"pow", [](const V& x, const Args&) { return V{pow(x[0], x[1])}; }},
      {"maximum", [](const V& x, const Args&) { return V{maximum(x[0], x[1])}; }},
      {"minimum", [](const V& x, const Args&) { return V{minimum(x[0], x[1])}; }},
      {"add_scalar", [](const V& x, const Args& a) { return V{add(x[0], a["s"].get<double>())}; }},
      {"mul_scalar", [](const V& x, const Args& a) { return V{mul(x[0], a["s"].get<double>())}; }},
      {"div_scalar", [](const V& x, const Args& a) { return V{div(x[0], a["s"].get<double>())}; }},
      {"eq", [](const V& x, const Args&) { return V{eq(x[0], x[1])}; }},
      {"ne", [](const V& x, const Args&) { return V{ne(x[0], x[1])}; }},
      {"lt", [](const V& x, const Args&) { return V{lt(x[0], x[1])}; }},
      {"le", [](const V& x, const Args&) { return V{le(x[0], x[1])}; }},
      {"gt", [](const V& x, const Args&) { return V{gt(x[0], x[1])}; }},
      {"ge", [](const V& x, const Args&) { return V{ge(x[0], x[1])}; }},
      {"logical_and", [](const V& x, const Args&) { return V{logical_and(x[0], x[1])}; }},
      {"neg", [](const V& x, const Args&) { return V{neg(x[0])}; }},
      {"abs", [](const V& x, const Args&) { return V{abs(x[0])}; }},
      {"sign", [](const V& x, const Args&) { return V{sign(x[0])}; }},
      {"exp", [](const V& x, const Args&) { return V{exp(x[0])}; }},
      {"log", [](const V& x, const Args&) { return V{log(x[0])}; }},
      {"sqrt", [](const V& x, const Args&) { return V{sqrt(x[0])}; }},
      {"rsqrt", [](const V& x, const Args&) { return V{rsqrt(x[0])}; }},
      {"sin", [](const V& x, const Args&) { return V{sin(x[0])}; }},
      {"cos", [](const V& x, const Args&) { return V{cos(x[0])}; }},
      {"tanh", [](const V& x, const Args&) { return V{tanh(x[0])}; }},
      {"sigmoid", [](const V& x, const Args&) { return V{sigmoid(x[0])}; }},
      {"relu", [](const V& x, const Args&) { return V{relu(x[0])}; }},
      {"square", [](const V& x, const Args&) { return V{square(x[0])}; }},
      {"reciprocal", [](const V& x, const Args&) { return V{reciprocal(x[0])}; }},
      {"clamp",
       [](const V& x, const Args& a) {
         std::optional<double> lo, hi;
         if (a.contains("min")) lo = a["min"].get<double>();
         if (a.contains("max")) hi = a["max"].get<double>();
         return V{clamp(x[0], lo, hi)};
       }},
      {"pow_scalar", [](const V& x, const Args& a) { return V{pow(x[0], a["e"].get<double>())}; }},
      {"where", [](const V& x, const Args&) { return V{where(x[0], x[1], x[2])}; }},
      {"masked_fill", [](const V& x, const Args& a) { return V{masked_fill(x[0], x[1], a["value"].get<double>())}; }},
      {"cast", [](const V& x, const Args& a) { return V{cast(x[0], dtype_arg(a["dtype"]))}; }},
      {"sum", [](const V& x, const Args& a) { return V{sum(x[0], shape_arg(a, "dims"), a.value("keepdim", false))}; }},
      {"mean", [](const V& x, const Args& a) { return V{mean(x[0], shape_arg(a, "dims"), a.value("keepdim", false))}; }},
      {"var",
       [](const V& x, const Args& a) {
         return V{var(x[0], shape_arg(a, "dims"), a.value("correction", 1.0), a.value("keepdim", false))};
       }},
      {"amax", [](const V& x, const Args& a) { return V{amax(x[0], shape_arg(a, "dims"), a.value("keepdim", false))}; }},
      {"amin", [](const V& x, const Args& a) { return V{amin(x[0], shape_arg(a, "dims"), a.value("keepdim", false))}; }},
      {"max_dim",
       [](const V& x, const Args& a) {
         auto [v, i] = max(x[0], a["dim"].get<int64_t>(), a.value("keepdim", false));
         return V{v, i};
       }},
      {"min_dim",
       [](const V& x, const Args& a) {
         auto [v, i] = min(x[0], a["dim"].get<int64_t>(), a.value("keepdim", false));
         return V{v, i};
       }},
      {"argmax",
       [](const V& x, const Args& a) {
         return V{a.contains("dim") ? argmax(x[0], a["dim"].get<int64_t>()) : argmax(x[0])};
       }},
      {"argmin",
       [](const V& x, const Args& a) {
         return V{a.contains("dim") ? argmin(x[0], a["dim"].get<int64_t>()) : argmin(x[0])};
       }},
      {"logsumexp", [](const V& x, const Args& a) { return V{logsumexp(x[0], shape_arg(a, "dims"))}; }},
      {"cumsum", [](const V& x, const Args& a) { return V{cumsum(x[0], a["dim"].get<int64_t>())}; }},
      {"sort",
       [](const V& x, const Args& a) {
         auto [v, i] = sort(x[0], a["dim"].get<int64_t>(), a.value("descending", false));
         return V{v, i};
       }},
      {"topk",
       [](const V& x, const Args& a) {
         auto [v, i] = topk(x[0], a["k"].get<int64_t>(), a["dim"].get<int64_t>(), a.value("largest", true));
         return V{v, i};
       }},
      {"index_select", [](const V& x, const Args& a) { return V{index_select(x[0], a["dim"].get<int64_t>(), x[1])}; }},
      {"gather", [](const V& x, const Args& a) { return V{gather(x[0], a["dim"].get<int64_t>(), x[1])}; }},
      {"scatter_add",
       [](const V& x, const Args& a) { return V{scatter_add(x[0], a["dim"].get<int64_t>(), x[1], x[2])}; }},
      {"embedding", [](const V& x, const Args&) { return V{embedding(x[0], x[1])}; }},
      {"cat", [](const V& x, const Args& a) { return V{cat(x, a["dim"].get<int64_t>())}; }},
      {"stack", [](const V& x, const Args& a) { return V{stack(x, a["dim"].get<int64_t>())}; }},
      {"split", [](const V& x, const Args& a) { return split(x[0], a["size"].get<int64_t>(), a["dim"].get<int64_t>()); }},
      {"chunk", [](const V& x, const Args& a) { return chunk(x[0], a["chunks"].get<int64_t>(), a["dim"].get<int64_t>()); }},
      {"matmul", [](const V& x, const Args&) { return V{matmul(x[0], x[1])}; }},
      {"reshape", [](const V& x, const Args& a) { return V{x[0].reshape(shape_arg(a, "shape"))}; }},
      {"permute", [](const V& x, const Args& a) { return V{x[0].permute(shape_arg(a, "dims"))}; }},
      {"slice",
       [](const V& x, const Args& a) {
         return V{x[0].slice(a["dim"].get<int64_t>(), a["start"].get<int64_t>(), a["end"].get<int64_t>(),
                             a["step"].get<int64_t>())};
       }},
      {"narrow",
       [](const V& x, const Args& a) {
         return V{x[0].narrow(a["dim"].get<int64_t>(), a["start"].get<int64_t>(), a["length"].get<int64_t>())};
       }},
      {"expand", [](const V& x, const Args& a) { return V{x[0].expand(shape_arg(a, "shape"))}; }},
      {"unsqueeze", [](const V& x, const Args& a) { return V{x[0].unsqueeze(a["dim"].get<int64_t>())}; }},
      {"flatten",
       [](const V& x, const Args& a) { return V{x[0].flatten(a["start"].get<int64_t>(), a["end"].get<int64_t>())}; }},
  };
  return t;
}

inline Tensor apply_view(const Tensor& x, const nlohmann::json& v) {
  if (v.is_null()) return x;
  std::string s = v.get<std::string>();
  if (s == "t") return x.transpose(-1, -2);
  if (s == "s2") return x.slice(0, 0, x.size(0), 2);
  FAIL("unknown view ", s);
  return x;
}

// Compares elementwise; NaNs must match NaNs and infinities must match exactly. Returns "" or
// a description of the first mismatch.
inline std::string compare(const Tensor& got, const Tensor& want, double rtol, double atol) {
  if (got.shape() != want.shape()) return "shape " + got.shape().str() + " vs " + want.shape().str();
  if (got.dtype() != want.dtype())
    return std::string("dtype ") + std::string(dtype_name(got.dtype())) + " vs " + std::string(dtype_name(want.dtype()));
  std::vector<double> g = got.to(DType::F64).tolist<double>(), w = want.to(DType::F64).tolist<double>();
  bool exact = !is_floating(want.dtype());
  for (size_t i = 0; i < g.size(); ++i) {
    bool ok;
    if (std::isnan(w[i])) ok = std::isnan(g[i]);
    else if (std::isinf(w[i]) || exact) ok = g[i] == w[i];
    else ok = std::fabs(g[i] - w[i]) <= atol + rtol * std::fabs(w[i]);
    if (!ok) return "element " + std::to_string(i) + ": got " + std::to_string(g[i]) + ", want " + std::to_string(w[i]);
  }
  return "";
}

struct Fixture {
  nlohmann::json cases;
  std::map<std::string, Tensor> tensors;
};

inline const Fixture& load_fixture(const std::string& stem) {
  static std::map<std::string, Fixture> cache;
  auto it = cache.find(stem);
  if (it != cache.end()) return it->second;
  Fixture f;
  std::ifstream in(std::string(VT_FIXTURES) + "/" + stem + ".json");
  REQUIRE_MESSAGE(in.good(), "missing fixture ", stem, ".json");
  f.cases = nlohmann::json::parse(in)["cases"];
  f.tensors = io::load_safetensors(std::string(VT_FIXTURES) + "/" + stem + ".safetensors");
  return cache[stem] = std::move(f);
}

// Runs one case on `dev`: forward outputs, then gradients of sum(out0 * gout). Returns the list
// of failures (empty when the case passes).
inline std::vector<std::string> run_case(const nlohmann::json& c, const Fixture& fx, Device dev,
                                         const std::map<std::string, OpFn>& table = op_table()) {
  std::vector<std::string> fails;
  const std::string name = c["name"];
  std::vector<Tensor> inputs, bases;  // bases are the leaves that receive the gradients
  for (auto& in : c["inputs"]) {
    Tensor base = fx.tensors.at(in["key"]).to(dev).clone();
    if (in["grad"].get<bool>()) base.requires_grad_();
    bases.push_back(base);
    inputs.push_back(apply_view(base, in["view"]));
  }
  std::vector<Tensor> outs;
  try {
    auto it = table.find(c["op"]);
    if (it == table.end()) return {name + ": op '" + c["op"].get<std::string>() + "' missing from the op table"};
    outs = it->second(inputs, c["args"]);
  } catch (const std::exception& e) {
    return {name + ": threw " + e.what()};
  }
  double rtol = c["rtol"], atol = c["atol"];
  if (outs.size() != c["outs"].size()) return {name + ": wrong number of outputs"};
  for (size_t j = 0; j < outs.size(); ++j) {
    std::string m = compare(outs[j].to(Device::cpu()), fx.tensors.at(c["outs"][j]), rtol, atol);
    if (!m.empty()) fails.push_back(name + " out" + std::to_string(j) + ": " + m);
  }
  if (c.contains("gout") && fails.empty()) {
    Tensor gout = fx.tensors.at(c["gout"]).to(dev);
    try {
      sum(mul(outs[0], gout)).backward();
    } catch (const std::exception& e) {
      return {name + ": backward threw " + e.what()};
    }
    for (size_t i = 0; i < c["grads"].size(); ++i) {
      if (c["grads"][i].is_null()) continue;
      Tensor g = bases[i].grad().defined() ? apply_view(bases[i].grad(), c["inputs"][i]["view"]) : Tensor();
      if (!g.defined()) {
        fails.push_back(name + " grad" + std::to_string(i) + ": no gradient");
        continue;
      }
      Tensor want = fx.tensors.at(c["grads"][i]);
      std::string m = compare(g.to(Device::cpu()), want, rtol * 10, atol * 10);
      if (!m.empty()) fails.push_back(name + " grad" + std::to_string(i) + ": " + m);
    }
  }
  return fails;
}

}  // namespace vt::test
