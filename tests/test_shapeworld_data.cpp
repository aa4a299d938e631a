// test_shapeworld_data.cpp: the dataset on disk: determinism, every record parses and points to
// an existing image, held-out pairs stay out of train, and the file-level evaluators (generation,
// understanding, edits) score references perfectly, reject wrong input and survive bad records.
#include <doctest/doctest.h>

#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "shapeworld/dataset.h"
#include "shapeworld/evaluate.h"
#include "shapeworld/language.h"
#include "shapeworld/render.h"
#include "shapeworld/tasks.h"
#include "vt/error.h"

using namespace vt::shapes;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// A scratch directory removed at the end of the test case.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& tag) {
    path = fs::temp_directory_path() / ("vt_shapeworld_" + tag + "_" + std::to_string(getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string str() const { return path.string(); }
};

MakeOptions small_dataset(const std::string& dir, uint64_t seed) {
  MakeOptions m;
  m.out_dir = dir;
  m.size = 64;
  m.train = 48;
  m.test = 36;
  m.seed = seed;
  return m;
}

// Every regular file under root, relative path -> bytes.
std::map<std::string, std::string> snapshot(const fs::path& root) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(root))
    if (e.is_regular_file()) out[fs::relative(e.path(), root).string()] = read_text(e.path().string());
  return out;
}

}  // namespace

TEST_CASE("shapeworld data: the same seed writes the same files, another seed different ones") {
  TempDir a("seed_a"), b("seed_b"), c("seed_c");
  make_dataset(small_dataset(a.str(), 5));
  make_dataset(small_dataset(b.str(), 5));
  make_dataset(small_dataset(c.str(), 6));
  auto sa = snapshot(a.path), sb = snapshot(b.path), sc = snapshot(c.path);
  CHECK(sa.size() > 200);
  CHECK(sa == sb);
  CHECK(sa.at("test/generation.json") != sc.at("test/generation.json"));
  CHECK(sa.at("train/images/000000.png") != sc.at("train/images/000000.png"));
  for (const auto& [name, bytes] : sa) CHECK_MESSAGE(name.find(".tmp.") == std::string::npos, name);
}

TEST_CASE("shapeworld data: --plain keeps every record and object, and makes each background one colour") {
  TempDir a("textured"), b("plain");
  MakeOptions textured = small_dataset(a.str(), 5), plain = small_dataset(b.str(), 5);
  plain.plain = true;
  make_dataset(textured);
  make_dataset(plain);
  for (const char* f : {"test/generation.json", "test/understanding.json", "train/editing.json"}) {
    nlohmann::json ja = nlohmann::json::parse(read_text(a.str() + "/" + f)), jb = nlohmann::json::parse(read_text(b.str() + "/" + f));
    REQUIRE(ja.size() == jb.size());
    for (size_t i = 0; i < ja.size(); ++i) {
      INFO(f, " record ", i);
      CHECK(ja[i]["conversations"] == jb[i]["conversations"]);  // the same scenes and questions
      if (ja[i].contains("objects")) CHECK(ja[i]["objects"] == jb[i]["objects"]);
    }
  }
  // The corner pixels (objects keep a gap from the border) of a plain image are all equal; of a
  // textured one they are not.
  int textured_uniform = 0;
  for (int k = 0; k < 8; ++k) {
    char name[64];
    std::snprintf(name, sizeof name, "/test/images/%06d.png", k);
    for (const auto* dir : {&a, &b}) {
      const Image im = read_image(dir->str() + name);
      auto px = [&](int x, int y) { const uint8_t* p = &im.rgb[size_t(y * im.width + x) * 3]; return std::array<int, 3>{p[0], p[1], p[2]}; };
      const bool uniform = px(0, 0) == px(im.width - 1, 0) && px(0, 0) == px(0, im.height - 1) &&
                           px(0, 0) == px(im.width - 1, im.height - 1) && px(0, 0) == px(1, 1);
      if (dir == &b) CHECK_MESSAGE(uniform, name);
      else textured_uniform += uniform;
    }
  }
  CHECK(textured_uniform == 0);
  // The judge scores the plain renders 1.0 as it does the textured ones.
  EvalOptions opt;
  opt.data_dir = b.str();
  const GenReport rep = evaluate_generation(opt);
  CHECK(rep.all.correct == rep.all.total);
  CHECK(rep.all.total == 36);
}

TEST_CASE("shapeworld data: --object-scale draws larger objects, the manifest records it and the judge reads it") {
  TempDir a("scale1"), b("scale175");
  MakeOptions base = small_dataset(a.str(), 5), big = small_dataset(b.str(), 5);
  big.object_scale = 1.75f;
  make_dataset(base);
  const json manifest = make_dataset(big);
  CHECK(manifest["object_scale"].get<double>() == doctest::Approx(1.75));
  CHECK(manifest["sizes"]["small"].get<double>() == doctest::Approx(0.08 * 1.75 * 64));
  CHECK(manifest["sizes"]["large"].get<double>() == doctest::Approx(0.13 * 1.75 * 64));
  // Every object's half extent is its size class's at the scale.
  const json gen = json::parse(read_text(b.str() + "/test/generation.json"));
  int objects = 0;
  for (const json& r : gen)
    for (const json& o : r["objects"]) {
      const double want = (o["size"] == "small" ? 0.08 : 0.13) * 1.75 * 64;
      CHECK(o["r"].get<double>() == doctest::Approx(want).epsilon(1e-3));
      ++objects;
    }
  CHECK(objects > 36);
  // The ground truth scores 1.0 in generation and edits.
  EvalOptions opt;
  opt.data_dir = b.str();
  const GenReport g = evaluate_generation(opt);
  CHECK(g.all.total == 36);
  CHECK(g.all.correct == 36);
  const EditReport e = evaluate_edits(opt);
  CHECK(e.all.total > 0);
  CHECK(e.all.correct == e.all.total);
  // The detector's size classes follow the scale: at the dataset's scale they are the records'; at
  // scale 1 every object of this dataset reads as large.
  DetectOptions scaled;
  scaled.object_scale = read_dataset_info(b.str()).object_scale;
  CHECK(scaled.object_scale == 1.75f);
  int matched = 0, agree = 0, large_at_1 = 0;
  for (const json& r : gen) {
    const Image im = read_image(b.str() + "/" + r["images"][0].get<std::string>());
    const std::vector<Detection> at_scale = detect_objects(im, scaled), at_1 = detect_objects(im, {});
    REQUIRE(at_scale.size() == r["objects"].size());
    REQUIRE(at_1.size() == at_scale.size());
    for (size_t k = 0; k < at_scale.size(); ++k) {
      const Detection& d = at_scale[k];
      for (const json& o : r["objects"])  // the record object at this detection's centre
        if (std::abs(o["x"].get<double>() - d.cx) < 2 && std::abs(o["y"].get<double>() - d.cy) < 2) {
          ++matched;
          agree += std::string(size_name(d.size)) == o["size"].get<std::string>();
        }
      large_at_1 += at_1[k].size == SizeClass::large;
    }
  }
  CHECK(matched == objects);
  CHECK(agree == objects);
  CHECK(large_at_1 == objects);
  // Out of range or mistyped scales are refused, naming the thing.
  for (float bad : {0.3f, 2.5f, std::nanf("")}) {
    MakeOptions m = small_dataset(a.str(), 5);
    m.object_scale = bad;
    std::string msg;
    try { make_dataset(m); } catch (const vt::Error& ex) { msg = ex.what(); }
    CHECK_MESSAGE(msg.find("object scale") != std::string::npos, msg);
  }
  json m = json::parse(read_text(b.str() + "/manifest.json"));
  m["object_scale"] = "big";
  write_text_atomic(b.str() + "/manifest.json", m.dump());
  std::string msg;
  try { read_dataset_info(b.str()); } catch (const vt::Error& ex) { msg = ex.what(); }
  CHECK_MESSAGE(msg.find("manifest.json: object_scale must be a number") != std::string::npos, msg);
  CHECK(read_dataset_info(a.str()).object_scale == 1.0f);
  CHECK(read_dataset_info(a.str()).size == 64);
}

TEST_CASE("shapeworld data: every record parses, has the training format and points to an existing image") {
  TempDir d("records");
  json manifest = make_dataset(small_dataset(d.str(), 9));
  CHECK(json::parse(read_text(d.str() + "/manifest.json")) == manifest);
  HeldOut held;
  for (int s = 0; s < kNumShapes; ++s)
    held.color_of_shape[size_t(s)] = parse_color(manifest["heldout"][size_t(s)]["color"].get<std::string>(), "manifest");
  for (const char* split : {"train", "test"}) {
    INFO(split);
    const bool train = std::string(split) == "train";
    auto image_exists = [&](const json& p) {
      REQUIRE(p.is_string());
      CHECK_MESSAGE(fs::is_regular_file(d.str() + "/" + p.get<std::string>()), p.get<std::string>());
    };
    auto no_heldout = [&](const json& objects) {
      for (const json& o : objects) {
        Object ob = object_from_json(o, split);
        if (train) CHECK_FALSE(held.contains(ob.shape, ob.color));
      }
    };
    auto gen = load_records(d.str() + "/" + split + "/generation.json");
    CHECK(gen.size() == size_t(manifest["splits"][split]["scenes"].get<int>()));
    int heldout_prompts = 0;
    for (const json& r : gen) {
      GenEvalMeta m = geneval_from_json(r.at("geneval"), r.at("id").get<std::string>());
      CHECK(r["conversations"][0]["from"] == "human");
      CHECK(r["conversations"][1]["value"].get<std::string>().ends_with("<image_gen>"));
      CHECK(r["images"].size() == 1);
      image_exists(r["images"][0]);
      no_heldout(r["objects"]);
      heldout_prompts += r["heldout"].get<bool>();
      CHECK(m.prompt == geneval_phrase(m));
    }
    if (train) CHECK(heldout_prompts == 0);
    else CHECK(heldout_prompts > 0);
    for (const json& r : load_records(d.str() + "/" + split + "/understanding.json")) {
      CHECK(r.at("image").is_string());
      image_exists(r["image"]);
      CHECK(r["conversations"][0]["value"].get<std::string>().starts_with("<image>\n"));
      CHECK(r["conversations"][1]["from"] == "gpt");
      if (train && r["task"] == "exist") {
        // Not even a question names a held-out pair in train.
        ObjectCounts named = parse_description(r["conversations"][0]["value"].get<std::string>());
        for (const auto& [key, n] : named) CHECK_FALSE(held.contains(Shape(key.second), key.first));
      }
    }
    for (const json& r : load_records(d.str() + "/" + split + "/editing.json")) {
      REQUIRE(r["images"].size() == 2);
      image_exists(r["images"][0]);
      image_exists(r["images"][1]);
      CHECK(r["conversations"][1]["value"] == "The output image is: <image_gen>");
      no_heldout(r["target_objects"]);
      parse_edit_op(r["edit"]["op"].get<std::string>(), r["id"].get<std::string>());
    }
    for (const json& r : load_records(d.str() + "/" + split + "/preference.json")) {
      REQUIRE(r["images"].size() == 2);
      image_exists(r["images"][0]);
      image_exists(r["images"][1]);
      CHECK(r.contains("chosen"));
      CHECK(r.contains("rejected"));
      CHECK(r["violation"].is_string());
      no_heldout(r["rejected_objects"]);
    }
  }
}

TEST_CASE("shapeworld data: file-level evaluation of references, wrong images and bad records") {
  TempDir d("eval");
  make_dataset(small_dataset(d.str(), 13));
  EvalOptions opt;
  opt.data_dir = d.str();

  SUBCASE("generation: references score 1, rejected renders score 0") {
    GenReport ref = evaluate_generation(opt);
    CHECK(ref.errors.empty());
    CHECK(ref.all.total == 36);
    CHECK(ref.overall() == 1.0);
    // The preference pairs' rejected images, under the generation ids, must all fail.
    fs::create_directories(d.path / "rejected");
    for (const json& r : load_records(d.str() + "/test/preference.json")) {
      std::string id = r["id"].get<std::string>();
      id = id.substr(0, id.size() - std::string("-pref").size());
      fs::copy_file(d.path / r["images"][1].get<std::string>(), d.path / "rejected" / (id + ".png"));
    }
    opt.images_dir = (d.path / "rejected").string();
    GenReport bad = evaluate_generation(opt);
    CHECK(bad.all.correct == 0);
    CHECK(bad.errors.empty());
  }

  SUBCASE("generation: bad records and images are named, counted, and the rest is scored") {
    std::vector<json> recs = load_records(d.str() + "/test/generation.json");
    recs[0]["geneval"]["include"][0]["class"] = "hexagon";           // metadata that does not parse
    recs[1]["images"][0] = "test/images/does_not_exist.png";         // a record that points nowhere
    write_text_atomic(d.str() + "/test/images/000002.png", "not a png");  // an unreadable image
    recs[3].erase("geneval");                                        // no metadata at all
    recs.push_back(json::array({1, 2}));                             // not even an object
    std::string text = "[\n";
    for (size_t i = 0; i < recs.size(); ++i) text += recs[i].dump() + (i + 1 < recs.size() ? ",\n" : "\n");
    write_text_atomic(d.str() + "/test/generation.json", text + "]\n");
    GenReport rep = evaluate_generation(opt);
    REQUIRE(rep.errors.size() == 5);
    CHECK(rep.errors[0].find("test-000000") != std::string::npos);
    CHECK(rep.errors[0].find("hexagon") != std::string::npos);
    CHECK(rep.errors[1].find("test-000001") != std::string::npos);
    CHECK(rep.errors[1].find("does_not_exist.png") != std::string::npos);
    CHECK(rep.errors[2].find("test-000002") != std::string::npos);
    CHECK(rep.errors[3].find("test-000003") != std::string::npos);
    CHECK(rep.errors[4].find("record #36") != std::string::npos);
    CHECK(rep.all.total == 37);
    CHECK(rep.all.correct == 32);
    CHECK(rep.failures.at("error") == 5);
    // Records whose tag still parses count as failures in their category.
    CHECK(rep.by_tag[0].total == 6);
    CHECK(rep.by_tag[0].correct == 5);
    CHECK(rep.table().find("error: test-000000") != std::string::npos);
    CHECK(rep.to_json()["errors"].size() == 5);
  }

  // Issue #19: a corrupt record in an array was reported at line 1; an empty records file and a
  // missing --images folder scored 0 instead of failing.
  SUBCASE("records: a corrupt record is named at its line; empty files and a missing images folder fail") {
    const std::string path = d.str() + "/test/generation.json";
    std::vector<json> recs = load_records(path);
    std::string text = "[\n";
    for (size_t i = 0; i < 5; ++i) text += recs[i].dump() + ",\n";  // records on lines 2 to 6
    text += "  {\"id\": \"broken\", \"geneval\": {\"tag\" \"single\"}},\n";   // line 7
    text += recs[5].dump() + "\n]\n";
    write_text_atomic(path, text);
    const auto error = [&](auto&& f) -> std::string {
      try {
        f();
      } catch (const vt::Error& e) {
        return e.what();
      }
      return "(no error)";
    };
    std::string e = error([&] { evaluate_generation(opt); });
    CHECK_MESSAGE(e.find("generation.json:7:") != std::string::npos, e);  // line 7, a column on it
    CHECK_MESSAGE(e.find("not valid JSON") != std::string::npos, e);

    for (const char* empty : {"", "  \n\n", "[]\n"}) {
      write_text_atomic(path, empty);
      e = error([&] { evaluate_generation(opt); });
      CHECK_MESSAGE(e.find("generation.json: no records") != std::string::npos, e);
    }
    write_text_atomic(d.str() + "/test/editing.json", "");
    CHECK(error([&] { evaluate_edits(opt); }).find("editing.json: no records") != std::string::npos);
    write_text_atomic(d.str() + "/empty_answers.jsonl", "\n");
    opt.answers_path = d.str() + "/empty_answers.jsonl";
    CHECK(error([&] { evaluate_understanding(opt); }).find("empty_answers.jsonl: no answers") != std::string::npos);
    write_text_atomic(d.str() + "/test/understanding.json", "[]");
    CHECK(error([&] { evaluate_understanding(opt); }).find("understanding.json: no records") != std::string::npos);

    opt.images_dir = d.str() + "/no_such_folder";
    CHECK(error([&] { evaluate_edits(opt); }).find("no_such_folder: no such directory") != std::string::npos);
    write_text_atomic(path, recs[0].dump());
    CHECK(error([&] { evaluate_generation(opt); }).find("no_such_folder: no such directory") != std::string::npos);
  }

  SUBCASE("understanding: reference answers score 1; POPE counts always-yes; bad answers are named") {
    std::vector<json> recs = load_records(d.str() + "/test/understanding.json");
    std::string good, yes;
    for (const json& r : recs) {
      good += json{{"id", r["id"]}, {"answer", r["conversations"][1]["value"]}}.dump() + "\n";
      yes += json{{"question_id", r["id"]}, {"text", "Yes, there is."}}.dump() + "\n";
    }
    write_text_atomic(d.str() + "/good.jsonl", good);
    opt.answers_path = d.str() + "/good.jsonl";
    UnderstandingReport ok = evaluate_understanding(opt);
    CHECK(ok.errors.empty());
    CHECK(ok.all.accuracy() == 1.0);
    for (const PopeScore& p : ok.pope) {
      CHECK(p.total() > 0);
      CHECK(p.f1() == 1.0);
    }
    write_text_atomic(d.str() + "/yes.jsonl", yes + "{broken\n");
    opt.answers_path = d.str() + "/yes.jsonl";
    UnderstandingReport y = evaluate_understanding(opt);
    REQUIRE(!y.errors.empty());
    CHECK(y.errors[0].find("yes.jsonl:" + std::to_string(recs.size() + 1)) != std::string::npos);
    for (const PopeScore& p : y.pope) {
      CHECK(p.recall() == 1.0);
      CHECK(p.precision() == doctest::Approx(0.5));
      CHECK(p.accuracy() == doctest::Approx(0.5));
      CHECK(p.yes_ratio() == 1.0);
    }
    // Drop one answer: it is named and counted wrong.
    write_text_atomic(d.str() + "/missing.jsonl", good.substr(good.find('\n') + 1));
    opt.answers_path = d.str() + "/missing.jsonl";
    UnderstandingReport m = evaluate_understanding(opt);
    REQUIRE(m.errors.size() == 1);
    CHECK(m.errors[0].find(recs[0]["id"].get<std::string>()) != std::string::npos);
    CHECK(m.all.correct == m.all.total - 1);
  }

  SUBCASE("edits: targets score 1, unedited sources score 0") {
    EditReport ref = evaluate_edits(opt);
    CHECK(ref.errors.empty());
    CHECK(ref.all.total > 30);
    CHECK(ref.all.accuracy() == 1.0);
    fs::create_directories(d.path / "unedited");
    for (const json& r : load_records(d.str() + "/test/editing.json"))
      fs::copy_file(d.path / r["images"][0].get<std::string>(), d.path / "unedited" / (r["id"].get<std::string>() + ".png"));
    opt.images_dir = (d.path / "unedited").string();
    EditReport none = evaluate_edits(opt);
    CHECK(none.all.correct == 0);
    CHECK(none.kept == none.to_keep);  // nothing lost: the scene itself was kept
  }
}

TEST_CASE("shapeworld data: answer normalisation") {
  CHECK(answer_matches("count", "There are three circles.", "3"));
  CHECK(answer_matches("count", "3", "3"));
  CHECK_FALSE(answer_matches("count", "four", "3"));
  CHECK_FALSE(answer_matches("count", "many", "3"));
  CHECK(answer_matches("color", "It is violet.", "purple"));
  CHECK(answer_matches("color", "Red", "red"));
  CHECK_FALSE(answer_matches("color", "blue", "red"));
  CHECK(answer_matches("exist", "No, there is not.", "No"));
  CHECK_FALSE(answer_matches("exist", "Maybe", "No"));
  CHECK(answer_matches("position", "It is on the left side.", "To the left."));
  CHECK(answer_matches("position", "under it", "Below."));
  CHECK(answer_matches("describe", "There is one large red circle and a small blue cross.",
                       "The image shows a small blue cross and a large red circle."));
  CHECK_FALSE(answer_matches("describe", "A red circle.", "The image shows a red circle and a blue cross."));
  CHECK_FALSE(answer_matches("describe", "A blue circle and a red cross.", "The image shows a red circle and a blue cross."));
}
