// autograd.cpp: grad mode, recording, and the backward engine.
//
// backward() collects the graph reachable from the root, counts for every node how many of its
// consumers are in the graph, and runs nodes in dependency order (Kahn's algorithm), summing the
// gradients that flow into each node before running it. Leaves are reached through accumulator
// nodes that add into `.grad`. The engine runs with grad mode off (no higher-order gradients).
#include "vt/autograd.h"

#include <atomic>

#include "vt/ops.h"

namespace vt {

static thread_local bool g_grad_enabled = true;
bool grad_enabled() { return g_grad_enabled; }
NoGradGuard::NoGradGuard() : prev_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = prev_; }

// ---- Tensor's autograd surface -----------------------------------------------------------------
bool Tensor::requires_grad() const { return impl_ && impl_->requires_grad; }

Tensor& Tensor::requires_grad_(bool on) {
  VT_CHECK(defined(), "requires_grad_: undefined tensor");
  VT_CHECK(is_leaf(), "requires_grad_: only leaves can change requires_grad (this tensor comes from ",
           impl_->grad_fn->name, ")");
  VT_CHECK(!on || is_floating(dtype()), "requires_grad_: only floating-point tensors can require grad, got ",
           dtype_name(dtype()));
  impl_->requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const { return impl_ ? impl_->grad : Tensor(); }
void Tensor::set_grad(const Tensor& g) const {
  VT_CHECK(defined(), "set_grad: undefined tensor");
  VT_CHECK(!g.defined() || g.shape() == shape(), "set_grad: gradient shape ", g.shape().str(),
           " differs from tensor shape ", shape().str());
  impl_->grad = g;
}
const std::shared_ptr<Node>& Tensor::grad_fn() const {
  static const std::shared_ptr<Node> none;
  return impl_ ? impl_->grad_fn : none;
}
Tensor Tensor::detach() const { return make_tensor(storage(), layout(), dtype()); }
void Tensor::backward(const Tensor& grad, bool retain_graph) const { autograd::backward(*this, grad, retain_graph); }

namespace autograd {

bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor* t : inputs)
    if (t->requires_grad()) return true;
  return false;
}

// The node through which gradient reaches `t`: its grad_fn, or its leaf accumulator.
static std::shared_ptr<Node> edge_of(const Tensor& t) {
  if (!t.requires_grad()) return nullptr;
  TensorImpl* impl = t.impl();
  if (impl->grad_fn) return impl->grad_fn;
  if (!impl->grad_accumulator) {
    auto acc = std::make_shared<Node>();
    acc->name = "accumulate_grad";
    acc->leaf = t.impl_ptr();
    impl->grad_accumulator = acc;
  }
  return impl->grad_accumulator;
}

template <class List>
static void record_impl(const char* name, Tensor& out, const List& inputs,
                        std::function<grads(const Tensor&)>& backward) {
  if (!g_grad_enabled) return;
  bool any = false;
  for (const Tensor& t : inputs) any |= t.requires_grad();
  if (!any) return;
  auto node = std::make_shared<Node>();
  node->name = name;
  node->next.reserve(inputs.size());
  node->input_shapes.reserve(inputs.size());
  node->input_dtypes.reserve(inputs.size());
  for (const Tensor& t : inputs) {
    node->next.push_back(edge_of(t));
    node->input_shapes.push_back(t.defined() ? t.shape() : Shape{});
    node->input_dtypes.push_back(t.defined() ? t.dtype() : DType::F32);
  }
  node->backward = std::move(backward);
  out.impl()->requires_grad = true;
  out.impl()->grad_fn = std::move(node);
}

void record(const char* name, Tensor& out, std::initializer_list<Tensor> inputs,
            std::function<grads(const Tensor&)> backward) {
  record_impl(name, out, inputs, backward);
}
void record(const char* name, Tensor& out, const std::vector<Tensor>& inputs,
            std::function<grads(const Tensor&)> backward) {
  record_impl(name, out, inputs, backward);
}

static void accumulate(Tensor& slot, const Tensor& g) { slot = slot.defined() ? add(slot, g) : g; }

void backward(const Tensor& root, const Tensor& grad_in, bool retain_graph) {
  VT_CHECK(root.requires_grad(), "backward: tensor does not require grad (no input of its graph has requires_grad)");
  Tensor grad = grad_in;
  if (!grad.defined()) {
    VT_CHECK(root.numel() == 1, "backward: grad can be implicit only for a single-element output, got shape ",
             root.shape().str());
    grad = ones_like(root);
  }
  VT_CHECK(grad.shape() == root.shape(), "backward: gradient shape ", grad.shape().str(), " differs from output ",
           root.shape().str());
  NoGradGuard no_grad;
  static std::atomic<uint64_t> epochs{0};
  const uint64_t epoch = ++epochs;
  std::shared_ptr<Node> start = edge_of(root);

  // Count, for every node of the graph, its consumers inside the graph. The counts and partial
  // gradient sums live in the nodes (no hash maps: this runs once per op of the graph).
  std::vector<Node*> stack{start.get()};
  start->epoch = epoch;
  start->pending_consumers = 0;
  start->grad_sum = Tensor();
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (auto& e : n->next) {
      if (!e) continue;
      if (e->epoch != epoch) {
        e->epoch = epoch;
        e->pending_consumers = 0;
        e->grad_sum = Tensor();
        stack.push_back(e.get());
      }
      ++e->pending_consumers;
    }
  }

  start->grad_sum = grad;
  std::vector<Node*> ready{start.get()};
  while (!ready.empty()) {
    Node* n = ready.back();
    ready.pop_back();
    Tensor g = std::move(n->grad_sum);
    n->grad_sum = Tensor();
    if (auto leaf = n->leaf.lock()) {  // accumulator: add into .grad
      if (!g.defined()) continue;
      Tensor lg = g.dtype() == leaf->dtype ? std::move(g) : cast(g, leaf->dtype);
      if (leaf->grad.defined()) {
        leaf->grad = add(leaf->grad, lg);
      } else {
        // Steal the gradient when nothing else holds it; copy when it is shared (e.g. the same
        // tensor flowing to two leaves of `a + b`), so in-place updates of one .grad stay local.
        bool shared = lg.impl_ptr().use_count() > 1 || lg.storage().use_count() > 1 || !lg.is_contiguous();
        leaf->grad = shared ? lg.detach().clone() : lg;
      }
      continue;
    }
    if (!g.defined()) {  // no gradient reached this node: release its inputs' dependency counts
      for (auto& e : n->next)
        if (e && --e->pending_consumers == 0) ready.push_back(e.get());
      if (!retain_graph) n->backward = nullptr;
      continue;
    }
    VT_CHECK(n->backward != nullptr, "backward: the graph through '", n->name,
             "' was already freed; call backward(..., retain_graph=true) the first time");
    grads gs = n->backward(g);
    VT_CHECK(gs.size() == n->next.size(), "backward: '", n->name, "' returned ", gs.size(), " gradients for ",
             n->next.size(), " inputs");
    if (!retain_graph) n->backward = nullptr;  // frees the saved tensors now
    for (size_t i = 0; i < gs.size(); ++i) {
      Node* e = n->next[i].get();
      if (!e) continue;
      if (gs[i].defined()) {
        VT_CHECK(gs[i].shape() == n->input_shapes[i], "backward of '", n->name, "': gradient ", i, " has shape ",
                 gs[i].shape().str(), ", input has ", n->input_shapes[i].str());
        if (gs[i].dtype() != n->input_dtypes[i]) gs[i] = cast(gs[i], n->input_dtypes[i]);
        accumulate(e->grad_sum, gs[i]);
      }
      if (--e->pending_consumers == 0) ready.push_back(e);
    }
  }
}

}  // namespace autograd
}  // namespace vt
