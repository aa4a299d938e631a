// train/eval.h: a VARGPT-v1.1 checkpoint on a ShapeWorld split, judged by the project's evaluator
// (docs/shapeworld.md), in one process with the model loaded once:
//
//   gen:        generation.json human turn --chat template--> decode_text (own reply, at most
//               gen_text_tokens, forced hand-off) --generate_image (seed S + i)--> OUT/gen/<id>.png
//               --judge_generation--> GenEval table (overall, categories, held-out accuracy)
//   understand: understanding.json human turn, its image where the <image> marker is --decode_text
//               (greedy, at most answer_tokens, no image)--> {id: answer} (OUT/understand/answers.jsonl)
//               --shapes::score_understanding--> accuracy by task, POPE by negative type
//   edit:       editing.json source image + instruction --decode_text (forced hand-off)--> generate_image
//               (seed S + i) --> OUT/edit/<id>.png --judge_edits--> accuracy overall and by op
//   recon:      generation.json record's own image --CenterCrop to the generated size--> vae_local
//               encode_bits (the generation schedule) --> decode_bits --> OUT/recon/<id>.png
//               --judge_generation--> GenEval table: the ceiling of any generator on this tokenizer
//               (exact bits at every scale), so a low generation score can be told apart from a
//               tokenizer that cannot draw the objects at all
//   loss:       generation.json and understanding.json records through the training sequence builder
//               --training_forward, teacher-forced, no grad, no training noise--> the held-out mean bit
//               cross-entropy and bit accuracy of the images given their prompts, and the mean text
//               cross-entropy of the answers (eval_loss.cpp); nothing is sampled
//
// Records i = 0..limit-1 of each file run in batches of `batch` rows; a row's image depends on its
// record and seed, not on its batch (decode_text left-pads, generate_image seeds each row). The model
// steps and the judge steps are separate functions, so a judge can score any images directory or
// answers map: the tests feed it the dataset's own renders and reference answers (overall 1.0).
//
// Bad input: a missing data directory or a split without a task's records file stops before any
// model work (check_eval_inputs names the file and the splits the dataset has). A record that cannot
// be prepared (no human turn, an unreadable source image) is skipped with an error naming it, and the
// judge counts it as a failure, as it does every missing image or answer.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qwen2_vl/image_processor.h"
#include "shapeworld/evaluate.h"
#include "shapeworld/render.h"
#include "tokenizer/bpe.h"
#include "vargpt/generate.h"

namespace vt::train {

struct EvalConfig {
  std::string data_dir;             // a directory written by `vargpt shapes make`
  std::string split = "test";
  bool gen = true, understand = true, edit = true;  // the tasks to run
  bool recon = false;                               // the tokenizer round trip (no LLM, no sampling)
  bool loss = false;                                // teacher-forced held-out losses (no sampling)
  int64_t limit = 0;                // the first `limit` records of each task; 0: all
  int64_t batch = 8;                // rows per decode_text / generate_image call
  uint64_t seed = 0;                // record i of gen and edit draws its bits with seed S + i
  std::string out_dir;              // OUT/gen/<id>.png, OUT/edit/<id>.png, OUT/understand/answers.jsonl
  int64_t gen_text_tokens = 24;     // the longest own reply before the forced <|image_gen_start|>
  // The longest understanding answer. Short answers stop at <|im_end|> anyway; a `describe`
  // reference of four objects is ~25 Qwen2 tokens, so 16 would cut the longest ones short.
  int64_t answer_tokens = 32;
  // height/width (0: the model's default), cfg, tau, top_p, top_k and the quirk fixes; the seeds
  // are set per row from `seed`.
  vargpt::ImageOptions image;
  bool quiet = false;               // no progress on stderr
};

// The records file of a task ("generation", "understanding", "editing") of a split.
std::string task_records_path(const EvalConfig& cfg, const std::string& file);
// Before any model work: the data directory exists, the split has the records file of each task
// asked for (an error lists the splits the dataset has), and an output directory is given.
void check_eval_inputs(const EvalConfig& cfg);
// The first `limit` records of a task file (all when limit is 0); throws vt::Error naming the file.
std::vector<nlohmann::json> load_task_records(const EvalConfig& cfg, const std::string& file);

// ---- model steps -----------------------------------------------------------------------------------
// One user turn rendered with the chat template (default system prompt, as training and `vargpt
// generate` render it). With an image, the text is split at its <image> marker and the image goes
// there; a text without the marker gets the image first.
vargpt::Prompt render_turn(const vargpt::Vargpt& model, const tok::Tokenizer& tokenizer, const std::string& text,
                           const qwen2_vl::ProcessedImages* image = nullptr,
                           const qwen2_vl::ImageProcessorConfig& vit = {});

// One batch through the model as `vargpt generate` runs it: decode_text (greedy own reply of at most
// cfg.gen_text_tokens; a stop token or the last one becomes <|image_gen_start|>), then generate_image
// with row b's bits from seeds[b], at cfg.image's size, sampler and quirk fixes.
struct GeneratedImages {
  std::vector<shapes::Image> images;   // per row: (H, W) RGB
  std::vector<std::string> replies;    // per row: the decoded reply
  std::vector<std::string> warnings;   // generate_image's
};
GeneratedImages generate_images(const vargpt::Vargpt& model, const tok::Tokenizer& tokenizer,
                                const std::vector<vargpt::Prompt>& prompts, const std::vector<uint64_t>& seeds,
                                const EvalConfig& cfg);

// Generation (editing.json records when `edit`, else generation.json records): writes
// out_dir/<record id>.png for records[i] with seed cfg.seed + i, at cfg.image's size. Returns one
// line per record that was skipped ("<id>: <why>"); `replies` (optional) gets each record's decoded
// reply, by id.
std::vector<std::string> generate_record_images(const vargpt::Vargpt& model, const tok::Tokenizer& tokenizer,
                                                const qwen2_vl::ImageProcessorConfig& vit,
                                                const std::vector<nlohmann::json>& records, bool edit,
                                                const std::string& out_dir, const EvalConfig& cfg,
                                                std::map<std::string, std::string>* replies = nullptr);
// The tokenizer round trip of generation records: out_dir/<record id>.png is the record's image,
// centre-cropped to cfg.image's size (the model's default when 0) as the training target transform
// does for evaluation, encoded to bits on the generation schedule and decoded by vae_local (pixels
// rounded as cfg.image.round_pixels says). Returns one line per skipped record ("<id>: <why>").
std::vector<std::string> reconstruct_record_images(const vargpt::Vargpt& model, const std::vector<nlohmann::json>& records,
                                                   const std::string& out_dir, const EvalConfig& cfg);
// Understanding: greedy answers by record id. A row that asks for an image gets none; its text
// before <|image_gen_start|> is the answer. Skipped records go to `errors`.
std::map<std::string, std::string> answer_questions(const vargpt::Vargpt& model, const tok::Tokenizer& tokenizer,
                                                    const qwen2_vl::ImageProcessorConfig& vit,
                                                    const std::vector<nlohmann::json>& records, const EvalConfig& cfg,
                                                    std::vector<std::string>& errors);

// ---- judge steps (no model) --------------------------------------------------------------------------
// GenEval-style scores of images_dir/<record id>.png for generation.json records; the detector takes
// the dataset's object scale from data_dir/manifest.json.
shapes::GenReport judge_generation(const std::vector<nlohmann::json>& records, const std::string& images_dir,
                                   const std::string& data_dir, const std::string& split);
// Edit scores of images_dir/<record id>.png for editing.json records; coordinates scale from the
// dataset's size (data_dir/manifest.json) to each image's.
shapes::EditReport judge_edits(const std::vector<nlohmann::json>& records, const std::string& images_dir,
                               const std::string& data_dir);

// ---- teacher-forced held-out losses (eval_loss.cpp) ----------------------------------------------------
struct HeldOutLoss {
  double image_loss = 0;     // mean bit cross-entropy (nats) over the generation records' bits
  double bit_accuracy = 0;   // argmax bit equals the target's
  int64_t gen_records = 0;
  double text_loss = 0;      // mean cross-entropy (nats) per answer token of the understanding records
  int64_t text_tokens = 0, text_records = 0;
  int64_t skipped = 0;       // records the sequence builder could not use (counted, not scored)
  nlohmann::json to_json() const;
};
// The first `limit` records of each file, in file order, in batches of cfg.batch, at cfg.image's
// generation size (the model's default when 0): no bitwise self-correction, no condition dropout,
// CenterCrop targets; text loss on the dataset labels (the answers) only. The model runs in its
// current mode: `vargpt eval` puts it in eval mode (no drop path).
HeldOutLoss held_out_loss(const vargpt::Vargpt& model, const tok::Tokenizer& tokenizer,
                          const qwen2_vl::ImageProcessorConfig& vit, const EvalConfig& cfg);

// ---- the whole evaluation ------------------------------------------------------------------------------
struct EvalResult {
  std::optional<shapes::GenReport> gen;
  std::optional<shapes::UnderstandingReport> understand;
  std::optional<shapes::EditReport> edit;
  std::optional<shapes::GenReport> recon;  // GenEval of the tokenizer round trip
  std::optional<HeldOutLoss> loss;
  nlohmann::json seconds = nlohmann::json::object();  // per task: model, judge, records, per_record; total
  std::string split;
  std::string table() const;  // the judges' tables and a timing line
  // {"split", "gen", "understand", "edit", "recon", "loss": reports, "seconds"}; tasks not run are absent.
  nlohmann::json to_json() const;
};

EvalResult run_evaluation(const vargpt::Vargpt& model, const tok::Tokenizer& tokenizer,
                          const qwen2_vl::ImageProcessorConfig& vit, const EvalConfig& cfg);
// run_evaluation(...).to_json(): the hook of the demo script and the training loop.
nlohmann::json evaluate_model(const vargpt::Vargpt& model, const tok::Tokenizer& tokenizer,
                              const qwen2_vl::ImageProcessorConfig& vit, const EvalConfig& cfg);

}  // namespace vt::train
