// autograd.h: the reverse-mode tape.
//
// Every differentiable op that sees an input with requires_grad (while grad mode is on) attaches a
// Node to its result. The Node holds one Edge per input (the input's own grad_fn, or the
// accumulator of a leaf) and a closure that maps the output's gradient to the inputs' gradients.
// The closure captures exactly the tensors the backward needs ("saved tensors"); the engine drops
// the closure right after running it (unless retain_graph), so saved activations are freed as soon
// as backward has used them.
//
// Ops write their derivative rule next to the forward:
//   Tensor out = ...forward...;
//   autograd::record("mul", out, {a, b}, [a, b](const Tensor& g) {
//     return grads{mul(g, b), mul(g, a)};
//   });
#pragma once
#include <functional>
#include <initializer_list>
#include <memory>
#include <vector>

#include "vt/tensor.h"

namespace vt {

using grads = std::vector<Tensor>;  // one entry per input; undefined = no gradient

struct Node {
  const char* name = "";
  std::vector<std::shared_ptr<Node>> next;  // per input; null when that input needs no grad
  std::vector<Shape> input_shapes;          // the engine checks each gradient against these
  std::vector<DType> input_dtypes;          // and casts it to its input's dtype
  std::function<grads(const Tensor&)> backward;
  std::weak_ptr<TensorImpl> leaf;  // set for the accumulator node of a leaf
  // Engine scratch, valid only during one backward(): consumers not yet run, gradient summed so far.
  uint64_t epoch = 0;          // which backward() last visited this node
  int pending_consumers = 0;
  Tensor grad_sum;
};

// Grad mode: on by default; NoGradGuard turns it off in a scope (thread-local).
bool grad_enabled();
struct NoGradGuard {
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

namespace autograd {

// True when grad mode is on and any input requires grad: the op must then call record().
bool needs_grad(std::initializer_list<const Tensor*> inputs);
inline bool needs_grad(const Tensor& a) { return needs_grad({&a}); }
inline bool needs_grad(const Tensor& a, const Tensor& b) { return needs_grad({&a, &b}); }

// Attaches a Node to `out` (marks it requires_grad) when needs_grad(inputs); no-op otherwise. The
// inputs are a braced list at a fixed arity ({a, b}) or a vector for ops of any arity (cat).
void record(const char* name, Tensor& out, std::initializer_list<Tensor> inputs,
            std::function<grads(const Tensor&)> backward);
void record(const char* name, Tensor& out, const std::vector<Tensor>& inputs,
            std::function<grads(const Tensor&)> backward);

// Runs backward from `root` with seed gradient `grad`.
void backward(const Tensor& root, const Tensor& grad, bool retain_graph);

}  // namespace autograd
}  // namespace vt
