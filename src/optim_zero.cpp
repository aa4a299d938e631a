// optim_zero.cpp: ZeRO stages 0-3 over the flat arena; see optim/zero.h.
#include "vt/optim/zero.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "vt/autograd.h"
#include "vt/io/safetensors.h"
#include "vt/io/tensor_io.h"
#include "vt/ops.h"
#include "vt/optim/clip.h"

namespace vt::optim {

namespace fs = std::filesystem;
using json = nlohmann::json;

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

// Points a parameter's storage at `view` in place: every handle to it (the model's) sees the move.
void repoint(const Tensor& p, const Tensor& view) {
  p.impl()->storage = view.storage();
  p.impl()->layout = view.layout();
}

}  // namespace

ZeroOptimizer::ZeroOptimizer(std::vector<ParamGroupSpec> specs, std::shared_ptr<dist::ProcessGroup> group,
                             ZeroOptions options)
    : pg_(std::move(group)), opt_(options) {
  VT_CHECK(pg_ != nullptr, "zero: no process group");
  VT_CHECK(opt_.stage >= 0 && opt_.stage <= 3, "zero: stage ", opt_.stage, " (0, 1, 2 or 3)");
  VT_CHECK(opt_.bucket_elements >= 1, "zero: bucket_elements ", opt_.bucket_elements);
  NoGradGuard no_grad;
  const int64_t N = pg_->size(), r = pg_->rank();
  std::vector<ParamGroupSpec> inner_specs;
  int64_t max_shard = 0;
  for (size_t gi = 0; gi < specs.size(); ++gi) {
    const ParamGroupSpec& spec = specs[gi];
    GroupLayout g;
    g.name = spec.name.empty() ? "group" + std::to_string(gi) : spec.name;
    DType dtype = DType::F32;
    Device device = Device::cpu();
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
    }
    g.padded_numel = (g.numel + N - 1) / N * N;
    g.shard = g.padded_numel / N;
    g.owned_begin = opt_.stage == 0 ? 0 : r * g.shard;
    g.owned_end = opt_.stage == 0 ? g.padded_numel : (r + 1) * g.shard;
    max_shard = std::max(max_shard, g.shard);

    // The arena: every parameter copied in, then pointed into it.
    Tensor arena = zeros({g.padded_numel}, TensorOptions(dtype, device));
    for (size_t i = 0; i < g.params.size(); ++i) {
      Tensor dst = arena.narrow(0, g.offsets[i], g.params[i].numel());
      copy_(dst, g.params[i].detach().view({-1}));
    }
    point_params_into(g, arena);
    Tensor shard;
    if (opt_.stage == 3) shard = arena.narrow(0, g.owned_begin, g.shard).clone();

    // The inner AdamW's parameters: the pieces of the owned range, views of the arena (of the
    // shard in stage 3, which outlives the arena).
    ParamGroupSpec inner;
    inner.name = g.name;
    inner.options = spec.options;
    std::vector<Piece> pieces;
    for (size_t i = 0; i < g.params.size(); ++i) {
      const int64_t pa = g.offsets[i], pb = pa + g.params[i].numel();
      const int64_t a = std::max(pa, g.owned_begin), b = std::min(pb, g.owned_end);
      if (a >= b) continue;
      pieces.push_back({i, a, b - a});
      Tensor piece = opt_.stage == 3 ? shard.narrow(0, a - g.owned_begin, b - a) : arena.narrow(0, a, b - a);
      piece.requires_grad_(true);
      inner.params.push_back(piece);
      inner.names.push_back(b - a == pb - pa ? g.names[i]
                                             : detail::concat(g.names[i], "[", a - pa, ":", b - pa, "]"));
    }
    inner_specs.push_back(std::move(inner));
    pieces_.push_back(std::move(pieces));
    const DType gd = opt_.grad_dtype.value_or(dtype);
    accumulator_.push_back(zeros({g.shard}, TensorOptions(gd, device)));
    full_grad_.push_back(opt_.stage <= 1 ? zeros({g.padded_numel}, TensorOptions(gd, device)) : Tensor());
    arena_.push_back(arena);
    param_shard_.push_back(shard);
    has_grad_.emplace_back(g.params.size(), 0);
    groups_.push_back(std::move(g));
  }
  if (opt_.stage >= 2 && !groups_.empty()) {
    const GroupLayout& g0 = groups_.front();
    bucket_ = zeros({N * std::min(opt_.bucket_elements, std::max<int64_t>(max_shard, 1))},
                    TensorOptions(accumulator_.front().dtype(), g0.params.empty() ? Device::cpu() : g0.params[0].device()));
  }
  inner_ = std::make_unique<AdamW>(std::move(inner_specs), 1);
  if (opt_.stage == 3) release_parameters();
}

ZeroOptimizer::~ZeroOptimizer() = default;

void ZeroOptimizer::point_params_into(GroupLayout& g, const Tensor& arena) {
  for (size_t i = 0; i < g.params.size(); ++i)
    repoint(g.params[i], arena.narrow(0, g.offsets[i], g.params[i].numel()).view(g.params[i].shape()));
}

// ---- stage 3: the arena exists from gather_parameters() to the end of step() ---------------------------

void ZeroOptimizer::gather_parameters() {
  if (opt_.stage != 3 || gathered_) return;
  NoGradGuard no_grad;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    GroupLayout& g = groups_[gi];
    Tensor arena = empty({g.padded_numel}, TensorOptions(param_shard_[gi].dtype(), param_shard_[gi].device()));
    pg_->all_gather(param_shard_[gi], arena);
    point_params_into(g, arena);
    arena_[gi] = arena;
  }
  gathered_ = true;
}

void ZeroOptimizer::release_parameters() {
  if (opt_.stage != 3 || !gathered_) return;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    for (const Tensor& p : groups_[gi].params) {
      auto none = std::make_shared<Storage>();  // no bytes: gather_parameters() before the next use
      none->device = p.device();
      p.impl()->storage = none;
    }
    arena_[gi] = Tensor();
  }
  gathered_ = false;
}

// ---- gradients -----------------------------------------------------------------------------------------

// dst (len,) = the flat gradient [flat_begin, flat_begin + len) of group g (zero where no .grad or padding).
void ZeroOptimizer::pack(const GroupLayout& g, int64_t flat_begin, int64_t len, Tensor dst) const {
  fill_(dst, 0);
  const int64_t flat_end = flat_begin + len;
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

void ZeroOptimizer::reduce_gradients() {
  NoGradGuard no_grad;
  const int64_t N = pg_->size();
  const dist::ReduceOp op = opt_.average ? dist::ReduceOp::Avg : dist::ReduceOp::Sum;
  const bool accumulate = micro_steps_ > 0;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    GroupLayout& g = groups_[gi];
    for (size_t i = 0; i < g.params.size(); ++i)
      if (g.params[i].grad().defined()) has_grad_[gi][i] = 1;
    if (opt_.stage <= 1) {
      // The whole flat gradient at once: one reduce-scatter into the accumulator.
      pack(g, 0, g.padded_numel, full_grad_[gi]);
      pg_->reduce_scatter(full_grad_[gi], accumulator_[gi], op, accumulate);
    } else {
      // Bucket c holds column [c0, c0 + len) of every rank's shard, so its reduce-scatter lands in
      // this rank's accumulator at c0: equal blocks, contiguous shards.
      const int64_t C = bucket_.numel() / N;
      for (int64_t c0 = 0; c0 < g.shard; c0 += C) {
        const int64_t len = std::min(C, g.shard - c0);
        Tensor bucket = bucket_.narrow(0, 0, N * len);
        for (int64_t k = 0; k < N; ++k) pack(g, k * g.shard + c0, len, bucket.narrow(0, k * len, len));
        Tensor out = accumulator_[gi].narrow(0, c0, len);
        pg_->reduce_scatter(bucket, out, op, accumulate);
      }
    }
    for (const Tensor& p : g.params) p.zero_grad();  // the accumulator holds them now
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
      inner.params[k].set_grad(opt_.stage == 0 ? full_grad_[gi].narrow(0, pc.begin, pc.len)
                                               : accumulator_[gi].narrow(0, pc.begin - g.owned_begin, pc.len));
    }
  }
  prepared_ = true;
}

Tensor ZeroOptimizer::reduced_gradient(size_t gi) {
  prepare_step();
  const GroupLayout& g = groups_.at(gi);
  if (opt_.stage == 0) return full_grad_[gi].narrow(0, 0, g.numel);
  const int64_t n = std::max<int64_t>(0, std::min(g.owned_end, g.numel) - g.owned_begin);
  return accumulator_[gi].narrow(0, 0, n);
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

// ---- memory ------------------------------------------------------------------------------------------

ModelStateBytes ZeroOptimizer::model_state_bytes() const {
  ModelStateBytes b;
  auto bytes = [](const Tensor& t) { return t.defined() ? static_cast<int64_t>(t.storage()->nbytes) : int64_t{0}; };
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    b.params += opt_.stage == 3 ? bytes(param_shard_[gi]) + (gathered_ ? bytes(arena_[gi]) : 0) : bytes(arena_[gi]);
    b.grads += bytes(accumulator_[gi]) + bytes(full_grad_[gi]);
    const ParamGroup& inner = inner_->groups()[gi];
    b.optimizer += bytes(inner.master) + bytes(inner.exp_avg) + bytes(inner.exp_avg_sq);
  }
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
    const ModelStateBytes e = expected_bytes(s, padded, N, P, G, opt_.bucket_elements, 0);
    const double paper = s == 0   ? double(P + G + 12) * psi
                         : s == 1 ? double(P + G) * psi + 12.0 * psi / N
                         : s == 2 ? double(P) * psi + double(G + 12) * psi / N
                                  : double(P + G + 12) * psi / N;
    out += detail::concat("  stage ", s, ": ", formula[s], " = ", static_cast<int64_t>(paper), " B; this layout ",
                          e.total(), " B (+", e.frozen + frozen_bytes_, " frozen; stages 0-1 add the GΨ/N fold accumulator, ",
                          "2-3 the bucket)", s == opt_.stage ? "  <- this run" : "", "\n");
  }
  return out;
}

// ---- checkpoints ---------------------------------------------------------------------------------------

std::string ZeroOptimizer::shard_file_name(int rank, int world) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "optimizer-rank%05d-of-%05d.safetensors", rank, world);
  return buf;
}

std::string ZeroOptimizer::save_shard(const std::string& dir, std::map<std::string, std::string> metadata) const {
  const int64_t N = pg_->size(), r = pg_->rank();
  std::map<std::string, Tensor> tensors;
  json groups = json::array();
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const GroupLayout& g = groups_[gi];
    const ParamGroup& inner = inner_->groups()[gi];
    // The file's range: rank r's slice of the global flat state, whatever the stage.
    const int64_t fb = std::min(r * g.shard, g.numel), fe = std::min((r + 1) * g.shard, g.numel);
    for (auto [key, t] : {std::pair<const char*, const Tensor*>{".master", &inner.master}, {".exp_avg", &inner.exp_avg},
                          {".exp_avg_sq", &inner.exp_avg_sq}})
      tensors[g.name + key] = t->narrow(0, fb - g.owned_begin, fe - fb).contiguous();
    tensors[g.name + ".step"] = from_vector(g.steps);
    groups.push_back({{"name", g.name}, {"numel", g.numel}, {"padded_numel", g.padded_numel}, {"begin", fb},
                      {"end", fe}, {"params", g.names}, {"lr", inner.lr}, {"initial_lr", inner.initial_lr},
                      {"betas", {inner.beta1, inner.beta2}}, {"eps", inner.eps}, {"weight_decay", inner.weight_decay}});
  }
  tensors["optimizer.num_steps"] = from_vector(std::vector<int64_t>{num_steps_});
  metadata["vt.optim.zero"] = json({{"world_size", N}, {"rank", r}, {"stage", opt_.stage}, {"groups", groups}}).dump();
  const std::string path = (fs::path(dir) / shard_file_name(static_cast<int>(r), static_cast<int>(N))).string();
  io::save_safetensors(path, tensors, metadata);
  return path;
}

namespace {

// One source of optimizer state: a shard file, or a single-process optimizer.safetensors.
struct StateSource {
  std::string path;
  std::shared_ptr<io::SafetensorsFile> file;
  json info;  // {"groups": [{name, numel, begin, end, params, lr, ...}]}
  Tensor tensor(const std::string& name) const {
    for (const io::TensorEntry& e : file->entries())
      if (e.name == name) return io::tensor_from_entry(e, file->data(e), file, false, path);
    VT_FAIL("zero: ", path, " has no tensor ", name);
  }
};

std::vector<StateSource> open_sources(const std::string& dir) {
  std::vector<StateSource> out;
  std::vector<std::string> shards;
  if (fs::is_directory(dir))
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string n = e.path().filename().string();
      if (n.rfind("optimizer-rank", 0) == 0 && n.size() > 12 && n.compare(n.size() - 12, 12, ".safetensors") == 0)
        shards.push_back(e.path().string());
    }
  std::sort(shards.begin(), shards.end());
  for (const std::string& p : shards) {
    StateSource s{p, io::SafetensorsFile::open(p), {}};
    auto md = s.file->metadata().find("vt.optim.zero");
    VT_CHECK(md != s.file->metadata().end(), "zero: ", p, " has no vt.optim.zero metadata");
    s.info = json::parse(md->second);
    out.push_back(std::move(s));
  }
  if (!out.empty()) {
    const int64_t N = out[0].info.at("world_size").get<int64_t>();
    std::string missing;
    for (int64_t r = 0; r < N; ++r) {
      const std::string want = (fs::path(dir) / ZeroOptimizer::shard_file_name(int(r), int(N))).string();
      if (std::none_of(out.begin(), out.end(), [&](const StateSource& s) { return s.path == want; }))
        missing += " " + fs::path(want).filename().string();
    }
    VT_CHECK(missing.empty(), "zero: ", dir, " holds a checkpoint of ", N, " ranks but lacks", missing);
    VT_CHECK(static_cast<int64_t>(out.size()) == N, "zero: ", dir, " mixes shards of different world sizes");
    return out;
  }
  // A single-process AdamW file: one source covering [0, numel) of every group.
  const std::string single = (fs::path(dir) / "optimizer.safetensors").string();
  VT_CHECK(fs::exists(single), "zero: ", dir, " holds neither optimizer-rank*-of-*.safetensors nor optimizer.safetensors");
  StateSource s{single, io::SafetensorsFile::open(single), {}};
  auto md = s.file->metadata().find("vt.optim.adamw");
  VT_CHECK(md != s.file->metadata().end(), "zero: ", single, " has no vt.optim.adamw metadata");
  s.info = json::parse(md->second);
  for (json& g : s.info["groups"]) g["begin"] = 0, g["end"] = g["numel"];
  out.push_back(std::move(s));
  return out;
}

const json& group_info(const StateSource& s, size_t gi, const std::string& name, int64_t numel,
                       const std::vector<std::string>& names) {
  VT_CHECK(gi < s.info["groups"].size(), "zero: ", s.path, " holds ", s.info["groups"].size(),
           " parameter groups, this optimizer has more");
  const json& j = s.info["groups"][gi];
  VT_CHECK(j["name"] == name && j["numel"].get<int64_t>() == numel && j["params"].get<std::vector<std::string>>() == names,
           "zero: ", s.path, ": group ", gi, " ('", j["name"].get<std::string>(), "', ", j["numel"].get<int64_t>(),
           " elements, ", j["params"].size(), " params) does not match this optimizer's group '", name, "' (", numel,
           " elements, ", names.size(), " params)");
  return j;
}

// [begin, end) of the global flat buffer `key` of group gi, assembled from every source that covers it.
Tensor read_range(const std::vector<StateSource>& sources, size_t gi, const std::string& key, int64_t begin,
                  int64_t end) {
  Tensor out = zeros({end - begin}, DType::F32);
  int64_t covered = 0;
  for (const StateSource& s : sources) {
    const json& j = s.info["groups"][gi];
    const int64_t fb = j["begin"].get<int64_t>(), fe = j["end"].get<int64_t>();
    const int64_t a = std::max(begin, fb), b = std::min(end, fe);
    if (a >= b) continue;
    Tensor dst = out.narrow(0, a - begin, b - a);
    copy_(dst, s.tensor(key).narrow(0, a - fb, b - a));
    covered += b - a;
  }
  VT_CHECK(covered == end - begin, "zero: the optimizer files cover ", covered, " of the ", end - begin,
           " elements [", begin, ", ", end, ") of ", key);
  return out;
}

}  // namespace

void ZeroOptimizer::load_shards(const std::string& dir) {
  const std::vector<StateSource> sources = open_sources(dir);
  NoGradGuard no_grad;
  std::map<std::string, Tensor> state;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    GroupLayout& g = groups_[gi];
    for (const StateSource& s : sources) group_info(s, gi, g.name, g.numel, g.names);
    const int64_t b = std::min(g.owned_begin, g.numel), e = std::min(g.owned_end, g.numel);
    for (const char* k : {".master", ".exp_avg", ".exp_avg_sq"}) state[g.name + k] = read_range(sources, gi, g.name + k, b, e);
    g.steps = sources[0].tensor(g.name + ".step").tolist<int64_t>();
    VT_CHECK(g.steps.size() == g.params.size(), "zero: ", sources[0].path, " has ", g.steps.size(), " steps for group ",
             g.name, " of ", g.params.size(), " params");
    std::vector<int64_t> piece_steps;
    for (const Piece& pc : pieces_[gi]) piece_steps.push_back(g.steps[pc.param]);
    state[g.name + ".step"] = from_vector(piece_steps);
  }
  const Tensor n = sources[0].tensor("optimizer.num_steps");
  num_steps_ = n.tolist<int64_t>()[0];
  state["optimizer.num_steps"] = n;
  inner_->load_state_dict(state, dir);  // rewrites this rank's pieces from the master
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const json& j = sources[0].info["groups"][gi];
    ParamGroup& inner = inner_->groups()[gi];
    inner.lr = j["lr"], inner.initial_lr = j["initial_lr"], inner.eps = j["eps"], inner.weight_decay = j["weight_decay"];
    inner.beta1 = j["betas"][0], inner.beta2 = j["betas"][1];
    if (opt_.stage == 1 || opt_.stage == 2) {
      Tensor mine = arena_[gi].narrow(0, groups_[gi].owned_begin, groups_[gi].shard);
      pg_->all_gather(mine, arena_[gi]);
    }
  }
  if (opt_.stage == 3) release_parameters();  // the next gather brings the loaded shards
  zero_grad();
}

std::map<std::string, Tensor> ZeroOptimizer::consolidate_shards(const std::string& dir) {
  const std::vector<StateSource> sources = open_sources(dir);
  std::map<std::string, Tensor> state;
  for (size_t gi = 0; gi < sources[0].info["groups"].size(); ++gi) {
    const json& j = sources[0].info["groups"][gi];
    const std::string name = j["name"];
    const int64_t numel = j["numel"];
    for (const char* k : {".master", ".exp_avg", ".exp_avg_sq"}) state[name + k] = read_range(sources, gi, name + k, 0, numel);
    state[name + ".step"] = sources[0].tensor(name + ".step").clone();
  }
  state["optimizer.num_steps"] = sources[0].tensor("optimizer.num_steps").clone();
  return state;
}

}  // namespace vt::optim
