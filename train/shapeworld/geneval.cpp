// geneval.cpp: GenEval metadata (de)serialisation and the per-image judge (see geneval.h).
#include "shapeworld/geneval.h"

#include <cstdio>

#include "vt/error.h"

namespace vt::shapes {

static const char* const kTagNames[kNumTags] = {"single_object", "two_object", "counting",
                                                "colors",        "position",   "color_attr"};
static const char* const kTagTitles[kNumTags] = {"Single Obj.", "Two Obj.", "Counting",
                                                 "Colors",      "Position", "Color Attri."};

const char* tag_name(Tag t) { return kTagNames[int(t)]; }
const char* tag_title(Tag t) { return kTagTitles[int(t)]; }
Tag parse_tag(std::string_view name, std::string_view what) {
  for (int i = 0; i < kNumTags; ++i)
    if (name == kTagNames[i]) return Tag(i);
  VT_FAIL(what, ": unknown GenEval tag '", name, "'");
}

const char* failure_name(Failure f) {
  static const char* const names[] = {"", "missing", "count", "color", "position", "clutter"};
  return names[int(f)];
}

static nlohmann::json requirement_to_json(const Requirement& r) {
  nlohmann::json j = {{"class", shape_name(r.shape)}, {"count", r.count}};
  if (r.color >= 0) j["color"] = color_name(r.color);
  if (r.position) j["position"] = {relation_name(r.position->first), r.position->second};
  return j;
}

nlohmann::json geneval_to_json(const GenEvalMeta& m) {
  nlohmann::json inc = nlohmann::json::array(), exc = nlohmann::json::array();
  for (const Requirement& r : m.include) inc.push_back(requirement_to_json(r));
  for (const Requirement& r : m.exclude) exc.push_back(requirement_to_json(r));
  return {{"tag", tag_name(m.tag)}, {"prompt", m.prompt}, {"include", inc}, {"exclude", exc}};
}

static Requirement requirement_from_json(const nlohmann::json& j, std::string_view what, size_t n_include) {
  VT_CHECK(j.is_object(), what, ": geneval requirement is not an object");
  VT_CHECK(j.contains("class") && j["class"].is_string(), what, ": geneval requirement lacks a string 'class'");
  Requirement r;
  r.shape = parse_shape(j["class"].get<std::string>(), what);
  if (j.contains("count")) {
    VT_CHECK(j["count"].is_number_integer() && j["count"].get<int>() >= 1, what,
             ": geneval 'count' must be a positive integer, got ", j["count"].dump());
    r.count = j["count"].get<int>();
  }
  if (j.contains("color")) {
    VT_CHECK(j["color"].is_string(), what, ": geneval 'color' must be a string");
    r.color = parse_color(j["color"].get<std::string>(), what);
  }
  if (j.contains("position")) {
    const nlohmann::json& p = j["position"];
    VT_CHECK(p.is_array() && p.size() == 2 && p[0].is_string() && p[1].is_number_integer(), what,
             ": geneval 'position' must be [relation, index], got ", p.dump());
    int idx = p[1].get<int>();
    VT_CHECK(idx >= 0 && size_t(idx) < n_include, what, ": geneval position refers to include ", idx,
             " of ", n_include);
    r.position = std::make_pair(parse_relation(p[0].get<std::string>(), what), idx);
  }
  return r;
}

GenEvalMeta geneval_from_json(const nlohmann::json& j, std::string_view what) {
  VT_CHECK(j.is_object(), what, ": geneval metadata is not a JSON object");
  VT_CHECK(j.contains("tag") && j["tag"].is_string(), what, ": geneval metadata lacks a string 'tag'");
  VT_CHECK(j.contains("include") && j["include"].is_array() && !j["include"].empty(), what,
           ": geneval metadata lacks a non-empty 'include' list");
  GenEvalMeta m;
  m.tag = parse_tag(j["tag"].get<std::string>(), what);
  if (j.contains("prompt") && j["prompt"].is_string()) m.prompt = j["prompt"].get<std::string>();
  const size_t n = j["include"].size();
  for (const nlohmann::json& r : j["include"]) m.include.push_back(requirement_from_json(r, what, n));
  if (j.contains("exclude")) {
    VT_CHECK(j["exclude"].is_array(), what, ": geneval 'exclude' must be a list");
    for (const nlohmann::json& r : j["exclude"]) m.exclude.push_back(requirement_from_json(r, what, n));
  }
  for (size_t i = 0; i < m.include.size(); ++i)
    VT_CHECK(!m.include[i].position || size_t(m.include[i].position->second) != i, what,
             ": geneval include ", i, " is positioned relative to itself");
  return m;
}

Verdict judge_geneval(const GenEvalMeta& meta, const std::vector<Detection>& dets) {
  Verdict v;
  auto fail = [&](Failure f, std::string why) {
    v.correct = false;
    v.failure = f;
    v.detail = std::move(why);
    return v;
  };
  auto of_class = [&](Shape s, int color) {
    std::vector<const Detection*> out;
    for (const Detection& d : dets)
      if (d.shape == s && (color < 0 || d.color == color)) out.push_back(&d);
    return out;
  };
  for (const Requirement& r : meta.include) {
    size_t found = of_class(r.shape, -1).size();
    if (found == 0) return fail(Failure::missing, detail::concat("no ", shape_name(r.shape), " found"));
    if (found < size_t(r.count))
      return fail(Failure::count, detail::concat("found ", found, " ", shape_name(r.shape), ", need ", r.count));
  }
  for (const Requirement& r : meta.exclude) {
    size_t found = of_class(r.shape, -1).size();
    if (found >= size_t(r.count))
      return fail(Failure::count, detail::concat("found ", found, " ", shape_name(r.shape), ", need fewer than ",
                                                 r.count));
  }
  // matched[i]: the objects that satisfy include i (class and colour).
  std::vector<std::vector<const Detection*>> matched;
  for (const Requirement& r : meta.include) {
    matched.push_back(of_class(r.shape, r.color));
    if (matched.back().size() < size_t(r.count))
      return fail(Failure::color, detail::concat("found ", matched.back().size(), " ", color_name(r.color), " ",
                                                 shape_name(r.shape), ", need ", r.count));
  }
  for (size_t i = 0; i < meta.include.size(); ++i) {
    const Requirement& r = meta.include[i];
    if (!r.position) continue;
    auto [rel, j] = *r.position;
    bool ok = false;
    for (const Detection* a : matched[i])
      for (const Detection* b : matched[size_t(j)])
        if (a != b && (relations(*a, *b) >> int(rel) & 1u)) ok = true;
    if (!ok)
      return fail(Failure::position, detail::concat("no ", shape_name(r.shape), " ", relation_name(rel), " the ",
                                                    shape_name(meta.include[size_t(j)].shape)));
  }
  v.correct = true;
  return v;
}

std::string clutter_detail(float stray_color) {
  if (stray_color <= kMaxStrayColor) return {};
  char buf[96];
  std::snprintf(buf, sizeof buf, "%.1f%% of the pixels are colour outside any object (at most %.1f%%)",
                100.0 * stray_color, 100.0 * kMaxStrayColor);
  return buf;
}

Verdict judge_geneval_image(const GenEvalMeta& meta, const Image& image, const DetectOptions& options) {
  const Scan scan = scan_image(image, options);
  if (std::string why = clutter_detail(scan.stray_color); !why.empty()) {
    Verdict v;
    v.failure = Failure::clutter;
    v.detail = std::move(why);
    return v;
  }
  return judge_geneval(meta, scan.objects);
}

}  // namespace vt::shapes
