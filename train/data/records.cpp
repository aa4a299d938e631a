// train/data/records.cpp: data files -> Records (records.h). Parsing is lenient about the key
// spellings of the LLaVA / ShareGPT / OpenAI variants and strict about the shape a training sequence
// needs: alternating turns, markers matching images, one <image_gen> span per sequence.
#include "data/records.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "vt/error.h"

namespace vt::train {
namespace fs = std::filesystem;
using nlohmann::json;

const char* task_name(TaskKind k) {
  switch (k) {
    case TaskKind::Understanding: return "understanding";
    case TaskKind::Generation: return "generation";
    case TaskKind::Editing: return "editing";
    case TaskKind::Preference: return "preference";
  }
  return "?";
}

TaskKind parse_task_kind(std::string_view name) {
  for (TaskKind k : {TaskKind::Understanding, TaskKind::Generation, TaskKind::Editing, TaskKind::Preference})
    if (name == task_name(k)) return k;
  VT_FAIL("unknown data kind '", name, "'; expected understanding, generation, editing or preference");
}

int64_t count_marker(std::string_view text, std::string_view marker) {
  int64_t n = 0;
  for (size_t pos = text.find(marker); pos != std::string_view::npos; pos = text.find(marker, pos + marker.size())) ++n;
  return n;
}

std::string resolve_image(const Record& record, const std::string& path) {
  fs::path p(path);
  if (p.is_absolute()) return path;
  std::error_code ec;
  fs::path first = fs::path(record.root) / p;
  if (fs::exists(first, ec)) return first.string();
  fs::path second = fs::path(record.data_dir) / p;
  if (record.data_dir != record.root && fs::exists(second, ec)) return second.string();
  return first.string();
}

namespace {

// ---- one JSON object -> Record -------------------------------------------------------------------

std::string role_of(const json& t, const char* where) {
  const json* r = t.contains("from") ? &t["from"] : t.contains("role") ? &t["role"] : nullptr;
  VT_CHECK(r && r->is_string(), where, " has no \"from\" or \"role\" string");
  const std::string s = r->get<std::string>();
  if (s == "human" || s == "user") return "user";
  if (s == "gpt" || s == "assistant") return "assistant";
  if (s == "system") return "system";
  VT_FAIL(where, " has role '", s, "'; expected human/user, gpt/assistant or system");
}

// "value" or "content": a string, or an OpenAI list of parts ({"type": "text", "text"} and
// {"type": "image" | "image_url"}, the latter becoming <image> markers in place).
std::string text_of(const json& t, const char* where) {
  const json* v = t.contains("value") ? &t["value"] : t.contains("content") ? &t["content"] : nullptr;
  VT_CHECK(v != nullptr, where, " has no \"value\" or \"content\"");
  if (v->is_string()) return v->get<std::string>();
  VT_CHECK(v->is_array(), where, " content is neither a string nor a list of parts");
  std::string out;
  for (const json& part : *v) {
    VT_CHECK(part.is_object() && part.contains("type") && part["type"].is_string(), where,
             " has a content part without a \"type\"");
    const std::string type = part["type"].get<std::string>();
    if (type == "text") {
      VT_CHECK(part.contains("text") && part["text"].is_string(), where, " has a text part without \"text\"");
      out += part["text"].get<std::string>();
    } else if (type == "image" || type == "image_url") {
      out += kImageMarker;
    } else {
      VT_FAIL(where, " has a content part of type '", type, "'; expected text or image");
    }
  }
  return out;
}

Turn response_of(const json& j, const char* key) {
  const json& v = j[key];
  if (v.is_string()) return {"assistant", v.get<std::string>()};
  VT_CHECK(v.is_object(), "\"", key, "\" is neither a string nor a {from, value} object");
  Turn t{role_of(v, key), text_of(v, key)};
  VT_CHECK(t.role == "assistant", "\"", key, "\" has role '", t.role, "'; expected gpt/assistant");
  return t;
}

std::vector<std::string> images_of(const json& j) {
  VT_CHECK(!(j.contains("images") && j.contains("image")), "both \"image\" and \"images\" are given");
  const json* v = j.contains("images") ? &j["images"] : j.contains("image") ? &j["image"] : nullptr;
  std::vector<std::string> out;
  if (v == nullptr || v->is_null()) return out;
  if (v->is_string()) return {v->get<std::string>()};
  VT_CHECK(v->is_array(), "\"images\" is neither a path nor a list of paths");
  for (const json& p : *v) {
    VT_CHECK(p.is_string(), "\"images\" holds a non-string entry: ", p.dump());
    out.push_back(p.get<std::string>());
  }
  return out;
}

// The kind a record's shape says it is.
TaskKind detect_kind(const Record& r, bool has_pair) {
  if (has_pair) return TaskKind::Preference;
  int64_t vit = 0, gen = 0;
  for (const Turn& t : r.turns) vit += count_marker(t.text, kImageMarker), gen += count_marker(t.text, kImageGenMarker);
  if (gen == 0) return TaskKind::Understanding;
  return vit > 0 ? TaskKind::Editing : TaskKind::Generation;
}

Record record_from_json(const json& j, const std::string& origin, const std::string& fallback_id,
                        const ReadOptions& opt, const std::string& root, const std::string& data_dir) {
  Record r;
  r.origin = origin;
  r.id = fallback_id;
  if (j.is_object() && j.contains("id")) {
    if (j["id"].is_string()) r.id = j["id"].get<std::string>();
    else if (j["id"].is_number_integer()) r.id = std::to_string(j["id"].get<int64_t>());
  }
  VT_CHECK(j.is_object(), "the record is not a JSON object");
  r.root = root, r.data_dir = data_dir;
  if (j.contains("system")) {
    VT_CHECK(j["system"].is_string(), "\"system\" is not a string");
    r.system = j["system"].get<std::string>();
  }
  const json* conv = j.contains("conversations") ? &j["conversations"] : j.contains("messages") ? &j["messages"] : nullptr;
  VT_CHECK(conv && conv->is_array(), "no \"conversations\" (or \"messages\") list");
  for (size_t i = 0; i < conv->size(); ++i) {
    const json& t = (*conv)[i];
    const std::string where = "turn " + std::to_string(i);
    VT_CHECK(t.is_object(), where, " is not an object");
    Turn turn{role_of(t, where.c_str()), text_of(t, where.c_str())};
    if (turn.role == "system") {
      VT_CHECK(i == 0, where, " is a system turn; only the first turn may be one");
      VT_CHECK(r.system.empty(), "a system prompt is given both as \"system\" and as turn 0");
      r.system = turn.text;
      continue;
    }
    r.turns.push_back(std::move(turn));
  }
  const bool has_pair = j.contains("chosen") || j.contains("rejected");
  if (has_pair) {
    VT_CHECK(j.contains("chosen") && j.contains("rejected"), "a preference record needs both \"chosen\" and \"rejected\"");
    r.chosen = response_of(j, "chosen");
    r.rejected = response_of(j, "rejected");
  }
  r.images = images_of(j);
  r.kind = detect_kind(r, has_pair);
  if (opt.kind && *opt.kind != r.kind)
    VT_FAIL("the file is read as ", task_name(*opt.kind), " data but the record has the shape of ", task_name(r.kind),
            " data");
  validate_record(r);
  return r;
}

// ---- files -----------------------------------------------------------------------------------------

std::pair<int64_t, int64_t> line_col(const std::string& text, size_t byte) {
  int64_t line = 1, col = 1;
  for (size_t i = 0; i < byte && i < text.size(); ++i) text[i] == '\n' ? (++line, col = 1) : ++col;
  return {line, col};
}

std::string trim(std::string_view s) {
  size_t a = s.find_first_not_of(" \t\r\n"), b = s.find_last_not_of(" \t\r\n");
  return a == std::string_view::npos ? std::string() : std::string(s.substr(a, b - a + 1));
}

struct Reader {
  const std::string& path;
  const ReadOptions& opt;
  std::string root, data_dir, name;
  ReadResult result;

  void skip(const std::string& origin, const std::string& id, const std::string& reason) {
    std::string msg = origin + (id.empty() ? "" : " (id " + id + ")") + ": " + reason;
    VT_CHECK(!opt.strict, "data: ", msg);
    ++result.skipped;
    if (opt.warn) opt.warn(msg);
    result.warnings.push_back(std::move(msg));
  }

  void add(const json& j, const std::string& origin, const std::string& fallback_id) {
    try {
      result.records.push_back(record_from_json(j, origin, fallback_id, opt, root, data_dir));
    } catch (const Error& e) {
      std::string id = fallback_id;
      if (j.is_object() && j.contains("id") && j["id"].is_string()) id = j["id"].get<std::string>();
      else if (j.is_object() && j.contains("id") && j["id"].is_number_integer()) id = std::to_string(j["id"].get<int64_t>());
      skip(origin, id, e.what());
    }
  }

  // One object per line; blank lines are ignored. `array_layout` strips "[", "]" and trailing commas.
  void by_lines(const std::string& text, bool array_layout) {
    int64_t line_no = 0;
    size_t pos = 0;
    while (pos <= text.size()) {
      size_t end = text.find('\n', pos);
      if (end == std::string::npos) end = text.size();
      std::string line = trim(std::string_view(text).substr(pos, end - pos));
      pos = end + 1, ++line_no;
      if (array_layout) {
        if (!line.empty() && line.front() == '[') line = trim(line.substr(1));
        if (!line.empty() && line.back() == ']') line = trim(line.substr(0, line.size() - 1));
        if (!line.empty() && line.back() == ',') line = trim(line.substr(0, line.size() - 1));
      }
      if (line.empty()) continue;
      const std::string origin = path + ":" + std::to_string(line_no);
      const std::string fallback = name + ":" + std::to_string(line_no);
      json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded()) {
        std::string reason = "malformed JSON";
        try {
          (void)json::parse(line);
        } catch (const json::parse_error& e) {
          reason += std::string(" (column ") + std::to_string(e.byte) + ")";
        }
        skip(origin, "", reason);
        continue;
      }
      add(j, origin, fallback);
    }
  }
};

}  // namespace

namespace {
ReadResult read_records_json(const std::string& path, const ReadOptions& opt) {
  std::ifstream in(path, std::ios::binary);
  VT_CHECK(in.good(), "data: cannot open '", path, "'");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  VT_CHECK(!in.bad(), "data: cannot read '", path, "'");

  Reader rd{path, opt, {}, {}, {}, {}};
  const fs::path p(path);
  rd.data_dir = p.parent_path().empty() ? std::string(".") : p.parent_path().string();
  rd.root = opt.root.empty() ? rd.data_dir : opt.root;
  rd.name = p.filename().string();

  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return std::move(rd.result);  // an empty file holds no records
  if (text[first] == '{') {
    rd.by_lines(text, /*array_layout=*/false);
    return std::move(rd.result);
  }
  VT_CHECK(text[first] == '[', "data: '", path, "' is neither a JSON array nor JSON lines (starts with '",
           text[first], "')");
  try {
    const json all = json::parse(text);
    VT_CHECK(all.is_array(), "data: '", path, "' holds a JSON value that is not an array");
    for (size_t i = 0; i < all.size(); ++i)
      rd.add(all[i], path + "[" + std::to_string(i) + "]", rd.name + "[" + std::to_string(i) + "]");
    return std::move(rd.result);
  } catch (const json::parse_error& e) {
    auto [line, col] = line_col(text, e.byte == 0 ? 0 : e.byte - 1);
    const std::string where = path + ":" + std::to_string(line) + ":" + std::to_string(col);
    VT_CHECK(!opt.strict, "data: malformed JSON at ", where, " (", e.what(), ")");
    // One record per line (ShapeWorld's layout): re-read line by line so a broken line costs one
    // record. If most lines do not parse on their own, the array is laid out otherwise: give up.
    Reader again{path, opt, rd.root, rd.data_dir, rd.name, {}};
    again.by_lines(text, /*array_layout=*/true);
    const int64_t malformed = std::count_if(again.result.warnings.begin(), again.result.warnings.end(),
                                            [](const std::string& w) { return w.find("malformed JSON") != std::string::npos; });
    const int64_t parsed = static_cast<int64_t>(again.result.warnings.size()) - malformed +
                           static_cast<int64_t>(again.result.records.size());
    VT_CHECK(parsed > 0 && malformed <= parsed, "data: malformed JSON at ", where, " (", e.what(),
             "); the file is not one record per line, so no record of it can be recovered");
    return std::move(again.result);
  }
}

}  // namespace

ReadResult read_records(const std::string& path, const ReadOptions& opt) {
  try {
    return read_records_json(path, opt);
  } catch (const json::exception& e) {  // e.g. a number out of double's range (1e309)
    VT_FAIL("data: '", path, "': ", e.what());
  }
}

void validate_record(const Record& r) {
  const bool pref = r.kind == TaskKind::Preference;
  VT_CHECK(!r.turns.empty(), "the conversation has no user or assistant turn");
  for (size_t i = 0; i < r.turns.size(); ++i) {
    const char* want = i % 2 == 0 ? "user" : "assistant";
    VT_CHECK(r.turns[i].role == want, "turn ", i, " is a ", r.turns[i].role, " turn; turns must alternate user, assistant, ",
             "starting with user");
    VT_CHECK(r.turns[i].role == "assistant" || count_marker(r.turns[i].text, kImageGenMarker) == 0, "turn ", i,
             " (user) holds an <image_gen> marker; only replies may");
  }
  if (pref) VT_CHECK(r.turns.size() % 2 == 1, "a preference prompt must end with a user turn");
  else VT_CHECK(r.turns.size() % 2 == 0, "the conversation ends with a user turn; nothing to learn from");

  int64_t vit = 0, gen = 0;
  for (const Turn& t : r.turns) vit += count_marker(t.text, kImageMarker), gen += count_marker(t.text, kImageGenMarker);
  int64_t expected = vit + gen;
  if (pref) {
    const int64_t gc = count_marker(r.chosen.text, kImageGenMarker), gr = count_marker(r.rejected.text, kImageGenMarker);
    VT_CHECK(gen == 0, "a preference prompt holds an <image_gen> marker");
    VT_CHECK(gc <= 1 && gr <= 1, "chosen has ", gc, " and rejected ", gr, " <image_gen> markers; one per sequence is supported");
    expected += gc + gr + count_marker(r.chosen.text, kImageMarker) + count_marker(r.rejected.text, kImageMarker);
  } else {
    VT_CHECK(gen <= 1, gen, " <image_gen> markers; one per sequence is supported");
  }
  VT_CHECK(static_cast<int64_t>(r.images.size()) == expected, r.images.size(), " images for ", expected,
           " markers (", vit, " <image>", pref ? " in the prompt" : "", ", ",
           pref ? "the rest in chosen and rejected" : std::to_string(gen) + " <image_gen>", ")");
}

}  // namespace vt::train
