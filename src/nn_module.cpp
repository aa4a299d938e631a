// nn_module.cpp: the Module tree of nn/module.h: registration, dotted-name traversal, name
// patterns, in-place dtype/device conversion, and checkpoint loading with one error for all problems.
//
// In-place conversion: a parameter handle held by model code and the one in the module share one
// TensorImpl, so to(dtype), to(device) swap that impl's storage, layout and dtype (torch's
// `param.data = ...`) instead of registering a new tensor. Loading copies into the existing storage.
#include "vt/nn/module.h"

#include <functional>
#include <regex>
#include <set>

#include "vt/autograd.h"
#include "vt/io/tensor_io.h"
#include "vt/ops.h"

namespace vt::nn {

// ---- name patterns ---------------------------------------------------------------------------------

// Iterative glob: on a mismatch after a '*', retry with the '*' absorbing one more character.
static bool glob_match(const std::string& p, const std::string& s) {
  size_t pi = 0, si = 0, star = std::string::npos, resume = 0;
  while (si < s.size()) {
    if (pi < p.size() && (p[pi] == '?' || p[pi] == s[si])) {
      ++pi, ++si;
    } else if (pi < p.size() && p[pi] == '*') {
      star = pi++, resume = si;
    } else if (star != std::string::npos) {
      pi = star + 1, si = ++resume;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

bool name_matches(const std::string& pattern, const std::string& name, PatternSyntax syntax) {
  if (syntax == PatternSyntax::Regex) {
    try {
      return std::regex_match(name, std::regex(pattern, std::regex::ECMAScript));
    } catch (const std::regex_error& e) {
      VT_FAIL("name pattern: invalid regular expression '", pattern, "': ", e.what());
    }
  }
  if (glob_match(pattern, name)) return true;
  for (size_t k = name.find('.'); k != std::string::npos; k = name.find('.', k + 1))
    if (glob_match(pattern, name.substr(0, k))) return true;  // a module prefix of the name
  return false;
}

// ---- registration ----------------------------------------------------------------------------------

void Module::check_new_name(const std::string& name, const char* what) const {
  VT_CHECK(!name.empty(), "Module: empty ", what, " name");
  for (const Slot& s : params_) VT_CHECK(s.name != name, "Module: ", what, " '", name, "' is already a parameter");
  for (const Slot& s : buffers_) VT_CHECK(s.name != name, "Module: ", what, " '", name, "' is already a buffer");
  for (const auto& c : children_) VT_CHECK(c.first != name, "Module: ", what, " '", name, "' is already a child module");
}

Tensor Module::register_parameter(const std::string& name, Tensor value, bool requires_grad, bool persistent) {
  check_new_name(name, "parameter");
  VT_CHECK(name.find('.') == std::string::npos, "Module: parameter name '", name, "' contains a '.' (register a "
           "child module instead)");
  VT_CHECK(value.defined(), "Module: parameter '", name, "' is undefined");
  if (!value.is_leaf()) value = value.detach();
  if (is_floating(value.dtype())) value.requires_grad_(requires_grad);
  params_.push_back({name, value, persistent});
  return value;
}

Tensor Module::register_buffer(const std::string& name, Tensor value, bool persistent) {
  check_new_name(name, "buffer");
  VT_CHECK(name.find('.') == std::string::npos, "Module: buffer name '", name, "' contains a '.'");
  VT_CHECK(value.defined(), "Module: buffer '", name, "' is undefined");
  value = value.detach();
  buffers_.push_back({name, value, persistent});
  return value;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> child) {
  check_new_name(name, "child module");
  VT_CHECK(child != nullptr, "Module: child module '", name, "' is null");
  VT_CHECK(child.get() != this, "Module: a module cannot be its own child ('", name, "')");
  children_.emplace_back(name, std::move(child));
}

// ---- traversal -------------------------------------------------------------------------------------

template <class F>
void Module::visit(const std::string& prefix, F&& f) const {
  f(prefix, *this);
  for (const auto& [name, child] : children_) child->visit(prefix.empty() ? name : prefix + "." + name, f);
}

static std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters(bool trainable_only) const {
  std::vector<std::pair<std::string, Tensor>> out;
  std::set<const TensorImpl*> seen;
  visit("", [&](const std::string& prefix, const Module& m) {
    for (const Slot& s : m.params_)
      if (seen.insert(s.tensor.impl()).second && (!trainable_only || s.tensor.requires_grad()))
        out.emplace_back(join(prefix, s.name), s.tensor);
  });
  return out;
}

std::vector<Tensor> Module::parameters(bool trainable_only) const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters(trainable_only)) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers() const {
  std::vector<std::pair<std::string, Tensor>> out;
  visit("", [&](const std::string& prefix, const Module& m) {
    for (const Slot& s : m.buffers_) out.emplace_back(join(prefix, s.name), s.tensor);
  });
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out;
  visit("", [&](const std::string& prefix, const Module& m) { out.emplace_back(prefix, const_cast<Module*>(&m)); });
  return out;
}

std::map<std::string, Tensor> Module::state_dict() const {
  visit("", [](const std::string&, const Module& m) { m.before_state_dict(); });
  std::map<std::string, Tensor> out;
  visit("", [&](const std::string& prefix, const Module& m) {
    for (const Slot& s : m.params_)
      if (s.persistent) out[join(prefix, s.name)] = s.tensor;
    for (const Slot& s : m.buffers_)
      if (s.persistent) out[join(prefix, s.name)] = s.tensor;
  });
  return out;
}

Module& Module::child(const std::string& dotted_name) {
  for (auto& [name, c] : children_) {
    if (dotted_name == name) return *c;
    if (dotted_name.size() > name.size() && dotted_name.compare(0, name.size(), name) == 0 &&
        dotted_name[name.size()] == '.')
      return c->child(dotted_name.substr(name.size() + 1));
  }
  VT_FAIL("Module: no child module '", dotted_name, "'");
}

bool Module::has_parameter(const std::string& dotted_name) const {
  bool found = false;
  visit("", [&](const std::string& prefix, const Module& m) {
    for (const Slot& s : m.params_) found = found || join(prefix, s.name) == dotted_name;
  });
  return found;
}

Tensor Module::parameter(const std::string& dotted_name) const {
  std::map<std::string, Tensor> all = state_dict();
  for (const auto& [name, t] : named_parameters()) all.emplace(name, t);  // the non-persistent ones too
  auto it = all.find(dotted_name);
  VT_CHECK(it != all.end(), "Module: no parameter or buffer '", dotted_name, "'");
  return it->second;
}

// ---- modes and freezing ----------------------------------------------------------------------------

void Module::train(bool on) {
  visit("", [&](const std::string&, const Module& m) { const_cast<Module&>(m).training_ = on; });
}

std::vector<std::pair<std::string, Tensor>> Module::parameters_matching(const std::string& pattern,
                                                                       PatternSyntax syntax) const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& [name, t] : named_parameters())
    if (name_matches(pattern, name, syntax)) out.emplace_back(name, t);
  return out;
}

int64_t Module::freeze(const std::string& pattern, PatternSyntax syntax) {
  int64_t n = 0;
  for (auto& [name, t] : parameters_matching(pattern, syntax)) {
    Tensor h = t;
    h.requires_grad_(false);
    ++n;
  }
  return n;
}

int64_t Module::unfreeze(const std::string& pattern, PatternSyntax syntax) {
  int64_t n = 0;
  for (auto& [name, t] : parameters_matching(pattern, syntax)) {
    if (!is_floating(t.dtype())) continue;
    Tensor h = t;
    h.requires_grad_(true);
    ++n;
  }
  return n;
}

int64_t Module::num_parameters(bool trainable_only) const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters(trainable_only)) n += t.numel();
  return n;
}

void Module::zero_grad() {
  for (auto& [name, t] : named_parameters()) t.zero_grad();
}

// ---- conversion ------------------------------------------------------------------------------------

// torch's `t.data = src`: every handle of t now sees src's bytes, layout and dtype.
static void set_data(const Tensor& t, const Tensor& src) {
  TensorImpl* impl = t.impl();
  impl->storage = src.storage();
  impl->layout = src.layout();
  impl->dtype = src.dtype();
  impl->grad = Tensor();
  impl->grad_accumulator.reset();
}

Module& Module::to(DType dtype) {
  VT_CHECK(is_floating(dtype), "Module::to: ", dtype_name(dtype), " is not a floating dtype");
  NoGradGuard no_grad;
  visit("", [&](const std::string&, const Module& m) {
    for (const auto* slots : {&m.params_, &m.buffers_})
      for (const Slot& s : *slots)
        if (is_floating(s.tensor.dtype()) && s.tensor.dtype() != dtype)
          set_data(s.tensor, cast(s.tensor.detach(), dtype).contiguous());
  });
  return *this;
}

Module& Module::to(Device device) {
  NoGradGuard no_grad;
  visit("", [&](const std::string&, const Module& m) {
    for (const auto* slots : {&m.params_, &m.buffers_})
      for (const Slot& s : *slots)
        if (s.tensor.device() != device) set_data(s.tensor, s.tensor.detach().to(device).contiguous());
  });
  return *this;
}

// ---- loading ---------------------------------------------------------------------------------------

namespace {
struct SourceInfo {
  Shape shape;
  DType dtype;
};

std::string module_of(const std::string& name) {
  size_t k = name.rfind('.');
  return k == std::string::npos ? "<root>" : name.substr(0, k);
}

// Checks every name and shape, reports all problems at once, then copies tensor by tensor.
LoadResult load_into(const std::map<std::string, Tensor>& targets, const std::map<std::string, SourceInfo>& source,
                     const std::function<Tensor(const std::string&)>& fetch, bool strict, const std::string& where,
                     const std::function<void(const std::string&)>& release = nullptr) {
  LoadResult r;
  std::vector<std::string> mismatched;
  for (const auto& [name, t] : targets) {
    auto it = source.find(name);
    if (it == source.end()) {
      r.missing.push_back(name);
    } else if (it->second.shape != t.shape()) {
      mismatched.push_back(detail::concat(name, " (module '", module_of(name), "'): checkpoint has ",
                                          it->second.shape.str(), " ", dtype_name(it->second.dtype),
                                          ", module expects ", t.shape().str(), " ", dtype_name(t.dtype())));
    }
  }
  for (const auto& [name, info] : source)
    if (!targets.count(name)) r.unexpected.push_back(name);

  if (!mismatched.empty() || (strict && (!r.missing.empty() || !r.unexpected.empty()))) {
    std::string msg = detail::concat("load ", where, ": ", strict ? r.missing.size() : 0, " missing, ",
                                     strict ? r.unexpected.size() : 0, " unexpected, ", mismatched.size(),
                                     " mis-shaped tensor(s)");
    if (strict)
      for (const std::string& n : r.missing) {
        const Tensor& t = targets.at(n);
        msg += detail::concat("\n  missing    ", n, " (module '", module_of(n), "'): module expects ", t.shape().str(),
                              " ", dtype_name(t.dtype()));
      }
    if (strict)
      for (const std::string& n : r.unexpected) {
        const SourceInfo& s = source.at(n);
        msg += detail::concat("\n  unexpected ", n, ": checkpoint has ", s.shape.str(), " ", dtype_name(s.dtype));
      }
    for (const std::string& m : mismatched) msg += "\n  mis-shaped " + m;
    throw Error(msg);
  }

  NoGradGuard no_grad;
  for (const auto& [name, t] : targets) {
    if (!source.count(name)) continue;
    Tensor dst = t.detach();
    copy_(dst, fetch(name));  // casts to the parameter's dtype, moves to its device
    if (release) release(name);  // the source bytes are no longer needed
    ++r.loaded;
  }
  return r;
}
}  // namespace

LoadResult Module::load_state_dict(const std::map<std::string, Tensor>& state, bool strict, const std::string& source) {
  std::map<std::string, SourceInfo> info;
  for (const auto& [name, t] : state) {
    VT_CHECK(t.defined(), "load ", source, ": tensor '", name, "' is undefined");
    info[name] = {t.shape(), t.dtype()};
  }
  LoadResult r = load_into(state_dict(), info, [&](const std::string& n) { return state.at(n); }, strict, source);
  visit("", [](const std::string&, const Module& m) { const_cast<Module&>(m).after_load(); });
  return r;
}

LoadResult Module::load(const std::string& path, bool strict) { return load(path, strict, nullptr); }

LoadResult Module::load(const std::string& path, bool strict, const CheckpointRename& rename) {
  io::CheckpointReader reader(path);
  std::map<std::string, SourceInfo> info;
  std::map<std::string, std::string> file_name;  // module name -> checkpoint name
  for (const std::string& name : reader.names()) {
    const io::TensorEntry& e = reader.entry(name);
    VT_CHECK(e.shape.size() <= static_cast<size_t>(kMaxDims), "load ", reader.path(), ": tensor '", name, "' has ",
             e.shape.size(), " dims");
    const std::optional<std::string> target = rename ? rename(name) : std::optional<std::string>(name);
    if (!target) continue;
    VT_CHECK(!file_name.count(*target), "load ", reader.path(), ": tensors '", file_name[*target], "' and '", name,
             "' both load into '", *target, "'");
    file_name[*target] = name;
    info[*target] = {Shape(e.shape), e.dtype};
  }
  auto fetch = [&](const std::string& target) {
    // A view of the mapped bytes (no copy) that lives only until copy_ has read it; the reader
    // keeps the mapping alive. The aliasing shared_ptr owns nothing.
    const std::string& name = file_name.at(target);
    const uint8_t* data = reader.data(name);
    std::shared_ptr<void> view(std::shared_ptr<void>(), const_cast<uint8_t*>(data));
    return io::tensor_from_entry(reader.entry(name), data, view, true, reader.path());
  };
  // Each mapped tensor is dropped from the resident set once copied: peak RSS ~ the weights once.
  auto release = [&](const std::string& target) { reader.release(file_name.at(target)); };
  LoadResult r = load_into(state_dict(), info, fetch, strict, reader.path(), release);
  visit("", [](const std::string&, const Module& m) { const_cast<Module&>(m).after_load(); });
  return r;
}

void Module::save(const std::string& path, const std::map<std::string, std::string>& metadata) const {
  io::save_safetensors(path, state_dict(), metadata);
}

void Module::save_sharded(const std::string& dir, uint64_t max_shard_bytes,
                          const std::map<std::string, std::string>& metadata) const {
  std::vector<Tensor> keep;
  std::vector<io::TensorToWrite> list;
  for (const auto& [name, t] : state_dict()) {
    Tensor c = t.detach().to(Device::cpu()).contiguous();
    keep.push_back(c);
    list.push_back({name, c.dtype(), c.shape().vec(), c.raw_data(), c.nbytes()});
  }
  io::write_sharded(dir, list, max_shard_bytes, metadata);
}

}  // namespace vt::nn
