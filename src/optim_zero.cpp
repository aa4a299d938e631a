// optim_zero.cpp: ZeRO stages 0-3 over the flat arena; see optim/zero.h. The layout, the gradient
// reductions, the step and the memory report; stage 3's partition, gathering and block hooks are
// in optim_zero_partition.cpp, the sharded checkpoints in optim_zero_checkpoint.cpp.
#include "vt/optim/zero.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "vt/autograd.h"
#include "vt/ops.h"
#include "vt/optim/clip.h"

namespace vt::optim {

namespace {

// Σ g² in double over fixed chunks in chunk order: the same arithmetic as optim/clip.cpp, so a
// piece that is a whole parameter gives the bits clip_grad_norm_ gives for it.
constexpr int64_t kChunk = 1 << 16;

template <class T>
double sum_squares_cpu(const T* x, int64_t n) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(chunks, 0.0);
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (int64_t c = 0; c < chunks; ++c) {
    double acc = 0;
    for (int64_t i = c * kChunk, hi = std::min(n, (c + 1) * kChunk); i < hi; ++i) {
      const double a = std::fabs(static_cast<double>(x[i]));
      acc += a * a;
    }
    partial[c] = acc;
  }
  double total = 0;
  for (double v : partial) total += v;
  return total;
}

double sum_squares(const Tensor& g) {
  if (!g.device().is_cpu()) return sum(square(cast(g, DType::F64))).item();
  const Tensor c = g.contiguous();
  switch (c.dtype()) {
    case DType::F32: return sum_squares_cpu(c.data<float>(), c.numel());
    case DType::F64: return sum_squares_cpu(c.data<double>(), c.numel());
    case DType::BF16: return sum_squares_cpu(c.data<bf16>(), c.numel());
    case DType::F16: return sum_squares_cpu(c.data<f16>(), c.numel());
    default: VT_FAIL("zero: gradient of dtype ", dtype_name(c.dtype()));
  }
}

}  // namespace

ZeroOptimizer::ZeroOptimizer(std::vector<ParamGroupSpec> specs, std::shared_ptr<dist::ProcessGroup> group,
                             ZeroOptions options)
    : pg_(std::move(group)), opt_(std::move(options)) {
  VT_CHECK(pg_ != nullptr, "zero: no process group");
  VT_CHECK(opt_.stage >= 0 && opt_.stage <= 3, "zero: stage ", opt_.stage, " (0, 1, 2 or 3)");
  VT_CHECK(opt_.bucket_elements >= 1, "zero: bucket_elements ", opt_.bucket_elements);
  VT_CHECK(opt_.blocks.empty() || opt_.stage == 3, "zero: per-block gathering (", opt_.blocks.size(),
           " blocks in ZeroOptions::blocks) is stage 3's; this optimizer is stage ", opt_.stage);
  NoGradGuard no_grad;
  const int64_t N = pg_->size(), r = pg_->rank();
  // Which block each trainable parameter belongs to (by tensor identity); the partition checks the modules.
  std::map<const TensorImpl*, int> block_of;
  for (size_t b = 0; b < opt_.blocks.size(); ++b) {
    for (const Tensor& p : opt_.blocks[b].params) {
      auto [it, fresh] = block_of.emplace(p.impl(), static_cast<int>(b));
      VT_CHECK(fresh || it->second == static_cast<int>(b), "zero: a parameter of ", p.shape().str(),
               " is listed in blocks ", it->second, " and ", b);
    }
  }
  // The layout of every group: its trainable parameters in order and their units.
  std::vector<DType> dtypes;
  std::vector<ZeroPartition::Group> partition_groups;
  int64_t max_unit_shard = 0;
  for (size_t gi = 0; gi < specs.size(); ++gi) {
    const ParamGroupSpec& spec = specs[gi];
    GroupLayout g;
    g.name = spec.name.empty() ? "group" + std::to_string(gi) : spec.name;
    DType dtype = DType::F32;
    Device device = Device::cpu();
    std::vector<int> block_of_param;
    for (size_t i = 0; i < spec.params.size(); ++i) {
      const Tensor& p = spec.params[i];
      const std::string name = spec.names.empty() ? g.name + "." + std::to_string(i) : spec.names[i];
      VT_CHECK(p.defined(), "zero: parameter '", name, "' is undefined");
      if (!p.requires_grad()) {  // frozen: no state, no traffic
        frozen_bytes_ += static_cast<int64_t>(p.nbytes());
        continue;
      }
      VT_CHECK(p.is_contiguous(), "zero: parameter '", name, "' is not contiguous");
      if (g.params.empty()) dtype = p.dtype(), device = p.device();
      device_ = p.device();
      VT_CHECK(p.dtype() == dtype && p.device() == device, "zero: group '", g.name, "' mixes ", dtype_name(dtype), " on ",
               device.str(), " (", g.names.front(), ") with ", dtype_name(p.dtype()), " on ", p.device().str(), " (",
               name, "): one arena per group needs one dtype and device");
      g.offsets.push_back(g.numel);
      g.numel += p.numel();
      g.params.push_back(p);
      g.names.push_back(name);
      g.steps.push_back(0);
      auto it = block_of.find(p.impl());
      block_of_param.push_back(it == block_of.end() ? -1 : it->second);
    }
    build_units(g, block_of_param);
    for (const Unit& u : g.units) max_unit_shard = std::max(max_unit_shard, u.shard);
    partition_groups.push_back({g.params, block_of_param});
    dtypes.push_back(dtype);
    groups_.push_back(std::move(g));
  }
  // Stage 3: the partition copies this rank's slice of every unit (the same units: cut_units of the
  // same layout) and points the parameters at no memory; its hooks gather per block.
  if (opt_.stage == 3) {
    std::vector<const nn::Module*> modules;
    for (const ZeroBlock& zb : opt_.blocks) modules.push_back(zb.module);
    partition_ = std::make_unique<ZeroPartition>(std::move(partition_groups), std::move(modules), pg_, opt_.prefetch);
    partition_->on_block_backward = [this](size_t b) { reduce_block(b); };
    reduced_.assign(opt_.blocks.size(), 0);
    if (!opt_.blocks.empty()) partition_->install_hooks();
  }

  std::vector<ParamGroupSpec> inner_specs;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    GroupLayout& g = groups_[gi];
    const DType dtype = dtypes[gi];
    const Device device = g.params.empty() ? Device::cpu() : g.params[0].device();
    // Stages 0-2: the arena, every parameter copied in, then pointed into it.
    Tensor arena;
    if (opt_.stage < 3) {
      arena = zeros({g.padded_numel}, TensorOptions(dtype, device));
      for (size_t i = 0; i < g.params.size(); ++i) {
        Tensor dst = arena.narrow(0, g.offsets[i], g.params[i].numel());
        copy_(dst, g.params[i].detach().view({-1}));
      }
      point_params_into(g, arena);
    }
    const Tensor shard = opt_.stage == 3 ? partition_->shard(gi) : Tensor();

    // The inner AdamW's parameters: the pieces of the owned ranges, views of the arena (of the
    // shard in stage 3, which outlives the gathered buffers).
    ParamGroupSpec inner;
    inner.name = g.name;
    inner.options = specs[gi].options;
    std::vector<Piece> pieces;
    for (const Unit& u : g.units) {
      const int64_t mine = u.begin + r * u.shard;
      const int64_t oa = opt_.stage == 0 ? u.begin : mine;
      const int64_t ob = opt_.stage == 0 ? u.begin + u.numel : std::min(mine + u.shard, u.begin + u.numel);
      for (size_t i = u.first; i < u.last; ++i) {
        const int64_t pa = g.offsets[i], pb = pa + g.params[i].numel();
        const int64_t a = std::max(pa, oa), b = std::min(pb, ob);
        if (a >= b) continue;
        const int64_t pos = opt_.stage == 0 ? a : u.shard_offset + a - mine;
        pieces.push_back({i, a, b - a, pos});
        Tensor piece = opt_.stage == 3 ? shard.narrow(0, pos, b - a) : arena.narrow(0, a, b - a);
        piece.requires_grad_(true);
        inner.params.push_back(piece);
        inner.names.push_back(b - a == pb - pa ? g.names[i]
                                               : detail::concat(g.names[i], "[", a - pa, ":", b - pa, "]"));
      }
    }
    inner_specs.push_back(std::move(inner));
    pieces_.push_back(std::move(pieces));
    const DType gd = opt_.grad_dtype.value_or(dtype);
    accumulator_.push_back(zeros({g.shard}, TensorOptions(gd, device)));
    full_grad_.push_back(opt_.stage <= 1 ? zeros({g.padded_numel}, TensorOptions(gd, device)) : Tensor());
    arena_.push_back(arena);
    has_grad_.emplace_back(g.params.size(), 0);
  }
  if (opt_.stage >= 2 && !groups_.empty()) {
    const GroupLayout& g0 = groups_.front();
    bucket_ = zeros({N * std::min(opt_.bucket_elements, std::max<int64_t>(max_unit_shard, 1))},
                    TensorOptions(accumulator_.front().dtype(), g0.params.empty() ? Device::cpu() : g0.params[0].device()));
  }
  inner_ = std::make_unique<AdamW>(std::move(inner_specs), 1);
}

ZeroOptimizer::~ZeroOptimizer() = default;  // the partition uninstalls its hooks

// Units (cut_units: maximal runs of one block, each padded to N) and what this rank updates.
void ZeroOptimizer::build_units(GroupLayout& g, const std::vector<int>& block_of_param) const {
  const int64_t N = pg_->size(), r = pg_->rank();
  g.units = cut_units(g.offsets, g.numel, block_of_param, N);
  g.padded_numel = 0;
  for (const Unit& u : g.units) g.padded_numel += u.padded;
  g.shard = g.padded_numel / N;
  g.owned_begin = opt_.stage == 0 ? 0 : r * g.shard;
  g.owned_end = opt_.stage == 0 ? g.padded_numel : (r + 1) * g.shard;
  for (const Unit& u : g.units) {
    const int64_t a = opt_.stage == 0 ? u.begin : u.begin + std::min(r * u.shard, u.numel);
    const int64_t b = opt_.stage == 0 ? u.begin + u.numel : u.begin + std::min((r + 1) * u.shard, u.numel);
    if (a < b) g.owned.push_back({a, b});
  }
}

// ---- gradients -----------------------------------------------------------------------------------------

// dst (len,) = the flat gradient [flat_begin, flat_begin + len) of group g, zero where no .grad, at
// or past `limit` (a unit's end: its padding) or past the last parameter.
void ZeroOptimizer::pack(const GroupLayout& g, int64_t flat_begin, int64_t len, int64_t limit, Tensor dst) const {
  fill_(dst, 0);
  const int64_t flat_end = std::min(flat_begin + len, limit);
  auto it = std::upper_bound(g.offsets.begin(), g.offsets.end(), flat_begin);
  size_t i = it == g.offsets.begin() ? 0 : static_cast<size_t>(it - g.offsets.begin() - 1);
  for (; i < g.params.size() && g.offsets[i] < flat_end; ++i) {
    const Tensor grad = g.params[i].grad();
    if (!grad.defined()) continue;
    const int64_t pa = g.offsets[i], pb = pa + g.params[i].numel();
    const int64_t a = std::max(pa, flat_begin), b = std::min(pb, flat_end);
    if (a >= b) continue;
    Tensor d = dst.narrow(0, a - flat_begin, b - a);
    copy_(d, grad.detach().contiguous().view({-1}).narrow(0, a - pa, b - a));
  }
}

// Bucket c holds column [c0, c0 + len) of every rank's slice of the unit, so its reduce-scatter
// lands in this rank's accumulator at the unit's shard_offset + c0: equal blocks, contiguous shards.
void ZeroOptimizer::reduce_unit(size_t gi, size_t ui, bool accumulate) {
  NoGradGuard no_grad;
  GroupLayout& g = groups_[gi];
  const Unit& u = g.units[ui];
  const int64_t N = pg_->size();
  const dist::ReduceOp op = opt_.average ? dist::ReduceOp::Avg : dist::ReduceOp::Sum;
  for (size_t i = u.first; i < u.last; ++i)
    if (g.params[i].grad().defined()) has_grad_[gi][i] = 1;
  const int64_t C = bucket_.numel() / N;
  for (int64_t c0 = 0; c0 < u.shard; c0 += C) {
    const int64_t len = std::min(C, u.shard - c0);
    Tensor bucket = bucket_.narrow(0, 0, N * len);
    for (int64_t k = 0; k < N; ++k)
      pack(g, u.begin + k * u.shard + c0, len, u.begin + u.numel, bucket.narrow(0, k * len, len));
    Tensor out = accumulator_[gi].narrow(0, u.shard_offset + c0, len);
    pg_->reduce_scatter(bucket, out, op, accumulate);
  }
  for (size_t i = u.first; i < u.last; ++i) g.params[i].zero_grad();  // the accumulator holds them now
}

void ZeroOptimizer::reduce_gradients() {
  NoGradGuard no_grad;
  const dist::ReduceOp op = opt_.average ? dist::ReduceOp::Avg : dist::ReduceOp::Sum;
  const bool accumulate = micro_steps_ > 0;
  const size_t B = opt_.blocks.size();
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    GroupLayout& g = groups_[gi];
    if (opt_.stage <= 1) {
      // The whole flat gradient at once: one reduce-scatter into the accumulator.
      for (size_t i = 0; i < g.params.size(); ++i)
        if (g.params[i].grad().defined()) has_grad_[gi][i] = 1;
      pack(g, 0, g.padded_numel, g.numel, full_grad_[gi]);
      pg_->reduce_scatter(full_grad_[gi], accumulator_[gi], op, accumulate);
      for (const Tensor& p : g.params) p.zero_grad();
      continue;
    }
    for (size_t ui = 0; ui < g.units.size(); ++ui) {
      const Unit& u = g.units[ui];
      if (opt_.stage == 3 && u.block >= 0 && reduced_[u.block]) {
        // Reduced in its after_backward: a gradient now would be a use outside the block.
        for (size_t i = u.first; i < u.last; ++i)
          VT_CHECK(!g.params[i].grad().defined(), "zero: parameter '", g.names[i], "' of block ", u.block,
                   " received a gradient after the block's backward: the model uses it outside the block; leave it ",
                   "out of ZeroBlock::params (it then joins the rest)");
        continue;
      }
      reduce_unit(gi, ui, accumulate);
    }
  }
  if (opt_.stage == 3) {
    for (size_t b = 0; b < B; ++b) {
      if (!partition_->pinned()) partition_->release(b);  // blocks kept for a cached backward, prefetches nobody used
      reduced_[b] = 0;
    }
  }
  ++micro_steps_;
  prepared_ = false;
}
void ZeroOptimizer::prepare_step() {
  if (prepared_) return;
  NoGradGuard no_grad;
  // Every rank must agree on which parameters had a gradient (AdamW skips the others, as torch does).
  std::vector<int32_t> flags;
  for (const auto& h : has_grad_) flags.insert(flags.end(), h.begin(), h.end());
  if (pg_->size() > 1 && !flags.empty()) {
    Tensor t = from_vector(flags).to(device_);  // NCCL reduces device memory, MPI host memory
    pg_->all_reduce(t);
    flags = t.to(Device::cpu()).tolist<int32_t>();
  }
  size_t f = 0;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    GroupLayout& g = groups_[gi];
    for (size_t i = 0; i < g.params.size(); ++i) {
      const bool any_rank = flags[f++] > 0;
      has_grad_[gi][i] = micro_steps_ > 0 && any_rank;
    }
    if (opt_.stage == 0 && micro_steps_ > 0) pg_->all_gather(accumulator_[gi], full_grad_[gi]);  // the all-reduce's second half
    ParamGroup& inner = inner_->groups()[gi];
    for (size_t k = 0; k < pieces_[gi].size(); ++k) {
      const Piece& pc = pieces_[gi][k];
      if (!has_grad_[gi][pc.param]) {
        inner.params[k].zero_grad();
        continue;
      }
      inner.params[k].set_grad((opt_.stage == 0 ? full_grad_[gi] : accumulator_[gi]).narrow(0, pc.pos, pc.len));
    }
  }
  prepared_ = true;
}

Tensor ZeroOptimizer::reduced_gradient(size_t gi) {
  prepare_step();
  const GroupLayout& g = groups_.at(gi);
  if (opt_.stage == 0) return full_grad_[gi].narrow(0, 0, g.numel);
  std::vector<Tensor> parts;  // the real (unpadded) part of this rank's slice of every unit
  for (const Unit& u : g.units) {
    const int64_t n = std::max<int64_t>(0, std::min(u.shard, u.numel - pg_->rank() * u.shard));
    if (n > 0) parts.push_back(accumulator_[gi].narrow(0, u.shard_offset, n));
  }
  if (parts.size() == 1) return parts[0];
  return parts.empty() ? accumulator_[gi].narrow(0, 0, 0) : cat(parts, 0);
}

double ZeroOptimizer::grad_norm() {
  prepare_step();
  NoGradGuard no_grad;
  double local = 0;
  for (const ParamGroup& inner : inner_->groups())
    for (const Tensor& p : inner.params)
      if (p.grad().defined()) local += sum_squares(p.grad());
  // Stage 0: every rank holds the whole reduced gradient, nothing to add up across ranks.
  if (opt_.stage > 0 && pg_->size() > 1) {
    Tensor t = from_vector(std::vector<double>{local}).to(device_);
    pg_->all_reduce(t);
    local = t.to(Device::cpu()).tolist<double>()[0];
  }
  return std::sqrt(local);
}

double ZeroOptimizer::clip_grad_norm(double max_norm, bool error_if_nonfinite) {
  const double total = grad_norm();
  VT_CHECK(!error_if_nonfinite || std::isfinite(total), "zero: the global gradient norm is ", total, " (non-finite)");
  for (ParamGroup& inner : inner_->groups()) clip_grads_with_norm_(inner.params, max_norm, total);
  return total;
}

void ZeroOptimizer::step() {
  prepare_step();
  inner_->step();
  NoGradGuard no_grad;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    GroupLayout& g = groups_[gi];
    for (size_t i = 0; i < g.params.size(); ++i)
      if (has_grad_[gi][i]) ++g.steps[i];
    if (opt_.stage == 1 || opt_.stage == 2) {
      Tensor mine = arena_[gi].narrow(0, g.owned_begin, g.shard);
      pg_->all_gather(mine, arena_[gi]);  // in place: every rank's updated shard into every arena
    }
  }
  ++num_steps_;
  if (opt_.stage == 3) release_parameters();
}

void ZeroOptimizer::zero_grad() {
  for (auto& h : has_grad_) std::fill(h.begin(), h.end(), 0);
  inner_->zero_grad();
  for (const GroupLayout& g : groups_)
    for (const Tensor& p : g.params) p.zero_grad();
  micro_steps_ = 0;
  prepared_ = false;
}

void ZeroOptimizer::point_params_into(GroupLayout& g, const Tensor& arena) {
  for (size_t i = 0; i < g.params.size(); ++i)
    repoint_parameter(g.params[i], arena.narrow(0, g.offsets[i], g.params[i].numel()).view(g.params[i].shape()));
}

// ---- stage 3: gathering (the partition's, optim/zero_partition.h) ------------------------------------

void ZeroOptimizer::reduce_block(size_t b) {
  VT_CHECK(!reduced_[b], "zero: block ", b, " ran its backward twice in one micro-step (is it used twice per forward?)");
  for (const auto& [gi, ui] : partition_->set_units(b)) reduce_unit(gi, ui, micro_steps_ > 0);
  reduced_[b] = 1;
}

void ZeroOptimizer::prepare_forward() {
  if (opt_.stage == 3) partition_->finish_gather(partition_->rest());  // gather-all: everything
}

// gather_parameters pins: the hooks then neither gather nor free (saving a checkpoint, evaluation).
void ZeroOptimizer::gather_parameters() {
  if (opt_.stage == 3) partition_->gather_all();
}

void ZeroOptimizer::release_parameters() {
  if (opt_.stage == 3) partition_->release_all();
}

// ---- memory ------------------------------------------------------------------------------------------

ModelStateBytes ZeroOptimizer::model_state_bytes() const {
  ModelStateBytes b;
  auto bytes = [](const Tensor& t) { return t.defined() ? static_cast<int64_t>(t.storage()->nbytes) : int64_t{0}; };
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    b.params += opt_.stage == 3 ? bytes(partition_->shard(gi)) : bytes(arena_[gi]);
    b.grads += bytes(accumulator_[gi]) + bytes(full_grad_[gi]);
    const ParamGroup& inner = inner_->groups()[gi];
    b.optimizer += bytes(inner.master) + bytes(inner.exp_avg) + bytes(inner.exp_avg_sq);
  }
  b.params += gathered_bytes();
  b.bucket = bytes(bucket_);
  b.frozen = frozen_bytes_;
  return b;
}

ModelStateBytes ZeroOptimizer::expected_bytes(int stage, int64_t psi, int64_t world, int64_t P, int64_t G,
                                              int64_t bucket_elements, int64_t frozen_bytes) {
  ModelStateBytes b;
  const int64_t shard = psi / world;  // psi padded to a multiple of world
  b.params = stage == 3 ? P * shard : P * psi;
  b.grads = stage <= 1 ? G * psi + G * shard : G * shard;
  b.optimizer = 12 * (stage == 0 ? psi : shard);
  b.bucket = stage >= 2 ? G * world * std::min(bucket_elements, std::max<int64_t>(shard, 1)) : 0;
  b.frozen = frozen_bytes;
  return b;
}

// What this rank would hold at `stage`, from this layout: every group's own dtypes, its units (the
// blocks' units under per-block stage 3, one per group otherwise), the bucket sized by the largest
// unit, and the optimizer's 12 B for each real (unpadded) element this rank owns.
ModelStateBytes ZeroOptimizer::layout_bytes(int stage) const {
  VT_CHECK(stage >= 0 && stage <= 3, "zero: layout_bytes of stage ", stage, " (0, 1, 2 or 3)");
  const int64_t N = pg_->size(), r = pg_->rank();
  ModelStateBytes b;
  int64_t max_unit_shard = 0;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const GroupLayout& g = groups_[gi];
    const int64_t P = g.params.empty() ? 0 : static_cast<int64_t>(g.params[0].element_size());
    const int64_t G = static_cast<int64_t>(accumulator_[gi].element_size());
    const std::vector<Unit> units = stage == 3 && opt_.stage == 3
                                        ? g.units
                                        : cut_units(g.offsets, g.numel, std::vector<int>(g.params.size(), -1), N);
    int64_t padded = 0, owned = 0;
    for (const Unit& u : units) {
      padded += u.padded;
      owned += stage == 0 ? u.numel : std::clamp<int64_t>(u.numel - r * u.shard, 0, u.shard);
      max_unit_shard = std::max(max_unit_shard, u.shard);
    }
    b.params += P * (stage == 3 ? padded / N : padded);
    b.grads += G * (padded / N + (stage <= 1 ? padded : 0));  // the accumulator; stages 0-1 the flat gradient too
    b.optimizer += 12 * owned;
  }
  if (stage >= 2 && !groups_.empty())
    b.bucket = static_cast<int64_t>(accumulator_.front().element_size()) * N *
               std::min(opt_.bucket_elements, std::max<int64_t>(max_unit_shard, 1));
  b.frozen = frozen_bytes_;
  return b;
}

std::string ZeroOptimizer::memory_report() const {
  int64_t psi = 0, padded = 0, P = 4, G = 4;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    psi += groups_[gi].numel;
    padded += groups_[gi].padded_numel;
    if (!groups_[gi].params.empty()) P = static_cast<int64_t>(groups_[gi].params[0].element_size());
    G = static_cast<int64_t>(accumulator_[gi].element_size());
  }
  const int64_t N = pg_->size();
  const ModelStateBytes m = model_state_bytes();
  std::string out = detail::concat("zero: rank ", pg_->rank(), " of ", N, ", stage ", opt_.stage, ": model states ",
                                   m.total(), " B (params ", m.params, ", grads ", m.grads, ", optimizer ", m.optimizer,
                                   ", bucket ", m.bucket, ", frozen ", m.frozen, "); Ψ = ", psi, " trainable (", padded,
                                   " padded), ", P, " B/param, ", G, " B/grad, K = 12\n");
  const char* formula[] = {"(P+G+K)Ψ", "(P+G)Ψ + KΨ/N", "PΨ + (G+K)Ψ/N", "(P+G+K)Ψ/N"};
  for (int s = 0; s <= 3; ++s) {
    const ModelStateBytes e = layout_bytes(s);
    const double paper = s == 0   ? double(P + G + 12) * psi
                         : s == 1 ? double(P + G) * psi + 12.0 * psi / N
                         : s == 2 ? double(P) * psi + double(G + 12) * psi / N
                                  : double(P + G + 12) * psi / N;
    out += detail::concat("  stage ", s, ": ", formula[s], " = ", static_cast<int64_t>(paper), " B; this layout ",
                          e.total(), " B (params ", e.params, ", grads ", e.grads, ", optimizer ", e.optimizer,
                          ", bucket ", e.bucket, ", frozen ", e.frozen, ")", s == opt_.stage ? "  <- this run" : "",
                          "\n");
  }
  if (opt_.stage == 3 && !opt_.blocks.empty()) {
    // Per block: what is gathered at most (the rest, the running block, the prefetched one).
    int64_t largest = 0, blocks = 0;
    for (size_t b = 0; b < partition_->num_blocks(); ++b)
      if (partition_->has_units(b)) largest = std::max(largest, partition_->set_bytes(b)), ++blocks;
    const int64_t rest = partition_->set_bytes(partition_->rest());
    out += detail::concat("  stage 3 per block: ", blocks, " blocks with trainable parameters, the largest ", largest,
                          " B, the rest ", rest, " B: gathered at most rest + 2 x largest = ", rest + 2 * largest,
                          " B", opt_.prefetch ? "" : " (no prefetch: rest + largest)", "\n");
  }
  return out;
}

}  // namespace vt::optim
