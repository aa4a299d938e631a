// The training loop (train/trainer.h), recipes (train/recipe.h) and checkpoints (train/checkpoint.h)
// on the tiny VARGPT checkpoint: the paper's Table 1 in the shipped recipes, unknown keys named; a
// stage-3 run lowers the loss of its batch; a run stopped and resumed equals an uninterrupted one
// bit for bit (weights, optimizer state, log); frozen tensors get no optimizer state; a non-finite
// loss stops the run naming the step and keeps the last checkpoint; a save killed midway leaves the
// previous checkpoint loadable; quirks.sos_single_row (Q2 fix) trains the faithful weights with C
// elements of sos state instead of a table, saves the table whole, and refuses a flipped resume;
// sample grids (recipe sample_every) leave training bit for bit as it was, survive a resume
// unchanged, and hold what the generate API makes from the step's checkpoint.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "checkpoint.h"
#include "recipe.h"
#include "report.h"
#include "samples.h"
#include "shapeworld/render.h"
#include "tokenizer/chat_template.h"
#include "trainer.h"
#include "vt/io/safetensors.h"
#include "vt/io/tensor_io.h"
#include "vt/ops.h"

using namespace vt;
namespace fs = std::filesystem;

namespace {

const std::string kTiny = std::string(VT_FIXTURES) + "/vargpt_tiny";
const std::string kRecipes = std::string(VT_FIXTURES) + "/../../train/recipes/vargpt_v1_1";

// The reference's training batch (a text-to-image row and an editing row) as the data pipeline
// would hand it over, repeated forever; its position is the number of batches handed out.
train::BatchSource fixture_source(int64_t* counter) {
  static const auto r = io::load_safetensors(kTiny + "/reference.safetensors");
  train::Batch b;
  b.input_ids = r.at("train.input_ids");
  b.attention_mask = r.at("train.attention_mask");
  b.labels = r.at("train.input_ids").clone();
  b.pixel_values = r.at("train.pixel_values");
  b.image_grid_thw = qwen2_vl::grid_rows(r.at("train.image_grid_thw"));
  b.gen_images = (r.at("train.target_image").to(DType::F32) / 255.0 * 2.0 - 1.0).permute({0, 3, 1, 2}).contiguous();
  b.gen_rows = {0, 1};
  b.tokens = static_cast<int64_t>(sum(b.attention_mask).item());
  train::BatchSource s;
  s.next = [b, counter] {
    ++*counter;
    return b;
  };
  s.position = [counter] { return nlohmann::json{{"batches", *counter}}; };
  s.restore = [counter](const nlohmann::json& p) { *counter = p.at("batches").get<int64_t>(); };
  return s;
}

train::Recipe tiny_recipe(int64_t steps) {
  train::Recipe r;
  r.name = "tiny_stage3";
  r.freeze = "stage3";
  r.gen_size = 256;
  r.global_batch = 2;
  r.micro_batch = 2;
  r.lr = 2e-3;
  r.warmup_ratio = 0;
  r.schedule = "constant";
  r.steps = steps;
  r.seed = 5;
  r.keep_last = 3;
  return r;
}

std::map<std::string, Tensor> weights(const std::string& dir) {
  std::map<std::string, Tensor> w;
  io::CheckpointReader reader(dir);
  for (const std::string& n : reader.names()) {
    const io::TensorEntry& e = reader.entry(n);
    w[n] = io::tensor_from_entry(e, reader.data(n), nullptr, false, dir);
  }
  return w;
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.contiguous().raw_data(), b.contiguous().raw_data(), a.nbytes()) == 0;
}

std::string read_file(const std::string& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST_CASE("recipes: the shipped VARGPT-v1.1 phases carry paper Table 1; unknown keys are named") {
  struct Row {
    const char* file;
    int64_t batch;
    double lr;
    int64_t steps, zero;
    const char* freeze;
    int64_t size;
    const char* kind;
  };
  // Paper Table 1 (vargpt.md §12.3) and the freeze table (§12.1).
  const Row table[] = {{"stage1", 1024, 1e-3, 2000, 3, "stage1", 256, "sft"},
                       {"stage2", 256, 5e-5, 3100, 2, "stage2", 256, "sft"},
                       {"stage3_sft_256", 1024, 5e-5, 40000, 3, "stage3", 256, "sft"},
                       {"stage3_dpo_256", 384, 1e-6, 5000, 3, "stage3", 256, "dpo"},
                       {"stage3_sft_512", 512, 5e-5, 30000, 3, "stage3", 512, "sft"},
                       {"stage3_dpo_512", 384, 1e-6, 3000, 3, "stage3", 512, "dpo"},
                       {"editing", 512, 5e-5, 2000, 3, "stage3", 512, "sft"}};
  for (const Row& row : table) {
    INFO(row.file);
    const train::Recipe r = train::Recipe::load(kRecipes + "/" + row.file + ".json");
    CHECK(r.global_batch == row.batch);
    CHECK(r.lr == doctest::Approx(row.lr).epsilon(1e-12));
    CHECK(r.steps == row.steps);
    CHECK(r.zero_stage == row.zero);
    CHECK(r.freeze == row.freeze);
    CHECK(r.gen_size == row.size);
    CHECK(r.kind == row.kind);
    CHECK(r.schedule == "cosine");
    CHECK(r.warmup_ratio == 0.1);
    CHECK(r.weight_decay == 0.0);
    if (r.kind == "dpo") CHECK(r.reference == "@previous");
  }
  CHECK_THROWS_WITH_AS(train::Recipe::from_json({{"lr", 1e-4}, {"learning_rate", 1e-4}}, "r.json"),
                       doctest::Contains("learning_rate"), Error);
  CHECK_THROWS_WITH_AS(train::Recipe::from_json({{"dpo", {{"betta", 0.2}}}}, "r.json"),
                       doctest::Contains("dpo.betta"), Error);
  train::Recipe r = tiny_recipe(3);
  r.set("dpo.beta=0.25");
  CHECK(r.dpo_beta == 0.25);
  r.set("freeze=stage1");
  CHECK(r.freeze == "stage1");
  CHECK_THROWS_WITH_AS(r.set("nope=1"), doctest::Contains("nope"), Error);
  CHECK_THROWS_WITH_AS(r.set("steps=many"), doctest::Contains("steps"), Error);
  // A round trip through JSON keeps every value.
  CHECK(train::Recipe::from_json(r.to_json(), "round trip").to_json() == r.to_json());
  // The sample-grid keys: off by default; negative values are errors naming the key.
  CHECK(train::Recipe::load(kRecipes + "/stage3_sft_256.json").sample_every == 0);
  r.set("sample_every=50");
  r.set("sample_seed=7");
  CHECK(r.sample_every == 50);
  CHECK(r.sample_seed == 7u);
  CHECK_THROWS_WITH_AS(r.set("sample_every=-1"), doctest::Contains("sample_every -1 is negative"), Error);
  CHECK(r.sample_every == 50);  // a refused --set leaves the recipe as it was
  CHECK_THROWS_WITH_AS(r.set("sample_prompts=0"), doctest::Contains("sample_prompts 0 must be at least 1"), Error);
  CHECK_THROWS_WITH_AS(r.set("sample_seed=-3"), doctest::Contains("key 'sample_seed' must not be negative"), Error);
  CHECK(r.sample_seed == 7u);
  CHECK_THROWS_WITH_AS(train::Recipe::from_json({{"sample_seed", -1}}, "r.json"),
                       doctest::Contains("key 'sample_seed' must not be negative"), Error);
  CHECK_THROWS_WITH_AS(train::Recipe::from_json({{"sample_prompts", -2}}, "r.json"),
                       doctest::Contains("sample_prompts -2"), Error);
  CHECK_THROWS_WITH_AS(train::Recipe::from_json({{"kind", "vae"}, {"sample_every", 5}}, "r.json"),
                       doctest::Contains("vae"), Error);
}

TEST_CASE("training: stage 3 lowers the loss; a resumed run equals an uninterrupted one bit for bit") {
  const fs::path base = fs::temp_directory_path() / "vt_trainer_test";
  fs::remove_all(base);
  const train::Recipe r = tiny_recipe(4);
  // Uninterrupted: four steps.
  int64_t n_full = 0;
  train::TrainOptions o;
  o.out_dir = (base / "full").string();
  o.init_dir = kTiny;
  o.quiet = true;
  std::vector<double> losses;
  o.on_step = [&](int64_t, const nlohmann::json& log) { losses.push_back(log.at("image_loss").get<double>()); };
  const train::TrainResult full = train::train(r, fixture_source(&n_full), o);
  REQUIRE(losses.size() == 4);
  MESSAGE("image loss per step: ", losses[0], " ", losses[1], " ", losses[2], " ", losses[3]);
  CHECK(losses.back() < 0.9 * losses.front());  // the LLM is frozen: the bit loss is what stage 3 trains
  CHECK(full.steps == 4);
  // Two steps, stopped, then resumed in a fresh call (new model, optimizer and data source).
  int64_t n_a = 0, n_b = 0;
  train::TrainOptions o2 = o;
  o2.out_dir = (base / "resumed").string();
  o2.on_step = nullptr;
  o2.stop_after = 2;
  train::train(r, fixture_source(&n_a), o2);
  o2.stop_after = -1;
  o2.resume = true;
  const train::TrainResult resumed = train::train(r, fixture_source(&n_b), o2);
  CHECK(resumed.steps == 4);
  CHECK(n_b == 4);  // the data position came back from the checkpoint
  const auto wf = weights(full.checkpoint), wr = weights(resumed.checkpoint);
  REQUIRE(wf.size() == wr.size());
  for (const auto& [name, t] : wf) {
    INFO(name);
    CHECK(bitwise_equal(t, wr.at(name)));
  }
  const auto of = io::load_safetensors(full.checkpoint + "/optimizer.safetensors");
  const auto orr = io::load_safetensors(resumed.checkpoint + "/optimizer.safetensors");
  for (const auto& [name, t] : of) {
    INFO(name);
    CHECK(bitwise_equal(t, orr.at(name)));
  }
  // The logs agree apart from the timings.
  auto strip = [](const std::string& text) {
    std::string out, line;
    std::istringstream in(text);
    while (std::getline(in, line)) {
      nlohmann::json j = nlohmann::json::parse(line);
      for (const char* k : {"tokens_per_s", "step_s", "peak_rss_mb", "elapsed_s"}) j.erase(k);
      out += j.dump() + "\n";
    }
    return out;
  };
  CHECK(strip(read_file(o.out_dir + "/log.jsonl")) == strip(read_file(o2.out_dir + "/log.jsonl")));
  // Frozen tensors have no optimizer state: the flat buffers hold exactly the stage-3 set.
  auto model = vargpt::Vargpt::from_pretrained(full.checkpoint, DType::F32);
  vargpt::apply_freeze_preset(*model, 3);
  int64_t trainable = model->num_parameters(/*trainable_only=*/true);
  CHECK(of.at("trainable.master").numel() == trainable);
  CHECK(trainable < model->num_parameters() / 2);
  // The checkpoint is a model directory: the frozen LLM is unchanged, the decoder moved.
  const auto w0 = weights(kTiny);
  CHECK(bitwise_equal(wf.at("model.layers.0.mlp.up_proj.weight"), w0.at("model.layers.0.mlp.up_proj.weight")));
  CHECK_FALSE(bitwise_equal(wf.at("vargpt_gen.head.weight"), w0.at("vargpt_gen.head.weight")));
  fs::remove_all(base);
}

TEST_CASE("training: a non-finite loss stops the run naming the step; a killed save leaves the last checkpoint") {
  const fs::path base = fs::temp_directory_path() / "vt_trainer_nan";
  fs::remove_all(base);
  train::Recipe r = tiny_recipe(3);
  r.lr = 1e30;  // the first update sends the weights to infinity
  r.max_grad_norm = 1e30;
  r.save_every = 1;
  int64_t n = 0;
  train::TrainOptions o;
  o.out_dir = base.string();
  o.init_dir = kTiny;
  o.quiet = true;
  CHECK_THROWS_WITH_AS(train::train(r, fixture_source(&n), o), doctest::Contains("step 2"), Error);
  const auto last = train::latest_checkpoint(base.string());
  REQUIRE(last.has_value());
  CHECK(train::load_trainer_state(*last).step == 1);
  // A save killed midway: a half-written .tmp directory; `latest` still names the complete one,
  // which loads, and the next save removes the debris.
  fs::create_directories(base / "checkpoint-2.tmp");
  std::ofstream(base / "checkpoint-2.tmp" / "model.safetensors") << "partial";
  CHECK(*train::latest_checkpoint(base.string()) == *last);
  CHECK_NOTHROW(vargpt::Vargpt::from_pretrained(*last, DType::F32));
  fs::remove_all(base);
}

TEST_CASE("training: a dpo recipe starts at ln 2 against its own reference and widens the margin") {
  const fs::path base = fs::temp_directory_path() / "vt_trainer_dpo";
  fs::remove_all(base);
  train::Recipe r = tiny_recipe(3);
  r.kind = "dpo";
  r.reference = kTiny;
  r.lr = 1e-6;  // the paper's DPO rate; larger rates saturate a single pair at once
  int64_t n = 0;
  train::TrainOptions o;
  o.out_dir = base.string();
  o.init_dir = kTiny;
  o.reference_dir = kTiny;
  o.quiet = true;
  std::vector<nlohmann::json> logs;
  o.on_step = [&](int64_t, const nlohmann::json& log) { logs.push_back(log); };
  // The fixture batch's two rows form one pair: the text-to-image row is "chosen", the edit "rejected".
  train::train(r, fixture_source(&n), o);
  REQUIRE(logs.size() == 3);
  CHECK(logs[0].at("loss").get<double>() == doctest::Approx(std::log(2.0)).epsilon(1e-6));
  CHECK(logs[0].at("rewards/margins").get<double>() == doctest::Approx(0.0));
  CHECK(logs[1].at("rewards/margins").get<double>() > 0);
  CHECK(logs[2].at("rewards/margins").get<double>() > logs[1].at("rewards/margins").get<double>());
  CHECK(logs[2].at("loss").get<double>() < std::log(2.0));
  fs::remove_all(base);
}

TEST_CASE("training: quirks.sos_single_row trains the sos row as the full table does, with C elements of state") {
  const fs::path base = fs::temp_directory_path() / "vt_trainer_sos";
  fs::remove_all(base);
  const train::Recipe faithful = tiny_recipe(3);  // weight decay 0, the paper's
  REQUIRE(faithful.weight_decay == 0.0);
  train::Recipe single = faithful;
  single.set("quirks.sos_single_row=true");
  CHECK(single.to_json().at("quirks.sos_single_row") == true);
  CHECK_THROWS_WITH_AS(single.set("quirks.sos_single_row=2"), doctest::Contains("quirks.sos_single_row"), Error);
  auto run = [&](const train::Recipe& r, const std::string& out) {
    int64_t n = 0;
    train::TrainOptions o;
    o.out_dir = (base / out).string();
    o.init_dir = kTiny;
    o.quiet = true;
    return train::train(r, fixture_source(&n), o).checkpoint;
  };
  const std::string ck_full = run(faithful, "faithful"), ck_row = run(single, "single_row");
  const auto wf = weights(ck_full), wr = weights(ck_row), w0 = weights(kTiny);
  // The same tensors under the same names: the table is saved whole, the row parameter is not saved.
  REQUIRE(wf.size() == wr.size());
  CHECK(wr.count("sos_embedding.row") == 0);
  // Bit for bit: the unread rows have zero gradient, so AdamW without decay leaves them exactly; the
  // read row gets the same gradient (narrow's backward copies it into zeros) and the same update. The
  // global-norm clip sees the same value too: the CPU norm adds |g|^2 in order, in double, per chunk of
  // 2^16 elements, and the zeros before the row add nothing. (A device norm reduced as a tree could
  // differ in its last bit.)
  for (const auto& [name, t] : wf) {
    INFO(name);
    CHECK(bitwise_equal(wr.at(name), t));
  }
  const Tensor table0 = w0.at("sos_embedding.weight"), table = wr.at("sos_embedding.weight");  // (289, C)
  const int64_t start = 288, rows = table0.size(0), C = table0.size(1);
  REQUIRE(rows == start + 1);
  CHECK(bitwise_equal(table.narrow(0, 0, start), table0.narrow(0, 0, start)));  // every unread row as loaded
  CHECK(amax(abs(table.narrow(0, start, 1) - table0.narrow(0, start, 1))).item() > 1e-4);  // the read row trained
  // The optimizer holds C elements for the sos instead of rows x C.
  const auto of = io::load_safetensors(ck_full + "/optimizer.safetensors");
  const auto orow = io::load_safetensors(ck_row + "/optimizer.safetensors");
  CHECK(of.at("trainable.master").numel() - orow.at("trainable.master").numel() == (rows - 1) * C);
  // Round trip: the single-row model reads the row out of the saved table and saves the table back
  // bit for bit; the faithful model loads the same checkpoint.
  vargpt::VargptOptions mo;
  mo.sos_single_row = true;
  auto m = vargpt::Vargpt::from_pretrained(ck_row, DType::F32, mo);
  CHECK(bitwise_equal(m->sos_row, table.narrow(0, start, 1).contiguous()));
  vargpt::apply_freeze_preset(*m, 3);
  CHECK(m->parameter("sos_embedding.row").requires_grad());  // the presets' "sos_embedding" selects it
  CHECK_FALSE(m->sos_embedding.requires_grad());
  m->save_sharded((base / "again").string(), 4ull << 30);
  CHECK(bitwise_equal(weights((base / "again").string()).at("sos_embedding.weight"), table));
  auto f = vargpt::Vargpt::from_pretrained(ck_row, DType::F32);
  CHECK(bitwise_equal(f->sos_embedding, table));
  CHECK(bitwise_equal(m->sos_condition(1), f->sos_condition(1)));
  // Resuming with the option flipped is refused: the optimizer state is laid out for the other set.
  train::TrainOptions o;
  o.out_dir = (base / "single_row").string();
  o.init_dir = kTiny;
  o.quiet = true;
  o.resume = true;
  int64_t n = 0;
  CHECK_THROWS_WITH_AS(train::train(faithful, fixture_source(&n), o),
                       doctest::Contains("trained with quirks.sos_single_row = true"), Error);
  fs::remove_all(base);
}

TEST_CASE("training: sample grids change no bit of training, resume identically, and equal direct generation") {
  const fs::path base = fs::temp_directory_path() / "vt_trainer_samples";
  fs::remove_all(base);
  train::Recipe r = tiny_recipe(3);
  r.save_every = 2;
  r.sample_every = 2;  // grids at step 2 and at the last step, 3
  r.sample_prompts = 2;
  r.sample_seed = 11;
  train::TrainOptions o;
  o.init_dir = kTiny;
  o.quiet = true;
  o.sample_prompts = {"Please create a painting of a red circle.", "Draw two blue squares.",
                      "a third prompt the recipe does not ask for"};
  // With grids, uninterrupted, in a directory holding a grid of an earlier run (removed at the start).
  int64_t n_a = 0, n_b = 0, n_c = 0, n_d = 0;
  o.out_dir = (base / "grids").string();
  fs::create_directories(o.out_dir + "/samples");
  std::ofstream(o.out_dir + "/samples/step-000001.png") << "an earlier run's grid";
  std::vector<nlohmann::json> logs;
  o.on_step = [&](int64_t, const nlohmann::json& log) { logs.push_back(log); };
  const train::TrainResult with = train::train(r, fixture_source(&n_a), o);
  o.on_step = nullptr;
  // Without grids.
  train::Recipe off = r;
  off.sample_every = 0;
  train::TrainOptions o_off = o;
  o_off.out_dir = (base / "plain").string();
  const train::TrainResult without = train::train(off, fixture_source(&n_b), o_off);
  // With grids, stopped after step 2 and resumed; a grid of a step past the checkpoint is removed.
  train::TrainOptions o_res = o;
  o_res.out_dir = (base / "resumed").string();
  o_res.stop_after = 2;
  train::train(r, fixture_source(&n_c), o_res);
  std::ofstream(o_res.out_dir + "/samples/step-000009.png") << "a grid of an abandoned future";
  o_res.stop_after = -1;
  o_res.resume = true;
  const train::TrainResult resumed = train::train(r, fixture_source(&n_d), o_res);

  // Training is bit for bit the same with and without grids, and after the resume.
  const auto ww = weights(with.checkpoint), wo = weights(without.checkpoint), wr = weights(resumed.checkpoint);
  REQUIRE(ww.size() == wo.size());
  for (const auto& [name, t] : ww) {
    INFO(name);
    CHECK(bitwise_equal(t, wo.at(name)));
    CHECK(bitwise_equal(t, wr.at(name)));
  }
  const auto ow = io::load_safetensors(with.checkpoint + "/optimizer.safetensors");
  const auto oo = io::load_safetensors(without.checkpoint + "/optimizer.safetensors");
  for (const auto& [name, t] : ow) {
    INFO(name);
    CHECK(bitwise_equal(t, oo.at(name)));
  }
  auto strip = [](const std::string& text) {
    std::string out, line;
    std::istringstream in(text);
    while (std::getline(in, line)) {
      nlohmann::json j = nlohmann::json::parse(line);
      for (const char* k : {"tokens_per_s", "step_s", "peak_rss_mb", "elapsed_s", "samples", "sample_s"}) j.erase(k);
      out += j.dump() + "\n";
    }
    return out;
  };
  CHECK(strip(read_file(o.out_dir + "/log.jsonl")) == strip(read_file(o_off.out_dir + "/log.jsonl")));
  // The log names each grid; the grids are the ones due, and the resumed run's are the same bytes.
  REQUIRE(logs.size() == 3);
  MESSAGE("a grid of 2 prompts at 256 px: ", logs[1].at("sample_s").get<double>(), " s; a step: ",
          logs[0].at("step_s").get<double>(), " s");
  CHECK_FALSE(logs[0].contains("samples"));
  CHECK(logs[1].at("samples") == "samples/step-000002.png");
  CHECK(logs[2].at("samples") == "samples/step-000003.png");
  std::set<std::string> files;
  for (const auto& e : fs::directory_iterator(o.out_dir + "/samples")) files.insert(e.path().filename().string());
  CHECK(files == std::set<std::string>{"step-000002.png", "step-000003.png"});
  CHECK_FALSE(fs::exists(o_off.out_dir + "/samples"));
  CHECK_FALSE(fs::exists(o_res.out_dir + "/samples/step-000009.png"));
  for (const char* f : {"step-000002.png", "step-000003.png"}) {
    INFO(f);
    CHECK(read_file(o.out_dir + "/samples/" + f) == read_file(o_res.out_dir + "/samples/" + f));
  }

  // The grid of step 2: two cells of 256 pixels (shown natively), each what the generate API
  // makes from checkpoint-2 for prompt j with seed 11 + j, as `vargpt generate --max-text-tokens 24`.
  const shapes::Image grid = shapes::read_image(train::sample_grid_path(o.out_dir, 2));
  const train::SampleGridLayout layout(2, 256);
  REQUIRE(grid.width == layout.width());
  REQUIRE(grid.height == layout.height());
  const std::string ck2 = o.out_dir + "/checkpoint-2";
  auto model = vargpt::Vargpt::from_pretrained(ck2, DType::F32);
  model->eval();
  const tok::Tokenizer tokenizer = tok::Tokenizer::from_file(ck2 + "/tokenizer.json");
  std::vector<vargpt::Prompt> prompts;
  for (int j = 0; j < 2; ++j) {
    const std::vector<tok::ChatMessage> m = {{"user", {tok::ChatPart::of_text(o.sample_prompts[size_t(j)])}}};
    vargpt::Prompt p;
    for (int32_t id : tokenizer.encode(tok::apply_chat_template(m, true))) p.ids.push_back(id);
    prompts.push_back(p);
  }
  vargpt::TextOptions text;
  text.max_new_tokens = 24;
  text.force_image = true;
  for (const char* stop : {"<|im_end|>", "<|endoftext|>"})
    if (const int32_t id = tokenizer.find_token(stop); id >= 0) text.stop_tokens.push_back(id);
  vargpt::TextResult reply = vargpt::decode_text(*model, prompts, text);
  vargpt::HandOff state = vargpt::select_rows(reply.state, {0, 1});
  vargpt::ImageOptions image;
  image.height = image.width = 256;
  image.seeds = {11, 12};
  const Tensor px = vargpt::generate_image(*model, state, image).pixels.contiguous();  // (2, 256, 256, 3)
  REQUIRE(px.shape() == Shape{2, 256, 256, 3});
  std::vector<int> wrong(2, 0);
  for (int j = 0; j < 2; ++j) {
    const train::Rect c = layout.image(j);
    REQUIRE(c.x1 - c.x0 == 256);
    const uint8_t* p = px.data<uint8_t>() + int64_t(j) * 256 * 256 * 3;
    for (int y = 0; y < 256; ++y)
      for (int x = 0; x < 256; ++x)
        for (int ch = 0; ch < 3; ++ch) wrong[size_t(j)] += grid.px(c.x0 + x, c.y0 + y)[ch] != p[(y * 256 + x) * 3 + ch];
  }
  CHECK(wrong == std::vector<int>{0, 0});
  // The cells differ from each other (each prompt has its own seed): a grid of one image repeated fails.
  CHECK(std::memcmp(px.data<uint8_t>(), px.data<uint8_t>() + 256 * 256 * 3, 256 * 256 * 3) != 0);

  // Grids asked for without prompts (data with no generation or preference records): named at start.
  train::TrainOptions o_none = o;
  o_none.out_dir = (base / "none").string();
  o_none.sample_prompts.clear();
  int64_t n_e = 0;
  CHECK_THROWS_WITH_AS(train::train(r, fixture_source(&n_e), o_none), doctest::Contains("no generation or preference"),
                       Error);
  CHECK(n_e == 0);
  fs::remove_all(base);
}

TEST_CASE("training: sample prompts are the first generation and preference records' user turns") {
  const fs::path dir = fs::temp_directory_path() / "vt_trainer_sample_prompts";
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto rec = [](const std::string& id, const std::string& human, const std::string& gpt, int images) {
    nlohmann::json r = {{"id", id},
                        {"conversations", {{{"from", "human"}, {"value", human}}, {{"from", "gpt"}, {"value", gpt}}}}};
    r["images"] = nlohmann::json::array();
    for (int i = 0; i < images; ++i) r["images"].push_back(id + "_" + std::to_string(i) + ".png");
    return r;
  };
  std::ofstream(dir / "mixed.json") << nlohmann::json::array(
      {rec("u0", "<image>What is this?", "A square.", 1), rec("g0", "Paint a red circle.", "Here.<image_gen>", 1),
       rec("e0", "<image>Make it blue.", "Done.<image_gen>", 2), rec("g1", "Paint a blue square.", "Here.<image_gen>", 1)});
  nlohmann::json pref = {{"id", "p0"},
                         {"conversations", {{{"from", "human"}, {"value", "Paint a green triangle."}}}},
                         {"chosen", {{"from", "gpt"}, {"value", "Here.<image_gen>"}}},
                         {"rejected", {{"from", "gpt"}, {"value", "Here.<image_gen>"}}},
                         {"images", {"a.png", "b.png"}}};
  std::ofstream(dir / "pref.json") << nlohmann::json::array({pref});
  train::DataSource mixed, stated, p;
  mixed.path = (dir / "mixed.json").string();
  stated = mixed;
  stated.kind = train::TaskKind::Understanding;  // a file stated to be understanding is not read
  p.path = (dir / "pref.json").string();
  using V = std::vector<std::string>;
  CHECK(train::sample_prompts_from_data({stated, mixed, p}, 8) ==
        V{"Paint a red circle.", "Paint a blue square.", "Paint a green triangle."});
  CHECK(train::sample_prompts_from_data({mixed, p}, 1) == V{"Paint a red circle."});
  CHECK(train::sample_prompts_from_data({stated}, 8).empty());
  fs::remove_all(dir);
}
