// nn/checkpoint.h: activation checkpointing (torch.utils.checkpoint, reentrant form).
//
//   Tensor y = nn::checkpoint([&](const std::vector<Tensor>& in) { return block(in[0], in[1]); }, {x, cond});
//
// Forward runs fn under no_grad, so none of its activations are kept: only the inputs are saved.
// The backward re-runs fn with grad enabled on detached copies of the inputs, back-propagates the
// incoming gradient through that recomputed graph and returns the inputs' gradients. Parameters fn
// reaches through its closure (leaves that require grad) receive their gradients during that inner
// backward, added into their .grad as usual.
//
// Gradients equal those without checkpointing bit for bit, provided fn is deterministic: the
// default generator's state (vt::default_generator()) is saved before the forward and restored for
// the recomputation, so dropout draws the same masks; a Generator passed explicitly to ops inside fn
// must be handled by the caller. Non-leaf tensors that require grad must reach fn through `inputs`
// (a captured intermediate would be back-propagated twice); this is checked.
#pragma once
#include <functional>
#include <vector>

#include "vt/nn/layers.h"
#include "vt/ops.h"

namespace vt::nn {

// Called in backward around the recomputation: before_recompute before fn runs again,
// after_backward once the inner backward is done and the recomputed graph freed (nn/block.h).
struct CheckpointHooks {
  std::function<void()> before_recompute, after_backward;
};

Tensor checkpoint(std::function<Tensor(const std::vector<Tensor>&)> fn, std::vector<Tensor> inputs,
                  CheckpointHooks hooks = {});

// One residual-stream layer (a transformer block) under checkpoint: the stream is folded into one
// tensor (residual + pending delta) before and after, so the saved input is a single (..., C)
// tensor per layer. fn gets the folded stream and `extra` (non-leaf tensors fn needs, e.g. a
// condition or cross-attention K/V that require grad); everything else it uses must be captured by
// value, since it runs again during backward, after the caller's locals are gone.
ResidualStream checkpoint_layer(
    std::function<ResidualStream(const ResidualStream&, const std::vector<Tensor>& extra)> fn,
    const ResidualStream& in, std::vector<Tensor> extra = {}, CheckpointHooks hooks = {});

}  // namespace vt::nn
