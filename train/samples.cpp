// train/samples.cpp: the sample grids of a training run; see samples.h.
#include "samples.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "data/records.h"
#include "eval.h"
#include "report.h"
#include "shapeworld/render.h"
#include "vt/autograd.h"
#include "vt/error.h"

namespace vt::train {

namespace fs = std::filesystem;

std::vector<std::string> sample_prompts_from_data(const std::vector<DataSource>& sources, int64_t n) {
  std::vector<std::string> out;
  for (const DataSource& s : sources) {
    if (int64_t(out.size()) >= n) break;
    if (s.kind && *s.kind != TaskKind::Generation && *s.kind != TaskKind::Preference) continue;
    ReadOptions ro;
    ro.kind = s.kind;
    ro.root = s.root;
    for (const Record& r : read_records(s.path, ro).records) {
      if (int64_t(out.size()) >= n) break;
      if (r.kind != TaskKind::Generation && r.kind != TaskKind::Preference) continue;
      const auto user = std::find_if(r.turns.begin(), r.turns.end(), [](const Turn& t) { return t.role == "user"; });
      if (user != r.turns.end()) out.push_back(user->text);
    }
  }
  return out;
}

std::string sample_grid_path(const std::string& out_dir, int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "step-%06lld.png", static_cast<long long>(step));
  return (fs::path(out_dir) / "samples" / name).string();
}

bool sample_due(const Recipe& r, int64_t step) {
  return r.sample_every > 0 && (step % r.sample_every == 0 || step == r.steps);
}

SampleGrid::SampleGrid(const Recipe& r, const vargpt::Vargpt& model, tok::Tokenizer tokenizer,
                       std::vector<std::string> prompts)
    : name_(r.name),
      size_(r.gen_size),
      seed_(r.sample_seed),
      mrope_consistent_(r.mrope_consistent),
      llm_block_causal_(r.llm_block_causal),
      tokenizer_(std::move(tokenizer)),
      texts_(std::move(prompts)) {
  VT_CHECK(!texts_.empty(), "training ", r.name, ": sample_every ", r.sample_every,
           " asks for sample grids, but the data has no generation or preference records to take prompts from");
  if (int64_t(texts_.size()) > r.sample_prompts) texts_.resize(size_t(r.sample_prompts));
  // Rendered now, so that a prompt the tokenizer cannot take stops the run before its first step.
  for (const std::string& t : texts_) {
    try {
      rendered_.push_back(render_turn(model, tokenizer_, t));
    } catch (const vt::Error& e) {
      VT_FAIL("training ", r.name, ": sample prompt \"", t, "\": ", e.what());
    }
  }
}

std::string SampleGrid::write(vargpt::Vargpt& model, int64_t step, const std::string& out_dir) const {
  EvalConfig cfg;
  cfg.gen_text_tokens = kSampleTextTokens;
  cfg.image.height = cfg.image.width = size_;
  cfg.image.mrope_consistent = mrope_consistent_;
  cfg.image.llm_block_causal = llm_block_causal_;
  cfg.quiet = true;
  constexpr size_t kBatch = 8;  // rows per model call; a row's image does not depend on its batch
  std::vector<shapes::Image> images;
  {
    NoGradGuard no_grad;
    // Eval mode (no drop path) while drawing; the loop's mode comes back however this scope ends.
    struct ModeGuard {
      vargpt::Vargpt& m;
      bool was;
      ~ModeGuard() { m.train(was); }
    } mode{model, model.is_training()};
    model.eval();
    for (size_t first = 0; first < rendered_.size(); first += kBatch) {
      const size_t end = std::min(rendered_.size(), first + kBatch);
      const std::vector<vargpt::Prompt> batch(rendered_.begin() + long(first), rendered_.begin() + long(end));
      std::vector<uint64_t> seeds;
      for (size_t j = first; j < end; ++j) seeds.push_back(seed_ + j);
      GeneratedImages g = generate_images(model, tokenizer_, batch, seeds, cfg);
      for (shapes::Image& im : g.images) images.push_back(std::move(im));
    }
  }
  char title[256];
  std::snprintf(title, sizeof title, "%s: step %lld (prompt j: seed %llu + j)", name_.c_str(), (long long)step,
                (unsigned long long)seed_);
  const std::string path = sample_grid_path(out_dir, step);
  fs::create_directories(fs::path(path).parent_path());
  shapes::write_png(path, draw_sample_grid(images, texts_, title));
  return path;
}

}  // namespace vt::train
