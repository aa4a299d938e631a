// optim_adamw.cpp: the AdamW optimizer of optim/adamw.h and its fused CPU kernel "adamw_step".
//
// The kernel makes one pass over master, m, v, grad and param: every value is held in fp32, the
// gradient is widened from the parameter's dtype on load, and the parameter is written back by
// round-to-nearest-even (bf16/f16) or copied (f32). The operation order mirrors torch's
// single-tensor path, op by op, so that f32 runs agree with PyTorch to a few ulps (torch's lerp is
// an fma in its vector body, reproduced here with std::fma). Elements are independent, so the result
// does not depend on the thread count.
#include "vt/optim/adamw.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "vt/autograd.h"
#include "vt/io/tensor_io.h"
#include "vt/ops.h"

namespace vt::optim {

// ---- the fused CPU kernel ------------------------------------------------------------------------

static inline float widen(float x) { return x; }
static inline float widen(bf16 x) { return bf16_bits_to_float(x.bits); }
static inline float widen(f16 x) { return f16_bits_to_float(x.bits); }
template <class P>
static inline P narrow_to(float x) {
  if constexpr (std::is_same_v<P, float>) return x;
  else return P::from_bits(std::is_same_v<P, bf16> ? float_to_bf16_bits(x) : float_to_f16_bits(x));
}

// Contraction off: each line rounds exactly as written (the fma of the lerp is explicit), so the
// result does not depend on which products the compiler chooses to fuse.
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
template <class P, class G>
static void adamw_loop(const AdamWScalars& s, P* __restrict__ param, const G* __restrict__ grad,
                       float* __restrict__ master, float* __restrict__ m, float* __restrict__ v, int64_t n) {
#pragma omp parallel for schedule(static) if (n > (1 << 15))
  for (int64_t i = 0; i < n; ++i) {
    const float g = widen(grad[i]);
    float p = master[i] * s.decay;                             // param.mul_(1 - lr*wd)
    const float mi = std::fma(s.one_minus_beta1, g - m[i], m[i]);  // exp_avg.lerp_(g, 1-b1)
    float vi = v[i] * s.beta2;                                 // exp_avg_sq.mul_(b2)
    vi = vi + s.one_minus_beta2 * g * g;                       //   .addcmul_(g, g, 1-b2)
    const float denom = std::sqrt(vi) / s.bc2_sqrt + s.eps;    // (sqrt(v) / bc2_sqrt).add_(eps)
    p = p + s.neg_step_size * mi / denom;                      // addcdiv_(m, denom, -step_size)
    master[i] = p;
    m[i] = mi;
    v[i] = vi;
    param[i] = narrow_to<P>(p);
  }
}

#pragma GCC pop_options

static void adamw_step_cpu(const AdamWScalars& s, const Tensor& param, const Tensor& grad, const Tensor& master,
                           const Tensor& exp_avg, const Tensor& exp_avg_sq) {
  const int64_t n = param.numel();
  float* w = master.data<float>();
  float* m = exp_avg.data<float>();
  float* v = exp_avg_sq.data<float>();
  const bool f32_grad = grad.dtype() == DType::F32;  // an fp32 accumulation buffer for a 16-bit param
  switch (param.dtype()) {
    case DType::F32: adamw_loop(s, param.data<float>(), grad.data<float>(), w, m, v, n); break;
    case DType::BF16:
      if (f32_grad) adamw_loop(s, param.data<bf16>(), grad.data<float>(), w, m, v, n);
      else adamw_loop(s, param.data<bf16>(), grad.data<bf16>(), w, m, v, n);
      break;
    case DType::F16:
      if (f32_grad) adamw_loop(s, param.data<f16>(), grad.data<float>(), w, m, v, n);
      else adamw_loop(s, param.data<f16>(), grad.data<f16>(), w, m, v, n);
      break;
    default: VT_FAIL("adamw_step: parameter dtype ", dtype_name(param.dtype()), " is not a float type");
  }
}

static kernels::Registrar register_adamw_cpu("adamw_step", DeviceType::CPU, &adamw_step_cpu);

// ---- groups and flat buffers ------------------------------------------------------------------

static Tensor flat_view(const Tensor& flat, int64_t offset, const Tensor& like) {
  return flat.narrow(0, offset, like.numel()).view(like.shape());
}
Tensor ParamGroup::master_view(size_t i) const { return flat_view(master, offsets.at(i), params.at(i)); }
Tensor ParamGroup::exp_avg_view(size_t i) const { return flat_view(exp_avg, offsets.at(i), params.at(i)); }
Tensor ParamGroup::exp_avg_sq_view(size_t i) const { return flat_view(exp_avg_sq, offsets.at(i), params.at(i)); }

AdamW::AdamW(std::vector<ParamGroupSpec> groups, int64_t world_size) : world_size_(world_size) {
  build(std::move(groups));
}

AdamW::AdamW(std::vector<Tensor> params, AdamWOptions options, int64_t world_size) : world_size_(world_size) {
  std::vector<ParamGroupSpec> g(1);
  g[0].params = std::move(params);
  g[0].options = options;
  build(std::move(g));
}

void AdamW::build(std::vector<ParamGroupSpec> specs) {
  VT_CHECK(world_size_ >= 1, "AdamW: world_size must be >= 1, got ", world_size_);
  for (size_t gi = 0; gi < specs.size(); ++gi) {
    ParamGroupSpec& spec = specs[gi];
    const AdamWOptions& o = spec.options;
    ParamGroup g;
    g.name = spec.name.empty() ? "group" + std::to_string(gi) : spec.name;
    VT_CHECK(spec.names.empty() || spec.names.size() == spec.params.size(), "AdamW: group '", g.name, "' has ",
             spec.params.size(), " params but ", spec.names.size(), " names");
    VT_CHECK(o.lr >= 0 && o.eps >= 0 && o.weight_decay >= 0 && o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 &&
                 o.beta2 < 1,
             "AdamW: group '", g.name, "' has invalid options lr=", o.lr, " betas=(", o.beta1, ", ", o.beta2,
             ") eps=", o.eps, " weight_decay=", o.weight_decay);
    for (const ParamGroup& other : groups_)
      VT_CHECK(other.name != g.name, "AdamW: two groups are named '", g.name, "'");
    g.lr = g.initial_lr = o.lr;
    g.beta1 = o.beta1, g.beta2 = o.beta2, g.eps = o.eps, g.weight_decay = o.weight_decay;
    Device device = Device::cpu();
    for (size_t i = 0; i < spec.params.size(); ++i) {
      const Tensor& p = spec.params[i];
      std::string name = spec.names.empty() ? g.name + "." + std::to_string(i) : spec.names[i];
      VT_CHECK(p.defined(), "AdamW: parameter '", name, "' is undefined");
      if (!p.requires_grad()) {
        g.skipped.push_back(name);
        continue;
      }
      VT_CHECK(is_floating(p.dtype()) && p.dtype() != DType::F64, "AdamW: parameter '", name, "' has dtype ",
               dtype_name(p.dtype()), " (f32, bf16 or f16 expected)");
      VT_CHECK(p.is_contiguous(), "AdamW: parameter '", name, "' of shape ", p.shape().str(), " is not contiguous");
      if (g.params.empty()) device = p.device();
      VT_CHECK(p.device() == device, "AdamW: parameter '", name, "' is on ", p.device().str(), ", group '", g.name,
               "' on ", device.str());
      for (const ParamGroup& other : groups_)
        for (const Tensor& q : other.params)
          VT_CHECK(!q.is_same(p), "AdamW: parameter '", name, "' appears in two groups");
      g.offsets.push_back(g.numel);
      g.numel += p.numel();
      g.params.push_back(p);
      g.names.push_back(std::move(name));
      g.steps.push_back(0);
    }
    g.padded_numel = (g.numel + world_size_ - 1) / world_size_ * world_size_;
    g.master = zeros({g.padded_numel}, TensorOptions(DType::F32, device));
    g.exp_avg = zeros({g.padded_numel}, TensorOptions(DType::F32, device));
    g.exp_avg_sq = zeros({g.padded_numel}, TensorOptions(DType::F32, device));
    groups_.push_back(std::move(g));
  }
  sync_master_from_params();
}

void AdamW::sync_master_from_params() {
  NoGradGuard no_grad;
  for (ParamGroup& g : groups_)
    for (size_t i = 0; i < g.params.size(); ++i) {
      Tensor dst = g.master_view(i);
      copy_(dst, g.params[i].detach());
    }
}

// ---- the step ------------------------------------------------------------------------------------

void AdamW::step() {
  ++num_steps_;
  for (ParamGroup& g : groups_) {
    for (size_t i = 0; i < g.params.size(); ++i) {
      const Tensor& p = g.params[i];
      Tensor grad = p.grad();
      if (!p.requires_grad() || !grad.defined()) continue;  // frozen since, or unused this step
      VT_CHECK(grad.shape() == p.shape(), "AdamW: gradient of '", g.names[i], "' has shape ", grad.shape().str(),
               ", parameter ", p.shape().str());
      VT_CHECK(grad.device() == p.device(), "AdamW: gradient of '", g.names[i], "' is on ", grad.device().str());
      if (grad.dtype() != DType::F32) grad = grad.detach().to(p.dtype());  // f32 grads are read as they are
      grad = grad.contiguous();
      const int64_t t = ++g.steps[i];
      // The host scalars, in double as torch computes them in Python, then rounded once to fp32.
      const double bias_correction1 = 1 - std::pow(g.beta1, static_cast<double>(t));
      const double bias_correction2 = 1 - std::pow(g.beta2, static_cast<double>(t));
      const double step_size = g.lr / bias_correction1;
      AdamWScalars s;
      s.decay = static_cast<float>(1 - g.lr * g.weight_decay);
      s.one_minus_beta1 = static_cast<float>(1 - g.beta1);
      s.beta2 = static_cast<float>(g.beta2);
      s.one_minus_beta2 = static_cast<float>(1 - g.beta2);
      s.bc2_sqrt = static_cast<float>(std::pow(bias_correction2, 0.5));
      s.eps = static_cast<float>(g.eps);
      s.neg_step_size = static_cast<float>(-step_size);
      static const kernels::Kernel<AdamWStepFn> k_adamw_step("adamw_step");
      k_adamw_step(p.device())(s, p, grad, g.master_view(i), g.exp_avg_view(i), g.exp_avg_sq_view(i));
    }
  }
}

void AdamW::zero_grad() {
  for (ParamGroup& g : groups_)
    for (const Tensor& p : g.params) p.zero_grad();
}

// ---- state -----------------------------------------------------------------------------------------

std::map<std::string, Tensor> AdamW::state_dict() const {
  std::map<std::string, Tensor> out;
  for (const ParamGroup& g : groups_) {
    out[g.name + ".master"] = g.master;
    out[g.name + ".exp_avg"] = g.exp_avg;
    out[g.name + ".exp_avg_sq"] = g.exp_avg_sq;
    out[g.name + ".step"] = from_vector(g.steps);
  }
  out["optimizer.num_steps"] = from_vector(std::vector<int64_t>{num_steps_});
  return out;
}

void AdamW::load_state_dict(const std::map<std::string, Tensor>& state, const std::string& source) {
  // Validate everything first and report every problem at once; change nothing on failure.
  std::string problems;
  auto need = [&](const std::string& key, DType dtype, int64_t min_numel, bool exact) -> const Tensor* {
    auto it = state.find(key);
    if (it == state.end()) {
      problems += "\n  missing: " + key;
      return nullptr;
    }
    const Tensor& t = it->second;
    if (t.dim() != 1 || t.dtype() != dtype || (exact ? t.numel() != min_numel : t.numel() < min_numel)) {
      problems += detail::concat("\n  mismatched: ", key, " is ", t.shape().str(), " ", dtype_name(t.dtype()),
                                 ", expected (", exact ? "" : ">= ", min_numel, ",) ", dtype_name(dtype));
      return nullptr;
    }
    return &t;
  };
  std::map<std::string, bool> known = {{"optimizer.num_steps", true}};
  for (const ParamGroup& g : groups_) {
    for (const char* k : {".master", ".exp_avg", ".exp_avg_sq"}) {
      need(g.name + k, DType::F32, g.numel, false);
      known[g.name + k] = true;
    }
    need(g.name + ".step", DType::I64, static_cast<int64_t>(g.params.size()), true);
    known[g.name + ".step"] = true;
  }
  need("optimizer.num_steps", DType::I64, 1, true);
  for (const auto& [key, t] : state)
    if (!known.count(key)) problems += "\n  unexpected: " + key + " " + t.shape().str();
  VT_CHECK(problems.empty(), "AdamW: cannot load optimizer state from ", source, ":", problems);

  NoGradGuard no_grad;
  for (ParamGroup& g : groups_) {
    for (auto [key, dst] : {std::pair<const char*, Tensor*>{".master", &g.master}, {".exp_avg", &g.exp_avg},
                             {".exp_avg_sq", &g.exp_avg_sq}}) {
      Tensor head = dst->narrow(0, 0, g.numel);
      copy_(head, state.at(g.name + key).narrow(0, 0, g.numel));
      if (g.padded_numel > g.numel) {
        Tensor pad = dst->narrow(0, g.numel, g.padded_numel - g.numel);
        fill_(pad, 0);
      }
    }
    g.steps = state.at(g.name + ".step").tolist<int64_t>();
    for (size_t i = 0; i < g.params.size(); ++i) {  // parameters from the master: resume is exact
      Tensor p = g.params[i].detach();
      copy_(p, g.master_view(i));
    }
  }
  num_steps_ = state.at("optimizer.num_steps").tolist<int64_t>()[0];
}

void AdamW::save(const std::string& path, std::map<std::string, std::string> metadata) const {
  nlohmann::json groups = nlohmann::json::array();
  for (const ParamGroup& g : groups_)
    groups.push_back({{"name", g.name}, {"lr", g.lr}, {"initial_lr", g.initial_lr}, {"betas", {g.beta1, g.beta2}},
                      {"eps", g.eps}, {"weight_decay", g.weight_decay}, {"numel", g.numel},
                      {"padded_numel", g.padded_numel}, {"params", g.names}});
  metadata["vt.optim.adamw"] = nlohmann::json({{"world_size", world_size_}, {"groups", groups}}).dump();
  io::save_safetensors(path, state_dict(), metadata);
}

std::map<std::string, std::string> AdamW::load(const std::string& path) {
  std::shared_ptr<io::SafetensorsFile> file = io::SafetensorsFile::open(path);
  std::map<std::string, Tensor> state;
  for (const io::TensorEntry& e : file->entries()) state[e.name] = io::tensor_from_entry(e, file->data(e), file, false, path);
  // The parameter names and hyper-parameters of the file must describe this optimizer's groups.
  auto md = file->metadata().find("vt.optim.adamw");
  VT_CHECK(md != file->metadata().end(), "AdamW: ", path, " has no vt.optim.adamw metadata (not an optimizer state)");
  nlohmann::json info = nlohmann::json::parse(md->second);
  VT_CHECK(info["groups"].size() == groups_.size(), "AdamW: ", path, " holds ", info["groups"].size(),
           " parameter groups, this optimizer has ", groups_.size());
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const nlohmann::json& j = info["groups"][gi];
    ParamGroup& g = groups_[gi];
    auto names = j["params"].get<std::vector<std::string>>();
    VT_CHECK(j["name"] == g.name && names == g.names, "AdamW: ", path, ": group ", gi, " ('", j["name"].get<std::string>(),
             "', ", names.size(), " params) does not match this optimizer's group '", g.name, "' (", g.names.size(),
             " params)");
  }
  load_state_dict(state, path);
  for (size_t gi = 0; gi < groups_.size(); ++gi) {  // torch restores the group hyper-parameters too
    const nlohmann::json& j = info["groups"][gi];
    ParamGroup& g = groups_[gi];
    g.lr = j["lr"], g.initial_lr = j["initial_lr"], g.eps = j["eps"], g.weight_decay = j["weight_decay"];
    g.beta1 = j["betas"][0], g.beta2 = j["betas"][1];
  }
  return file->metadata();
}

}  // namespace vt::optim
