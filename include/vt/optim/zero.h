// optim/zero.h: ZeRO data parallelism (Rajbhandari et al. 2020) as a wrapper of AdamW over a flat
// parameter arena, on any dist::ProcessGroup (training.md §9).
//
// Layout. Each AdamW group's trainable parameters are laid end to end in one flat arena of
// padded_numel = numel rounded up to a multiple of N (the ranks); rank r owns the equal slice
// [r·S, (r+1)·S), S = padded_numel / N. Padding is zero and never read as a parameter. A parameter
// that crosses a slice boundary is split: every rank builds an inner AdamW (world size 1) whose
// "parameters" are the 1-D pieces (param ∩ owned range), so each rank runs exactly AdamW's kernel
// and scalars on exactly the elements it owns, and its master / exp_avg / exp_avg_sq are the owned
// range of the global flat state. Frozen parameters (requires_grad false at construction) are not
// in the arena: no state, never communicated, replicated in every stage.
//
// One optimizer step, in the loop's order (llm.c's: forward, backward, reduce, clip, update, gather):
//   gather_parameters()    stage 3: all-gather the arena from the shards, point the parameters into it
//   forward, backward
//   reduce_gradients()     after every micro-batch's backward: the .grads are packed in flat order and
//                          reduce-scattered (accumulate) into this rank's gradient accumulator; the
//                          .grads are dropped. Stages 0-1 pack the whole arena at once, stages 2-3 one
//                          bucket of bucket_elements per rank at a time (a column of every shard)
//   clip_grad_norm(max)    Σg² over the owned elements, all-reduced (one fp64 scalar), sqrt; scales
//   step()                 AdamW on the owned pieces; then stage 0: nothing (every rank updated all),
//                          stages 1-2: all-gather the arena in place, stage 3: release the arena
//   zero_grad()
//
// What each stage holds between steps (Ψ trainable elements, P/G bytes per parameter/gradient,
// K = 12 for the fp32 master + m + v; `expected_bytes`):
//   stage 0  params PΨ   grads GΨ (full reduced gradient) + GΨ/N (fold accumulator)   optimizer KΨ
//   stage 1  params PΨ   grads GΨ (full flat gradient)    + GΨ/N                      optimizer KΨ/N
//   stage 2  params PΨ   grads GΨ/N  + a bucket of G·N·bucket_elements                optimizer KΨ/N
//   stage 3  params PΨ/N grads GΨ/N  + the bucket                                     optimizer KΨ/N
// Stages 0 and 1 reduce-scatter then all-gather (= an all-reduce) every micro-step; the accumulator
// is the fold of the reduction, so N ranks x micro-batch b x A accumulation steps give the same bits
// as one rank with N·A micro-batches of b, whatever N (with the fixed-order MPI backend).
//
// Stage 3 here gathers the whole arena before the forward and frees it after the step
// ("gather-all"), not one block at a time with prefetch: the parameters live through forward and
// backward, so there is no second all-gather in backward (traffic Ψ + Ψ·A instead of 3Ψ at A = 1:
// 2Ψ) and the peak holds the whole model while it computes. Between steps a rank holds PΨ/N.
//
// Gradients should arrive pre-divided by the number of ranks (the loss scaled by 1/(A·N)) and are
// summed (ZeroOptions::average = false); that is the single-process accumulation order.
//
// Checkpoints: save_shard writes dir/optimizer-rank<r>-of-<N>.safetensors: the global flat range
// [r·S, min((r+1)·S, numel)) of master / exp_avg / exp_avg_sq of every group, every parameter's step
// and the step count; load_shards reads the shards of any N' (or a single-process
// optimizer.safetensors) and takes the range this rank owns under its own N: N -> M resume.
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vt/dist/process_group.h"
#include "vt/optim/adamw.h"

namespace vt::optim {

struct ZeroOptions {
  int stage = 0;                        // 0 (DDP), 1, 2, 3
  int64_t bucket_elements = 1 << 20;    // stages 2-3: elements per rank in one reduce-scatter bucket
  std::optional<DType> grad_dtype;      // the accumulator's dtype; default: the group's parameter dtype
  bool average = false;                 // divide the reduced gradients by N (when not pre-divided)
};

struct ModelStateBytes {
  int64_t params = 0;     // trainable parameters held (the arena, or the shard in stage 3)
  int64_t grads = 0;      // gradient buffers that persist between micro-steps
  int64_t optimizer = 0;  // fp32 master + exp_avg + exp_avg_sq held
  int64_t bucket = 0;     // stages 2-3: the reduce-scatter bucket
  int64_t frozen = 0;     // frozen parameters (replicated)
  int64_t total() const { return params + grads + optimizer + bucket + frozen; }
};

class ZeroOptimizer {
 public:
  // Build after loading weights and after Module::to(): the parameters are moved into the arena.
  ZeroOptimizer(std::vector<ParamGroupSpec> groups, std::shared_ptr<dist::ProcessGroup> group,
                ZeroOptions options = {});
  ~ZeroOptimizer();
  ZeroOptimizer(const ZeroOptimizer&) = delete;
  ZeroOptimizer& operator=(const ZeroOptimizer&) = delete;

  void gather_parameters();   // stage 3: before forward (idempotent); no-op otherwise
  void release_parameters();  // stage 3: frees the arena; the parameters point at no memory until gathered
  void reduce_gradients();    // after each micro-batch's backward
  double clip_grad_norm(double max_norm, bool error_if_nonfinite = false);  // norm before clipping
  double grad_norm();         // without clipping
  void step();
  void zero_grad();

  // The AdamW over this rank's pieces: its groups carry lr (give it to a Scheduler).
  AdamW& inner() { return *inner_; }
  const AdamW& inner() const { return *inner_; }
  int stage() const { return opt_.stage; }
  dist::ProcessGroup& process_group() const { return *pg_; }
  int64_t num_steps() const { return num_steps_; }

  // Per group: the trainable parameters, their names and the flat layout.
  struct GroupLayout {
    std::string name;
    std::vector<Tensor> params;
    std::vector<std::string> names;
    std::vector<int64_t> offsets;   // in the arena
    std::vector<int64_t> steps;     // AdamW's t of every parameter (all ranks agree)
    int64_t numel = 0, padded_numel = 0, shard = 0;  // shard = S
    int64_t owned_begin = 0, owned_end = 0;          // what this rank updates (stage 0: everything)
  };
  const std::vector<GroupLayout>& layout() const { return groups_; }

  // The gradient this rank reduced for group g, as a flat tensor of its owned range (after
  // reduce_gradients; before clipping unless clip_grad_norm ran).
  Tensor reduced_gradient(size_t g);

  ModelStateBytes model_state_bytes() const;
  // The formulas of the top note for Ψ = psi (padded), N ranks.
  static ModelStateBytes expected_bytes(int stage, int64_t psi, int64_t world, int64_t param_bytes, int64_t grad_bytes,
                                        int64_t bucket_elements, int64_t frozen_bytes);
  // One line per stage: this run's bytes next to the formulas (printed by rank 0 at start).
  std::string memory_report() const;

  // Shards (see the top note). save_shard is called by every rank; load_shards by every rank.
  std::string save_shard(const std::string& dir, std::map<std::string, std::string> metadata = {}) const;
  void load_shards(const std::string& dir);
  static std::string shard_file_name(int rank, int world);
  // The whole state as one single-process AdamW state_dict (AdamW::load_state_dict takes it).
  static std::map<std::string, Tensor> consolidate_shards(const std::string& dir);

 private:
  void prepare_step();  // flags all-reduced, slice grads pointed at the reduced gradient
  void point_params_into(GroupLayout& g, const Tensor& arena);
  void pack(const GroupLayout& g, int64_t flat_begin, int64_t len, Tensor dst) const;

  std::shared_ptr<dist::ProcessGroup> pg_;
  ZeroOptions opt_;
  std::vector<GroupLayout> groups_;
  std::vector<Tensor> arena_;         // per group, (padded_numel,) parameter dtype (stage 3: while gathered)
  std::vector<Tensor> param_shard_;   // stage 3: (S,) the owned parameters between steps
  std::vector<Tensor> accumulator_;   // (S,) gradient dtype: the fold of the reductions
  std::vector<Tensor> full_grad_;     // stages 0-1: (padded_numel,) the packed / reduced gradient
  Tensor bucket_;                     // stages 2-3: (N·bucket_elements,)
  std::vector<std::vector<int32_t>> has_grad_;  // per group and parameter: a .grad was seen this step
  struct Piece {
    size_t param;      // index in the group
    int64_t begin, len;  // flat range of the arena
  };
  std::vector<std::vector<Piece>> pieces_;  // per group: the inner AdamW's parameters, in order
  std::unique_ptr<AdamW> inner_;
  Device device_ = Device::cpu();     // where the trainable parameters (and the collectives) are
  int64_t frozen_bytes_ = 0;
  int64_t micro_steps_ = 0;
  int64_t num_steps_ = 0;
  bool prepared_ = false, gathered_ = true;
};

}  // namespace vt::optim
