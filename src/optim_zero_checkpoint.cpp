// optim_zero_checkpoint.cpp: ZeRO's sharded optimizer checkpoints; see optim/zero.h. A file holds
// rank r's segments of the global flat (unpadded) master / exp_avg / exp_avg_sq of every group, end
// to end, with the segments in its metadata ("segments": [[begin, end], ...]; files written before
// units existed say "begin" and "end"); a reader assembles any other partition from them.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "vt/autograd.h"
#include "vt/io/safetensors.h"
#include "vt/io/tensor_io.h"
#include "vt/ops.h"
#include "vt/optim/zero.h"

namespace vt::optim {

namespace fs = std::filesystem;
using json = nlohmann::json;

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
    // The file's segments: rank r's slice of every unit, whatever the stage (stage 0 holds it all).
    json segments = json::array();
    int64_t first = -1, total = 0;
    for (const Unit& u : g.units) {
      const int64_t a = u.begin + std::min(r * u.shard, u.numel), b = u.begin + std::min((r + 1) * u.shard, u.numel);
      if (a >= b) continue;
      segments.push_back({a, b});
      if (first < 0) first = a;
      total += b - a;
    }
    // Stage 0's master covers [0, numel) and has one unit; stages 1-3 hold exactly these segments.
    const int64_t from = opt_.stage == 0 ? std::max<int64_t>(first, 0) : 0;
    for (auto [key, t] : {std::pair<const char*, const Tensor*>{".master", &inner.master}, {".exp_avg", &inner.exp_avg},
                          {".exp_avg_sq", &inner.exp_avg_sq}})
      tensors[g.name + key] = t->narrow(0, from, total).contiguous();
    tensors[g.name + ".step"] = from_vector(g.steps);
    groups.push_back({{"name", g.name}, {"numel", g.numel}, {"padded_numel", g.padded_numel}, {"segments", segments},
                      {"params", g.names}, {"lr", inner.lr}, {"initial_lr", inner.initial_lr},
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
  for (json& g : s.info["groups"]) g["segments"] = json::array({json::array({0, g["numel"].get<int64_t>()})});
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

// A source's segments of group gi ([[begin, end], ...], or the older single "begin"/"end").
std::vector<std::pair<int64_t, int64_t>> segments_of(const json& j) {
  std::vector<std::pair<int64_t, int64_t>> out;
  if (j.contains("segments"))
    for (const json& s : j["segments"]) out.push_back({s[0].get<int64_t>(), s[1].get<int64_t>()});
  else
    out.push_back({j["begin"].get<int64_t>(), j["end"].get<int64_t>()});
  return out;
}

// The global flat buffer `key` of group gi over `want` (segments in order), end to end, assembled
// from every source that covers a part.
Tensor read_segments(const std::vector<StateSource>& sources, size_t gi, const std::string& key,
                     const std::vector<std::pair<int64_t, int64_t>>& want) {
  int64_t n = 0;
  for (const auto& [b, e] : want) n += e - b;
  Tensor out = zeros({n}, DType::F32);
  int64_t covered = 0;
  for (const StateSource& s : sources) {
    Tensor data;
    int64_t at = 0;  // position of the source's segment in its tensor
    for (const auto& [fb, fe] : segments_of(s.info["groups"][gi])) {
      int64_t dst_at = 0;
      for (const auto& [begin, end] : want) {
        const int64_t a = std::max(begin, fb), b = std::min(end, fe);
        if (a < b) {
          if (!data.defined()) data = s.tensor(key);
          Tensor dst = out.narrow(0, dst_at + a - begin, b - a);
          copy_(dst, data.narrow(0, at + a - fb, b - a));
          covered += b - a;
        }
        dst_at += end - begin;
      }
      at += fe - fb;
    }
  }
  VT_CHECK(covered == n, "zero: the optimizer files cover ", covered, " of the ", n, " elements of ", key,
           " this rank needs");
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
    for (const char* k : {".master", ".exp_avg", ".exp_avg_sq"}) state[g.name + k] = read_segments(sources, gi, g.name + k, g.owned);
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
    for (const char* k : {".master", ".exp_avg", ".exp_avg_sq"}) state[name + k] = read_segments(sources, gi, name + k, {{0, numel}});
    state[name + ".step"] = sources[0].tensor(name + ".step").clone();
  }
  state["optimizer.num_steps"] = sources[0].tensor("optimizer.num_steps").clone();
  return state;
}

}  // namespace vt::optim
