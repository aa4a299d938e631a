// train/eval.cpp: the model steps (prompts in batches through decode_text and generate_image) and
// the judge steps of a ShapeWorld evaluation (eval.h).
#include "eval.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "data/image_ops.h"
#include "qwen2_vl/vision.h"
#include "shapeworld/render.h"
#include "shapeworld/tasks.h"
#include "tokenizer/chat_template.h"
#include "vt/error.h"

namespace vt::train {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string record_id(const json& r, size_t index) {
  if (r.is_object() && r.contains("id") && r["id"].is_string()) return r["id"].get<std::string>();
  return "record #" + std::to_string(index);
}

// The first human turn of a LLaVA-format record.
std::string human_text(const json& r) {
  VT_CHECK(r.is_object() && r.contains("conversations") && r["conversations"].is_array(), "record has no conversations");
  for (const json& turn : r["conversations"])
    if (turn.is_object() && turn.value("from", "") == "human" && turn.contains("value") && turn["value"].is_string())
      return turn["value"].get<std::string>();
  VT_FAIL("record has no human turn with a string value");
}

// The record's image path (relative to the data directory): "image", else images[0].
std::string record_image(const json& r) {
  if (r.contains("image") && r["image"].is_string()) return r["image"].get<std::string>();
  VT_CHECK(r.contains("images") && r["images"].is_array() && !r["images"].empty() && r["images"][0].is_string(),
           "record has no image path ('image' or images[0])");
  return r["images"][0].get<std::string>();
}

// A ViT input as the training sequence builder makes it (sequence.cpp: Q17's NEAREST cap to 512²,
// then the minimum side), then the Qwen2-VL processor with the checkpoint's configuration.
qwen2_vl::ProcessedImages vit_image(const std::string& path, const qwen2_vl::ImageProcessorConfig& vit) {
  const qwen2_vl::RgbImage im = regularize_min_side(cap_pixels_nearest(qwen2_vl::load_image(path), 512 * 512));
  return qwen2_vl::preprocess({im}, vit);
}

std::vector<int64_t> stop_tokens(const tok::Tokenizer& tokenizer) {
  std::vector<int64_t> out;
  for (const char* stop : {"<|im_end|>", "<|endoftext|>"})
    if (const int32_t id = tokenizer.find_token(stop); id >= 0) out.push_back(id);
  return out;
}

// A row of a batch: the record's index in its list, its id, and what `prepare` made of it (a
// rendered prompt, or for recon the target image).
template <class T>
struct Row {
  size_t index;
  std::string id;
  T item;
};
using PromptRow = Row<vargpt::Prompt>;

// Walks `records` in batches of up to `batch` rows whose items could be prepared; a record that
// cannot be prepared goes to `errors` and is skipped. `run(rows)` gets each batch.
template <class Prepare, class Run>
void for_each_batch(const std::vector<json>& records, int64_t batch, const char* task, bool quiet,
                    std::vector<std::string>& errors, Prepare prepare, Run run) {
  const auto start = Clock::now();
  size_t next = 0;
  while (next < records.size()) {
    std::vector<Row<decltype(prepare(records[0]))>> rows;
    for (; next < records.size() && int64_t(rows.size()) < batch; ++next) {
      const std::string id = record_id(records[next], next);
      try {
        rows.push_back({next, id, prepare(records[next])});
      } catch (const std::exception& e) {
        errors.push_back(id + ": not evaluated: " + e.what());
      }
    }
    if (!rows.empty()) run(rows);
    if (!quiet)
      std::fprintf(stderr, "eval %s: %zu/%zu records (%.1f s)\n", task, next, records.size(), seconds_since(start));
  }
}

// out_dir/<row id>.png from pixels (B, H, W, 3) uint8 RGB, row b of the batch for rows[b].
template <class T>
void write_row_pngs(const Tensor& pixels_bhwc, const std::vector<Row<T>>& rows, const std::string& out_dir) {
  const Tensor pixels = pixels_bhwc.contiguous();
  const int64_t H = pixels.size(1), W = pixels.size(2);
  for (size_t b = 0; b < rows.size(); ++b) {
    shapes::Image img{int(W), int(H)};
    const uint8_t* p = pixels.data<uint8_t>() + int64_t(b) * H * W * 3;
    std::copy(p, p + H * W * 3, img.rgb.begin());
    shapes::write_png((fs::path(out_dir) / (rows[b].id + ".png")).string(), img);
  }
}

void write_json_lines(const std::string& path, const std::map<std::string, std::string>& by_id, const char* key) {
  std::string text;
  for (const auto& [id, value] : by_id)  // a random model may emit bytes that are not UTF-8
    text += json{{"id", id}, {key, value}}.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  shapes::write_text_atomic(path, text);
}

// The image size against the model's schedules and level embeddings, before any model work.
void check_image_size(const vargpt::Vargpt& model, const vargpt::ImageOptions& image) {
  infinity::ScaleSchedule schedule;
  try {
    schedule = model.config().schedule_for(image.height, image.width);
  } catch (const vt::Error& e) {
    VT_FAIL("image size ", image.width, "x", image.height, ": ", e.what());
  }
  VT_CHECK(schedule.num_scales() <= model.config().gen.num_levels, "image size ", image.width, "x", image.height,
           " takes ", schedule.num_scales(), " scales; this checkpoint's generator has ", model.config().gen.num_levels,
           " level embeddings (try a smaller size)");
}

json task_seconds(double model, double judge, size_t records) {
  return {{"model", model}, {"judge", judge}, {"records", records},
          {"per_record", records ? (model + judge) / double(records) : 0.0}};
}

}  // namespace

// ---- inputs ---------------------------------------------------------------------------------------

std::string task_records_path(const EvalConfig& cfg, const std::string& file) {
  return (fs::path(cfg.data_dir) / cfg.split / (file + ".json")).string();
}

void check_eval_inputs(const EvalConfig& cfg) {
  VT_CHECK(cfg.gen || cfg.understand || cfg.edit || cfg.recon || cfg.loss,
           "eval: no task to run (gen, understand, edit, recon, loss)");
  VT_CHECK(cfg.limit >= 0 && cfg.batch >= 1 && cfg.gen_text_tokens >= 1 && cfg.answer_tokens >= 1,
           "eval: need limit >= 0, batch >= 1 and token budgets >= 1");
  VT_CHECK(!cfg.data_dir.empty(), "eval: no data directory given");
  VT_CHECK(fs::is_directory(cfg.data_dir), "data directory ", cfg.data_dir, ": no such directory");
  VT_CHECK(!cfg.out_dir.empty(), "eval: no output directory given");
  const std::pair<bool, const char*> tasks[] = {
      {cfg.gen || cfg.recon || cfg.loss, "generation"}, {cfg.understand || cfg.loss, "understanding"},
      {cfg.edit, "editing"}};
  for (const auto& [wanted, file] : tasks) {
    if (!wanted) continue;
    const std::string path = task_records_path(cfg, file);
    if (fs::is_regular_file(path)) continue;
    std::string splits;  // subdirectories that hold a records file
    for (const auto& e : fs::directory_iterator(cfg.data_dir))
      for (const char* f : {"generation.json", "understanding.json", "editing.json"})
        if (e.is_directory() && fs::is_regular_file(e.path() / f)) {
          splits += (splits.empty() ? "" : ", ") + e.path().filename().string();
          break;
        }
    VT_FAIL(path, ": no such file: split '", cfg.split, "' of ", cfg.data_dir, " has no ", file, " records (",
            splits.empty() ? std::string("no split of this directory has records: is it a ShapeWorld dataset?")
                           : "splits with records: " + splits,
            ")");
  }
}

std::vector<json> load_task_records(const EvalConfig& cfg, const std::string& file) {
  std::vector<json> records = shapes::load_records(task_records_path(cfg, file));
  if (cfg.limit > 0 && size_t(cfg.limit) < records.size()) records.resize(size_t(cfg.limit));
  return records;
}

// ---- model steps ------------------------------------------------------------------------------------

vargpt::Prompt render_turn(const vargpt::Vargpt& model, const tok::Tokenizer& tokenizer, const std::string& text,
                           const qwen2_vl::ProcessedImages* image, const qwen2_vl::ImageProcessorConfig& vit) {
  std::vector<tok::ChatPart> user;
  vargpt::Prompt p;
  if (image) {
    const std::string marker = "<image>";
    const size_t at = text.find(marker);
    VT_CHECK(at == std::string::npos || text.find(marker, at + 1) == std::string::npos,
             "the human turn holds more than one <image> marker for one image");
    const std::string before = at == std::string::npos ? "" : text.substr(0, at);
    const std::string after = at == std::string::npos ? text : text.substr(at + marker.size());
    p.pixel_values = image->pixel_values;
    p.image_grid_thw = qwen2_vl::grid_rows(image->image_grid_thw);
    const auto& g = p.image_grid_thw.at(0);
    if (!before.empty()) user.push_back(tok::ChatPart::of_text(before));
    user.push_back(tok::ChatPart::of_image(int(g[0] * g[1] * g[2] / (vit.merge_size * vit.merge_size))));
    if (!after.empty()) user.push_back(tok::ChatPart::of_text(after));
  } else {
    user.push_back(tok::ChatPart::of_text(text));
  }
  const std::vector<tok::ChatMessage> messages = {{"user", std::move(user)}};
  const int64_t vocab = model.config().llm.vocab_size;
  for (int32_t id : tokenizer.encode(tok::apply_chat_template(messages, /*add_generation_prompt=*/true))) {
    VT_CHECK(id < vocab, "token id ", id, " is outside the model's vocabulary (", vocab, ")");
    p.ids.push_back(id);
  }
  return p;
}

GeneratedImages generate_images(const vargpt::Vargpt& model, const tok::Tokenizer& tokenizer,
                                const std::vector<vargpt::Prompt>& prompts, const std::vector<uint64_t>& seeds,
                                const EvalConfig& cfg) {
  VT_CHECK(seeds.size() == prompts.size(), "generate_images: ", prompts.size(), " prompts and ", seeds.size(), " seeds");
  vargpt::TextOptions text;
  text.max_new_tokens = cfg.gen_text_tokens;
  text.stop_tokens = stop_tokens(tokenizer);
  text.force_image = true;  // a stop token or the last allowed token becomes <|image_gen_start|>
  const vargpt::TextResult reply = vargpt::decode_text(model, prompts, text);
  GeneratedImages out;
  std::vector<int64_t> all;
  for (size_t b = 0; b < prompts.size(); ++b) {
    VT_CHECK(reply.wants_image[b], "row ", b, ": the reply ended without <|image_gen_start|>");
    all.push_back(int64_t(b));
    out.replies.push_back(vargpt::decode_reply(tokenizer, reply.tokens[b], model.tokens().start));
  }
  vargpt::HandOff state = vargpt::select_rows(reply.state, all);
  vargpt::ImageOptions image = cfg.image;
  image.seeds = seeds;
  vargpt::ImageResult result = vargpt::generate_image(model, state, image);
  out.warnings = std::move(result.warnings);
  const Tensor pixels = result.pixels.contiguous();  // (B, H, W, 3) uint8 RGB
  const int64_t H = pixels.size(1), W = pixels.size(2);
  for (size_t b = 0; b < prompts.size(); ++b) {
    shapes::Image img{int(W), int(H)};
    const uint8_t* p = pixels.data<uint8_t>() + int64_t(b) * H * W * 3;
    std::copy(p, p + H * W * 3, img.rgb.begin());
    out.images.push_back(std::move(img));
  }
  return out;
}

std::vector<std::string> generate_record_images(const vargpt::Vargpt& model, const tok::Tokenizer& tokenizer,
                                                const qwen2_vl::ImageProcessorConfig& vit,
                                                const std::vector<json>& records, bool edit,
                                                const std::string& out_dir, const EvalConfig& cfg,
                                                std::map<std::string, std::string>* replies) {
  fs::create_directories(out_dir);
  // An image left by an earlier run must not be scored for a record this run skips.
  for (size_t i = 0; i < records.size(); ++i) fs::remove(fs::path(out_dir) / (record_id(records[i], i) + ".png"));
  std::vector<std::string> errors;
  auto prepare = [&](const json& rec) {
    const std::string human = human_text(rec);
    if (!edit) return render_turn(model, tokenizer, human, nullptr, vit);
    const qwen2_vl::ProcessedImages px = vit_image(cfg.data_dir + "/" + record_image(rec), vit);
    return render_turn(model, tokenizer, human, &px, vit);
  };
  auto run = [&](const std::vector<PromptRow>& rows) {
    std::vector<vargpt::Prompt> prompts;
    std::vector<uint64_t> seeds;
    for (const PromptRow& r : rows) prompts.push_back(r.item), seeds.push_back(cfg.seed + uint64_t(r.index));
    const GeneratedImages out = generate_images(model, tokenizer, prompts, seeds, cfg);
    if (!cfg.quiet)
      for (const std::string& w : out.warnings) std::fprintf(stderr, "warning: %s: %s\n", rows[0].id.c_str(), w.c_str());
    for (size_t b = 0; b < rows.size(); ++b) {
      if (replies) (*replies)[rows[b].id] = out.replies[b];
      shapes::write_png((fs::path(out_dir) / (rows[b].id + ".png")).string(), out.images[b]);
    }
  };
  for_each_batch(records, cfg.batch, edit ? "edit" : "gen", cfg.quiet, errors, prepare, run);
  return errors;
}

std::vector<std::string> reconstruct_record_images(const vargpt::Vargpt& model, const std::vector<json>& records,
                                                   const std::string& out_dir, const EvalConfig& cfg) {
  const infinity::ScaleSchedule schedule = model.config().schedule_for(cfg.image.height, cfg.image.width);
  const int64_t patch = model.config().vae.patch_size;
  const int64_t H = schedule.latent().h * patch, W = schedule.latent().w * patch;
  VT_CHECK(H == W, "recon: the tokenizer round trip crops square images; the size is ", W, "x", H);
  fs::create_directories(out_dir);
  for (size_t i = 0; i < records.size(); ++i) fs::remove(fs::path(out_dir) / (record_id(records[i], i) + ".png"));
  GenTargetOptions crop;  // the evaluation form of the generation target: CenterCrop, no flip
  crop.size = H;
  crop.random_crop = false;
  const bsq::BsqVae& vae = *model.vae_local;
  const Device device = model.device();
  std::vector<std::string> errors;
  // (3, H, W) in [-1, 1], as a training target of this size is made (sequence.cpp).
  auto prepare = [&](const json& rec) {
    const qwen2_vl::RgbImage im =
        regularize_min_side(cap_pixels_nearest(qwen2_vl::load_image(cfg.data_dir + "/" + record_image(rec)), 512 * 512));
    return gen_target_transform(im, crop, /*seed=*/0);
  };
  auto run = [&](const std::vector<Row<Tensor>>& rows) {
    std::vector<Tensor> images;
    for (const Row<Tensor>& r : rows) images.push_back(r.item);
    const Tensor x = stack(images, 0).to(device);                                   // (B, 3, H, W)
    const Tensor y = vae.decode_bits(vae.encode_bits(x, schedule.scales));          // (B, 3, H, W)
    write_row_pngs(vargpt::to_pixels(y, cfg.image.round_pixels), rows, out_dir);
  };
  for_each_batch(records, cfg.batch, "recon", cfg.quiet, errors, prepare, run);
  return errors;
}

std::map<std::string, std::string> answer_questions(const vargpt::Vargpt& model, const tok::Tokenizer& tokenizer,
                                                    const qwen2_vl::ImageProcessorConfig& vit,
                                                    const std::vector<json>& records, const EvalConfig& cfg,
                                                    std::vector<std::string>& errors) {
  vargpt::TextOptions text;
  text.max_new_tokens = cfg.answer_tokens;
  text.stop_tokens = stop_tokens(tokenizer);
  text.force_image = false;  // a row that asks for an image stops there; no image is made
  std::map<std::string, std::string> answers;
  auto prepare = [&](const json& rec) {
    const qwen2_vl::ProcessedImages px = vit_image(cfg.data_dir + "/" + record_image(rec), vit);
    return render_turn(model, tokenizer, human_text(rec), &px, vit);
  };
  auto run = [&](const std::vector<PromptRow>& rows) {
    std::vector<vargpt::Prompt> prompts;
    for (const PromptRow& r : rows) prompts.push_back(r.item);
    const vargpt::TextResult reply = vargpt::decode_text(model, prompts, text);
    for (size_t b = 0; b < rows.size(); ++b)
      answers[rows[b].id] = vargpt::decode_reply(tokenizer, reply.tokens[b], model.tokens().start);
  };
  for_each_batch(records, cfg.batch, "understand", cfg.quiet, errors, prepare, run);
  return answers;
}

// ---- judge steps ------------------------------------------------------------------------------------

shapes::GenReport judge_generation(const std::vector<json>& records, const std::string& images_dir,
                                   const std::string& data_dir, const std::string& split) {
  shapes::EvalOptions opt;
  opt.split = split;
  opt.detect = shapes::read_dataset_info(data_dir).detect();
  opt.images_dir = images_dir;
  return shapes::evaluate_generation_records(
      records, [&](const json&, const std::string& id) { return shapes::read_image(images_dir + "/" + id + ".png"); },
      opt);
}

// shapes::evaluate_edits over a list of records (it reads a whole editing.json; --limit needs the
// first N): the same judge_edit per record and the same totals.
shapes::EditReport judge_edits(const std::vector<json>& records, const std::string& images_dir,
                               const std::string& data_dir) {
  const shapes::DatasetInfo info = shapes::read_dataset_info(data_dir);
  const int ds = info.size;
  const shapes::DetectOptions detect = info.detect();
  struct Result {
    int op = -1;
    shapes::EditVerdict v;
    std::string error;
  };
  std::vector<Result> res(records.size());
#pragma omp parallel for schedule(dynamic, 8)
  for (long i = 0; i < long(records.size()); ++i) {
    const json& rec = records[size_t(i)];
    const std::string id = record_id(rec, size_t(i));
    Result& r = res[size_t(i)];
    try {
      if (rec.is_object() && rec.contains("edit") && rec["edit"].is_object() && rec["edit"].contains("op") &&
          rec["edit"]["op"].is_string())
        r.op = int(shapes::parse_edit_op(rec["edit"]["op"].get<std::string>(), id));
      const shapes::Image img = shapes::read_image(images_dir + "/" + id + ".png");
      r.v = shapes::judge_edit_image(rec, img, ds > 0 ? ds : img.width, detect);
    } catch (const std::exception& e) {
      r.v = shapes::EditVerdict{};
      const std::string msg = e.what();
      r.error = msg.rfind(id, 0) == 0 ? msg : id + ": " + msg;
    }
  }
  shapes::EditReport rep;
  for (const Result& r : res) {
    if (r.op >= 0) rep.by_op[size_t(r.op)].add(r.v.correct);
    rep.all.add(r.v.correct);
    rep.edit_ok.add(r.v.edit_ok);
    rep.kept += r.v.kept;
    rep.to_keep += r.v.to_keep;
    if (!r.error.empty()) rep.errors.push_back(r.error);
  }
  return rep;
}

// ---- the whole evaluation ------------------------------------------------------------------------------

EvalResult run_evaluation(const vargpt::Vargpt& model, const tok::Tokenizer& tokenizer,
                          const qwen2_vl::ImageProcessorConfig& vit, const EvalConfig& cfg) {
  check_eval_inputs(cfg);
  if (cfg.gen || cfg.edit || cfg.recon || cfg.loss) check_image_size(model, cfg.image);
  // Every records file parses before the first batch runs.
  std::vector<json> gen_records, questions, edit_records;
  if (cfg.gen) gen_records = load_task_records(cfg, "generation");
  if (cfg.understand) questions = load_task_records(cfg, "understanding");
  if (cfg.edit) edit_records = load_task_records(cfg, "editing");
  const std::vector<json> recon_records = cfg.recon ? (cfg.gen ? gen_records : load_task_records(cfg, "generation"))
                                                    : std::vector<json>{};
  const auto start = Clock::now();
  EvalResult out;
  out.split = cfg.split;
  auto prepend = [](std::vector<std::string>& to, const std::vector<std::string>& errors) {
    to.insert(to.begin(), errors.begin(), errors.end());
  };

  // gen and edit: the model writes <id>.png and its replies into OUT/<task>, then the judge scores them.
  auto image_task = [&](const char* task, const std::vector<json>& records, bool edit, auto judge, auto& report) {
    const std::string dir = cfg.out_dir + "/" + task;
    auto t = Clock::now();
    std::map<std::string, std::string> replies;
    const auto errors = generate_record_images(model, tokenizer, vit, records, edit, dir, cfg, &replies);
    write_json_lines(dir + "/replies.jsonl", replies, "reply");
    const double model_s = seconds_since(t);
    t = Clock::now();
    report = judge(dir);
    prepend(report->errors, errors);
    out.seconds[task] = task_seconds(model_s, seconds_since(t), records.size());
  };
  if (cfg.gen)
    image_task("gen", gen_records, false, [&](const std::string& d) { return judge_generation(gen_records, d, cfg.data_dir, cfg.split); },
               out.gen);
  if (cfg.understand) {
    const std::string dir = cfg.out_dir + "/understand";
    fs::create_directories(dir);
    auto t = Clock::now();
    std::vector<std::string> errors;
    const auto answers = answer_questions(model, tokenizer, vit, questions, cfg, errors);
    write_json_lines(dir + "/answers.jsonl", answers, "answer");  // `vargpt shapes eval understand` reads it
    const double model_s = seconds_since(t);
    t = Clock::now();
    out.understand = shapes::score_understanding(questions, answers);
    prepend(out.understand->errors, errors);
    out.seconds["understand"] = task_seconds(model_s, seconds_since(t), questions.size());
  }
  if (cfg.edit)
    image_task("edit", edit_records, true, [&](const std::string& d) { return judge_edits(edit_records, d, cfg.data_dir); },
               out.edit);
  if (cfg.recon) {
    const std::string dir = cfg.out_dir + "/recon";
    auto t = Clock::now();
    const auto errors = reconstruct_record_images(model, recon_records, dir, cfg);
    const double model_s = seconds_since(t);
    t = Clock::now();
    out.recon = judge_generation(recon_records, dir, cfg.data_dir, cfg.split);
    prepend(out.recon->errors, errors);
    out.seconds["recon"] = task_seconds(model_s, seconds_since(t), recon_records.size());
  }
  if (cfg.loss) {
    const auto t = Clock::now();
    out.loss = held_out_loss(model, tokenizer, vit, cfg);
    out.seconds["loss"] = task_seconds(seconds_since(t), 0.0, size_t(out.loss->gen_records + out.loss->text_records));
  }
  out.seconds["total"] = seconds_since(start);
  return out;
}

json evaluate_model(const vargpt::Vargpt& model, const tok::Tokenizer& tokenizer,
                    const qwen2_vl::ImageProcessorConfig& vit, const EvalConfig& cfg) {
  return run_evaluation(model, tokenizer, vit, cfg).to_json();
}

std::string EvalResult::table() const {
  std::ostringstream os;
  if (gen) os << gen->table() << "\n";
  if (understand) os << understand->table() << "\n";
  if (edit) os << edit->table() << "\n";
  if (recon) os << "Tokenizer round trip (vae_local encode + decode of the records' own images):\n" << recon->table() << "\n";
  char buf[256];
  if (loss) {
    std::snprintf(buf, sizeof buf,
                  "Held-out teacher-forced loss: image bits %.4f nats (bit accuracy %.4f, %lld records); "
                  "answers %.4f nats per token (%lld tokens, %lld records); %lld skipped\n\n",
                  loss->image_loss, loss->bit_accuracy, (long long)loss->gen_records, loss->text_loss,
                  (long long)loss->text_tokens, (long long)loss->text_records, (long long)loss->skipped);
    os << buf;
  }
  os << "seconds:";
  for (const char* task : {"gen", "understand", "edit", "recon", "loss"}) {
    if (!seconds.contains(task)) continue;
    const json& s = seconds[task];
    std::snprintf(buf, sizeof buf, " %s %.1f (%.2f per record)", task,
                  s["model"].get<double>() + s["judge"].get<double>(), s["per_record"].get<double>());
    os << buf;
  }
  std::snprintf(buf, sizeof buf, "; total %.1f\n", seconds.value("total", 0.0));
  os << buf;
  return os.str();
}

json EvalResult::to_json() const {
  json j = {{"split", split}};
  if (gen) j["gen"] = gen->to_json();
  if (understand) j["understand"] = understand->to_json();
  if (edit) j["edit"] = edit->to_json();
  if (recon) j["recon"] = recon->to_json();
  if (loss) j["loss"] = loss->to_json();
  j["seconds"] = seconds;
  return j;
}

}  // namespace vt::train
