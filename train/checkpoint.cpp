// checkpoint.cpp: atomic Hugging Face-layout checkpoints; see checkpoint.h.
#include "checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "vt/error.h"

namespace vt::train {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const char* const kModelFiles[] = {"config.json", "tokenizer.json", "preprocessor_config.json",
                                   "generation_config.json", "chat_template.json"};

// checkpoint-<step> -> step; -1 for other names.
int64_t step_of(const std::string& name) {
  const std::string prefix = "checkpoint-";
  if (name.rfind(prefix, 0) != 0 || name.size() == prefix.size()) return -1;
  const std::string digits = name.substr(prefix.size());
  if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) return -1;
  return std::stoll(digits);
}

}  // namespace

void write_text_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    VT_CHECK(out.good(), "cannot write '", tmp, "'");
    out << text;
    out.flush();
    VT_CHECK(out.good(), "writing '", tmp, "' failed (disk full?)");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  VT_CHECK(!ec, "cannot rename '", tmp, "' to '", path, "': ", ec.message());
}

CheckpointPaths checkpoint_paths(const std::string& dir) {
  return {dir, dir + "/optimizer.safetensors", dir + "/trainer_state.json"};
}

std::string begin_checkpoint(const std::string& out_dir, int64_t step) {
  fs::create_directories(out_dir);
  const std::string tmp_dir = out_dir + "/checkpoint-" + std::to_string(step) + ".tmp";
  fs::remove_all(tmp_dir);
  fs::create_directories(tmp_dir);
  return tmp_dir;
}

std::string save_checkpoint(const std::string& out_dir, const nn::Module& model, const optim::AdamW* optimizer,
                            const TrainerState& state, const std::string& model_files_from, int64_t keep_last,
                            uint64_t max_shard_bytes) {
  begin_checkpoint(out_dir, state.step);
  return finish_checkpoint(out_dir, model, optimizer, state, model_files_from, keep_last, max_shard_bytes);
}

std::string finish_checkpoint(const std::string& out_dir, const nn::Module& model, const optim::AdamW* optimizer,
                              const TrainerState& state, const std::string& model_files_from, int64_t keep_last,
                              uint64_t max_shard_bytes) {
  const std::string name = "checkpoint-" + std::to_string(state.step);
  const std::string final_dir = out_dir + "/" + name, tmp_dir = final_dir + ".tmp";
  VT_CHECK(fs::is_directory(tmp_dir), "checkpoint: ", tmp_dir, " was not begun (begin_checkpoint)");
  for (const char* f : kModelFiles) {
    const fs::path src = fs::path(model_files_from) / f;
    if (fs::exists(src)) fs::copy_file(src, fs::path(tmp_dir) / f, fs::copy_options::overwrite_existing);
  }
  model.save_sharded(tmp_dir, max_shard_bytes);
  const CheckpointPaths p = checkpoint_paths(tmp_dir);
  if (optimizer) optimizer->save(p.optimizer, {{"step", std::to_string(state.step)}});
  json s = {{"step", state.step},       {"recipe", state.recipe},       {"rng_seed", state.rng_seed},
            {"rng_offset", state.rng_offset}, {"data_position", state.data_position}, {"extra", state.extra}};
  write_text_atomic(p.state, s.dump(2) + "\n");
  // Complete: move it into place (replacing a checkpoint of the same step), then point `latest` at it.
  fs::remove_all(final_dir);
  std::error_code ec;
  fs::rename(tmp_dir, final_dir, ec);
  VT_CHECK(!ec, "cannot rename '", tmp_dir, "' to '", final_dir, "': ", ec.message());
  write_text_atomic(out_dir + "/latest", name + "\n");
  // Keep the newest keep_last; drop stale .tmp directories of killed saves.
  std::vector<std::pair<int64_t, fs::path>> found;
  for (const auto& e : fs::directory_iterator(out_dir)) {
    const std::string n = e.path().filename().string();
    if (e.is_directory() && n.size() > 4 && n.compare(n.size() - 4, 4, ".tmp") == 0) fs::remove_all(e.path());
    else if (e.is_directory() && step_of(n) >= 0) found.push_back({step_of(n), e.path()});
  }
  std::sort(found.begin(), found.end());
  for (size_t i = 0; i + static_cast<size_t>(std::max<int64_t>(keep_last, 1)) < found.size(); ++i)
    if (found[i].second != fs::path(final_dir)) fs::remove_all(found[i].second);
  return final_dir;
}

std::optional<std::string> latest_checkpoint(const std::string& out_dir) {
  std::ifstream in(out_dir + "/latest");
  if (!in.good()) return std::nullopt;
  std::string name;
  std::getline(in, name);
  VT_CHECK(step_of(name) >= 0, out_dir, "/latest names '", name, "', not a checkpoint-<step> directory");
  const std::string dir = out_dir + "/" + name;
  VT_CHECK(fs::exists(dir + "/trainer_state.json"), out_dir, "/latest names ", name,
           ", which is missing or incomplete (no trainer_state.json)");
  return dir;
}

TrainerState load_trainer_state(const std::string& dir) {
  const std::string path = checkpoint_paths(dir).state;
  std::ifstream in(path);
  VT_CHECK(in.good(), "cannot open '", path, "'");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    VT_FAIL(path, ": malformed JSON: ", e.what());
  }
  TrainerState s;
  try {
    s.step = j.at("step").get<int64_t>();
    s.recipe = j.value("recipe", json());
    s.rng_seed = j.at("rng_seed").get<uint64_t>();
    s.rng_offset = j.at("rng_offset").get<uint64_t>();
    s.data_position = j.value("data_position", json());
    s.extra = j.value("extra", json());
  } catch (const json::exception& e) {
    VT_FAIL(path, ": missing or mistyped field: ", e.what());
  }
  return s;
}

}  // namespace vt::train
