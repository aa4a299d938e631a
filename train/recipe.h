// train/recipe.h: one training phase as a flat set of named values (nanoGPT's habit), read from a
// JSON file, overridable by `--set key=value`, printed at start and saved with every checkpoint.
//
//   {"name": "stage3_sft_256", "kind": "sft", "freeze": "stage3", "gen_size": 256,
//    "global_batch": 1024, "micro_batch": 4, "lr": 5e-5, "warmup_ratio": 0.1, "weight_decay": 0,
//    "steps": 40000, "zero_stage": 3, "data": [{"file": "gen.json", "kind": "generation"}], ...}
//
// Every key is known: an unknown key (in the file or in --set) is an error that names it and lists
// the known ones. Nested objects are flattened with dots on read ("dpo.beta", "bsc.layers").
// Recipes chain through "init" (the checkpoint to start from) and, for DPO, "reference": a value
// "@previous" means the output of the recipe run before this one in the same chain.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace vt::train {

struct RecipeData {
  std::string file;            // JSON / JSONL, relative to the data directory
  std::string kind;            // understanding | generation | editing | preference | images (vae)
  double fraction = 1.0;       // share of this source in the mixture (by sampling weight)
  std::string root;            // image paths are relative to this (default: the data directory)
};

struct Recipe {
  std::string name;
  std::string kind = "sft";        // sft | dpo | vae
  std::string freeze = "stage3";   // vargpt.md §12.1 preset (sft, dpo)
  int64_t gen_size = 256;          // generation resolution (256 -> 640 pads, 512 -> 2560)
  int64_t global_batch = 8;        // samples (pairs for dpo) per optimizer step, over all ranks
  int64_t micro_batch = 1;         // samples per forward; accumulation = global / (micro * world)
  double lr = 5e-5;
  std::string schedule = "cosine"; // cosine | linear | constant
  double warmup_ratio = 0.1;
  double weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double max_grad_norm = 1.0;
  bool activation_checkpointing = false;  // recompute each transformer block in backward
  int64_t steps = 100;             // optimizer steps
  int64_t zero_stage = 0;          // DeepSpeed ZeRO stage of the paper (recorded; data-parallel issue)
  std::string dtype = "f32";       // parameter dtype: f32 | bf16 (fp32 master weights either way)
  int64_t cutoff_len = 8192;       // tokens; longer samples are skipped with a warning
  uint64_t seed = 0;
  double cond_drop = 0.1;          // condition dropout on the sos (Q13)
  int64_t bsc_layers = 13;         // bitwise self-correction: corrupted scales
  double bsc_strength = 0.3;       //   largest flip probability
  bool mask_prompt_loss = false;   // Q8 fix
  bool reweight_by_scale = false;  // Q9 fix
  bool mrope_consistent = false;   // Q10 fix
  bool cfg_drop_ca = false;        // Q13 fix
  bool llm_block_causal = false;   // Q11 fix
  bool sos_single_row = false;     // Q2 fix: train only sos_embedding's read row (VargptOptions)
  double dpo_beta = 0.1, dpo_label_smoothing = 0.0, dpo_ftx = 0.0;
  // kind vae: the tokenizer loss weights (train/vae_stage.h VaeLossOptions; defaults are upstream's)
  double vae_l1 = 1.0, vae_l2 = 0.0, vae_commit = 0.25, vae_entropy = 1e-3, vae_inv_temperature = 100.0;
  double vae_gradient = 0.0;       // the gradient difference loss (vae_stage.h GD)
  double vae_saturation = 0.0;     // saturation-weighted L1/L2 (vae_stage.h)
  std::string init;                // checkpoint directory to start from ("@previous": the last output)
  std::string reference;           // dpo: the frozen reference checkpoint ("@previous")
  int64_t save_every = 0;          // steps between checkpoints (0: only the last)
  int64_t keep_last = 2;           // checkpoints kept
  int64_t log_every = 1;
  // The sample grid (train/samples.h; sft and dpo): every sample_every steps and at the last one,
  // one image per prompt for the first sample_prompts generation / preference records of the data,
  // prompt j with seed sample_seed + j, into OUT/samples/step-<step>.png. 0: no grids.
  int64_t sample_every = 0;
  int64_t sample_prompts = 8;
  uint64_t sample_seed = 0;
  int64_t workers = 2;             // data threads
  bool strict = false;             // bad records are errors instead of counted warnings
  std::vector<RecipeData> data;

  // Reads a recipe file; `source` names it in errors.
  static Recipe from_json(const nlohmann::json& j, const std::string& source);
  static Recipe load(const std::string& path);
  // key=value with a known key (dotted for nested ones); the value is parsed as the key's type.
  void set(const std::string& assignment);
  nlohmann::json to_json() const;
  // Accumulation steps for a world size; errors when the global batch does not divide.
  int64_t accumulation(int64_t world_size = 1) const;
  void validate(const std::string& source) const;
};

}  // namespace vt::train
