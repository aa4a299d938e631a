// train/samples.h: the sample grids of a training run (issue #14). With the recipe's sample_every > 0,
// an sft or dpo run draws a grid every sample_every optimizer steps and at its last step:
//
//   the first sample_prompts user turns of the stage's generation / preference records, the same
//   ones every time so that the grids compare (sample_prompts_from_data, read by `vargpt train`)
//     --render_turn (eval.h: chat template, default system prompt), once at start--> prompts
//     --the model in eval mode, no gradient; training mode restored after-->
//   generate_images (eval.h: greedy own reply of at most 24 tokens, forced hand-off; prompt j draws
//   its bits with seed sample_seed + j; the recipe's gen_size and its Q10 / Q11 fixes; the sampler's
//   defaults cfg 3, tau 0.5, top-p 0.97, top-k 900) in batches of 8
//     --draw_sample_grid (report_draw.cpp: the report's font and layout habits)-->
//   OUT/samples/step-<step, 6 digits>.png, written atomically (temp file, then rename)
//
// Cell j is what `vargpt generate --prompts FILE --seed S --size G --max-text-tokens 24` (with
// --mrope-consistent / --llm-block-causal where the recipe sets those fixes) writes for prompt j from
// the checkpoint of that step. Sampling draws from its own per-row generators, never from the
// training generator, and writes no parameter: a run with grids trains bit for bit as one without
// (tests/test_trainer.cpp).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/loader.h"
#include "recipe.h"
#include "tokenizer/bpe.h"
#include "vargpt/generate.h"

namespace vt::train {

// The replies a sample grid allows before the forced <|image_gen_start|>: `vargpt eval`'s budget.
inline constexpr int64_t kSampleTextTokens = 24;

// The first user turn of the first `n` generation and preference records of `sources`, in the order
// the sources are listed (fewer when the data has fewer). Other kinds are passed over; a stated kind
// of another task skips the whole file unread.
std::vector<std::string> sample_prompts_from_data(const std::vector<DataSource>& sources, int64_t n);

// OUT/samples/step-000042.png
std::string sample_grid_path(const std::string& out_dir, int64_t step);

// Whether step (1-based, after the optimizer step) draws a grid: every sample_every steps and the last.
bool sample_due(const Recipe& recipe, int64_t step);

class SampleGrid {
 public:
  // Keeps the first recipe.sample_prompts of `prompts` and renders them with `tokenizer`; an error
  // names the recipe when there are none (a stage whose data has no generation or preference records).
  SampleGrid(const Recipe& recipe, const vargpt::Vargpt& model, tok::Tokenizer tokenizer,
             std::vector<std::string> prompts);
  // Draws the grid of `step` with `model` (eval mode while it draws, its own mode back after), writes
  // it to sample_grid_path(out_dir, step) and returns that path.
  std::string write(vargpt::Vargpt& model, int64_t step, const std::string& out_dir) const;

  const std::vector<std::string>& prompts() const { return texts_; }

 private:
  std::string name_;
  int64_t size_ = 0;
  uint64_t seed_ = 0;
  bool mrope_consistent_ = false, llm_block_causal_ = false;
  tok::Tokenizer tokenizer_;
  std::vector<std::string> texts_;
  std::vector<vargpt::Prompt> rendered_;
};

}  // namespace vt::train
