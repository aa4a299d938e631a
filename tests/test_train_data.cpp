// test_train_data.cpp: the training data pipeline (train/data/) on a small ShapeWorld dataset written
// into a temp dir: Pillow-exact resizes, the four record readers, sequences (ids, labels, routing,
// ChatML), and the loader (thread-count independence, exact resume, seeds, mixing, preference rows,
// bad input). The tokenizer is the tiny fixture's (byte-level vocabulary, generation tokens 288..290).
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "data/image_ops.h"
#include "data/loader.h"
#include "data/records.h"
#include "data/sequence.h"
#include "shapeworld/dataset.h"
#include "tokenizer/chat_template.h"
#include "vt/error.h"

using namespace vt;
using namespace vt::train;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& tag) {
    path = fs::temp_directory_path() / ("vt_train_data_" + tag + "_" + std::to_string(getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string str() const { return path.string(); }
};

// One 64-px ShapeWorld dataset (6 train scenes) and one 256-px dataset (1 scene) per test run.
struct Datasets {
  TempDir small{"sw64"}, large{"sw256"};
  json manifest;
  Datasets() {
    shapes::MakeOptions m;
    m.out_dir = small.str(), m.size = 64, m.train = 6, m.test = 1, m.seed = 3;
    manifest = shapes::make_dataset(m);
    m.out_dir = large.str(), m.size = 256, m.train = 1, m.test = 1;
    shapes::make_dataset(m);
  }
  std::string file(const char* name) const { return small.str() + "/train/" + name; }
};
const Datasets& data() {
  static Datasets d;
  return d;
}

const tok::Tokenizer& tiny_tokenizer() {
  static tok::Tokenizer t = tok::Tokenizer::from_file(std::string(VT_FIXTURES) + "/vargpt_tiny/tokenizer.json");
  return t;
}

SequenceOptions tiny_options(bool random_crop = false) {
  SequenceOptions o;
  o.vit = qwen2_vl::ImageProcessorConfig::from_json_file(std::string(VT_FIXTURES) + "/vargpt_tiny/preprocessor_config.json");
  o.gen.size = 256;
  o.gen.random_crop = random_crop;
  return o;
}

std::vector<Record> read(const std::string& path, const std::string& root) {
  ReadOptions ro;
  ro.root = root;
  return read_records(path, ro).records;
}

std::vector<int64_t> i64(const std::vector<int32_t>& v) { return {v.begin(), v.end()}; }
std::vector<float> floats(const Tensor& t) { return t.defined() ? t.tolist<float>() : std::vector<float>{}; }
std::vector<int64_t> ints(const Tensor& t) { return t.defined() ? t.tolist<int64_t>() : std::vector<int64_t>{}; }

uint64_t fnv1a(const std::vector<uint8_t>& bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint8_t b : bytes) h = (h ^ b) * 0x100000001b3ull;
  return h;
}

// The synthetic image of the Pillow reference (see the Python below).
RgbImage pattern(int64_t H, int64_t W) {
  RgbImage im;
  im.height = H, im.width = W;
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x)
      for (int c = 0; c < 3; ++c) im.pixels.push_back(uint8_t((x * 37 + y * 91 + c * 53 + (x * y) % 17 * 11) % 256));
  return im;
}

void check_same_batch(const Batch& a, const Batch& b) {
  CHECK(a.ids == b.ids);
  CHECK(ints(a.input_ids) == ints(b.input_ids));
  CHECK(ints(a.attention_mask) == ints(b.attention_mask));
  CHECK(ints(a.labels) == ints(b.labels));
  CHECK(floats(a.pixel_values) == floats(b.pixel_values));
  CHECK(a.image_grid_thw == b.image_grid_thw);
  CHECK(floats(a.gen_images) == floats(b.gen_images));
  CHECK(a.gen_rows == b.gen_rows);
  CHECK(a.tokens == b.tokens);
}

std::vector<Batch> drain(Loader& l) {
  std::vector<Batch> out;
  while (auto b = l.next()) out.push_back(std::move(*b));
  return out;
}

}  // namespace

// Reference: Pillow 12.3,
//   a[y, x, c] = (x*37 + y*91 + c*53 + (x*y) % 17 * 11) % 256 on 23x29;  Image.fromarray(a).resize((w, h), F)
//   FNV-1a 64 of the output bytes. The cap: the same pattern on 600x500, NEAREST to int(500 f) x int(600 f).
TEST_CASE("image ops: NEAREST, BICUBIC and LANCZOS resizes equal Pillow bit for bit") {
  const RgbImage im = pattern(23, 29);
  const int64_t sizes[5][2] = {{10, 13}, {41, 37}, {17, 50}, {23, 11}, {7, 29}};
  const uint64_t lanczos[5] = {0x685eae1a24c983aaull, 0x4609a3c6a6345881ull, 0xf79d7f5cf1924eb6ull,
                               0xfd138a44333a3675ull, 0x0ed3b8a18ac6775cull};
  const uint64_t nearest[5] = {0xec94eb63d7f9bd3full, 0x1239d718b1a7f0a3ull, 0x32e65aafac2e0156ull,
                               0x00462ed120c11574ull, 0xd3fa7c34d5b4cd22ull};
  const uint64_t bicubic[5] = {0x7052a56cd67770fcull, 0x3acc459fe0a7fe69ull, 0x33bde21c89703c71ull,
                               0x183e5ae9bffcce34ull, 0x2820430fa9379337ull};
  for (int i = 0; i < 5; ++i) {
    CAPTURE(sizes[i][0]);
    CAPTURE(sizes[i][1]);
    CHECK(fnv1a(resize_pillow(im, sizes[i][0], sizes[i][1], ResampleFilter::Lanczos).pixels) == lanczos[i]);
    CHECK(fnv1a(resize_pillow(im, sizes[i][0], sizes[i][1], ResampleFilter::Nearest).pixels) == nearest[i]);
    const RgbImage bc = resize_pillow(im, sizes[i][0], sizes[i][1], ResampleFilter::Bicubic);
    CHECK(fnv1a(bc.pixels) == bicubic[i]);
    CHECK(bc.pixels == qwen2_vl::resize_bicubic(im, sizes[i][0], sizes[i][1]).pixels);  // the ViT's copy
  }
  const RgbImage capped = cap_pixels_nearest(pattern(600, 500));
  CHECK(capped.height == 560);
  CHECK(capped.width == 467);
  CHECK(fnv1a(capped.pixels) == 0x8cca922a21a5cb46ull);
  CHECK(cap_pixels_nearest(pattern(512, 512)).height == 512);  // at the cap: unchanged
  const RgbImage grown = regularize_min_side(pattern(10, 40));
  CHECK((grown.height == 28 && grown.width == 40));
}

TEST_CASE("image ops: the generation target transform") {
  GenTargetOptions o;
  o.size = 256, o.random_crop = false;
  CropPlan p = plan_gen_crop(64, 64, o, 0);  // shorter side -> 288, center crop at 16
  CHECK((p.resized_h == 288 && p.resized_w == 288 && p.top == 16 && p.left == 16 && !p.identity));
  p = plan_gen_crop(64, 96, o, 0);  // 288 x int(288 * 96 / 64) = 432
  CHECK((p.resized_h == 288 && p.resized_w == 432 && p.top == 16 && p.left == 88));
  CHECK(plan_gen_crop(256, 256, o, 0).identity);
  o.random_crop = true;
  std::set<int64_t> tops;
  for (uint64_t s = 0; s < 64; ++s) {
    p = plan_gen_crop(64, 64, o, s);
    CHECK((p.top >= 0 && p.top <= 32 && p.left >= 0 && p.left <= 32));
    tops.insert(p.top);
  }
  CHECK(tops.size() > 10);  // the offsets vary with the seed
  const Tensor t = gen_target_transform(pattern(64, 64), o, 5);
  CHECK(t.shape() == Shape{3, 256, 256});
  const RgbImage one = pattern(1, 1);
  CHECK(floats(to_tensor_pm1(one)) == std::vector<float>{0.0f / 255 * 2 - 1, 53.0f / 255 * 2 - 1, 106.0f / 255 * 2 - 1});
}

TEST_CASE("records: the four ShapeWorld files parse with their kinds, paths resolve under the root") {
  const Datasets& d = data();
  const json& counts = d.manifest["splits"]["train"];
  const std::pair<const char*, TaskKind> files[] = {{"understanding.json", TaskKind::Understanding},
                                                    {"generation.json", TaskKind::Generation},
                                                    {"editing.json", TaskKind::Editing},
                                                    {"preference.json", TaskKind::Preference}};
  for (const auto& [name, kind] : files) {
    CAPTURE(name);
    ReadOptions ro;
    ro.root = d.small.str();
    ReadResult auto_read = read_records(d.file(name), ro);
    ro.kind = kind;
    ReadResult stated = read_records(d.file(name), ro);
    const std::string key = std::string(name).substr(0, std::string(name).find('.'));
    CHECK(static_cast<int64_t>(auto_read.records.size()) == counts[key].get<int64_t>());
    CHECK(stated.records.size() == auto_read.records.size());
    CHECK(auto_read.skipped == 0);
    for (const Record& r : auto_read.records) {
      CHECK(r.kind == kind);
      for (const std::string& p : r.images) CHECK(fs::exists(resolve_image(r, p)));
    }
  }
  // Read as the wrong kind, every record is skipped and counted.
  ReadOptions wrong;
  wrong.root = d.small.str(), wrong.kind = TaskKind::Understanding;
  ReadResult rr = read_records(d.file("generation.json"), wrong);
  CHECK(rr.records.empty());
  CHECK(rr.skipped == counts["generation"].get<int64_t>());
  // Without the root, ShapeWorld's DIR-relative paths do not resolve under DIR/train.
  const Record r0 = read(d.file("generation.json"), "")[0];
  CHECK(!fs::exists(resolve_image(r0, r0.images[0])));
}

TEST_CASE("records: JSON lines with the OpenAI / ShareGPT key variants, and a broken array line") {
  TempDir dir("variants");
  std::ofstream(dir.path / "a.jsonl")
      << R"({"id": 7, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What?"}]}, {"role": "assistant", "content": "A circle."}], "image": "x.png"})"
      << "\n\n"
      << R"({"conversations": [{"from": "human", "value": "Draw a cat."}, {"from": "gpt", "value": "Here.<image_gen>"}], "images": ["y.png"]})"
      << "\n";
  ReadResult rr = read_records((dir.path / "a.jsonl").string());
  REQUIRE(rr.records.size() == 2);
  const Record& a = rr.records[0];
  CHECK(a.id == "7");
  CHECK(a.system == "Be brief.");
  CHECK(a.turns[0].role == "user");
  CHECK(a.turns[0].text == "<image>What?");
  CHECK(a.images == std::vector<std::string>{"x.png"});
  CHECK(a.kind == TaskKind::Understanding);
  CHECK(rr.records[1].kind == TaskKind::Generation);
  CHECK(rr.records[1].id == "a.jsonl:3");  // no id: file name and line
  CHECK(rr.records[1].data_dir == dir.str());

  // ShapeWorld's array layout with one broken line: that record is lost, the rest are read.
  std::string text;
  {
    std::ifstream in(data().file("generation.json"));
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  const size_t line3 = text.find('\n', text.find('\n', text.find('\n') + 1) + 1);  // end of line 3
  text.insert(line3 - 2, "oops");
  std::ofstream(dir.path / "broken.json") << text;
  rr = read_records((dir.path / "broken.json").string());
  CHECK(rr.records.size() + 1 == data().manifest["splits"]["train"]["generation"].get<size_t>());
  REQUIRE(rr.warnings.size() == 1);
  CHECK(rr.warnings[0].find("broken.json:3") != std::string::npos);
  ReadOptions strict;
  strict.strict = true;
  CHECK_THROWS_WITH_AS(read_records((dir.path / "broken.json").string(), strict),
                       doctest::Contains("broken.json:3:"), Error);
}

TEST_CASE("sequence: a generation sample has one span of P pads in place, labels on the reply, exact ChatML") {
  const Datasets& d = data();
  const Record r = read(d.file("generation.json"), d.small.str())[0];
  const SequenceBuilder b(tiny_tokenizer(), tiny_options());
  CHECK(b.gen_pads() == 640);
  const Example ex = b.build(r, 0);
  const Sequence& s = ex.seq;
  const auto& g = b.special_ids().gen;
  CHECK(g.start == 288);
  CHECK(g.end == 289);
  CHECK(g.pad == 290);
  CHECK(std::count(s.ids.begin(), s.ids.end(), g.start) == 1);
  CHECK(std::count(s.ids.begin(), s.ids.end(), g.end) == 1);
  CHECK(std::count(s.ids.begin(), s.ids.end(), g.pad) == 640);
  const int64_t at = std::find(s.ids.begin(), s.ids.end(), g.start) - s.ids.begin();
  for (int64_t k = 1; k <= 640; ++k) REQUIRE(s.ids[at + k] == g.pad);
  CHECK(s.ids[at + 641] == g.end);
  CHECK(s.ids[at + 642] == b.special_ids().im_end);
  CHECK(s.ids.back() == tiny_tokenizer().encode("\n").back());
  CHECK(static_cast<int64_t>(s.ids.size()) == at + 644);

  // The text: ChatML with the default system prompt and the span in place of <image_gen>.
  std::string reply = r.turns[1].text;
  reply.replace(reply.find("<image_gen>"), 11, tok::image_gen_span(640));
  const std::string prompt = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n" +
                             r.turns[0].text + "<|im_end|>\n<|im_start|>assistant\n";
  const std::vector<int32_t> ids32(s.ids.begin(), s.ids.end());
  CHECK(tiny_tokenizer().decode(ids32) == prompt + reply + "<|im_end|>\n");

  // Labels: -100 over the prompt and at the pads, the ids elsewhere in the reply.
  const std::vector<int64_t> p = i64(tiny_tokenizer().encode(prompt));
  REQUIRE(s.labels.size() == s.ids.size());
  REQUIRE(std::equal(p.begin(), p.end(), s.ids.begin()));
  for (size_t i = 0; i < s.ids.size(); ++i) {
    const int64_t want = i < p.size() || s.ids[i] == g.pad ? -100 : s.ids[i];
    REQUIRE(s.labels[i] == want);
  }
  CHECK(s.labels[at] == g.start);
  CHECK(s.labels[at + 641] == g.end);
  // The target: the 64-px image, Lanczos to 288, centre crop 256, in [-1, 1].
  REQUIRE(s.gen_image.shape() == Shape{3, 256, 256});
  const RgbImage src = qwen2_vl::load_image(resolve_image(r, r.images[0]));
  CHECK(floats(s.gen_image) == floats(gen_target_transform(src, tiny_options().gen, 0)));
  CHECK(!s.pixel_values.defined());
}

TEST_CASE("sequence: editing routes images in token order (ViT = source, target = images[1]), by pixels") {
  const Datasets& d = data();
  Record r = read(d.file("editing.json"), d.small.str())[0];
  const SequenceBuilder b(tiny_tokenizer(), tiny_options());
  const SequenceOptions o = tiny_options();
  const RgbImage source = qwen2_vl::load_image(resolve_image(r, r.images[0]));
  const RgbImage target = qwen2_vl::load_image(resolve_image(r, r.images[1]));
  REQUIRE(source.pixels != target.pixels);
  const Example ex = b.build(r, 0);
  const Sequence& s = ex.seq;
  CHECK(floats(s.pixel_values) == floats(qwen2_vl::preprocess({source}, o.vit).pixel_values));
  CHECK(floats(s.pixel_values) != floats(qwen2_vl::preprocess({target}, o.vit).pixel_values));
  CHECK(floats(s.gen_image) == floats(gen_target_transform(target, o.gen, 0)));
  CHECK(floats(s.gen_image) != floats(gen_target_transform(source, o.gen, 0)));
  // IMG(N) before the span; N = merged ViT tokens (64 px -> 56 x 56 -> 4 x 4 patches -> 4).
  const auto& ids = s.ids;
  const auto vs = std::find(ids.begin(), ids.end(), b.special_ids().vision_start) - ids.begin();
  const auto gs = std::find(ids.begin(), ids.end(), b.special_ids().gen.start) - ids.begin();
  CHECK(vs < gs);
  REQUIRE(s.image_grid_thw.size() == 1);
  CHECK(s.image_grid_thw[0] == qwen2_vl::GridTHW{1, 4, 4});
  CHECK(std::count(ids.begin(), ids.end(), b.special_ids().image_pad) == 4);
  // Swapping the two paths swaps the routed content: routing follows position, not names.
  std::swap(r.images[0], r.images[1]);
  const Example sw = b.build(r, 0);
  CHECK(floats(sw.seq.pixel_values) == floats(qwen2_vl::preprocess({target}, o.vit).pixel_values));
  CHECK(floats(sw.seq.gen_image) == floats(gen_target_transform(source, o.gen, 0)));
}

TEST_CASE("sequence: a 256-px target at gen_size 256 is taken as is (identity path)") {
  const Datasets& d = data();
  const Record r = read(d.large.str() + "/train/generation.json", d.large.str())[0];
  const RgbImage im = qwen2_vl::load_image(resolve_image(r, r.images[0]));
  REQUIRE((im.height == 256 && im.width == 256));
  for (bool random : {false, true}) {
    const Example ex = SequenceBuilder(tiny_tokenizer(), tiny_options(random)).build(r, 9);
    const std::vector<float> v = floats(ex.seq.gen_image);
    CHECK(v == floats(to_tensor_pm1(im)));
    CHECK(v[(1 * 256 + 7) * 256 + 11] == float(im.at(7, 11, 1)) / 255.0f * 2.0f - 1.0f);
  }
}

TEST_CASE("sequence: preference gives chosen and rejected sharing the prompt; multi-turn labels") {
  const Datasets& d = data();
  const Record r = read(d.file("preference.json"), d.small.str())[0];
  const SequenceBuilder b(tiny_tokenizer(), tiny_options());
  const Example ex = b.build(r, 0);
  CHECK(ex.kind == TaskKind::Preference);
  const auto start = b.special_ids().gen.start;
  const auto at_c = std::find(ex.seq.ids.begin(), ex.seq.ids.end(), start) - ex.seq.ids.begin();
  const auto at_r = std::find(ex.rejected.ids.begin(), ex.rejected.ids.end(), start) - ex.rejected.ids.begin();
  CHECK(at_c == at_r);  // ShapeWorld's chosen and rejected replies have the same text
  CHECK(std::equal(ex.seq.ids.begin(), ex.seq.ids.begin() + at_c, ex.rejected.ids.begin()));
  const SequenceOptions o = tiny_options();
  const RgbImage chosen = qwen2_vl::load_image(resolve_image(r, r.images[0]));
  const RgbImage rejected = qwen2_vl::load_image(resolve_image(r, r.images[1]));
  CHECK(floats(ex.seq.gen_image) == floats(gen_target_transform(chosen, o.gen, 0)));
  CHECK(floats(ex.rejected.gen_image) == floats(gen_target_transform(rejected, o.gen, 0)));

  // Two rounds of understanding: both replies labelled, the second user turn not.
  Record m;
  m.id = "multi", m.origin = "test";
  m.turns = {{"user", "<image>What is it?"}, {"assistant", "A square."}, {"user", "Colour?"}, {"assistant", "Red."}};
  m.images = {"unused.png"};
  const Sequence s = b.build(m, {pattern(64, 64)}, 0).seq;
  std::vector<int32_t> run;
  for (size_t i = 0; i < s.ids.size(); ++i)
    if (s.labels[i] != -100) run.push_back(int32_t(s.labels[i]));
  CHECK(tiny_tokenizer().decode(run) == "A square.<|im_end|>\nRed.<|im_end|>\n");
}

TEST_CASE("sequence: a tokenizer without the generation tokens is refused") {
  std::ifstream in(std::string(VT_FIXTURES) + "/vargpt_tiny/tokenizer.json");
  json j = json::parse(in);
  json kept = json::array();
  for (const json& a : j["added_tokens"])
    if (a["content"].get<std::string>().rfind("<|image_gen", 0) != 0) kept.push_back(a);
  j["added_tokens"] = kept;
  const tok::Tokenizer t = tok::Tokenizer::from_json(j, "no-gen");
  CHECK_THROWS_WITH_AS(SequenceBuilder(t, tiny_options()), doctest::Contains("<|image_gen_start|>"), Error);
}

TEST_CASE("loader: batches do not depend on the number of worker threads") {
  const Datasets& d = data();
  std::vector<DataSource> src = {{d.file("understanding.json"), TaskKind::Understanding, d.small.str(), 1.0, -1},
                                 {d.file("generation.json"), TaskKind::Generation, d.small.str(), 1.0, -1},
                                 {d.file("editing.json"), TaskKind::Editing, d.small.str(), 1.0, -1}};
  std::vector<std::vector<Batch>> runs;
  for (int workers : {1, 3, 0}) {
    LoaderOptions o;
    o.batch_size = 3, o.seed = 11, o.epochs = 2, o.num_workers = workers, o.sequence = tiny_options(true);
    Loader l(tiny_tokenizer(), src, o);
    runs.push_back(drain(l));
  }
  REQUIRE(runs[0].size() > 4);
  for (int k : {1, 2}) {
    REQUIRE(runs[k].size() == runs[0].size());
    for (size_t i = 0; i < runs[0].size(); ++i) check_same_batch(runs[0][i], runs[k][i]);
  }
  // Right padding: each row's mask is a prefix of ones, padding carries pad id and -100.
  const Batch& b = runs[0][0];
  const int64_t T = b.input_ids.size(1);
  const auto ids = ints(b.input_ids), mask = ints(b.attention_mask), labels = ints(b.labels);
  for (int64_t r = 0; r < b.input_ids.size(0); ++r)
    for (int64_t t = 1; t < T; ++t) {
      REQUIRE(mask[r * T + t] <= mask[r * T + t - 1]);
      if (mask[r * T + t] == 0) REQUIRE((ids[r * T + t] == 280 && labels[r * T + t] == -100));
    }
}

TEST_CASE("loader: resuming from a saved position gives exactly the remaining batches") {
  const Datasets& d = data();
  std::vector<DataSource> src = {{d.file("understanding.json"), std::nullopt, d.small.str(), 1.0, -1},
                                 {d.file("generation.json"), std::nullopt, d.small.str(), 1.0, 4}};
  LoaderOptions o;
  o.batch_size = 4, o.seed = 5, o.epochs = 2, o.num_workers = 2, o.sequence = tiny_options(true);
  Loader full(tiny_tokenizer(), src, o);
  std::vector<Batch> all;
  std::vector<LoaderPosition> positions;
  while (auto b = full.next()) all.push_back(std::move(*b)), positions.push_back(full.position());
  REQUIRE(all.size() > 6);
  TempDir dir("resume");
  for (size_t cut : {size_t(2), all.size() / 2 + 1}) {
    CAPTURE(cut);
    positions[cut - 1].save((dir.path / "pos.json").string());
    const LoaderPosition p = LoaderPosition::load((dir.path / "pos.json").string());
    CHECK(p.to_json() == positions[cut - 1].to_json());
    Loader resumed(tiny_tokenizer(), src, o);
    resumed.restore(p);
    std::vector<Batch> rest = drain(resumed);
    REQUIRE(rest.size() == all.size() - cut);
    for (size_t i = 0; i < rest.size(); ++i) check_same_batch(rest[i], all[cut + i]);
  }
  CHECK(positions.back().epoch == 2);
  CHECK(positions.back().index == 0);
  LoaderPosition bad = positions[1];
  bad.seed = 6;
  Loader other(tiny_tokenizer(), src, o);
  CHECK_THROWS_WITH_AS(other.restore(bad), doctest::Contains("seed"), Error);
  CHECK_THROWS_WITH_AS(LoaderPosition::from_json(json{{"epoch", 1}}), doctest::Contains("\"index\""), Error);
}

TEST_CASE("loader: the order depends on the seed and the epoch; mixing by count and fraction") {
  const Datasets& d = data();
  auto epoch_ids = [&](uint64_t seed, int64_t epochs, std::vector<DataSource> src) {
    LoaderOptions o;
    o.batch_size = 1000, o.seed = seed, o.epochs = epochs, o.sequence = tiny_options();
    Loader l(tiny_tokenizer(), std::move(src), o);
    std::vector<std::vector<std::string>> out;
    for (const Batch& b : drain(l)) out.push_back(b.ids);
    return out;
  };
  const std::vector<DataSource> und = {{d.file("understanding.json"), std::nullopt, d.small.str(), 1.0, -1}};
  const auto a = epoch_ids(1, 2, und), b = epoch_ids(1, 2, und), c = epoch_ids(2, 2, und);
  REQUIRE(a.size() == 2);
  CHECK(a == b);
  CHECK(a[0] != c[0]);
  CHECK(a[0] != a[1]);  // reshuffled per epoch
  auto sorted = [](std::vector<std::string> v) { return std::sort(v.begin(), v.end()), v; };
  CHECK(sorted(a[0]) == sorted(c[0]));

  const int64_t n_und = data().manifest["splits"]["train"]["understanding"].get<int64_t>();
  const std::vector<DataSource> mix = {{d.file("understanding.json"), std::nullopt, d.small.str(), 0.5, -1},
                                       {d.file("generation.json"), std::nullopt, d.small.str(), 1.0, 9}};
  const auto m = epoch_ids(3, 2, mix);
  for (const auto& e : m) {
    CHECK(static_cast<int64_t>(e.size()) == std::llround(0.5 * n_und) + 9);
    const auto gen = std::count_if(e.begin(), e.end(), [](const std::string& id) { return id.find('-', 7) == std::string::npos; });
    CHECK(gen == 9);  // 6 records: one whole pass + 3 drawn
  }
  const DataSource spec = parse_data_source("x.json,kind=generation,count=50000,root=/r");
  CHECK((spec.path == "x.json" && spec.kind == TaskKind::Generation && spec.count == 50000 && spec.root == "/r"));
}

TEST_CASE("loader: preference batches are [chosen...; rejected...]") {
  const Datasets& d = data();
  LoaderOptions o;
  o.batch_size = 2, o.shuffle = false, o.epochs = 1, o.sequence = tiny_options();
  Loader l(tiny_tokenizer(), {{d.file("preference.json"), TaskKind::Preference, d.small.str(), 1.0, -1}}, o);
  const Batch b = *l.next();
  REQUIRE(b.ids.size() == 2);
  CHECK(b.input_ids.size(0) == 4);
  CHECK(b.gen_rows == std::vector<int64_t>{0, 1, 2, 3});
  const Record& r0 = l.records(0)[0];
  const Record& r1 = l.records(0)[1];
  CHECK(b.ids == std::vector<std::string>{r0.id, r1.id});
  const int64_t per = 3 * 256 * 256;
  const std::vector<float> g = floats(b.gen_images);
  auto target = [&](const Record& r, int k) {
    return floats(gen_target_transform(qwen2_vl::load_image(resolve_image(r, r.images[k])), o.sequence.gen, 0));
  };
  CHECK(std::vector<float>(g.begin(), g.begin() + per) == target(r0, 0));            // chosen of pair 0
  CHECK(std::vector<float>(g.begin() + per, g.begin() + 2 * per) == target(r1, 0));  // chosen of pair 1
  CHECK(std::vector<float>(g.begin() + 2 * per, g.begin() + 3 * per) == target(r0, 1));  // rejected of pair 0
  // Preference and other kinds do not mix.
  CHECK_THROWS_WITH_AS(Loader(tiny_tokenizer(),
                              {{d.file("preference.json"), std::nullopt, d.small.str(), 1.0, -1},
                               {d.file("generation.json"), std::nullopt, d.small.str(), 1.0, -1}},
                              o),
                       doctest::Contains("preference"), Error);
}

TEST_CASE("loader: bad records are skipped and counted; strict mode names the record") {
  const Datasets& d = data();
  TempDir dir("bad");
  fs::copy_file(d.small.path / "train/images/000000.png", dir.path / "good.png");
  std::ofstream(dir.path / "corrupt.png", std::ios::binary) << std::string("\x89PNG\r\n\x1a\n", 8) << "not a png at all";
  const std::string gen = R"("conversations": [{"from": "human", "value": "Draw."}, {"from": "gpt", "value": "Here.<image_gen>"}])";
  const std::string und = R"("conversations": [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "A shape."}])";
  const std::string two = R"("conversations": [{"from": "human", "value": "<image><image>What?"}, {"from": "gpt", "value": "Two."}])";
  const std::string lines[] = {
      R"({"id": "good-0", )" + gen + R"(, "images": ["good.png"]})",
      R"({"id": "good-1", )" + und + R"(, "images": ["good.png"]})",
      R"({"id": "bad-missing", )" + gen + R"(, "images": ["nope.png"]})",
      R"({"id": "bad-count", )" + two + R"(, "images": ["good.png"]})",
      R"({"id": "bad-corrupt", )" + gen + R"(, "images": ["corrupt.png"]})",
      R"({"id": "bad-json", "conversations": [)",
  };
  auto write = [&](const std::string& name, std::initializer_list<int> which) {
    std::ofstream out(dir.path / name);
    for (int i : which) out << lines[i] << "\n";
    return (dir.path / name).string();
  };
  const std::string all = write("all.jsonl", {0, 1, 2, 3, 4, 5});
  LoaderOptions o;
  o.shuffle = false, o.epochs = 1, o.sequence = tiny_options();
  std::vector<std::string> warned;
  o.warn = [&](const std::string& m) { warned.push_back(m); };
  Loader l(tiny_tokenizer(), {{all, std::nullopt, "", 1.0, -1}}, o);
  std::vector<std::string> got;
  for (const Batch& b : drain(l)) got.insert(got.end(), b.ids.begin(), b.ids.end());
  CHECK(got == std::vector<std::string>{"good-0", "good-1"});
  const DataStats s = l.stats();
  CHECK(s.records == 4);
  CHECK(s.bad_records == 2);   // count mismatch, malformed line
  CHECK(s.bad_examples == 2);  // missing file, corrupt PNG
  REQUIRE(warned.size() == 4);
  auto warned_about = [&](const char* what) {
    return std::any_of(warned.begin(), warned.end(), [&](const std::string& w) { return w.find(what) != std::string::npos; });
  };
  CHECK(warned_about("bad-count"));
  CHECK(warned_about("all.jsonl:6"));
  CHECK(warned_about("bad-missing"));
  CHECK(warned_about("nope.png"));
  CHECK(warned_about("bad-corrupt"));

  // Strict: the first bad record stops, named.
  o.strict = true;
  CHECK_THROWS_WITH_AS(Loader(tiny_tokenizer(), {{write("count.jsonl", {0, 3}), std::nullopt, "", 1.0, -1}}, o),
                       doctest::Contains("bad-count"), Error);
  CHECK_THROWS_WITH_AS(Loader(tiny_tokenizer(), {{write("json.jsonl", {0, 5}), std::nullopt, "", 1.0, -1}}, o),
                       doctest::Contains("json.jsonl:2"), Error);
  Loader strict(tiny_tokenizer(), {{write("missing.jsonl", {0, 2, 1}), std::nullopt, "", 1.0, -1}}, o);
  CHECK(strict.next()->ids == std::vector<std::string>{"good-0"});
  CHECK_THROWS_WITH_AS(strict.next(), doctest::Contains("bad-missing"), Error);

  // cutoff_len: a generation sample (> 640 tokens) is skipped and counted, or named under strict.
  o.strict = false, o.cutoff_len = 600;
  Loader cut(tiny_tokenizer(), {{write("cut.jsonl", {0, 1}), std::nullopt, "", 1.0, -1}}, o);
  got.clear();
  for (const Batch& b : drain(cut)) got.insert(got.end(), b.ids.begin(), b.ids.end());
  CHECK(got == std::vector<std::string>{"good-1"});
  CHECK(cut.stats().too_long == 1);
  o.strict = true;
  Loader cut_strict(tiny_tokenizer(), {{write("cut.jsonl", {0, 1}), std::nullopt, "", 1.0, -1}}, o);
  CHECK_THROWS_WITH_AS(cut_strict.next(), doctest::Contains("good-0"), Error);
}

TEST_CASE("records: a number out of double's range is an error naming the file, not a JSON exception") {
  // Found by tools/fuzz/fuzz_records: 1e309 made nlohmann throw out_of_range past read_records.
  TempDir dir("huge_number");
  const std::string path = dir.str() + "/records.json";
  std::ofstream(path) << R"([{"id": 1e309, "conversations": [{"from": "human", "value": "hi"}]}])";
  train::ReadOptions o;
  try {
    (void)train::read_records(path, o);
    FAIL("accepted 1e309");
  } catch (const vt::Error& e) {
    CHECK(std::string(e.what()).find("records.json") != std::string::npos);
  }
}
