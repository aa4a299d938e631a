// optim/zero_partition.h: ZeRO-3's parameter partition (Rajbhandari et al. 2020, training.md §9):
// a model's parameters cut into units, every rank holding 1/N of every unit, and the gathering that
// brings a block's units back around its nn::run_block. Two users:
//   ZeroOptimizer, stage 3 (optim/zero.h): the trainable parameters; it adds the gradient reduction
//     after each block's backward (on_block_backward) and the optimizer state of its shard.
//   ShardedInference (below): a frozen model run forward only, DPO's reference (train/dpo.h): every
//     parameter partitioned, no gradients, no optimizer state.
//
// Layout. Per group (one dtype and device), the parameters are laid end to end in flat order; a
// unit is a maximal run of them that belongs to one block (or to none: the "rest"), padded to a
// multiple of N on its own; rank r holds the slice [r·S_u, (r+1)·S_u) of every unit u (S_u = padded / N),
// the slices of a group's units laid end to end in one (S,) shard buffer. Padding is zero.
//
// Gathering, per "gather set": block b (its units across the groups) for b in [0, B), the rest at B.
//   Released --start_gather--> InFlight (a (padded,) buffer per unit, one equal-block all_gather_async
//   each) --finish_gather--> Ready (waited, the parameters pointed into the buffers) --release-->
//   Released (the parameters point at a storage of no bytes; the buffers go back to the allocator).
// Every rank walks the same sets in the same order, so the collectives match across ranks.
// The hooks (nn/block.h) do, for a managed block b (a listed block with units):
//   before_forward   finish b, start the next block's gather (prefetch, forward order)
//   after_forward    release b, unless the graph keeps it (a KV cache under grad) or all is pinned
//   before_backward  finish b, start the previous block's gather
//   after_backward   on_block_backward(b) (the optimizer reduces b's gradients), release b
// So the gathered parameters peak at rest + 2 blocks (the running one and the prefetched one).
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "vt/dist/process_group.h"
#include "vt/nn/block.h"

namespace vt::optim {

// A block: the Module a model hands to nn::run_block, and the parameters gathered around its runs
// (default: all of the module's trainable ones). Leave out a parameter the model uses outside the
// block: it joins the rest.
struct ZeroBlock {
  const nn::Module* module = nullptr;
  std::vector<Tensor> params;
  static ZeroBlock of(const nn::Module& m, bool trainable_only = true) { return {&m, m.parameters(trainable_only)}; }
};

// A run of a group's parameters gathered together.
struct ZeroUnit {
  int block = -1;                 // index in the blocks; -1: the rest
  size_t first = 0, last = 0;     // the group's parameters [first, last)
  int64_t begin = 0, numel = 0;   // the global flat range [begin, begin + numel)
  int64_t padded = 0, shard = 0;  // numel rounded up to N; shard = padded / N
  int64_t shard_offset = 0;       // where this unit's slice sits in the group's (S,) shard buffer
};

// A group's units: offsets[i] is parameter i's flat position (numel in all), block_of[i] its block
// (-1: the rest); maximal runs of one block, each padded to a multiple of `world`.
std::vector<ZeroUnit> cut_units(const std::vector<int64_t>& offsets, int64_t numel, const std::vector<int>& block_of,
                                int64_t world);

// Points parameter p at `view` in place (storage and layout): every handle to it, the model's
// included, sees the move. How stage 0-2's arena and stage 3's gathered buffers take the parameters.
void repoint_parameter(const Tensor& p, const Tensor& view);

class ZeroPartition {
 public:
  struct Group {
    std::vector<Tensor> params;  // one dtype and device, contiguous
    std::vector<int> block_of;   // per parameter: its index in `blocks`, -1 for the rest
  };
  // Copies this rank's slice of every unit into its shard; the parameters then point at no memory.
  ZeroPartition(std::vector<Group> groups, std::vector<const nn::Module*> blocks,
                std::shared_ptr<dist::ProcessGroup> pg, bool prefetch = true);
  ~ZeroPartition();  // uninstalls its hooks if they are installed
  ZeroPartition(const ZeroPartition&) = delete;
  ZeroPartition& operator=(const ZeroPartition&) = delete;

  // ---- layout
  size_t num_groups() const { return groups_.size(); }
  const std::vector<ZeroUnit>& units(size_t g) const { return groups_[g].units; }
  const std::vector<int64_t>& offsets(size_t g) const { return groups_[g].offsets; }
  const Tensor& shard(size_t g) const { return groups_[g].shard; }  // (S,): this rank's slices
  size_t num_blocks() const { return blocks_.size(); }
  size_t rest() const { return blocks_.size(); }  // the rest's gather set
  int block_index(const nn::Module& m) const;     // -1: not a listed block
  bool has_units(size_t set) const { return !sets_[set].units.empty(); }
  const std::vector<std::pair<size_t, size_t>>& set_units(size_t set) const { return sets_[set].units; }  // (group, unit)
  int64_t set_bytes(size_t set) const;  // what gathering the set holds (padded)
  int64_t shard_bytes() const;          // what this rank holds between gathers
  int next_block(size_t b, int direction) const;  // the next block with units in that direction, or -1

  // ---- gathering
  void start_gather(size_t set);
  void finish_gather(size_t set);
  void release(size_t set);
  void arrive(size_t block, int direction);  // block is about to run: have it, prefetch the next
  void gather_all();   // every set, pinned until release_all (the hooks then neither gather nor free)
  void release_all();  // frees every set, unpins
  bool pinned() const { return pinned_; }

  // ---- hooks
  nn::BlockHooks& hooks();
  void install_hooks();    // for this partition's lifetime; fails if any hooks are installed
  std::function<void(size_t block)> on_block_backward;  // after a block's backward, before its release
  bool forward_only = false;  // a managed block run with grad on is an error (nothing would reduce it)

  // ---- counters: bytes of parameters gathered now (buffers being filled included), and the most
  // since the last reset
  int64_t gathered_bytes() const { return gathered_bytes_; }
  int64_t peak_gathered_bytes() const { return peak_gathered_bytes_; }
  void reset_peak_gathered_bytes() { peak_gathered_bytes_ = gathered_bytes_; }

 private:
  class Hooks;
  struct GroupState {
    std::vector<Tensor> params;
    std::vector<int64_t> offsets;
    std::vector<ZeroUnit> units;
    Tensor shard;
  };
  struct GatherSet {
    std::vector<std::pair<size_t, size_t>> units;  // (group, unit)
    enum class State { Released, InFlight, Ready } state = State::Released;
    std::vector<Tensor> buffers;  // per unit, (padded,)
    std::vector<std::unique_ptr<dist::Work>> works;
  };
  std::shared_ptr<dist::ProcessGroup> pg_;
  std::vector<const nn::Module*> blocks_;
  std::map<const nn::Module*, size_t> block_index_;
  bool prefetch_ = true;
  std::vector<GroupState> groups_;
  std::vector<GatherSet> sets_;
  std::unique_ptr<Hooks> hooks_;
  bool installed_ = false;
  bool pinned_ = false;
  int64_t gathered_bytes_ = 0, peak_gathered_bytes_ = 0;
};

// A frozen model run forward only under ZeRO-3: DPO's reference. Every parameter of `model` (tied
// ones once) is partitioned, grouped by dtype and device; `blocks` are the modules the model runs
// through nn::run_block, in forward order (ZeroBlock::of(m, false): all of a block's parameters).
// Between forwards a rank holds 1/N of the parameters; a forward runs inside a Scope:
//
//   { ShardedInference::Scope gathered(reference);   // the rest gathered, the hooks installed
//     logps = reference_logps(model, batch); }       // block by block, prefetching the next
//                                                    // scope end: all released, previous hooks back
//
// The Scope sets aside whatever hooks are installed (a ZeRO-3 optimizer's, for the policy) and puts
// them back at its end: the policy must not run inside it. Forward only: a block run with grad on
// inside the scope is an error.
class ShardedInference {
 public:
  ShardedInference(const nn::Module& model, std::vector<ZeroBlock> blocks, std::shared_ptr<dist::ProcessGroup> pg,
                   bool prefetch = true);
  class Scope {
   public:
    explicit Scope(ShardedInference& s);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    ShardedInference& s_;
    nn::BlockHooks* previous_ = nullptr;
  };
  const ZeroPartition& partition() const { return *partition_; }
  ZeroPartition& partition() { return *partition_; }
  int64_t model_bytes() const { return model_bytes_; }  // the parameters unsharded

 private:
  std::unique_ptr<ZeroPartition> partition_;
  int64_t model_bytes_ = 0;
};

}  // namespace vt::optim
