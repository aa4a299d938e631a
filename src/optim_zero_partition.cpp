// optim_zero_partition.cpp: ZeRO-3's parameter partition, its gathering with prefetch, the block
// hooks through which nn::run_block reaches it, and ShardedInference; see optim/zero_partition.h.
#include "vt/optim/zero_partition.h"

#include <algorithm>

#include "vt/autograd.h"
#include "vt/ops.h"

namespace vt::optim {

void repoint_parameter(const Tensor& p, const Tensor& view) {
  p.impl()->storage = view.storage();
  p.impl()->layout = view.layout();
}

namespace {

void point_at_nothing(const Tensor& p) {
  auto none = std::make_shared<Storage>();  // no bytes: gathered again before the next use
  none->device = p.device();
  p.impl()->storage = none;
}

}  // namespace

std::vector<ZeroUnit> cut_units(const std::vector<int64_t>& offsets, int64_t numel, const std::vector<int>& block_of,
                                int64_t world) {
  VT_CHECK(offsets.size() == block_of.size(), "zero: ", offsets.size(), " parameter offsets but ", block_of.size(),
           " block indices");
  std::vector<ZeroUnit> units;
  int64_t shard_offset = 0;
  for (size_t i = 0; i < offsets.size();) {
    size_t j = i + 1;
    while (j < offsets.size() && block_of[j] == block_of[i]) ++j;
    ZeroUnit u;
    u.block = block_of[i];
    u.first = i, u.last = j;
    u.begin = offsets[i];
    u.numel = (j < offsets.size() ? offsets[j] : numel) - u.begin;
    u.padded = (u.numel + world - 1) / world * world;
    u.shard = u.padded / world;
    u.shard_offset = shard_offset;
    shard_offset += u.shard;
    units.push_back(u);
    i = j;
  }
  return units;
}

// ---- the hooks ----------------------------------------------------------------------------------------

class ZeroPartition::Hooks final : public nn::BlockHooks {
 public:
  explicit Hooks(ZeroPartition* z) : z_(z) {}
  // A listed block with units (a block with nothing partitioned runs as without ZeRO: no recompute).
  bool manages(const nn::Module& m) const override {
    const int b = z_->block_index(m);
    return b >= 0 && z_->has_units(b);
  }
  void before_forward(const nn::Module& m) override {
    VT_CHECK(!z_->forward_only || !grad_enabled(), "zero: block ", z_->block_index(m),
             " of a forward-only partition (ShardedInference) runs with grad on; run it under NoGradGuard");
    arrive(m, +1);
  }
  void after_forward(const nn::Module& m, bool kept_for_backward) override {
    const int b = z_->block_index(m);
    if (b >= 0 && !kept_for_backward && !z_->pinned_) z_->release(b);  // kept: its owner frees it
  }
  void before_backward(const nn::Module& m) override { arrive(m, -1); }
  void after_backward(const nn::Module& m) override {
    const int b = z_->block_index(m);
    if (b < 0) return;
    if (z_->on_block_backward) z_->on_block_backward(b);
    if (!z_->pinned_) z_->release(b);
  }

 private:
  void arrive(const nn::Module& m, int direction) {
    const int b = z_->block_index(m);
    if (b >= 0) z_->arrive(b, direction);
  }
  ZeroPartition* z_;
};

// ---- the partition ------------------------------------------------------------------------------------

ZeroPartition::ZeroPartition(std::vector<Group> groups, std::vector<const nn::Module*> blocks,
                             std::shared_ptr<dist::ProcessGroup> pg, bool prefetch)
    : pg_(std::move(pg)), blocks_(std::move(blocks)), prefetch_(prefetch) {
  VT_CHECK(pg_ != nullptr, "zero: no process group");
  for (size_t b = 0; b < blocks_.size(); ++b) {
    VT_CHECK(blocks_[b] != nullptr, "zero: block ", b, " has no module");
    VT_CHECK(block_index_.emplace(blocks_[b], b).second, "zero: block ", b, " repeats block ", block_index_[blocks_[b]],
             "'s module");
  }
  NoGradGuard no_grad;
  const int64_t N = pg_->size(), r = pg_->rank();
  sets_.resize(blocks_.size() + 1);
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    Group& in = groups[gi];
    VT_CHECK(in.block_of.size() == in.params.size(), "zero: group ", gi, " has ", in.params.size(),
             " parameters but ", in.block_of.size(), " block indices");
    GroupState g;
    int64_t numel = 0;
    for (size_t i = 0; i < in.params.size(); ++i) {
      const Tensor& p = in.params[i];
      VT_CHECK(p.is_contiguous(), "zero: parameter ", i, " of group ", gi, " (", p.shape().str(), ") is not contiguous");
      VT_CHECK(p.dtype() == in.params[0].dtype() && p.device() == in.params[0].device(), "zero: group ", gi,
               " mixes ", dtype_name(in.params[0].dtype()), " on ", in.params[0].device().str(), " with ",
               dtype_name(p.dtype()), " on ", p.device().str(), " (parameter ", i, "): one shard per dtype and device");
      VT_CHECK(in.block_of[i] >= -1 && in.block_of[i] < static_cast<int>(blocks_.size()), "zero: parameter ", i,
               " of group ", gi, " names block ", in.block_of[i], " of ", blocks_.size());
      g.offsets.push_back(numel);
      numel += p.numel();
    }
    g.units = cut_units(g.offsets, numel, in.block_of, N);
    const int64_t S = g.units.empty() ? 0 : g.units.back().shard_offset + g.units.back().shard;
    const TensorOptions to = in.params.empty() ? TensorOptions(DType::F32) : TensorOptions(in.params[0].dtype(), in.params[0].device());
    g.shard = zeros({S}, to);
    // This rank's slice of every unit, copied straight from the parameters.
    for (const ZeroUnit& u : g.units) {
      const int64_t mine = u.begin + r * u.shard;  // global flat position of this rank's slice
      for (size_t i = u.first; i < u.last; ++i) {
        const int64_t pa = g.offsets[i], pb = pa + in.params[i].numel();
        const int64_t a = std::max(pa, mine), b = std::min(pb, mine + u.shard);
        if (a >= b) continue;
        Tensor dst = g.shard.narrow(0, u.shard_offset + a - mine, b - a);
        copy_(dst, in.params[i].detach().view({-1}).narrow(0, a - pa, b - a));
      }
    }
    for (size_t u = 0; u < g.units.size(); ++u)
      sets_[g.units[u].block < 0 ? rest() : static_cast<size_t>(g.units[u].block)].units.push_back({gi, u});
    g.params = std::move(in.params);
    groups_.push_back(std::move(g));
  }
  hooks_ = std::make_unique<Hooks>(this);
  release_all();  // the parameters still hold the model's memory: drop it
}

ZeroPartition::~ZeroPartition() {
  if (installed_ && nn::block_hooks() == hooks_.get()) nn::set_block_hooks(nullptr);
}

int ZeroPartition::block_index(const nn::Module& m) const {
  auto it = block_index_.find(&m);
  return it == block_index_.end() ? -1 : static_cast<int>(it->second);
}

int64_t ZeroPartition::set_bytes(size_t set) const {
  int64_t bytes = 0;
  for (const auto& [gi, ui] : sets_[set].units)
    bytes += groups_[gi].units[ui].padded * static_cast<int64_t>(groups_[gi].shard.element_size());
  return bytes;
}

int64_t ZeroPartition::shard_bytes() const {
  int64_t bytes = 0;
  for (const GroupState& g : groups_) bytes += static_cast<int64_t>(g.shard.nbytes());
  return bytes;
}

int ZeroPartition::next_block(size_t b, int direction) const {
  for (int k = static_cast<int>(b) + direction; k >= 0 && k < static_cast<int>(blocks_.size()); k += direction)
    if (has_units(k)) return k;
  return -1;
}

nn::BlockHooks& ZeroPartition::hooks() { return *hooks_; }

void ZeroPartition::install_hooks() {
  nn::BlockHooks* previous = nn::set_block_hooks(hooks_.get());
  if (previous) {
    nn::set_block_hooks(previous);
    VT_FAIL("zero: block hooks are already installed (another per-block ZeRO-3 optimizer lives?): one at a time");
  }
  installed_ = true;
}

// ---- gather sets -----------------------------------------------------------------------------------------

void ZeroPartition::start_gather(size_t set) {
  GatherSet& s = sets_[set];
  if (s.state != GatherSet::State::Released) return;
  NoGradGuard no_grad;
  for (const auto& [gi, ui] : s.units) {
    const ZeroUnit& u = groups_[gi].units[ui];
    const Tensor& shard = groups_[gi].shard;
    Tensor buffer = empty({u.padded}, TensorOptions(shard.dtype(), shard.device()));
    s.works.push_back(pg_->all_gather_async(shard.narrow(0, u.shard_offset, u.shard), buffer));
    gathered_bytes_ += static_cast<int64_t>(buffer.nbytes());
    s.buffers.push_back(std::move(buffer));
  }
  peak_gathered_bytes_ = std::max(peak_gathered_bytes_, gathered_bytes_);
  s.state = GatherSet::State::InFlight;
}

void ZeroPartition::finish_gather(size_t set) {
  GatherSet& s = sets_[set];
  if (s.state == GatherSet::State::Ready) return;
  start_gather(set);
  for (auto& w : s.works) w->wait();
  s.works.clear();
  for (size_t k = 0; k < s.units.size(); ++k) {
    const auto [gi, ui] = s.units[k];
    GroupState& g = groups_[gi];
    const ZeroUnit& u = g.units[ui];
    for (size_t i = u.first; i < u.last; ++i)
      repoint_parameter(g.params[i], s.buffers[k].narrow(0, g.offsets[i] - u.begin, g.params[i].numel()).view(g.params[i].shape()));
  }
  s.state = GatherSet::State::Ready;
}

void ZeroPartition::release(size_t set) {
  GatherSet& s = sets_[set];
  for (auto& w : s.works) w->wait();  // a transfer in flight still writes its buffer
  s.works.clear();
  for (const auto& [gi, ui] : s.units) {
    const ZeroUnit& u = groups_[gi].units[ui];
    for (size_t i = u.first; i < u.last; ++i) point_at_nothing(groups_[gi].params[i]);
  }
  for (const Tensor& t : s.buffers) gathered_bytes_ -= static_cast<int64_t>(t.nbytes());
  s.buffers.clear();
  s.state = GatherSet::State::Released;
}

void ZeroPartition::arrive(size_t block, int direction) {
  if (pinned_) return;
  finish_gather(block);
  const int next = next_block(block, direction);
  if (prefetch_ && next >= 0) start_gather(next);
}

void ZeroPartition::gather_all() {
  for (size_t b = 0; b < sets_.size(); ++b) start_gather(b);
  for (size_t b = 0; b < sets_.size(); ++b) finish_gather(b);
  pinned_ = true;
}

void ZeroPartition::release_all() {
  for (size_t b = 0; b < sets_.size(); ++b) release(b);
  pinned_ = false;
}

// ---- ShardedInference ----------------------------------------------------------------------------------

ShardedInference::ShardedInference(const nn::Module& model, std::vector<ZeroBlock> blocks,
                                   std::shared_ptr<dist::ProcessGroup> pg, bool prefetch) {
  std::map<const TensorImpl*, int> block_of;
  std::vector<const nn::Module*> modules;
  for (size_t b = 0; b < blocks.size(); ++b) {
    modules.push_back(blocks[b].module);
    for (const Tensor& p : blocks[b].params) {
      auto [it, fresh] = block_of.emplace(p.impl(), static_cast<int>(b));
      VT_CHECK(fresh || it->second == static_cast<int>(b), "sharded inference: a parameter of ", p.shape().str(),
               " is listed in blocks ", it->second, " and ", b);
    }
  }
  // One group per (dtype, device), in the model's parameter order (tied weights appear once).
  std::vector<ZeroPartition::Group> groups;
  std::vector<std::pair<DType, Device>> keys;
  for (const auto& [name, p] : model.named_parameters()) {
    VT_CHECK(p.is_contiguous(), "sharded inference: parameter '", name, "' is not contiguous");
    model_bytes_ += static_cast<int64_t>(p.nbytes());
    size_t g = 0;
    while (g < keys.size() && !(keys[g].first == p.dtype() && keys[g].second == p.device())) ++g;
    if (g == keys.size()) keys.push_back({p.dtype(), p.device()}), groups.emplace_back();
    groups[g].params.push_back(p);
    auto it = block_of.find(p.impl());
    groups[g].block_of.push_back(it == block_of.end() ? -1 : it->second);
  }
  partition_ = std::make_unique<ZeroPartition>(std::move(groups), std::move(modules), std::move(pg), prefetch);
  partition_->forward_only = true;
}

ShardedInference::Scope::Scope(ShardedInference& s) : s_(s) {
  s_.partition_->finish_gather(s_.partition_->rest());
  previous_ = nn::set_block_hooks(&s_.partition_->hooks());
}

ShardedInference::Scope::~Scope() {
  nn::set_block_hooks(previous_);
  s_.partition_->release_all();  // the rest, and a prefetched block nobody ran
}

}  // namespace vt::optim
