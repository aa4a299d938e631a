// nn/block.h: how a model runs one of its repeated blocks (a transformer layer), and the hooks that
// a wrapper of the whole model installs to act around every block (ZeRO-3 gathers the block's
// parameters there, optim/zero.h). The library knows no model: a block is any Module the model
// hands to run_block; the wrapper is told which modules those are by whoever builds it.
//
//   h = nn::run_block(*layer, {gradient_checkpointing, caches != nullptr}, fn, h, extra);
//
// fn is the block's forward on the residual stream (the contract of nn::checkpoint_layer: what it
// uses besides `extra` is captured by value). What run_block does:
//   no hooks installed, or     fn(h, extra), or checkpoint_layer(fn, h, extra) when checkpointing
//   hooks->manages(block)      is asked for, grad is on and there is no KV cache
//   is false
//   hooks, grad off            before_forward(block), fn, after_forward(block, false)
//   hooks, grad on             the block runs under checkpoint_layer WHETHER OR NOT checkpointing
//                              was asked for: the recomputation in backward is the one place where
//                              its parameters are needed again, and only a forward under no_grad
//                              leaves no autograd node holding them, so they can be freed between.
//                              before_forward, forward (no_grad), after_forward(block, false); in
//                              backward: before_backward, recompute + the block's backward,
//                              after_backward (the block's parameter gradients are complete then,
//                              the recomputed graph already gone). Cost: one more forward per block
//                              when checkpointing was off; the gradients are the same bits.
//   hooks, grad on, KV cache   before_forward, fn, after_forward(block, true): the parameters are
//                              held by the graph until its backward, the hooks must keep them
//
// The hooks are one process-wide pointer (the checkpoint's backward may run on another thread);
// installing is not thread-safe and the installer must outlive every graph built under it.
#pragma once
#include <functional>
#include <vector>

#include "vt/nn/layers.h"
#include "vt/nn/module.h"

namespace vt::nn {

class BlockHooks {
 public:
  virtual ~BlockHooks() = default;
  // Whether the hooks act on this block at all (the others run as if no hooks were installed).
  virtual bool manages(const Module& block) const = 0;
  virtual void before_forward(const Module& block) = 0;
  // kept_for_backward: the block's autograd graph holds its parameters (see the top note)
  virtual void after_forward(const Module& block, bool kept_for_backward) = 0;
  virtual void before_backward(const Module& block) = 0;
  virtual void after_backward(const Module& block) = 0;
};

// Installs `hooks` (nullptr: none) and returns the previous ones.
BlockHooks* set_block_hooks(BlockHooks* hooks);
BlockHooks* block_hooks();

struct BlockRun {
  bool checkpointing = false;  // the model's gradient_checkpointing
  bool kv_cache = false;       // this forward appends to a KV cache (inference): never recomputed
};

using BlockFn = std::function<ResidualStream(const ResidualStream&, const std::vector<Tensor>& extra)>;

ResidualStream run_block(const Module& block, BlockRun how, BlockFn fn, const ResidualStream& in,
                         std::vector<Tensor> extra = {});

}  // namespace vt::nn
