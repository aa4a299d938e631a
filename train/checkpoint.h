// train/checkpoint.h: training checkpoints in Hugging Face layout, atomically, the last K kept.
//
//   OUT/checkpoint-<step>/  config.json, tokenizer.json, preprocessor_config.json (copied from the
//                           initial model), model.safetensors or shards + index (Module::save_sharded),
//                           optimizer.safetensors (AdamW master, moments, steps) or, from a run on
//                           N ranks, optimizer-rank<r>-of-<N>.safetensors (optim/zero.h), trainer_state.json
//                           (step, recipe, scheduler, RNG, data position, caller's extras)
//   OUT/latest              the name of the newest complete checkpoint
//
// A checkpoint is written into checkpoint-<step>.tmp and renamed into place when complete, then
// `latest` is replaced (temp file + rename), then checkpoints beyond the last K are removed. A save
// killed midway leaves a .tmp directory that is ignored and cleaned up by the next save; `latest`
// still names the previous complete checkpoint. Every checkpoint directory is a model directory
// that `vargpt chat | generate | edit` load as they are.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "vt/nn/module.h"
#include "vt/optim/adamw.h"

namespace vt::train {

struct TrainerState {
  int64_t step = 0;                  // optimizer steps done
  nlohmann::json recipe;             // the recipe the run used
  uint64_t rng_seed = 0, rng_offset = 0;  // the training generator (BSC flips, condition dropout)
  nlohmann::json data_position;      // the loader's resumable position
  nlohmann::json extra;              // anything else (metrics of the last evaluation, ...)
};

struct CheckpointPaths {
  std::string dir;        // OUT/checkpoint-<step>
  std::string optimizer;  // dir/optimizer.safetensors
  std::string state;      // dir/trainer_state.json
};

// Writes checkpoint `state.step` of `model` (and `optimizer` when given) under out_dir. model_files_from:
// a model directory whose config.json / tokenizer.json / preprocessor_config.json are copied.
// max_shard_bytes: Module::save_sharded's shard size. Returns the checkpoint directory.
std::string save_checkpoint(const std::string& out_dir, const nn::Module& model, const optim::AdamW* optimizer,
                            const TrainerState& state, const std::string& model_files_from, int64_t keep_last,
                            uint64_t max_shard_bytes = 4ull << 30);

// save_checkpoint in two halves, for data-parallel runs (trainer.cpp): rank 0 begins (creates an empty
// OUT/checkpoint-<step>.tmp), every rank writes its optimizer shard into it
// (optim::ZeroOptimizer::save_shard), then rank 0 finishes (the model in HF layout, the trainer state,
// the rename, `latest`, pruning) with optimizer = nullptr. Returns the .tmp / final directory.
std::string begin_checkpoint(const std::string& out_dir, int64_t step);
std::string finish_checkpoint(const std::string& out_dir, const nn::Module& model, const optim::AdamW* optimizer,
                              const TrainerState& state, const std::string& model_files_from, int64_t keep_last,
                              uint64_t max_shard_bytes = 4ull << 30);

// The newest complete checkpoint under out_dir (by `latest`), or nullopt when there is none.
std::optional<std::string> latest_checkpoint(const std::string& out_dir);
CheckpointPaths checkpoint_paths(const std::string& checkpoint_dir);
TrainerState load_trainer_state(const std::string& checkpoint_dir);

// Writes `text` to `path` atomically (temp file in the same directory, then rename).
void write_text_atomic(const std::string& path, const std::string& text);

}  // namespace vt::train
