// train/trainer.h: the training loop of every VARGPT stage, read top to bottom (nanoGPT's train.py):
//
//   load the model (recipe.init) -> freeze preset -> AdamW over the trainable set (frozen tensors get
//   no state) -> cosine schedule with warmup -> [resume: weights, optimizer, schedule, RNG, data
//   position from OUT/latest] -> for each step:
//       for each micro-batch (global_batch / micro_batch of them):
//           batch -> VAE-encode the targets (f32, no grad) -> bitwise self-correction -> condition
//           dropout -> training_forward (SFT) or dpo_forward (DPO) -> (loss / accumulation).backward()
//       NaN/Inf check (names the step, the loss part and the first parameter) -> clip 1.0 ->
//       AdamW step -> schedule step -> sample grid every sample_every steps (samples.h; eval mode,
//       its own generators) -> log (JSON lines) -> checkpoint every save_every steps
//
// The data comes through a BatchSource, so the loop knows nothing of files; train/data's Loader is
// one. The loop is deterministic: a run resumed from a checkpoint continues bit for bit. On N ranks
// (TrainOptions::group) the same loop runs data-parallel: reduce after each backward, ZeRO's clip,
// step and gather (optim/zero.h); a checkpoint of N ranks resumes on M.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/sample.h"
#include "recipe.h"
#include "vargpt/training.h"
#include "vt/dist/process_group.h"
#include "vt/optim/zero_partition.h"
#include "vt/random.h"

namespace vt::train {

// Where batches come from: next() returns micro-batches forever (epochs wrap); position() and
// restore() make the data order resumable.
struct BatchSource {
  std::function<Batch()> next;
  std::function<nlohmann::json()> position;
  std::function<void(const nlohmann::json&)> restore;
};

// The model's TrainingBatch for a data batch: the targets VAE-encoded in f32 without gradient,
// bitwise self-correction (recipe bsc.*) and condition dropout (recipe cond_drop) drawn from `gen`.
vargpt::TrainingBatch make_training_batch(const vargpt::Vargpt& model, const Batch& batch, const Recipe& recipe,
                                          Generator& gen);

struct TrainOptions {
  std::string out_dir;           // checkpoints and logs
  std::string init_dir;          // the model to start from (a checkpoint directory)
  std::string reference_dir;     // dpo: the frozen reference model (recipe.reference, resolved)
  bool resume = false;           // continue from out_dir/latest when present
  bool quiet = false;            // no progress bar
  int64_t stop_after = -1;       // stop (with a checkpoint) after this many steps of this call (tests)
  std::function<void(int64_t step, const nlohmann::json& log)> on_step;
  // The user turns the sample grids draw (recipe sample_every; the first sample_prompts are used):
  // `vargpt train` takes them from the data (sample_prompts_from_data), rendered with the
  // tokenizer.json of init_dir.
  std::vector<std::string> sample_prompts;
  // Data parallelism: the ranks of the job (null or world 1: one process with a plain AdamW, as
  // before). With N > 1 ranks the optimizer is optim::ZeroOptimizer at recipe.zero_stage; rank r
  // takes every N-th micro-batch of the BatchSource (micro-step a: batch a·N + r), the loss is
  // scaled by 1/(accumulation·N), the training generator is re-seeded per global micro-batch (so the
  // draws do not depend on N), rank 0 writes the log and the model, every rank its optimizer shard.
  std::shared_ptr<dist::ProcessGroup> group;
};

struct TrainResult {
  std::string checkpoint;        // the last checkpoint written
  int64_t steps = 0;             // optimizer steps done in total
  nlohmann::json last_log;
};

// SFT and DPO recipes (kind "sft", "dpo"; DPO adds the frozen reference model). The BSQ tokenizer
// (kind "vae") has its own loop, train_vae() in vae_stage.h.
TrainResult train(const Recipe& recipe, BatchSource data, const TrainOptions& opt);

// ZeRO-3's blocks of a VARGPT model, in forward order (the prefetch order): the ViT's, the LLM's,
// Infinity's; each gathered around its nn::run_block. Infinity projects the cross-attention K/V of
// every block (ca.mat_kv, ca.v_bias) before any block runs, so those two stay with the rest. The
// optimizer takes the trainable parameters of each block, the frozen DPO reference all of them.
std::vector<optim::ZeroBlock> zero3_blocks(const vargpt::Vargpt& model, bool trainable_only = true);

}  // namespace vt::train
