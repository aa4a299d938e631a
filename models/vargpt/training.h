// vargpt/training.h: the teacher-forced forward of VARGPT-v1.1 (vargpt.md §10), its loss (§11) and
// the stage freeze presets (§12.1). The training stages (train/) call these; nothing here knows of
// optimisers or data files.
//
//   input_ids (B, T): ChatML with one <image_gen> span per generation row: <|image_gen_start|>,
//                     P = schedule.padded_tokens(128) x <|image_gen_pad|>, <|image_gen_end|>
//   per generation row g (G rows, in batch order):
//     cond_BD = text_proj_for_sos(text_norm(sos))  (cfg_uncond[0:1] where condition dropout hit, Q13)
//     x = [cond_BD + pos_start ; word_embed(teacher inputs)]     (L, C), zero rows up to P
//     embeddings at the P pad slots := image_gen_projector(x)     (P, Cl); ViT rows fill <|image_pad|>
//   hidden = model(embeddings), sequential positions on all three M-RoPE axes (Q10), causal (Q11)
//   text logits = lm_head(hidden)
//   per generation row: X = image_gen_projector_out(hidden at the pad slots) (P, C), + lvl_embed
//     memory = image_gen_projector_out(hidden before <|image_gen_start|>)    (varlen)
//     vargpt_gen blocks (block-causal over the scales) -> head -> gen logits  (L, 2d)
//   loss = CE(text logits[:, :-1], labels[:, 1:]) + 3.0 * mean bit CE
//     labels = input_ids with the pad slots at -100: prompt, padding and vision tokens count (Q8)
#pragma once
#include <string>
#include <vector>

#include "infinity/scale_schedule.h"
#include "vargpt/vargpt.h"

namespace vt::vargpt {

struct TrainingBatch {
  Tensor input_ids;       // (B, T) int64, right-padded
  Tensor attention_mask;  // (B, T), 1 = token; undefined = no padding
  Tensor labels;          // (B, T) int64 dataset labels (-100 = no loss): rows without a span, and
                          // every row with mask_prompt_loss
  Tensor pixel_values;    // (Σ t h w, 1176) understanding images (ViT), or undefined
  std::vector<qwen2_vl::GridTHW> image_grid_thw;
  // Generation targets of the G rows holding an <image_gen> span, in batch order:
  Tensor gen_inputs;      // (G, L - 1, d) f32 teacher inputs of scales 1..K-1 (bitwise self-correction)
  Tensor gen_labels;      // (G, L, d) ground-truth bits (0/1, any integer or bool dtype)
  std::vector<bool> drop_condition;  // (G) or empty: rows whose sos is replaced by cfg_uncond[0:1]
  infinity::ScaleSchedule schedule;  // the generation resolution's schedule
};

struct TrainingOptions {
  double image_loss_weight = 3.0;  // lambda_loss
  bool mask_prompt_loss = false;   // Q8 fix: text CE on the dataset labels only
  bool reweight_by_scale = false;  // Q9 fix: Infinity's per-scale token weights
  bool mrope_consistent = false;   // Q10 fix: 3-D M-RoPE positions (get_rope_index) in training too
  bool cfg_drop_ca = false;        // Q13 fix: dropped rows also see cfg_uncond[:L] as memory
  bool llm_block_causal = false;   // Q11 fix: in the LLM, the tokens of a scale see each other
  bool text_logits = false;        // return the full (B, T, V) text logits (tests; big at full size)
  bool text_loss = true;           // false: skip lm_head and the text CE (DPO scores image bits only;
                                   // at full size that saves (T, 152064) logits per row)
};

struct TrainingOutput {
  Tensor loss;              // 0-d: text_loss + weight * image_loss
  Tensor text_loss;         // 0-d: mean CE over the counted positions
  Tensor image_loss;        // 0-d: mean bit CE (undefined without generation rows)
  Tensor text_logits;       // (B, T, V) when asked for
  Tensor gen_logits;        // (G, L, 2d)
  Tensor bit_accuracy;      // 0-d, no grad
  std::vector<int64_t> gen_rows;  // the batch row of each generation row
};

TrainingOutput training_forward(const Vargpt& model, const TrainingBatch& batch, const TrainingOptions& opt = {});

// The trainable set of upstream's vargpt_train_stage (vargpt.md §12.1), applied by freeze/unfreeze:
//   1 projectors + sos_embedding; 2 model + lm_head; 3 (and 0) vargpt_gen + projectors + sos_embedding;
//   4 everything but visual and vae_local; 5 everything but vae_local.
// Returns the trainable module prefixes. vae_local is frozen in every stage.
std::vector<std::string> apply_freeze_preset(Vargpt& model, int stage);
// The same presets by name: "stage1", "stage2", "stage3", "stage4", "stage5" (error listing them).
int freeze_preset_stage(const std::string& name);

}  // namespace vt::vargpt
