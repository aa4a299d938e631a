// test_eval.cpp: `vargpt eval`'s engine (train/eval.h) on a small ShapeWorld dataset at 256 px.
// First the judge wiring with no model: the dataset's own renders (copied as <id>.png) and the
// records' reference answers must score 1.0, an empty images directory 0. Then the tiny random
// checkpoint (tests/fixtures/vargpt_tiny; near-chance scores) end to end: every gen and edit
// record gets a PNG of the asked size, each report counts the records, every question gets an
// answer, a record's image does not depend on its batch, and bad input names what is missing.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "data/image_ops.h"
#include "eval.h"
#include "shapeworld/dataset.h"
#include "shapeworld/render.h"

using namespace vt;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const std::string kTiny = std::string(VT_FIXTURES) + "/vargpt_tiny";
constexpr int kTestScenes = 6;  // one scene of each GenEval tag

// A ShapeWorld dataset at 256 px (the size the tests generate at), made once per process and
// removed at exit.
struct Dataset {
  fs::path dir = fs::temp_directory_path() / ("vt_eval_data_" + std::to_string(getpid()));
  Dataset() {
    fs::remove_all(dir);
    shapes::MakeOptions m;
    m.out_dir = dir.string();
    m.size = 256;
    m.train = 6;
    m.test = kTestScenes;
    m.seed = 5;
    shapes::make_dataset(m);
  }
  ~Dataset() { fs::remove_all(dir); }
};
const fs::path& dataset() {
  static const Dataset d;
  return d.dir;
}

fs::path scratch(const std::string& tag) {
  const fs::path d = fs::temp_directory_path() / ("vt_eval_" + tag + "_" + std::to_string(getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

train::EvalConfig base_config(const std::string& out) {
  train::EvalConfig c;
  c.data_dir = dataset().string();
  c.out_dir = out;
  c.quiet = true;
  return c;
}

struct Tiny {
  std::shared_ptr<vargpt::Vargpt> model;
  tok::Tokenizer tokenizer = tok::Tokenizer::from_file(kTiny + "/tokenizer.json");
  qwen2_vl::ImageProcessorConfig vit = qwen2_vl::ImageProcessorConfig::from_json_file(kTiny + "/preprocessor_config.json");
};
const Tiny& tiny() {
  static const Tiny t = [] {
    Tiny x;
    x.model = vargpt::Vargpt::from_pretrained(kTiny);
    return x;
  }();
  return t;
}

std::vector<std::string> ids_of(const std::vector<json>& records) {
  std::vector<std::string> out;
  for (const json& r : records) out.push_back(r["id"].get<std::string>());
  return out;
}

}  // namespace

TEST_CASE("eval: the judges score the dataset's own renders and reference answers 1.0, no images 0") {
  train::EvalConfig cfg = base_config(scratch("oracle").string());
  const std::vector<json> gen = train::load_task_records(cfg, "generation");
  const std::vector<json> edits = train::load_task_records(cfg, "editing");
  const std::vector<json> questions = train::load_task_records(cfg, "understanding");
  REQUIRE(gen.size() == size_t(kTestScenes));
  REQUIRE(edits.size() >= 4);
  REQUIRE(questions.size() >= size_t(4 * kTestScenes));

  // The ground truth through the same images-directory path the model's PNGs take.
  const fs::path gen_dir = fs::path(cfg.out_dir) / "gen", edit_dir = fs::path(cfg.out_dir) / "edit";
  fs::create_directories(gen_dir);
  fs::create_directories(edit_dir);
  for (const json& r : gen)
    fs::copy_file(dataset() / r["images"][0].get<std::string>(), gen_dir / (r["id"].get<std::string>() + ".png"));
  for (const json& r : edits)  // images = [source, target]
    fs::copy_file(dataset() / r["images"][1].get<std::string>(), edit_dir / (r["id"].get<std::string>() + ".png"));
  const shapes::GenReport g = train::judge_generation(gen, gen_dir.string(), cfg.data_dir, "test");
  CHECK(g.all.total == kTestScenes);
  CHECK(g.errors.empty());
  CHECK(g.overall() == doctest::Approx(1.0));
  const shapes::EditReport e = train::judge_edits(edits, edit_dir.string(), cfg.data_dir);
  CHECK(e.all.total == int(edits.size()));
  CHECK(e.errors.empty());
  CHECK(e.all.accuracy() == doctest::Approx(1.0));
  std::map<std::string, std::string> reference;
  for (const json& q : questions) reference[q["id"]] = q["conversations"][1]["value"];
  const shapes::UnderstandingReport u = shapes::score_understanding(questions, reference);
  CHECK(u.all.total == int(questions.size()));
  CHECK(u.errors.empty());
  CHECK(u.all.accuracy() == doctest::Approx(1.0));

  // The sources as "edits" fail (nothing changed), and a directory without images scores 0 with an
  // error per record: the 1.0 above is not vacuous.
  for (const json& r : edits)
    fs::copy_file(dataset() / r["images"][0].get<std::string>(), edit_dir / (r["id"].get<std::string>() + ".png"),
                  fs::copy_options::overwrite_existing);
  CHECK(train::judge_edits(edits, edit_dir.string(), cfg.data_dir).all.correct == 0);
  const fs::path empty = scratch("empty");
  const shapes::GenReport none = train::judge_generation(gen, empty.string(), cfg.data_dir, "test");
  CHECK(none.overall() == 0.0);
  CHECK(none.errors.size() == gen.size());
  fs::remove_all(cfg.out_dir);
  fs::remove_all(empty);
}

TEST_CASE("eval: the tiny checkpoint end to end: a PNG per gen and edit record, a report of each task") {
  const Tiny& t = tiny();
  const fs::path out = scratch("tiny");
  train::EvalConfig cfg = base_config(out.string());
  cfg.limit = 4;
  cfg.batch = 3;  // batches of 3 + 1: left padding and a second batch
  cfg.seed = 7;
  cfg.gen_text_tokens = 6;
  cfg.answer_tokens = 6;
  cfg.image.height = cfg.image.width = 256;  // the tiny model's default is Infinity's 512² template
  const json j = train::evaluate_model(*t.model, t.tokenizer, t.vit, cfg);

  for (const char* task : {"gen", "edit"}) {
    const std::vector<json> records = train::load_task_records(cfg, task == std::string("gen") ? "generation" : "editing");
    REQUIRE(records.size() == 4);
    for (const std::string& id : ids_of(records)) {
      const fs::path png = out / task / (id + ".png");
      INFO(png.string());
      REQUIRE(fs::exists(png));
      const shapes::Image im = shapes::read_image(png.string());
      CHECK(im.width == 256);
      CHECK(im.height == 256);
    }
    CHECK(fs::exists(out / task / "replies.jsonl"));
  }
  CHECK(j["split"] == "test");
  CHECK(j["gen"]["images_scored"]["total"] == 4);
  CHECK(j["gen"]["errors"].empty());
  CHECK(j["gen"]["images"].size() == 4);
  CHECK(j["gen"].contains("overall"));
  CHECK(j["gen"].contains("categories"));
  CHECK(j["edit"]["edits"]["total"] == 4);
  CHECK(j["edit"]["errors"].empty());
  // One answer per question: a missing one would be an error line of the scorer.
  CHECK(j["understand"]["total"] == 4);
  CHECK(j["understand"]["errors"].empty());
  std::set<std::string> answered;
  std::ifstream answers(out / "understand" / "answers.jsonl");
  for (std::string line; std::getline(answers, line);) answered.insert(json::parse(line)["id"].get<std::string>());
  const std::vector<std::string> qids = ids_of(train::load_task_records(cfg, "understanding"));
  CHECK(answered == std::set<std::string>(qids.begin(), qids.end()));
  for (const char* task : {"gen", "understand", "edit"}) {
    CHECK(j["seconds"][task]["records"] == 4);
    CHECK(j["seconds"][task]["per_record"].get<double>() > 0);
  }

  // The same records in one batch of 4 give the same bytes as batches of 3 + 1 (record 3 moved
  // from row 0 to row 3: its seed is 7 + its record index, not its row), and another seed another image.
  const std::vector<json> gen = train::load_task_records(cfg, "generation");
  const fs::path alone = scratch("alone");
  auto png = [](const fs::path& dir, const json& r) { return shapes::read_text((dir / (r["id"].get<std::string>() + ".png")).string()); };
  train::EvalConfig other = cfg;
  other.batch = 4;
  CHECK(train::generate_record_images(*t.model, t.tokenizer, t.vit, gen, false, alone.string(), other).empty());
  for (const json& r : gen) {
    INFO(r["id"].get<std::string>());
    CHECK(png(alone, r) == png(out / "gen", r));
  }
  other.seed = 99;
  CHECK(train::generate_record_images(*t.model, t.tokenizer, t.vit, {gen[0]}, false, alone.string(), other).empty());
  CHECK(png(alone, gen[0]) != png(out / "gen", gen[0]));
  fs::remove_all(alone);
  fs::remove_all(out);
}

TEST_CASE("eval: recon writes each generation record's own image through vae_local, judged as gen") {
  const Tiny& t = tiny();
  const fs::path out = scratch("recon");
  train::EvalConfig cfg = base_config(out.string());
  cfg.gen = cfg.understand = cfg.edit = false;
  cfg.recon = true;
  cfg.limit = 3;
  cfg.batch = 2;  // batches of 2 + 1
  cfg.image.height = cfg.image.width = 256;
  const json j = train::evaluate_model(*t.model, t.tokenizer, t.vit, cfg);
  CHECK_FALSE(j.contains("gen"));
  REQUIRE(j.contains("recon"));
  CHECK(j["recon"]["images_scored"]["total"] == 3);
  CHECK(j["recon"]["errors"].empty());
  CHECK(j["seconds"]["recon"]["records"] == 3);

  // Each PNG is the record's 256² render encoded on the 256² schedule and decoded, computed here
  // directly through the VAE (the render is already the generated size: no crop).
  const std::vector<json> records = train::load_task_records(cfg, "generation");
  const auto schedule = t.model->config().schedule_for(256, 256);
  for (const json& r : records) {
    const std::string id = r["id"].get<std::string>();
    INFO(id);
    const shapes::Image src = shapes::read_image((dataset() / r["images"][0].get<std::string>()).string());
    REQUIRE(src.width == 256);
    const qwen2_vl::RgbImage rgb = qwen2_vl::RgbImage::from_memory(src.rgb.data(), src.height, src.width);
    const Tensor x = train::to_tensor_pm1(rgb).unsqueeze(0);
    const Tensor y = t.model->vae_local->decode_bits(t.model->vae_local->encode_bits(x, schedule.scales));
    const Tensor want = vargpt::to_pixels(y, false).contiguous();
    const shapes::Image got = shapes::read_image((out / "recon" / (id + ".png")).string());
    REQUIRE(got.width == 256);
    REQUIRE(got.height == 256);
    CHECK(std::equal(got.rgb.begin(), got.rgb.end(), want.data<uint8_t>()));
  }
  // The scores are the generation judge's on that directory.
  const shapes::GenReport again = train::judge_generation(records, (out / "recon").string(), dataset().string(), "test");
  CHECK(again.to_json()["overall"] == j["recon"]["overall"]);
  CHECK(again.to_json()["images"] == j["recon"]["images"]);
  fs::remove_all(out);
}

TEST_CASE("eval: the held-out loss is a per-record mean: batching and padding do not change it") {
  const Tiny& t = tiny();
  const fs::path out = scratch("loss");
  train::EvalConfig cfg = base_config(out.string());
  cfg.gen = cfg.understand = cfg.edit = false;
  cfg.loss = true;
  cfg.image.height = cfg.image.width = 256;
  cfg.limit = 3;
  cfg.batch = 3;
  const train::HeldOutLoss all = train::held_out_loss(*t.model, t.tokenizer, t.vit, cfg);
  CHECK(all.gen_records == 3);
  CHECK(all.text_records == 3);
  CHECK(all.skipped == 0);
  CHECK(all.text_tokens > 3);
  CHECK(all.image_loss > 0.3);  // a random model: near ln 2 per bit
  CHECK(all.image_loss < 1.5);
  CHECK(all.bit_accuracy > 0.2);
  CHECK(all.bit_accuracy < 0.8);
  // One record per batch (no padding), then 2 + 1: the same means. The records are the first three
  // in file order: two then one more gives record 3's own loss by difference.
  cfg.batch = 1;
  const train::HeldOutLoss one = train::held_out_loss(*t.model, t.tokenizer, t.vit, cfg);
  cfg.batch = 2;
  const train::HeldOutLoss two = train::held_out_loss(*t.model, t.tokenizer, t.vit, cfg);
  for (const train::HeldOutLoss* r : {&one, &two}) {
    CHECK(r->image_loss == doctest::Approx(all.image_loss).epsilon(1e-5));
    CHECK(r->bit_accuracy == doctest::Approx(all.bit_accuracy).epsilon(1e-5));
    CHECK(r->text_loss == doctest::Approx(all.text_loss).epsilon(1e-5));
    CHECK(r->text_tokens == all.text_tokens);
  }
  cfg.limit = 2;
  const train::HeldOutLoss first2 = train::held_out_loss(*t.model, t.tokenizer, t.vit, cfg);
  cfg.limit = 3;
  const double third = 3 * all.image_loss - 2 * first2.image_loss;  // record 3's own bit loss
  CHECK(third > 0.3);
  CHECK(third < 1.5);
  CHECK(first2.image_loss != doctest::Approx(all.image_loss).epsilon(1e-7));  // a different set of records
  // In the report: to_json and the table carry it.
  const json j = train::evaluate_model(*t.model, t.tokenizer, t.vit, cfg);
  CHECK(j["loss"]["image_loss"].get<double>() == doctest::Approx(all.image_loss).epsilon(1e-5));
  CHECK(j["loss"]["gen_records"] == 3);
  CHECK(!j.contains("gen"));
  fs::remove_all(out);
}

TEST_CASE("eval: bad input names the missing directory or records file before any model work") {
  train::EvalConfig cfg = base_config(scratch("bad").string());
  cfg.data_dir = "/nonexistent/shapes";
  CHECK_THROWS_WITH(train::check_eval_inputs(cfg), doctest::Contains("/nonexistent/shapes: no such directory"));
  cfg = base_config(cfg.out_dir);
  cfg.split = "val";
  CHECK_THROWS_WITH(train::check_eval_inputs(cfg), doctest::Contains("val/generation.json: no such file"));
  CHECK_THROWS_WITH(train::check_eval_inputs(cfg), doctest::Contains("splits with records: "));
  // Only the asked-for tasks need their files.
  fs::create_directories(dataset() / "val");
  fs::copy_file(dataset() / "test" / "understanding.json", dataset() / "val" / "understanding.json",
                fs::copy_options::overwrite_existing);
  cfg.gen = cfg.edit = false;
  CHECK_NOTHROW(train::check_eval_inputs(cfg));
  cfg.edit = true;
  CHECK_THROWS_WITH(train::check_eval_inputs(cfg), doctest::Contains("val/editing.json"));
  // A record whose image is missing is skipped with an error naming it and counts as a failure.
  fs::remove_all(dataset() / "val");
  cfg = base_config(cfg.out_dir);
  cfg.gen = cfg.understand = false;
  cfg.limit = 1;
  cfg.image.height = cfg.image.width = 256;
  fs::create_directories(dataset() / "broken");
  json rec = train::load_task_records(base_config(cfg.out_dir), "editing")[0];
  rec["images"][0] = "broken/missing.png";
  std::ofstream(dataset() / "broken" / "editing.json") << json::array({rec}).dump() << "\n";
  cfg.split = "broken";
  const Tiny& t = tiny();
  const json j = train::evaluate_model(*t.model, t.tokenizer, t.vit, cfg);
  CHECK(j["edit"]["edits"]["total"] == 1);
  CHECK(j["edit"]["edits"]["correct"] == 0);
  REQUIRE(!j["edit"]["errors"].empty());
  CHECK(j["edit"]["errors"][0].get<std::string>().find(rec["id"].get<std::string>() + ": not evaluated") == 0);
  CHECK(j["edit"]["errors"][0].get<std::string>().find("missing.png") != std::string::npos);
  fs::remove_all(dataset() / "broken");
  fs::remove_all(cfg.out_dir);
}
