// optim/adamw.h: AdamW exactly as torch.optim.AdamW (foreach=False, amsgrad=False, maximize=False),
// with fp32 master weights and moments held in one flat buffer per parameter group.
//
// The update of parameter p with gradient g at its step t = 1, 2, ... (spec training.md §5), with the
// scalars computed in double on the host as torch does in Python and rounded once to fp32:
//   p  = p * (1 - lr*wd)                       decoupled decay, before the Adam update
//   m  = m + (1-b1) * (g - m)                  torch's exp_avg.lerp_(grad, 1-b1)
//   v  = v * b2 + (1-b2) * g * g               exp_avg_sq.mul_(b2).addcmul_(g, g, value=1-b2)
//   step_size = lr / (1 - b1^t),  bc2_sqrt = sqrt(1 - b2^t)
//   denom = sqrt(v) / bc2_sqrt + eps           eps after the bias correction of v
//   p  = p + (-step_size * m) / denom          param.addcdiv_(m, denom, value=-step_size)
// t is counted per parameter, as torch's state["step"] is: a parameter without a gradient in a step
// is skipped and its t does not advance.
//
// Precision: p above is the fp32 master copy. For bf16/f16 parameters the model tensor is rewritten
// from the master by round-to-nearest-even after every step (DeepSpeed's rule, needed for parity
// with PyTorch mixed-precision runs); f32 parameters are copied from it. The gradient is read in the
// parameter's dtype (or in fp32, when the caller accumulates gradients in fp32) and widened to fp32
// inside the kernel.
//
// Layout (the ZeRO habit of llm.c): each group owns three flat fp32 buffers, master / exp_avg /
// exp_avg_sq, of `padded_numel` elements = numel rounded up to a multiple of `world_size`; each
// parameter's state is a view into them at `offsets[i]`, in group order. A ZeRO stage shards these
// buffers into world_size equal slices without moving anything. Padding stays zero.
//
// Frozen parameters: a parameter with requires_grad() == false when the optimizer is built gets no
// state at all (VARGPT's stage 3 freezes 8.4B of 11B parameters); it is listed in `skipped`.
// Build the optimizer after loading weights and after to(dtype): the master is copied from the
// parameters at construction (or call sync_master_from_params()).
//
// The fused step is the kernel "adamw_step" of the registry (backend.h); its CPU version is in
// src/optim_adamw.cpp, a CUDA backend registers the same name.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "vt/backend.h"
#include "vt/tensor.h"

namespace vt::optim {

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;  // torch.optim.AdamW's default (HF TrainingArguments uses 0.0)
};

// A group as the caller describes it. `names` are optional (used in errors and the state file).
struct ParamGroupSpec {
  std::vector<Tensor> params;
  std::vector<std::string> names;
  AdamWOptions options;
  std::string name;  // defaults to "group<i>"
};

// A group as the optimizer holds it. `lr` is what the next step uses (a Scheduler sets it);
// `initial_lr` is the base the schedule multiplies.
struct ParamGroup {
  std::string name;
  std::vector<Tensor> params;                // the trainable ones, in buffer order
  std::vector<std::string> names;            // one per param ("<group>.<i>" when not given)
  std::vector<std::string> skipped;          // frozen at construction: no state
  double lr = 0, initial_lr = 0, beta1 = 0, beta2 = 0, eps = 0, weight_decay = 0;
  std::vector<int64_t> offsets;              // element offset of param i in the flat buffers
  std::vector<int64_t> steps;                // t of param i (0 = no step taken yet)
  int64_t numel = 0, padded_numel = 0;       // padded_numel % world_size == 0
  Tensor master, exp_avg, exp_avg_sq;        // (padded_numel,) fp32 each
  Tensor master_view(size_t i) const;        // param i's slice, viewed with its shape
  Tensor exp_avg_view(size_t i) const;
  Tensor exp_avg_sq_view(size_t i) const;
};

// The host-side scalars of one parameter's update, each rounded once to fp32 (see the top note).
struct AdamWScalars {
  float decay;      // 1 - lr*wd
  float one_minus_beta1;
  float beta2;
  float one_minus_beta2;
  float bc2_sqrt;   // sqrt(1 - b2^t)
  float eps;
  float neg_step_size;  // -lr / (1 - b1^t)
};

// Fused kernel: one pass over n elements. param is f32, bf16 or f16; grad has param's dtype or is
// f32 (an fp32 gradient-accumulation buffer, spec §8); both contiguous; master, m and v are contiguous fp32 of n elements. Writes master, m, v and param.
using AdamWStepFn = void(const AdamWScalars& s, const Tensor& param, const Tensor& grad, const Tensor& master,
                         const Tensor& exp_avg, const Tensor& exp_avg_sq);

class AdamW {
 public:
  AdamW(std::vector<ParamGroupSpec> groups, int64_t world_size = 1);
  // One group holding every parameter, torch's AdamW(params, lr, betas, eps, weight_decay).
  AdamW(std::vector<Tensor> params, AdamWOptions options = {}, int64_t world_size = 1);

  void step();       // parameters with requires_grad and a defined grad
  void zero_grad();  // drops the grads (set_to_none, torch's default)

  std::vector<ParamGroup>& groups() { return groups_; }
  const std::vector<ParamGroup>& groups() const { return groups_; }
  int64_t world_size() const { return world_size_; }
  int64_t num_steps() const { return num_steps_; }  // calls to step()

  // Copies every parameter into its master slice (after loading new weights into the model).
  void sync_master_from_params();

  // State as flat tensors: "<group>.master", "<group>.exp_avg", "<group>.exp_avg_sq" (padded_numel,)
  // fp32 and "<group>.step" (n_params,) int64, plus "optimizer.num_steps". Loading accepts another
  // world size's padding (only the first numel elements are read), checks the names and sizes,
  // then rewrites every parameter from its master, so a resumed run continues bit for bit.
  std::map<std::string, Tensor> state_dict() const;
  void load_state_dict(const std::map<std::string, Tensor>& state, const std::string& source = "state_dict");
  // Atomic safetensors file; metadata records the group hyper-parameters and parameter names
  // (plus whatever the caller adds, e.g. the scheduler's step).
  void save(const std::string& path, std::map<std::string, std::string> metadata = {}) const;
  // Returns the file's metadata.
  std::map<std::string, std::string> load(const std::string& path);

 private:
  void build(std::vector<ParamGroupSpec> specs);
  std::vector<ParamGroup> groups_;
  int64_t world_size_ = 1;
  int64_t num_steps_ = 0;
};

}  // namespace vt::optim
