// nn/module.h: a small module system in the shape of torch.nn.Module, for loading and training
// models by their Hugging Face tensor names.
//
// A Module owns named parameters and buffers and named child modules. Names join with dots, so a
// parameter registered as "weight" in the child registered as "layers.0.mlp" of the root is
// "layers.0.mlp.weight", the key of that tensor in an HF checkpoint. A child name may itself
// contain dots ("layers.0"); ModuleList registers its items as "0", "1", ...
//
// Parameters are Tensor handles shared with the model code: `Tensor w = register_parameter(...)`
// keeps working after to(dtype), load() or freeze(), because those change the tensor in place
// (storage, dtype, requires_grad) rather than replacing the handle.
//
// Name patterns (freeze / unfreeze / parameters_matching), PatternSyntax::Glob, the default:
//   *  any run of characters, dots included      ?  any one character
//   anything else matches itself; the pattern must match the whole name, or a module prefix of it
//   (the part before some '.'), so "vision" and "vision.*" both select every tensor under vision.
//   "model.layers.*.mlp.*" selects every MLP tensor of every layer.
// PatternSyntax::Regex takes an ECMAScript regular expression matched against the whole name.
//
// Loading (load_state_dict / load) copies each checkpoint tensor into the parameter or persistent
// buffer of the same name, casting to the module's dtype and device. Every problem is collected
// first and reported in ONE vt::Error naming the checkpoint and listing each missing tensor (with
// the module's shape and dtype), each unexpected one (with the checkpoint's shape) and each shape
// mismatch (both shapes). strict=false tolerates missing and unexpected tensors (they are returned)
// but never a shape mismatch. Nothing is modified when loading fails. Non-persistent parameters and
// buffers are not in the state dict; see the state-dict hooks for keeping one in step with a saved
// tensor (vargpt's single-row sos_embedding).
#pragma once
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "vt/tensor.h"

namespace vt::nn {

enum class PatternSyntax : uint8_t { Glob, Regex };

// True when `name` matches `pattern` as described above.
bool name_matches(const std::string& pattern, const std::string& name, PatternSyntax syntax = PatternSyntax::Glob);

struct LoadResult {
  std::vector<std::string> missing;     // module tensors the checkpoint lacked (strict=false only)
  std::vector<std::string> unexpected;  // checkpoint tensors the module has no place for
  int64_t loaded = 0;
};

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // ---- registration (in the constructor of a derived module) -------------------------------
  // Returns the handle to keep; requires_grad is set on floating parameters. A non-persistent
  // parameter is trained but left out of state_dict(), so it is neither saved nor loaded: the module
  // keeps it in step with a saved tensor through the state-dict hooks below.
  Tensor register_parameter(const std::string& name, Tensor value, bool requires_grad = true,
                            bool persistent = true);
  // Non-persistent buffers (e.g. RoPE tables) are not saved or loaded.
  Tensor register_buffer(const std::string& name, Tensor value, bool persistent = true);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> child) {
    add_child(name, child);
    return child;
  }

  // ---- traversal (registration order, depth first; names are dotted from this module) ------
  // Shared tensors (tied weights) appear once, under their first name, as in torch.
  std::vector<std::pair<std::string, Tensor>> named_parameters(bool trainable_only = false) const;
  std::vector<Tensor> parameters(bool trainable_only = false) const;
  std::vector<std::pair<std::string, Tensor>> named_buffers() const;
  std::vector<std::pair<std::string, Module*>> named_modules();  // "" is this module
  std::map<std::string, Tensor> state_dict() const;  // parameters + persistent buffers, every name
  Tensor parameter(const std::string& dotted_name) const;  // error naming the path when absent
  Module& child(const std::string& dotted_name);
  bool has_parameter(const std::string& dotted_name) const;

  // ---- modes and freezing ------------------------------------------------------------------
  void train(bool on = true);  // recursive
  void eval() { train(false); }
  bool is_training() const { return training_; }
  // Set requires_grad on every floating parameter matching `pattern`; return how many matched.
  int64_t freeze(const std::string& pattern, PatternSyntax syntax = PatternSyntax::Glob);
  int64_t unfreeze(const std::string& pattern, PatternSyntax syntax = PatternSyntax::Glob);
  std::vector<std::pair<std::string, Tensor>> parameters_matching(const std::string& pattern,
                                                                  PatternSyntax syntax = PatternSyntax::Glob) const;
  int64_t num_parameters(bool trainable_only = false) const;  // elements, tied weights once
  void zero_grad();

  // ---- conversion (in place: every handle sees the change; gradients are dropped) ----------
  // to(DType) converts floating parameters and buffers only (ids and masks keep their type).
  Module& to(DType dtype);
  Module& to(Device device);

  // ---- checkpoints ------------------------------------------------------------------------
  LoadResult load_state_dict(const std::map<std::string, Tensor>& state, bool strict = true,
                             const std::string& source = "state_dict");
  // A .safetensors file, a directory with model.safetensors or a sharded index, or the index file.
  // Tensors are copied straight from the mapped file into the parameters, one at a time.
  LoadResult load(const std::string& path, bool strict = true);
  // The same, with each checkpoint name passed through `rename` first: it returns the module name
  // the tensor loads into, or std::nullopt to skip the tensor (a buffer the module does not keep).
  // Used where a checkpoint spells names differently from the module (BSQ-VAE's wrapped convs).
  using CheckpointRename = std::function<std::optional<std::string>(const std::string&)>;
  LoadResult load(const std::string& path, bool strict, const CheckpointRename& rename);
  // state_dict() to one safetensors file, atomically (temp file + rename).
  void save(const std::string& path, const std::map<std::string, std::string>& metadata = {}) const;
  // HF layout: dir/model.safetensors, or shards of at most max_shard_bytes plus the index.
  void save_sharded(const std::string& dir, uint64_t max_shard_bytes,
                    const std::map<std::string, std::string>& metadata = {}) const;

 protected:
  void add_child(const std::string& name, std::shared_ptr<Module> child);
  // State-dict hooks (torch's state_dict pre-hook and load_state_dict post-hook), for a module whose
  // saved tensor is not one of its parameters as is. state_dict() (and so save, save_sharded and the
  // targets of a load) first calls before_state_dict() on every module of the tree, depth first; a
  // load that succeeded calls after_load() on every module once all tensors are copied in. They may
  // change tensor contents, never which tensors there are.
  virtual void before_state_dict() const {}
  virtual void after_load() {}

 private:
  struct Slot {
    std::string name;
    Tensor tensor;
    bool persistent = true;
  };
  void check_new_name(const std::string& name, const char* what) const;
  template <class F>
  void visit(const std::string& prefix, F&& f) const;  // f(prefix, const Module&)
  std::vector<Slot> params_, buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

// Children "0", "1", ... in order: model.layers.<i>.
class ModuleList : public Module {
 public:
  template <class M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> m) {
    add_child(std::to_string(items_.size()), m);
    items_.push_back(m);
    return m;
  }
  size_t size() const { return items_.size(); }
  Module& operator[](size_t i) const { return *items_.at(i); }
  template <class M>
  M& at(size_t i) const { return dynamic_cast<M&>(*items_.at(i)); }

 private:
  std::vector<std::shared_ptr<Module>> items_;
};

}  // namespace vt::nn
