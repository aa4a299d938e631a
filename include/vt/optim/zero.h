// optim/zero.h: ZeRO data parallelism (Rajbhandari et al. 2020) as a wrapper of AdamW over a flat
// parameter arena, on any dist::ProcessGroup (training.md §9).
//
// Layout. Each AdamW group's trainable parameters are laid end to end in one flat arena of
// padded_numel = numel rounded up to a multiple of N (the ranks); rank r owns the equal slice
// [r·S, (r+1)·S), S = padded_numel / N (stage 3 per block pads and slices each unit, below). Padding is zero and never read as a parameter. A parameter
// that crosses a slice boundary is split: every rank builds an inner AdamW (world size 1) whose
// "parameters" are the 1-D pieces (param ∩ owned range), so each rank runs exactly AdamW's kernel
// and scalars on exactly the elements it owns, and its master / exp_avg / exp_avg_sq are the owned
// range of the global flat state. Frozen parameters (requires_grad false at construction) are not
// in the arena: no state, never communicated, replicated in every stage.
//
// One optimizer step, in the loop's order (llm.c's: forward, backward, reduce, clip, update, gather):
//   prepare_forward()      stage 3: all-gather what the forward needs (below), point the parameters into it
//   forward, backward
//   reduce_gradients()     after every micro-batch's backward: the .grads are packed in flat order and
//                          reduce-scattered (accumulate) into this rank's gradient accumulator; the
//                          .grads are dropped. Stages 0-1 pack the whole arena at once, stages 2-3 one
//                          bucket of bucket_elements per rank at a time (a column of every shard)
//   clip_grad_norm(max)    Σg² over the owned elements, all-reduced (one fp64 scalar), sqrt; scales
//   step()                 AdamW on the owned pieces; then stage 0: nothing (every rank updated all),
//                          stages 1-2: all-gather the arena in place, stage 3: free what is gathered
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
// Stage 3's partition and gathering are optim/zero_partition.h's ZeroPartition (shared with
// ShardedInference, a frozen model sharded forward-only: DPO's reference); the optimizer adds the
// reduction of each block's gradients after its backward. Stage 3 has two modes.
//   gather-all (ZeroOptions::blocks empty): prepare_forward() all-gathers every group before the
//     forward, step() frees it; the parameters live through forward and backward (traffic per step
//     Ψ + Ψ·A: 2Ψ at A = 1) and the peak holds the whole model.
//   per block (ZeroOptions::blocks: the modules a model runs through nn::run_block, nn/block.h).
//     The flat layout is cut into units: maximal runs of a group's parameters (in the group's order)
//     that belong to one block, or to none (the "rest": embeddings, heads, norms, and whatever the
//     caller left out of ZeroBlock::params because the model uses it outside the block). Each unit is padded to a multiple of N on its own and every
//     rank owns 1/N of every unit, so a block is all-gathered by one equal-block all-gather per unit.
//     The optimizer installs itself as the block hooks and, per micro-batch:
//       prepare_forward()        all-gather the rest units (kept until step())
//       block b forward          wait for b (prefetched), start the all-gather of the next block,
//                                run b (no_grad: run_block always recomputes under stage 3), free b
//       block b backward         wait for b, start the all-gather of the block before it,
//                                recompute + backward, reduce-scatter b's gradients into the
//                                accumulator (accumulate from the second micro-batch on), free b
//       reduce_gradients()       reduce-scatter the rest units; free anything still gathered
//     Traffic per step (ring units): blocks 3Ψ_b·A at A micro-batches (forward gather, backward
//     gather, reduce-scatter), the rest Ψ_r + Ψ_r·A, so 3Ψ when everything is in blocks and A = 1.
//     Gathered parameters peak at rest + 2 blocks (the running one and the prefetched one), not the
//     model. Without activation checkpointing the blocks are recomputed anyway (nn/block.h says
//     why: a graph that saved a parameter holds its memory); the gradients are the same bits, the
//     cost is one more forward per block. A block run with a KV cache under grad stays gathered
//     until reduce_gradients().
//     The order of `blocks` is the prefetch order (forward; backward runs it reversed); blocks
//     without trainable parameters are skipped (and run as without ZeRO: no forced recompute). Prefetch is MPI_Iallgather on MPI, the group's
//     communication stream on NCCL (dist/process_group.h all_gather_async).
// Frozen parameters are never in the arena, in any stage or mode: replicated, never communicated
// (each rank loaded them; a frozen block needs nothing from its peers to run).
// gather_parameters() gathers everything in both modes and pins it until release_parameters() or
// step() (the hooks then neither gather nor free; saving a checkpoint, evaluation); blocks still
// reduce their gradients in after_backward.
// Measured (tests/dist/test_zero3_mpi.cpp, 4 blocks of 91 f32 elements, a rest of 51, two groups):
// on 2 ranks the gathered parameters peak at 944 B = rest 208 + 2 x block 368 of the model's 1680 B
// (576 B without prefetch) and one step sends 620 elements = ½(3 x 368 + 2 x 52) + 16 scalars,
// against 432 for gather-all; every result equals ZeRO-0 and one process bit for bit.
// bench_zero_comm (Ψ = 1,000,003, a rest of Ψ/8 and 8 blocks): per block sends 1.438Ψ on 2 ranks and
// 2.156Ψ on 4 = (N-1)/N·(3Ψ_b + 2Ψ_r) + the scalars, against 1.0Ψ and 1.5Ψ for gather-all.
// memory_report() prints layout_bytes(stage) next to the formulas: for the run's stage it is what
// model_state_bytes() reads off the buffers.
//
// Gradients should arrive pre-divided by the number of ranks (the loss scaled by 1/(A·N)) and are
// summed (ZeroOptions::average = false); that is the single-process accumulation order.
//
// Checkpoints: save_shard writes dir/optimizer-rank<r>-of-<N>.safetensors: master / exp_avg /
// exp_avg_sq of every group over rank r's segments of the global flat (unpadded) state, listed in
// the metadata: [r·S, min((r+1)·S, numel)) with one unit, that slice of every unit with several;
// every parameter's step and the step count; load_shards reads the shards of any N' (or a single-process
// optimizer.safetensors) and takes the range this rank owns under its own N: N -> M resume.
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vt/dist/process_group.h"
#include "vt/optim/adamw.h"
#include "vt/optim/zero_partition.h"

namespace vt::optim {

struct ZeroOptions {
  int stage = 0;                        // 0 (DDP), 1, 2, 3
  std::vector<ZeroBlock> blocks;        // stage 3: gather per block, in this (forward) order; empty: gather-all
  bool prefetch = true;                 // stage 3 per block: start the next block's all-gather ahead
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

  void prepare_forward();     // stage 3: before each step's forward (idempotent); no-op otherwise
  void gather_parameters();   // stage 3: every parameter, pinned until release (idempotent); no-op otherwise
  void release_parameters();  // stage 3: frees all that is gathered; the parameters point at no memory
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

  // A run of a group's parameters gathered together (stage 3 per block; one per group otherwise).
  using Unit = ZeroUnit;
  // Per group: the trainable parameters, their names and the flat layout.
  struct GroupLayout {
    std::string name;
    std::vector<Tensor> params;
    std::vector<std::string> names;
    std::vector<int64_t> offsets;   // in the arena
    std::vector<int64_t> steps;     // AdamW's t of every parameter (all ranks agree)
    int64_t numel = 0, padded_numel = 0, shard = 0;  // Σ over the units; shard = S = padded_numel / N
    int64_t owned_begin = 0, owned_end = 0;          // one unit: what this rank updates (stage 0: everything)
    std::vector<Unit> units;
    std::vector<std::pair<int64_t, int64_t>> owned;  // the global flat ranges this rank updates, in order
  };
  const std::vector<GroupLayout>& layout() const { return groups_; }

  // The gradient this rank reduced for group g, as a flat tensor of its owned ranges (after
  // reduce_gradients; before clipping unless clip_grad_norm ran).
  Tensor reduced_gradient(size_t g);

  ModelStateBytes model_state_bytes() const;
  // Stage 3: bytes of parameters gathered now (buffers being filled included), and the most since
  // the last reset.
  int64_t gathered_bytes() const { return partition_ ? partition_->gathered_bytes() : 0; }
  int64_t peak_gathered_bytes() const { return partition_ ? partition_->peak_gathered_bytes() : 0; }
  void reset_peak_gathered_bytes() {
    if (partition_) partition_->reset_peak_gathered_bytes();
  }
  // The formulas of the top note for Ψ = psi (padded), N ranks.
  static ModelStateBytes expected_bytes(int stage, int64_t psi, int64_t world, int64_t param_bytes, int64_t grad_bytes,
                                        int64_t bucket_elements, int64_t frozen_bytes);
  // What this rank would hold at `stage` with this layout (its dtypes, units, bucket, the real
  // elements it owns): layout_bytes(stage()) equals model_state_bytes() while nothing is gathered.
  ModelStateBytes layout_bytes(int stage) const;
  // One line per stage: this run's bytes, the paper's formula and layout_bytes (printed by rank 0 at start).
  std::string memory_report() const;

  // Shards (see the top note). save_shard is called by every rank; load_shards by every rank.
  std::string save_shard(const std::string& dir, std::map<std::string, std::string> metadata = {}) const;
  void load_shards(const std::string& dir);
  static std::string shard_file_name(int rank, int world);
  // The whole state as one single-process AdamW state_dict (AdamW::load_state_dict takes it).
  static std::map<std::string, Tensor> consolidate_shards(const std::string& dir);

 private:
  void prepare_step();  // flags all-reduced, slice grads pointed at the reduced gradient
  void build_units(GroupLayout& g, const std::vector<int>& block_of_param) const;
  void point_params_into(GroupLayout& g, const Tensor& arena);
  void pack(const GroupLayout& g, int64_t flat_begin, int64_t len, int64_t limit, Tensor dst) const;
  void reduce_unit(size_t gi, size_t u, bool accumulate);  // stages 2-3: bucketed reduce-scatter
  void reduce_block(size_t b);  // stage 3, after block b's backward: its units' gradients into the accumulator

  std::shared_ptr<dist::ProcessGroup> pg_;
  ZeroOptions opt_;
  std::vector<GroupLayout> groups_;
  std::vector<Tensor> arena_;         // stages 0-2: per group, (padded_numel,) parameter dtype
  std::vector<Tensor> accumulator_;   // (S,) gradient dtype: the fold of the reductions
  std::vector<Tensor> full_grad_;     // stages 0-1: (padded_numel,) the packed / reduced gradient
  Tensor bucket_;                     // stages 2-3: (N·bucket_elements,)
  std::vector<std::vector<int32_t>> has_grad_;  // per group and parameter: a .grad was seen this step
  struct Piece {
    size_t param;        // index in the group
    int64_t begin, len;  // global flat range
    int64_t pos;         // where it sits in the accumulator and the shard (stage 0: = begin)
  };
  std::vector<std::vector<Piece>> pieces_;  // per group: the inner AdamW's parameters, in order
  std::unique_ptr<AdamW> inner_;
  Device device_ = Device::cpu();     // where the trainable parameters (and the collectives) are
  int64_t frozen_bytes_ = 0;
  int64_t micro_steps_ = 0;
  int64_t num_steps_ = 0;
  bool prepared_ = false;

  // Stage 3: the partition holds this rank's (S,) slice of every unit (the inner AdamW's parameters
  // are views of it) and gathers them: per block through its hooks, the rest in prepare_forward().
  std::unique_ptr<ZeroPartition> partition_;
  std::vector<char> reduced_;  // per block: its gradients went into the accumulator this micro-step
};

}  // namespace vt::optim
