// optim_zero_gather.cpp: ZeRO stage 3's gathering, gather-all and per block with prefetch, and the
// block hooks through which nn::run_block reaches it; see optim/zero.h.
//
// A gather set is what is gathered at once: block b (its units across the groups) or the rest.
// Released -> start_gather -> InFlight (a buffer per unit, all_gather_async issued) -> finish_gather
// -> Ready (the works waited for, the parameters pointed into the buffers) -> release -> Released
// (the parameters point at a storage of no bytes; the buffers go back to the allocator). Every rank
// walks the same sets in the same order, so the collectives match across ranks.
#include <algorithm>

#include "vt/autograd.h"
#include "vt/ops.h"
#include "vt/optim/zero.h"

namespace vt::optim {

namespace {

// Points a parameter's storage at `view` in place: every handle to it (the model's) sees the move.
void repoint(const Tensor& p, const Tensor& view) {
  p.impl()->storage = view.storage();
  p.impl()->layout = view.layout();
}

void point_at_nothing(const Tensor& p) {
  auto none = std::make_shared<Storage>();  // no bytes: gathered again before the next use
  none->device = p.device();
  p.impl()->storage = none;
}

}  // namespace

void ZeroOptimizer::point_params_into(GroupLayout& g, const Tensor& arena) {
  for (size_t i = 0; i < g.params.size(); ++i)
    repoint(g.params[i], arena.narrow(0, g.offsets[i], g.params[i].numel()).view(g.params[i].shape()));
}

// ---- the block hooks -----------------------------------------------------------------------------------

class ZeroOptimizer::Hooks final : public nn::BlockHooks {
 public:
  explicit Hooks(ZeroOptimizer* z) : z_(z) {}
  // A listed block with trainable parameters (a frozen block runs as without ZeRO: no recompute).
  bool manages(const nn::Module& m) const override {
    const int b = index(m);
    return b >= 0 && !z_->sets_[b].units.empty();
  }
  void before_forward(const nn::Module& m) override { arrive(m, +1); }
  void after_forward(const nn::Module& m, bool kept_for_backward) override {
    const int b = index(m);
    if (b < 0) return;
    if (!kept_for_backward && !z_->pinned_) z_->release(b);  // kept: reduce_gradients frees it
  }
  void before_backward(const nn::Module& m) override { arrive(m, -1); }
  void after_backward(const nn::Module& m) override {
    const int b = index(m);
    if (b < 0) return;
    z_->reduce_block(b);
    if (!z_->pinned_) z_->release(b);
  }

 private:
  int index(const nn::Module& m) const {
    auto it = z_->block_index_.find(&m);
    return it == z_->block_index_.end() ? -1 : static_cast<int>(it->second);
  }
  // Block b is about to run (forward: direction +1, backward: -1): have it, and start the next.
  void arrive(const nn::Module& m, int direction) {
    const int b = index(m);
    if (b < 0 || z_->pinned_) return;
    z_->finish_gather(b);
    const int next = z_->next_block(b, direction);
    if (z_->opt_.prefetch && next >= 0) z_->start_gather(next);
  }
  ZeroOptimizer* z_;
};

void ZeroOptimizer::install_hooks() {
  hooks_ = std::make_unique<Hooks>(this);
  nn::BlockHooks* previous = nn::set_block_hooks(hooks_.get());
  if (previous) {
    nn::set_block_hooks(previous);
    hooks_.reset();
    VT_FAIL("zero: block hooks are already installed (another per-block ZeRO-3 optimizer lives?): one at a time");
  }
}

ZeroOptimizer::~ZeroOptimizer() {
  if (hooks_ && nn::block_hooks() == hooks_.get()) nn::set_block_hooks(nullptr);
}

int ZeroOptimizer::next_block(size_t b, int direction) const {
  for (int k = static_cast<int>(b) + direction; k >= 0 && k < static_cast<int>(opt_.blocks.size()); k += direction)
    if (!sets_[k].units.empty()) return k;
  return -1;
}

// ---- gather sets -----------------------------------------------------------------------------------------

void ZeroOptimizer::start_gather(size_t b) {
  GatherSet& s = sets_[b];
  if (s.state != GatherSet::State::Released) return;
  NoGradGuard no_grad;
  for (const auto& [gi, ui] : s.units) {
    const Unit& u = groups_[gi].units[ui];
    const Tensor& shard = param_shard_[gi];
    Tensor buffer = empty({u.padded}, TensorOptions(shard.dtype(), shard.device()));
    s.works.push_back(pg_->all_gather_async(shard.narrow(0, u.shard_offset, u.shard), buffer));
    gathered_bytes_ += static_cast<int64_t>(buffer.nbytes());
    s.buffers.push_back(std::move(buffer));
  }
  peak_gathered_bytes_ = std::max(peak_gathered_bytes_, gathered_bytes_);
  s.state = GatherSet::State::InFlight;
}

void ZeroOptimizer::finish_gather(size_t b) {
  GatherSet& s = sets_[b];
  if (s.state == GatherSet::State::Ready) return;
  start_gather(b);
  for (auto& w : s.works) w->wait();
  s.works.clear();
  for (size_t k = 0; k < s.units.size(); ++k) {
    const auto [gi, ui] = s.units[k];
    GroupLayout& g = groups_[gi];
    const Unit& u = g.units[ui];
    for (size_t i = u.first; i < u.last; ++i)
      repoint(g.params[i],
              s.buffers[k].narrow(0, g.offsets[i] - u.begin, g.params[i].numel()).view(g.params[i].shape()));
  }
  s.state = GatherSet::State::Ready;
}

void ZeroOptimizer::release(size_t b) {
  GatherSet& s = sets_[b];
  for (auto& w : s.works) w->wait();  // a transfer in flight still writes its buffer
  s.works.clear();
  for (const auto& [gi, ui] : s.units) {
    const Unit& u = groups_[gi].units[ui];
    for (size_t i = u.first; i < u.last; ++i) point_at_nothing(groups_[gi].params[i]);
  }
  for (const Tensor& t : s.buffers) gathered_bytes_ -= static_cast<int64_t>(t.nbytes());
  s.buffers.clear();
  s.state = GatherSet::State::Released;
}

void ZeroOptimizer::reduce_block(size_t b) {
  GatherSet& s = sets_[b];
  VT_CHECK(!s.reduced, "zero: block ", b, " ran its backward twice in one micro-step (is it used twice per forward?)");
  for (const auto& [gi, ui] : s.units) reduce_unit(gi, ui, micro_steps_ > 0);
  s.reduced = true;
}

// ---- the public face ---------------------------------------------------------------------------------------

void ZeroOptimizer::prepare_forward() {
  if (opt_.stage != 3) return;
  finish_gather(opt_.blocks.size());  // the rest (gather-all: everything)
}

void ZeroOptimizer::gather_parameters() {
  if (opt_.stage != 3) return;
  for (size_t b = 0; b < sets_.size(); ++b) start_gather(b);
  for (size_t b = 0; b < sets_.size(); ++b) finish_gather(b);
  pinned_ = true;
}

void ZeroOptimizer::release_parameters() {
  if (opt_.stage != 3) return;
  for (size_t b = 0; b < sets_.size(); ++b) release(b);
  pinned_ = false;
}

}  // namespace vt::optim
