// dataset.cpp: the ShapeWorld dataset writer (see dataset.h and docs/shapeworld.md).
//
// Two passes per dataset. Pass 1 samples every scene of both splits (cheap, parallel) so that the
// train split's (colour, shape) frequencies, which POPE's "popular" negatives need, are known
// before any question is written. Pass 2 renders and writes the images and builds the records,
// in parallel; the records of scene i land in slot i, and the JSON files are assembled in order
// at the end, so the output is independent of scheduling.
#include "shapeworld/dataset.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>

#include "shapeworld/language.h"
#include "shapeworld/render.h"
#include "shapeworld/tasks.h"
#include "vt/error.h"

namespace vt::shapes {

using nlohmann::json;

std::string scene_id(const std::string& split, int index) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%06d", index);
  return split + "-" + buf;
}

static std::string image_path(const std::string& split, int index, const char* suffix) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%06d%s.png", index, suffix);
  return split + "/images/" + buf;
}

static json turn(const char* from, const std::string& value) { return {{"from", from}, {"value", value}}; }

static json objects_json(const Scene& s) {
  json a = json::array();
  for (const Object& o : s.objects) a.push_back(object_to_json(o));
  return a;
}

// Stream purposes: each scene draws its parts from independent streams.
enum Purpose : uint64_t { kScene = 1, kQuestions = 2, kEdit = 3, kPreference = 4, kPrompt = 5 };

struct SceneRecords {
  json generation, editing, preference;
  std::vector<json> understanding;
};

// One JSON array per file, one record per line: valid JSON that diff and grep can still read.
static std::string json_lines_array(const std::vector<json>& records) {
  std::string out = "[\n";
  for (size_t i = 0; i < records.size(); ++i) {
    out += records[i].dump();
    out += i + 1 < records.size() ? ",\n" : "\n";
  }
  return out + "]\n";
}

static void build_scene(const std::string& split, int i, const GenSample& g, const SplitContext& ctx,
                        uint64_t key, const std::string& root, SceneRecords& rec) {
  const std::string id = scene_id(split, i);
  const std::string img = image_path(split, i, "");
  write_png(root + "/" + img, render_scene(g.scene));

  Rng prompt_rng(stream_key(key, kPrompt));
  const std::string prompt = t2i_prompt(g.meta.prompt, prompt_rng.below(kNumPromptTemplates));
  const std::string reply = t2i_reply(g.meta.prompt);
  rec.generation = {{"id", id},
                    {"conversations", {turn("human", prompt), turn("gpt", reply)}},
                    {"images", {img}},
                    {"geneval", geneval_to_json(g.meta)},
                    {"heldout", g.heldout},
                    {"objects", objects_json(g.scene)},
                    {"background", background_to_json(g.scene.background)}};

  // POPE types rotate over scenes so every type gets the same number of yes/no pairs.
  Rng q_rng(stream_key(key, kQuestions));
  std::vector<Question> qs = sample_questions(g.scene, ctx, i % 3, q_rng);
  for (size_t k = 0; k < qs.size(); ++k) {
    json r = {{"id", id + "-q" + std::to_string(k)},
              {"image", img},
              {"conversations", {turn("human", "<image>\n" + qs[k].question), turn("gpt", qs[k].answer)}},
              {"task", qs[k].task},
              {"scene", id}};
    if (!qs[k].pope.empty()) r["pope"] = qs[k].pope;
    rec.understanding.push_back(std::move(r));
  }

  Rng e_rng(stream_key(key, kEdit));
  if (std::optional<EditSpec> e = sample_edit(g.scene, ctx, e_rng)) {
    const std::string target = image_path(split, i, "_edit");
    write_png(root + "/" + target, render_scene(e->target));
    json edit = {{"op", edit_op_name(e->op)}};
    if (e->object >= 0) edit["object"] = e->object;
    if (e->op == EditOp::recolor) edit["new_color"] = color_name(e->new_color);
    if (e->op == EditOp::add) edit["added"] = object_to_json(e->added);
    if (e->op == EditOp::move) {
      static const char* const dirs[] = {"left", "right", "up", "down"};
      edit["direction"] = dirs[int(e->direction)];
    }
    rec.editing = {{"id", id + "-edit"},
                   {"conversations", {turn("human", "<image>\n" + e->instruction), turn("gpt", "The output image is: <image_gen>")}},
                   {"images", {img, target}},
                   {"edit", edit},
                   {"source_objects", objects_json(g.scene)},
                   {"target_objects", objects_json(e->target)}};
  }

  Rng p_rng(stream_key(key, kPreference));
  Violation v = pick_violation(g.meta.tag, p_rng);
  std::optional<Scene> bad = violate(g, v, ctx, p_rng);
  if (!bad && v == Violation::wrong_shape) bad = violate(g, v = Violation::missing_object, ctx, p_rng);
  if (bad) {
    const std::string rejected = image_path(split, i, "_rejected");
    write_png(root + "/" + rejected, render_scene(*bad));
    rec.preference = {{"id", id + "-pref"},
                      {"conversations", {turn("human", prompt)}},
                      {"chosen", turn("gpt", reply)},
                      {"rejected", turn("gpt", reply)},
                      {"images", {img, rejected}},
                      {"violation", violation_name(v)},
                      {"geneval", geneval_to_json(g.meta)},
                      {"rejected_objects", objects_json(*bad)}};
  }
}

nlohmann::json make_dataset(const MakeOptions& opt) {
  VT_CHECK(opt.size == 64 || opt.size == 128 || opt.size == 256 || opt.size == 512,
           "shapes make: --size must be 64, 128, 256 or 512, got ", opt.size);
  VT_CHECK(opt.train >= 0 && opt.test >= 0, "shapes make: negative scene count");
  VT_CHECK(!opt.out_dir.empty(), "shapes make: no output directory given");
  VT_CHECK(opt.noise_sigma >= 0 && opt.noise_sigma <= 32, "shapes make: noise sigma ", opt.noise_sigma,
           " outside [0, 32]");
  VT_CHECK(opt.object_scale >= kMinObjectScale && opt.object_scale <= kMaxObjectScale,
           "shapes make: object scale ", opt.object_scale, " outside [", kMinObjectScale, ", ", kMaxObjectScale, "]");
  const std::string root = opt.out_dir;
  for (const char* split : {"train", "test"}) {
    std::error_code ec;
    std::filesystem::create_directories(root + "/" + split + "/images", ec);
    VT_CHECK(!ec, root, "/", split, "/images: cannot create directory: ", ec.message());
  }
  const HeldOut heldout = make_heldout(opt.seed);
  const std::string splits[2] = {"train", "test"};
  const int counts[2] = {opt.train, opt.test};
  SplitContext ctx[2];
  std::vector<GenSample> gens[2];

  // Pass 1: scenes.
  for (int sp = 0; sp < 2; ++sp) {
    ctx[sp].size = opt.size;
    ctx[sp].train = sp == 0;
    ctx[sp].heldout = heldout;
    ctx[sp].noise_sigma = opt.noise_sigma;
    ctx[sp].plain = opt.plain;
    ctx[sp].object_scale = opt.object_scale;
    gens[sp].resize(size_t(counts[sp]));
    std::string error;
#pragma omp parallel for schedule(dynamic, 64)
    for (int i = 0; i < counts[sp]; ++i) {
      try {
        Rng rng(stream_key(opt.seed, uint64_t(sp), uint64_t(i), kScene));
        gens[sp][size_t(i)] = sample_generation(Tag(i % kNumTags), ctx[sp], rng);
      } catch (const std::exception& e) {
#pragma omp critical(shapes_error)
        if (error.empty()) error = scene_id(splits[sp], i) + ": " + e.what();
      }
    }
    VT_CHECK(error.empty(), error);
  }
  std::map<std::pair<int, int>, int> freq;
  for (const GenSample& g : gens[0])
    for (const Object& o : g.scene.objects) freq[{o.color, int(o.shape)}] += 1;
  std::vector<std::pair<int, int>> popular;
  for (int c = 0; c < kNumColors; ++c)
    for (int s = 0; s < kNumShapes; ++s) popular.push_back({c, s});
  std::stable_sort(popular.begin(), popular.end(), [&](auto a, auto b) { return freq[a] > freq[b]; });
  ctx[0].popular = ctx[1].popular = popular;

  // Pass 2: images and records.
  json manifest_splits = json::object();
  const size_t total = size_t(opt.train) + size_t(opt.test);
  std::atomic<size_t> done{0};
  std::mutex progress_mutex;
  const size_t step = std::max<size_t>(1, total / 100);
  for (int sp = 0; sp < 2; ++sp) {
    std::vector<SceneRecords> recs(static_cast<size_t>(counts[sp]));  // not size_t(...): clang reads that as a function declaration
    std::string error;
#pragma omp parallel for schedule(dynamic, 16)
    for (int i = 0; i < counts[sp]; ++i) {
      try {
        uint64_t key = stream_key(opt.seed, uint64_t(sp), uint64_t(i), 0);
        build_scene(splits[sp], i, gens[sp][size_t(i)], ctx[sp], key, root, recs[size_t(i)]);
      } catch (const std::exception& e) {
#pragma omp critical(shapes_error)
        if (error.empty()) error = scene_id(splits[sp], i) + ": " + e.what();
      }
      size_t d = ++done;
      if (opt.progress && (d % step == 0 || d == total)) {
        std::lock_guard<std::mutex> lock(progress_mutex);
        opt.progress("make", d, total);
      }
    }
    VT_CHECK(error.empty(), error);
    std::vector<json> generation, understanding, editing, preference;
    size_t images = 0;
    for (SceneRecords& r : recs) {
      generation.push_back(std::move(r.generation));
      ++images;
      for (json& u : r.understanding) understanding.push_back(std::move(u));
      if (!r.editing.is_null()) editing.push_back(std::move(r.editing)), ++images;
      if (!r.preference.is_null()) preference.push_back(std::move(r.preference)), ++images;
    }
    const std::string dir = root + "/" + splits[sp] + "/";
    write_text_atomic(dir + "generation.json", json_lines_array(generation));
    write_text_atomic(dir + "understanding.json", json_lines_array(understanding));
    write_text_atomic(dir + "editing.json", json_lines_array(editing));
    write_text_atomic(dir + "preference.json", json_lines_array(preference));
    manifest_splits[splits[sp]] = {{"scenes", counts[sp]},
                                   {"images", images},
                                   {"generation", generation.size()},
                                   {"understanding", understanding.size()},
                                   {"editing", editing.size()},
                                   {"preference", preference.size()},
                                   {"files",
                                    {{"generation", splits[sp] + "/generation.json"},
                                     {"understanding", splits[sp] + "/understanding.json"},
                                     {"editing", splits[sp] + "/editing.json"},
                                     {"preference", splits[sp] + "/preference.json"}}}};
  }

  json pal = json::array(), held = json::array(), shapes = json::array();
  for (int c = 0; c < kNumColors; ++c)
    pal.push_back({{"name", palette()[c].name}, {"rgb", {palette()[c].r, palette()[c].g, palette()[c].b}}});
  for (int s = 0; s < kNumShapes; ++s) {
    shapes.push_back(shape_name(Shape(s)));
    held.push_back({{"shape", shape_name(Shape(s))}, {"color", color_name(heldout.color_of_shape[s])}});
  }
  json manifest = {{"format", "shapeworld"},
                   {"version", 1},
                   {"seed", opt.seed},
                   {"size", opt.size},
                   {"noise_sigma", opt.noise_sigma},
                   {"plain_background", opt.plain},
                   {"object_scale", opt.object_scale},
                   {"palette", pal},
                   {"shapes", shapes},
                   {"sizes", {{"small", half_extent(SizeClass::small, opt.size, opt.object_scale)},
                              {"large", half_extent(SizeClass::large, opt.size, opt.object_scale)}}},
                   {"heldout", held},
                   {"splits", manifest_splits}};
  write_text_atomic(root + "/manifest.json", manifest.dump(2) + "\n");
  return manifest;
}

}  // namespace vt::shapes
