// nn_checkpoint.cpp: activation checkpointing by recomputation.
//
// The autograd engine runs every backward closure with grad mode off (thread-local, see
// autograd.cpp) and has no guard to turn it back on, so the recomputation and its inner backward
// run on a fresh thread, whose grad mode starts on; the caller's OpenMP thread count goes with it
// so the recomputed ops see the same configuration. The engine keeps per-backward scratch in the
// nodes it visits; the only nodes the inner backward shares with the outer one are the accumulators
// of captured leaves, whose scratch is saved before the inner backward and restored after it.
#include "vt/nn/checkpoint.h"

#include <omp.h>

#include <future>
#include <unordered_set>

#include "vt/random.h"

namespace vt::nn {

namespace {

struct RngState {
  uint64_t seed, offset;
};

// Every node of the graph below `root`; fails on a non-leaf node that existed before the
// recomputation (one some earlier backward visited), which fn must have captured.
std::vector<Node*> graph_nodes(const Tensor& root) {
  std::vector<Node*> order, stack{root.grad_fn().get()};
  std::unordered_set<Node*> seen;
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    if (!seen.insert(n).second) continue;
    order.push_back(n);
    VT_CHECK(!n->leaf.expired() || n->epoch == 0, "checkpoint: fn uses a non-leaf tensor from outside (made by '",
             n->name, "') that requires grad; pass it through `inputs`");
    for (auto& e : n->next)
      if (e) stack.push_back(e.get());
  }
  return order;
}

grads recompute_and_backward(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                             const std::vector<Tensor>& saved, size_t n_inputs, RngState rng, const Tensor& g) {
  std::vector<Tensor> inner;
  for (size_t i = 0; i < n_inputs; ++i) {
    Tensor d = saved[i].detach();
    if (saved[i].requires_grad()) d.requires_grad_();
    inner.push_back(d);
  }
  Generator& gen = default_generator();
  const RngState now{gen.seed(), gen.offset()};
  gen.set_state(rng.seed, rng.offset);
  Tensor out;
  try {
    out = fn(inner);
  } catch (...) {
    gen.set_state(now.seed, now.offset);
    throw;
  }
  gen.set_state(now.seed, now.offset);
  grads result(saved.size());
  if (!out.requires_grad()) return result;  // nothing inside needs a gradient
  VT_CHECK(out.shape() == g.shape(), "checkpoint: recomputed output has shape ", out.shape().str(),
           ", the forward gave ", g.shape().str(), " (fn is not deterministic?)");
  struct Scratch {
    Node* node;
    uint64_t epoch;
    int pending;
    Tensor grad_sum;
  };
  std::vector<Scratch> kept;
  if (out.grad_fn())
    for (Node* n : graph_nodes(out))
      if (!n->leaf.expired()) kept.push_back({n, n->epoch, n->pending_consumers, n->grad_sum});
  autograd::backward(out, g, false);
  for (Scratch& s : kept) s.node->epoch = s.epoch, s.node->pending_consumers = s.pending, s.node->grad_sum = s.grad_sum;
  for (size_t i = 0; i < n_inputs; ++i)
    if (inner[i].requires_grad()) result[i] = inner[i].grad();
  return result;
}

}  // namespace

Tensor checkpoint(std::function<Tensor(const std::vector<Tensor>&)> fn, std::vector<Tensor> inputs,
                  CheckpointHooks hooks) {
  Generator& gen = default_generator();
  const RngState rng{gen.seed(), gen.offset()};
  Tensor out;
  {
    NoGradGuard ng;
    out = fn(inputs);
  }
  VT_CHECK(out.defined(), "checkpoint: fn returned an undefined tensor");
  if (!grad_enabled()) return out;
  out = out.detach();
  const size_t n_inputs = inputs.size();
  // Parameters captured by fn are invisible here; when no input requires grad, an anchor leaf makes
  // sure the node is still recorded so that the recomputation reaches them.
  bool any = false;
  for (const Tensor& t : inputs) any |= t.requires_grad();
  std::vector<Tensor> edges = inputs;
  if (!any) edges.push_back(zeros({}).requires_grad_());
  auto body = std::make_shared<std::function<Tensor(const std::vector<Tensor>&)>>(std::move(fn));
  autograd::record("checkpoint", out, edges, [body, edges, n_inputs, rng, hooks](const Tensor& g) {
    if (hooks.before_recompute) hooks.before_recompute();
    const int threads = omp_get_max_threads();
    auto job = std::async(std::launch::async, [&] {
      omp_set_num_threads(threads);
      return recompute_and_backward(*body, edges, n_inputs, rng, g);
    });
    grads result = job.get();
    if (hooks.after_backward) hooks.after_backward();
    return result;
  });
  return out;
}

ResidualStream checkpoint_layer(
    std::function<ResidualStream(const ResidualStream&, const std::vector<Tensor>& extra)> fn,
    const ResidualStream& in, std::vector<Tensor> extra, CheckpointHooks hooks) {
  auto fold = [](const ResidualStream& h) { return h.delta.defined() ? h.residual + h.delta : h.residual; };
  std::vector<Tensor> inputs{fold(in)};
  inputs.insert(inputs.end(), extra.begin(), extra.end());
  Tensor out = checkpoint(
      [fn = std::move(fn), fold](const std::vector<Tensor>& v) {
        return fold(fn(ResidualStream{v[0], Tensor()}, std::vector<Tensor>(v.begin() + 1, v.end())));
      },
      std::move(inputs), std::move(hooks));
  return {out, Tensor()};
}

}  // namespace vt::nn
