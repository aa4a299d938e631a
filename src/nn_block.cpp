// nn_block.cpp: run_block and the process-wide block hooks; see nn/block.h.
#include "vt/nn/block.h"

#include <atomic>

#include "vt/autograd.h"
#include "vt/nn/checkpoint.h"

namespace vt::nn {

namespace {
std::atomic<BlockHooks*> g_hooks{nullptr};
}

BlockHooks* set_block_hooks(BlockHooks* hooks) { return g_hooks.exchange(hooks); }
BlockHooks* block_hooks() { return g_hooks.load(); }

ResidualStream run_block(const Module& block, BlockRun how, BlockFn fn, const ResidualStream& in,
                         std::vector<Tensor> extra) {
  BlockHooks* hooks = block_hooks();
  const bool grad = grad_enabled();
  if (!hooks || !hooks->manages(block)) {
    if (grad && how.checkpointing && !how.kv_cache) return checkpoint_layer(std::move(fn), in, std::move(extra));
    return fn(in, extra);
  }
  hooks->before_forward(block);
  if (!grad || how.kv_cache) {
    ResidualStream out = fn(in, extra);
    hooks->after_forward(block, grad);
    return out;
  }
  // The hooks current when the backward runs (the installer outlives the graph, nn/block.h).
  const Module* b = &block;
  CheckpointHooks around{[b] {
                           if (BlockHooks* h = block_hooks()) h->before_backward(*b);
                         },
                         [b] {
                           if (BlockHooks* h = block_hooks()) h->after_backward(*b);
                         }};
  ResidualStream out = checkpoint_layer(std::move(fn), in, std::move(extra), std::move(around));
  hooks->after_forward(block, false);
  return out;
}

}  // namespace vt::nn
