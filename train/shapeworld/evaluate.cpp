// evaluate.cpp: dataset-level generation and edit evaluation, records and reports (evaluate.h).
// Understanding answers are scored in understanding.cpp.
#include "shapeworld/evaluate.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <sstream>

#include "shapeworld/tasks.h"
#include "vt/error.h"

namespace vt::shapes {

using nlohmann::json;

std::vector<json> load_records(const std::string& path) {
  const std::string text = read_text(path);
  std::vector<json> out;
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && text[first] == '[') {
    // A JSON array: a syntax error is reported at its line and column, found from the byte offset.
    json whole;
    try {
      whole = json::parse(text);
    } catch (const json::parse_error& e) {
      const size_t at = std::min(e.byte > 0 ? e.byte - 1 : 0, text.size());
      const size_t line = 1 + size_t(std::count(text.begin(), text.begin() + at, '\n'));
      const size_t line_start = text.rfind('\n', at == 0 ? 0 : at - 1);
      const size_t column = at - (line_start == std::string::npos || at == 0 ? 0 : line_start + 1) + 1;
      VT_FAIL(path, ":", line, ":", column, ": not valid JSON: ", e.what());
    }
    for (json& r : whole) out.push_back(std::move(r));
    return out;
  }
  // JSON lines: one record per non-empty line.
  std::istringstream in(text);
  std::string line;
  for (int lineno = 1; std::getline(in, line); ++lineno) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json r = json::parse(line, nullptr, false);
    VT_CHECK(!r.is_discarded(), path, ":", lineno, ": not valid JSON (file is neither a JSON array nor JSON lines)");
    out.push_back(std::move(r));
  }
  return out;
}

// The records an evaluation scores: an empty file is an error, not a score of 0.
static std::vector<json> load_eval_records(const std::string& path) {
  std::vector<json> records = load_records(path);
  VT_CHECK(!records.empty(), path, ": no records; there is nothing to evaluate");
  return records;
}

// --images, when given, must be a folder (a mistyped path scored 0 instead of failing).
static void check_images_dir(const EvalOptions& opt) {
  std::error_code ec;
  VT_CHECK(opt.images_dir.empty() || std::filesystem::is_directory(opt.images_dir, ec), "images folder ",
           opt.images_dir, ": no such directory");
}

// "<id>: <message>", unless the message already starts with the id.
static std::string with_id(const std::string& id, const std::string& msg) {
  return msg.rfind(id, 0) == 0 ? msg : id + ": " + msg;
}

static std::string record_id(const json& r, size_t index) {
  if (r.is_object() && r.contains("id") && r["id"].is_string()) return r["id"].get<std::string>();
  return "record #" + std::to_string(index);
}

DatasetInfo read_dataset_info(const std::string& data_dir) {
  DatasetInfo info;
  const std::string path = data_dir + "/manifest.json";
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return info;
  const json m = json::parse(read_text(path), nullptr, false);
  if (!m.is_object()) return info;
  if (m.contains("size") && m["size"].is_number_integer()) info.size = m["size"].get<int>();
  if (m.contains("object_scale")) {
    const json& s = m["object_scale"];
    VT_CHECK(s.is_number() && s.get<double>() >= kMinObjectScale && s.get<double>() <= kMaxObjectScale, path,
             ": object_scale must be a number in [", kMinObjectScale, ", ", kMaxObjectScale, "], got ", s.dump());
    info.object_scale = s.get<float>();
  }
  return info;
}

// Loads a record's image: <images_dir>/<id>.png, or the dataset image at images[slot].
static Image load_record_image(const EvalOptions& opt, const json& rec, const std::string& id, size_t slot) {
  if (!opt.images_dir.empty()) return read_image(opt.images_dir + "/" + id + ".png");
  VT_CHECK(rec.contains("images") && rec["images"].is_array() && rec["images"].size() > slot &&
               rec["images"][slot].is_string(),
           "record has no image path at images[", slot, "]");
  return read_image(opt.data_dir + "/" + rec["images"][slot].get<std::string>());
}

// Runs fn(i) for every index in parallel, with progress reports serialised.
template <class Fn>
static void parallel_records(size_t n, const EvalOptions& opt, const char* stage, Fn fn) {
  std::atomic<size_t> done{0};
  std::mutex mu;
  const size_t step = std::max<size_t>(1, n / 100);
#pragma omp parallel for schedule(dynamic, 8)
  for (long i = 0; i < long(n); ++i) {
    fn(size_t(i));
    size_t d = ++done;
    if (opt.progress && (d % step == 0 || d == n)) {
      std::lock_guard<std::mutex> lock(mu);
      opt.progress(stage, d, n);
    }
  }
}

static json score_json(const Score& s) {
  return {{"correct", s.correct}, {"total", s.total}, {"accuracy", s.accuracy()}};
}

// ---- generation ---------------------------------------------------------------------------------

GenReport evaluate_generation_records(const std::vector<json>& records,
                                      const std::function<Image(const json&, const std::string&)>& load,
                                      const EvalOptions& opt) {
  GenReport rep;
  rep.split = opt.split;
  rep.images.resize(records.size());
  parallel_records(records.size(), opt, "eval gen", [&](size_t i) {
    GenImageResult& r = rep.images[i];
    const json& rec = records[i];
    r.id = record_id(rec, i);
    try {
      VT_CHECK(rec.is_object() && rec.contains("geneval"), "record has no 'geneval' metadata");
      const json& g = rec["geneval"];
      // The tag alone, first: a record whose other metadata is broken still counts in its category.
      if (g.is_object() && g.contains("tag") && g["tag"].is_string()) r.tag = int(parse_tag(g["tag"].get<std::string>(), r.id));
      GenEvalMeta meta = geneval_from_json(g, r.id);
      r.heldout = rec.value("heldout", false);
      Verdict v = judge_geneval_image(meta, load(rec, r.id), opt.detect);
      r.correct = v.correct;
      r.failure = failure_name(v.failure);
      r.detail = v.detail;
    } catch (const std::exception& e) {
      r.correct = false;
      r.failure = "error";
      r.detail = e.what();
    }
  });
  for (const GenImageResult& r : rep.images) {
    if (r.tag >= 0) rep.by_tag[size_t(r.tag)].add(r.correct);
    rep.all.add(r.correct);
    if (r.heldout) rep.heldout.add(r.correct);
    if (!r.correct) rep.failures[r.failure] += 1;
    if (r.failure == "error") rep.errors.push_back(with_id(r.id, r.detail));
  }
  return rep;
}

GenReport evaluate_generation(const EvalOptions& opt) {
  check_images_dir(opt);
  std::vector<json> records = load_eval_records(opt.data_dir + "/" + opt.split + "/generation.json");
  EvalOptions o = opt;
  o.detect = read_dataset_info(opt.data_dir).detect(opt.detect);
  return evaluate_generation_records(
      records, [&](const json& rec, const std::string& id) { return load_record_image(opt, rec, id, 0); }, o);
}

double GenReport::overall() const {
  double sum = 0;
  int n = 0;
  for (const Score& s : by_tag)
    if (s.total > 0) sum += s.accuracy(), ++n;
  return n ? sum / n : 0.0;
}

std::string GenReport::table() const {
  std::ostringstream os;
  char buf[64];
  os << "ShapeWorld GenEval (" << (split.empty() ? "" : split + " split, ") << all.total << " images, "
     << errors.size() << " errors)\n";
  os << "| Overall |";
  for (int t = 0; t < kNumTags; ++t) os << " " << tag_title(Tag(t)) << " |";
  os << "\n|--------:|";
  for (int t = 0; t < kNumTags; ++t) os << std::string(std::string(tag_title(Tag(t))).size() + 1, '-') << ":|";
  std::snprintf(buf, sizeof buf, "\n| %7.4f |", overall());
  os << buf;
  for (int t = 0; t < kNumTags; ++t) {
    int w = int(std::string(tag_title(Tag(t))).size());
    std::snprintf(buf, sizeof buf, " %*.4f |", w, by_tag[size_t(t)].accuracy());
    os << buf;
  }
  os << "\n";
  std::snprintf(buf, sizeof buf, "%.4f", all.accuracy());
  os << "images correct: " << buf << " (" << all.correct << "/" << all.total << ")\n";
  if (heldout.total > 0) {
    std::snprintf(buf, sizeof buf, "%.4f", heldout.accuracy());
    os << "held-out colour/shape prompts: " << buf << " (" << heldout.correct << "/" << heldout.total << ")\n";
  }
  if (!failures.empty()) {
    os << "failures:";
    for (const auto& [k, n] : failures) os << " " << k << " " << n;
    os << "\n";
  }
  for (size_t i = 0; i < errors.size() && i < 10; ++i) os << "error: " << errors[i] << "\n";
  if (errors.size() > 10) os << "... and " << errors.size() - 10 << " more errors\n";
  return os.str();
}

json GenReport::to_json() const {
  json cats = json::object(), imgs = json::array();
  for (int t = 0; t < kNumTags; ++t) cats[tag_name(Tag(t))] = score_json(by_tag[size_t(t)]);
  for (const GenImageResult& r : images)
    imgs.push_back({{"id", r.id}, {"tag", r.tag >= 0 ? json(tag_name(Tag(r.tag))) : json(nullptr)},
                    {"correct", r.correct}, {"failure", r.failure}, {"detail", r.detail}, {"heldout", r.heldout}});
  return {{"split", split},      {"overall", overall()},   {"categories", cats}, {"images_scored", score_json(all)},
          {"heldout", score_json(heldout)}, {"failures", failures}, {"errors", errors}, {"images", imgs}};
}

// ---- editing ------------------------------------------------------------------------------------

EditVerdict judge_edit(const json& rec, const std::vector<Detection>& dets, int image_size, int dataset_size) {
  const std::string id = record_id(rec, 0);
  VT_CHECK(rec.is_object() && rec.contains("edit") && rec.contains("source_objects") && rec.contains("target_objects"),
           id, ": editing record lacks 'edit', 'source_objects' or 'target_objects'");
  const json& e = rec["edit"];
  VT_CHECK(e.is_object() && e.contains("op") && e["op"].is_string(), id, ": editing record has no 'edit.op'");
  VT_CHECK(rec["source_objects"].is_array() && rec["target_objects"].is_array(), id, ": object lists must be arrays");
  const EditOp op = parse_edit_op(e["op"].get<std::string>(), id);
  const float scale = dataset_size > 0 ? float(image_size) / float(dataset_size) : 1.0f;
  auto objects = [&](const json& a) {
    std::vector<Object> out;
    for (const json& o : a) {
      Object ob = object_from_json(o, id);
      ob.cx *= scale, ob.cy *= scale, ob.r *= scale;
      out.push_back(ob);
    }
    return out;
  };
  const std::vector<Object> src = objects(rec["source_objects"]), tgt = objects(rec["target_objects"]);
  int idx = -1;
  if (op != EditOp::add) {
    VT_CHECK(e.contains("object") && e["object"].is_number_integer(), id, ": edit needs an integer 'object'");
    idx = e["object"].get<int>();
    VT_CHECK(idx >= 0 && size_t(idx) < src.size(), id, ": edit object ", idx, " out of range");
  }
  VT_CHECK(op != EditOp::add || !tgt.empty(), id, ": an add edit needs a target object");
  VT_CHECK(op == EditOp::remove || op == EditOp::add || tgt.size() == src.size(), id,
           ": source and target object lists differ in length");
  const float tol = 0.08f * float(image_size);
  std::vector<bool> used(dets.size(), false);
  auto near = [&](const Detection& d, const Object& o) { return std::hypot(d.cx - o.cx, d.cy - o.cy) < tol; };
  auto same = [](const Detection& d, Shape s, int c) { return d.shape == s && d.color == c; };

  EditVerdict v;
  // Untouched objects: every target object except the edited or added one.
  for (size_t k = 0; k < tgt.size(); ++k) {
    if ((op == EditOp::recolor || op == EditOp::move) && int(k) == idx) continue;
    if (op == EditOp::add && k + 1 == tgt.size()) continue;
    ++v.to_keep;
    int best = -1;
    float best_d = tol;
    for (size_t j = 0; j < dets.size(); ++j) {
      float d = std::hypot(dets[j].cx - tgt[k].cx, dets[j].cy - tgt[k].cy);
      if (!used[j] && same(dets[j], tgt[k].shape, tgt[k].color) && d < best_d) best = int(j), best_d = d;
    }
    if (best >= 0) used[size_t(best)] = true, ++v.kept;
  }
  auto claim = [&](auto pred) {
    for (size_t j = 0; j < dets.size(); ++j)
      if (!used[j] && pred(dets[j])) {
        used[j] = true;
        return true;
      }
    return false;
  };
  switch (op) {
    case EditOp::recolor: {
      const Object& t = tgt[size_t(idx)];
      v.edit_ok = claim([&](const Detection& d) { return same(d, t.shape, t.color) && near(d, t); });
      break;
    }
    case EditOp::remove: {
      const Object& s = src[size_t(idx)];
      v.edit_ok = !claim([&](const Detection& d) { return same(d, s.shape, s.color) && near(d, s); });
      break;
    }
    case EditOp::add: {
      const Object& a = tgt.back();
      v.edit_ok = claim([&](const Detection& d) { return same(d, a.shape, a.color); });
      break;
    }
    case EditOp::move: {
      const Object& s = src[size_t(idx)];
      VT_CHECK(e.contains("direction") && e["direction"].is_string(), id, ": a move edit needs 'direction'");
      const std::string dir = e["direction"].get<std::string>();
      float ux = dir == "left" ? -1.0f : dir == "right" ? 1.0f : 0.0f;
      float uy = dir == "up" ? -1.0f : dir == "down" ? 1.0f : 0.0f;
      VT_CHECK(ux != 0 || uy != 0, id, ": unknown move direction '", dir, "'");
      v.edit_ok = claim([&](const Detection& d) {
        float along = (d.cx - s.cx) * ux + (d.cy - s.cy) * uy;
        float across = std::fabs((d.cx - s.cx) * uy - (d.cy - s.cy) * ux);
        return same(d, s.shape, s.color) && along >= 0.1f * float(image_size) && across <= 0.12f * float(image_size);
      });
      break;
    }
  }
  for (bool u : used) v.extra += !u;
  v.correct = v.edit_ok && v.kept == v.to_keep && v.extra == 0;
  if (!v.edit_ok) v.detail = std::string(edit_op_name(op)) + " not done";
  if (v.kept < v.to_keep) v.detail += (v.detail.empty() ? "" : "; ") + std::to_string(v.to_keep - v.kept) + " object(s) lost";
  if (v.extra > 0) v.detail += (v.detail.empty() ? "" : "; ") + std::to_string(v.extra) + " extra object(s)";
  return v;
}

EditVerdict judge_edit_image(const json& rec, const Image& image, int dataset_size, const DetectOptions& options) {
  const Scan scan = scan_image(image, options);
  if (std::string why = clutter_detail(scan.stray_color); !why.empty()) {
    EditVerdict v;
    v.detail = "clutter: " + why;
    return v;
  }
  return judge_edit(rec, scan.objects, image.width, dataset_size);
}

EditReport evaluate_edits(const EvalOptions& opt) {
  check_images_dir(opt);
  std::vector<json> records = load_eval_records(opt.data_dir + "/" + opt.split + "/editing.json");
  const DatasetInfo info = read_dataset_info(opt.data_dir);
  const int ds = info.size;
  const DetectOptions detect = info.detect(opt.detect);
  struct Result {
    int op = -1;
    EditVerdict v;
    std::string error;
  };
  std::vector<Result> res(records.size());
  parallel_records(records.size(), opt, "eval edit", [&](size_t i) {
    const std::string id = record_id(records[i], i);
    try {
      const json& rec = records[i];
      if (rec.is_object() && rec.contains("edit") && rec["edit"].is_object() && rec["edit"].contains("op") &&
          rec["edit"]["op"].is_string())
        res[i].op = int(parse_edit_op(rec["edit"]["op"].get<std::string>(), id));
      Image img = load_record_image(opt, rec, id, 1);
      res[i].v = judge_edit_image(rec, img, ds > 0 ? ds : img.width, detect);
    } catch (const std::exception& e) {
      res[i].v = EditVerdict{};
      res[i].error = with_id(id, e.what());
    }
  });
  EditReport rep;
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

std::string EditReport::table() const {
  std::ostringstream os;
  char buf[96];
  os << "ShapeWorld edits (" << all.total << " images, " << errors.size() << " errors)\n";
  os << "| Overall | Recolor | Remove |    Add |   Move | Edit done | Scene kept |\n";
  os << "|--------:|--------:|-------:|-------:|-------:|----------:|-----------:|\n";
  std::snprintf(buf, sizeof buf, "| %7.4f | %7.4f | %6.4f | %6.4f | %6.4f | %9.4f | %10.4f |\n", all.accuracy(),
                by_op[0].accuracy(), by_op[1].accuracy(), by_op[2].accuracy(), by_op[3].accuracy(),
                edit_ok.accuracy(), to_keep ? double(kept) / to_keep : 0.0);
  os << buf;
  for (size_t i = 0; i < errors.size() && i < 10; ++i) os << "error: " << errors[i] << "\n";
  if (errors.size() > 10) os << "... and " << errors.size() - 10 << " more errors\n";
  return os.str();
}

json EditReport::to_json() const {
  json ops = json::object();
  for (int k = 0; k < 4; ++k) ops[edit_op_name(EditOp(k))] = score_json(by_op[size_t(k)]);
  return {{"overall", all.accuracy()}, {"ops", ops},         {"edits", score_json(all)},
          {"edit_done", score_json(edit_ok)}, {"objects_kept", kept}, {"objects_to_keep", to_keep},
          {"errors", errors}};
}

}  // namespace vt::shapes
