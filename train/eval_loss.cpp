// eval_loss.cpp: the `loss` task of train/eval.h: teacher-forced held-out losses of a checkpoint.
//
//   generation.json (first `limit` records, file order) --Loader (the training sequence builder)-->
//     batches --make_training_batch (no bitwise self-correction, no condition dropout)-->
//     training_forward (no grad) --> image_loss, bit_accuracy, weighted by generation rows
//   understanding.json (the same way) --> training_forward with mask_prompt_loss (only the answers
//     count) --> text_loss, weighted by the answer tokens of each batch
//
// Nothing is sampled, so these move long before the judge's scores do (the quick main job checks
// them against the untrained model's).
#include <filesystem>

#include "data/loader.h"
#include "eval.h"
#include "recipe.h"
#include "trainer.h"
#include "vt/error.h"
#include "vt/random.h"

namespace vt::train {

namespace fs = std::filesystem;

namespace {

// A one-pass, file-order loader over the first `limit` records of one task file.
std::unique_ptr<Loader> task_loader(const tok::Tokenizer& tokenizer, const qwen2_vl::ImageProcessorConfig& vit,
                                    const EvalConfig& cfg, const char* file, TaskKind kind, int64_t records,
                                    int64_t gen_size, int64_t gen_pads) {
  DataSource src;
  src.path = task_records_path(cfg, file);
  src.kind = kind;
  src.root = cfg.data_dir;  // image paths in the records are relative to the dataset
  src.count = cfg.limit > 0 ? std::min(cfg.limit, records) : -1;
  LoaderOptions lo;
  lo.batch_size = cfg.batch;
  lo.shuffle = false;
  lo.epochs = 1;
  lo.num_workers = 0;
  lo.sequence.vit = vit;
  lo.sequence.gen.size = gen_size;
  lo.sequence.gen.random_crop = false;  // CenterCrop, upstream's validation transform
  lo.sequence.gen_pads = gen_pads;
  lo.warn = [](const std::string&) {};  // skipped records are counted, not printed
  return std::make_unique<Loader>(tokenizer, std::vector<DataSource>{src}, lo);
}

}  // namespace

HeldOutLoss held_out_loss(const vargpt::Vargpt& model, const tok::Tokenizer& tokenizer,
                          const qwen2_vl::ImageProcessorConfig& vit, const EvalConfig& cfg) {
  const infinity::ScaleSchedule schedule = model.config().schedule_for(cfg.image.height, cfg.image.width);
  const int64_t patch = model.config().vae.patch_size;
  const int64_t H = schedule.latent().h * patch, W = schedule.latent().w * patch;
  VT_CHECK(H == W, "loss: generation targets are square; the size is ", W, "x", H);
  Recipe recipe;  // only what make_training_batch reads: the size and no training noise
  recipe.gen_size = H;
  recipe.bsc_layers = 0;
  recipe.cond_drop = 0.0;
  const int64_t pads = schedule.padded_tokens(infinity::kSequencePadMultiple);
  Generator gen(cfg.seed);  // draws nothing without noise; make_training_batch takes one
  NoGradGuard no_grad;
  HeldOutLoss out;

  const int64_t n_gen = int64_t(load_task_records(cfg, "generation").size());
  auto gl = task_loader(tokenizer, vit, cfg, "generation", TaskKind::Generation, n_gen, recipe.gen_size, pads);
  double image_sum = 0, acc_sum = 0;
  while (std::optional<Batch> b = gl->next()) {
    const vargpt::TrainingBatch tb = make_training_batch(model, *b, recipe, gen);
    if (!tb.gen_labels.defined()) continue;
    vargpt::TrainingOptions o;
    o.text_loss = false;
    const vargpt::TrainingOutput r = training_forward(model, tb, o);
    const int64_t rows = tb.gen_labels.size(0);
    image_sum += r.image_loss.item() * double(rows);
    acc_sum += r.bit_accuracy.item() * double(rows);
    out.gen_records += rows;
  }
  out.skipped += gl->stats().bad_records + gl->stats().bad_examples + gl->stats().too_long;
  if (out.gen_records > 0) {
    out.image_loss = image_sum / double(out.gen_records);
    out.bit_accuracy = acc_sum / double(out.gen_records);
  }

  const int64_t n_und = int64_t(load_task_records(cfg, "understanding").size());
  auto ul = task_loader(tokenizer, vit, cfg, "understanding", TaskKind::Understanding, n_und, recipe.gen_size, pads);
  double text_sum = 0;
  while (std::optional<Batch> b = ul->next()) {
    const vargpt::TrainingBatch tb = make_training_batch(model, *b, recipe, gen);
    vargpt::TrainingOptions o;
    o.mask_prompt_loss = true;
    const vargpt::TrainingOutput r = training_forward(model, tb, o);
    // The tokens the mean ran over: labels[:, 1:] that are not -100.
    const int64_t tokens = int64_t(sum(ne(tb.labels.slice(1, 1, tb.labels.size(1)), -100.0).to(DType::I64)).item());
    text_sum += r.text_loss.item() * double(tokens);
    out.text_tokens += tokens;
    out.text_records += int64_t(b->ids.size());
  }
  out.skipped += ul->stats().bad_records + ul->stats().bad_examples + ul->stats().too_long;
  if (out.text_tokens > 0) out.text_loss = text_sum / double(out.text_tokens);
  return out;
}

nlohmann::json HeldOutLoss::to_json() const {
  return {{"image_loss", image_loss},     {"bit_accuracy", bit_accuracy}, {"gen_records", gen_records},
          {"text_loss", text_loss},       {"text_tokens", text_tokens},   {"text_records", text_records},
          {"skipped", skipped}};
}

}  // namespace vt::train
