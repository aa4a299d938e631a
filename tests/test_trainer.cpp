// The training loop (train/trainer.h), recipes (train/recipe.h) and checkpoints (train/checkpoint.h)
// on the tiny VARGPT checkpoint: the paper's Table 1 in the shipped recipes, unknown keys named; a
// stage-3 run lowers the loss of its batch; a run stopped and resumed equals an uninterrupted one
// bit for bit (weights, optimizer state, log); frozen tensors get no optimizer state; a non-finite
// loss stops the run naming the step and keeps the last checkpoint; a save killed midway leaves the
// previous checkpoint loadable; quirks.sos_single_row (Q2 fix) trains the faithful weights with C
// elements of sos state instead of a table, saves the table whole, and refuses a flipped resume.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "checkpoint.h"
#include "recipe.h"
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
