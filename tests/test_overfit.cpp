// Overfitting through every stage (train/trainer.h) on a very small VARGPT made from random weights
// (models/vargpt/init.h: 16-pixel images, scales 1 and 2) and four ShapeWorld samples per task:
// each stage drives the loss part it trains far down in seconds (the numbers measured on this
// machine are next to each check): the tokenizer's L1, stage 1's bit loss through the projectors
// alone, stage 2's text loss, stage 3's bit loss, DPO's loss, editing's loss. A stage whose
// trainable set or loss wiring were broken would not move its number.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "data/loader.h"
#include "shapeworld/dataset.h"
#include "tokenizer/bpe.h"
#include "trainer.h"
#include "vargpt/init.h"
#include "vt/random.h"

using namespace vt;
namespace fs = std::filesystem;

namespace {

const std::string kTokenizer = std::string(VT_FIXTURES) + "/vargpt_tiny/tokenizer.json";

struct World {
  fs::path dir;
  std::string model;  // a random model directory
  std::unique_ptr<tok::Tokenizer> tokenizer;
  World() {
    dir = fs::temp_directory_path() / "vt_overfit";
    fs::remove_all(dir);
    shapes::MakeOptions m;
    m.out_dir = (dir / "data").string();
    m.size = 64;
    m.train = 4;
    m.test = 1;
    m.seed = 2;
    shapes::make_dataset(m);
    tokenizer = std::make_unique<tok::Tokenizer>(tok::Tokenizer::from_file(kTokenizer));
    const nlohmann::json spec = nlohmann::json::parse(R"({
      "llm": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2},
      "vision": {"depth": 1, "embed_dim": 32, "num_heads": 2},
      "gen": {"depth": 2, "embed_dim": 64, "num_heads": 4, "codebook_dim": 8, "text_maxlen": 256},
      "vae": {"base_channels": 32, "channel_mult": [1, 1, 1, 1], "num_res_blocks": 1},
      "gen_sides": [1, 2],
      "image": {"min_pixels": 3136, "max_pixels": 3136}})");
    const vargpt::ModelDir files = vargpt::make_config(spec, *tokenizer);
    default_generator().manual_seed(3);
    vargpt::Vargpt random(files.config, DType::F32);
    vargpt::random_init(random, 3);
    model = (dir / "init").string();
    vargpt::write_model_dir(model, random, files, kTokenizer);
  }
  ~World() { fs::remove_all(dir); }

  // The four records of one kind, in file order, as one batch forever.
  train::BatchSource source(const std::string& file, train::TaskKind kind) {
    train::DataSource s;
    s.path = (dir / "data" / "train" / file).string();
    s.kind = kind;
    s.root = (dir / "data").string();
    train::LoaderOptions o;
    o.batch_size = 4;
    o.shuffle = false;
    o.num_workers = 0;
    o.sequence.gen.size = 16;
    o.sequence.gen_pads = 128;
    o.sequence.vit.min_pixels = o.sequence.vit.max_pixels = 3136;
    auto loader = std::make_shared<train::Loader>(*tokenizer, std::vector<train::DataSource>{s}, o);
    train::BatchSource b;
    b.next = [loader] { return *loader->next(); };
    return b;
  }
};

train::Recipe recipe(const std::string& kind, const std::string& freeze, int64_t steps, double lr) {
  train::Recipe r;
  r.name = freeze + "_" + kind;
  r.kind = kind;
  r.freeze = freeze;
  r.gen_size = 16;
  r.global_batch = 4;
  r.micro_batch = 4;
  r.lr = lr;
  r.schedule = "constant";
  r.warmup_ratio = 0;
  r.steps = steps;
  r.bsc_layers = 0;  // fixed labels: memorisable
  r.cond_drop = 0;
  r.keep_last = 1;
  if (kind == "dpo") r.reference = "x";
  return r;
}

// Trains `r` and returns (first, last) of the logged `key`.
std::pair<double, double> run(World& w, const train::Recipe& r, train::BatchSource data, const std::string& key,
                              const std::string& init, const std::string& reference = "") {
  std::vector<double> v;
  train::TrainOptions o;
  o.out_dir = (w.dir / r.name).string();
  o.init_dir = init;
  o.reference_dir = reference;
  o.quiet = true;
  o.on_step = [&](int64_t, const nlohmann::json& log) { v.push_back(log.at(key).get<double>()); };
  train::train(r, std::move(data), o);
  REQUIRE(v.size() == static_cast<size_t>(r.steps));
  MESSAGE(r.name, " ", key, ": ", v.front(), " -> ", v.back());
  return {v.front(), v.back()};
}

}  // namespace

TEST_CASE("overfitting: every stage drives the loss it trains far down on four samples") {
  World w;
  const std::string init = w.model;
  using K = train::TaskKind;
  // The BSQ tokenizer: reconstruction of four 16-pixel targets.
  {
    const auto [a, b] = run(w, recipe("vae", "stage3", 40, 3e-3), w.source("generation.json", K::Generation), "l1", init);
    CHECK(b < 0.5 * a);  // measured 0.29 -> 0.10
  }
  // Stage 1: only the projectors and the sos row learn, through the frozen random LLM and decoder.
  {
    const auto [a, b] =
        run(w, recipe("sft", "stage1", 30, 1e-2), w.source("generation.json", K::Generation), "image_loss", init);
    CHECK(b < 0.9 * a);  // measured 0.72 -> 0.31
  }
  // Stage 2: the LLM memorises four answers.
  {
    const auto [a, b] = run(w, recipe("sft", "stage2", 40, 1e-2), w.source("understanding.json", K::Understanding),
                            "text_loss", init);
    CHECK(b < 0.1 * a);  // measured 6.2 -> 0.18
  }
  // Stage 3: Infinity and the projectors memorise four images' bits.
  const train::Recipe s3 = recipe("sft", "stage3", 60, 1e-2);
  {
    const auto [a, b] = run(w, s3, w.source("generation.json", K::Generation), "image_loss", init);
    CHECK(b < 0.5 * a);  // measured 0.72 -> 0.28 in 60 steps
  }
  // DPO against the stage-3 model: the loss leaves ln 2 for zero as the margins grow.
  {
    const std::string sft = (w.dir / s3.name / "checkpoint-60").string();
    const auto [a, b] =
        run(w, recipe("dpo", "stage3", 20, 1e-3), w.source("preference.json", K::Preference), "loss", sft, sft);
    CHECK(a == doctest::Approx(std::log(2.0)).epsilon(1e-5));
    CHECK(b < 0.45);  // measured 0.31 after 20 steps
  }
  // Editing: source through the ViT, target through the decoder.
  {
    const auto [a, b] = run(w, recipe("sft", "stage4", 60, 1e-2), w.source("editing.json", K::Editing), "loss", init);
    CHECK(b < 0.3 * a);  // measured 8.5 -> 1.6
  }
}
