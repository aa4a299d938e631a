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

#include "vt/ops.h"

namespace vt::nn {

Tensor checkpoint(std::function<Tensor(const std::vector<Tensor>&)> fn, std::vector<Tensor> inputs);

}  // namespace vt::nn
