// train/report.cpp: the run report (report.h): the readers (logs, times, model size) and REPORT.md.
#include "report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <sstream>

#include "shapeworld/evaluate.h"
#include "vt/error.h"
#include "vt/io/safetensors.h"

namespace vt::train {

using nlohmann::json;
namespace fs = std::filesystem;

// ---- readers -------------------------------------------------------------------------------------------

std::vector<json> read_log(const std::string& path) {
  std::ifstream in(path);
  VT_CHECK(in, path, ": cannot open the training log");
  std::vector<json> rows;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      rows.push_back(json::parse(line));
    } catch (const json::exception& e) {
      VT_FAIL(path, ":", n, ": not a JSON object: ", e.what());
    }
  }
  return rows;
}

StagePlot stage_curves(const std::string& stage, const std::vector<json>& log) {
  auto logged = [&](const char* key) {
    return std::any_of(log.begin(), log.end(), [&](const json& r) { return r.is_object() && r.contains(key); });
  };
  std::vector<std::pair<std::string, int>> keys;  // (key, axis)
  if (logged("rewards/margins")) keys = {{"loss", 0}, {"rewards/margins", 1}};
  else if (logged("psnr")) keys = {{"l1", 0}, {"psnr", 1}};
  else keys = {{"loss", 0}, {"image_loss", 0}, {"text_loss", 0}};
  StagePlot plot{stage, {}};
  for (const auto& [key, axis] : keys) {
    Curve c{key, axis, {}};
    for (size_t i = 0; i < log.size(); ++i) {
      const json& r = log[i];
      if (!r.is_object() || !r.contains(key) || !r[key].is_number()) continue;
      const double step = r.contains("step") && r["step"].is_number() ? r["step"].get<double>() : double(i + 1);
      c.points.emplace_back(step, r[key].get<double>());
    }
    if (!c.points.empty()) plot.curves.push_back(std::move(c));
  }
  return plot;
}

// ---- model size, times ------------------------------------------------------------------------------------------

std::vector<std::pair<std::string, int64_t>> parameter_counts(const std::string& model_dir) {
  io::CheckpointReader reader(model_dir);
  std::map<std::string, int64_t> by_component;
  for (const std::string& name : reader.names()) {
    int64_t n = 1;
    for (const int64_t d : reader.entry(name).shape) n *= d;
    by_component[name.substr(0, name.find('.'))] += n;
  }
  std::vector<std::pair<std::string, int64_t>> out(by_component.begin(), by_component.end());
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  return out;
}

std::vector<std::pair<std::string, double>> read_stage_times(const std::string& path, std::vector<std::string>& warnings) {
  std::ifstream in(path);
  VT_CHECK(in, "--times ", path, ": cannot open the file");
  std::vector<std::pair<std::string, double>> out;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    const size_t b = line.find_first_not_of(" \t\r"), e = line.find_last_not_of(" \t\r");
    if (b == std::string::npos || line[b] == '#') continue;
    line = line.substr(b, e - b + 1);
    if (line.size() > 2 && line.back() == 's' && (line[line.size() - 2] == ' ' || line[line.size() - 2] == '\t'))
      line = line.substr(0, line.find_last_not_of(" \t", line.size() - 2) + 1);  // "12 s" -> "12"
    const size_t sp = line.find_last_of(" \t");
    std::string secs = sp == std::string::npos ? "" : line.substr(sp + 1);
    if (!secs.empty() && secs.back() == 's') secs.pop_back();
    char* end = nullptr;
    const double v = secs.empty() ? 0.0 : std::strtod(secs.c_str(), &end);
    if (secs.empty() || !end || *end != '\0') {
      warnings.push_back(path + ":" + std::to_string(n) + ": expected 'stage seconds', got '" + line + "'");
      continue;
    }
    std::string stage = line.substr(0, sp);
    stage = stage.substr(0, stage.find_last_not_of(" \t") + 1);
    out.emplace_back(stage, v);
  }
  return out;
}

// ---- REPORT.md ------------------------------------------------------------------------------------------------

namespace {

std::string format(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

const json* at(const json& j, std::initializer_list<const char*> path) {
  const json* p = &j;
  for (const char* k : path) {
    if (!p->is_object() || !p->contains(k)) return nullptr;
    p = &(*p)[k];
  }
  return p;
}

// A headline number: an accuracy and, where the judge counts them, correct / total.
struct Metric {
  std::optional<double> value;
  int correct = -1, total = -1;
};

// {"accuracy", "correct", "total"} at `path`; nothing when absent or over no records.
Metric score(const json& j, std::initializer_list<const char*> path) {
  const json* s = at(j, path);
  if (!s || !s->is_object() || s->value("total", 0) <= 0) return {};
  return {s->value("accuracy", 0.0), s->value("correct", 0), s->value("total", 0)};
}

std::string cell(const Metric& m) {
  if (!m.value) return "-";
  std::string s = format("%.4f", *m.value);
  if (m.total > 0) s += " (" + std::to_string(m.correct) + "/" + std::to_string(m.total) + ")";
  return s;
}

struct Column {
  std::string title;
  std::function<Metric(const json&)> get;
};

// The headline columns; a POPE type only when some evaluation asked questions of it.
std::vector<Column> headline_columns(const std::vector<std::optional<json>>& evals) {
  std::vector<Column> cols = {
      {"GenEval overall",
       [](const json& e) {
         const json* o = at(e, {"gen", "overall"});
         return o && o->is_number() ? Metric{o->get<double>()} : Metric{};
       }},
      {"single object", [](const json& e) { return score(e, {"gen", "categories", "single_object"}); }},
      {"held-out pairs", [](const json& e) { return score(e, {"gen", "heldout"}); }},
      {"understanding (all)", [](const json& e) { return score(e, {"understand"}); }},
  };
  for (const char* type : {"random", "popular", "adversarial"}) {
    auto get = [type](const json& e) -> Metric {
      const json* p = at(e, {"understand", "pope", type});
      if (!p || !p->is_object()) return {};
      const int tp = p->value("tp", 0), fp = p->value("fp", 0), tn = p->value("tn", 0), fn = p->value("fn", 0);
      if (tp + fp + tn + fn == 0) return {};
      return {p->value("accuracy", 0.0), tp + tn, tp + fp + tn + fn};
    };
    if (std::any_of(evals.begin(), evals.end(), [&](const auto& e) { return e && get(*e).value; }))
      cols.push_back({std::string("POPE ") + type, get});
  }
  // The tokenizer round trip (vargpt eval --tasks recon): the GenEval a generator could reach if it
  // drew exactly the bits of the target image.
  auto recon = [](const json& e) {
    const json* o = at(e, {"recon", "overall"});
    return o && o->is_number() ? Metric{o->get<double>()} : Metric{};
  };
  const bool any_recon = std::any_of(evals.begin(), evals.end(), [&](const auto& e) { return e && recon(*e).value; });
  if (any_recon) cols.insert(cols.begin() + 3, Column{"tokenizer round trip (GenEval)", recon});
  cols.push_back({"editing overall", [](const json& e) {
                    Metric m = score(e, {"edit", "edits"});
                    const json* o = at(e, {"edit", "overall"});
                    if (m.value && o && o->is_number()) m.value = o->get<double>();
                    return m;
                  }});
  // Teacher-forced held-out losses (vargpt eval --tasks loss), in nats: lower is better.
  for (auto [title, key] : {std::pair{"held-out bit loss", "image_loss"}, {"held-out answer loss", "text_loss"}}) {
    auto get = [key = std::string(key)](const json& e) {
      const json* o = at(e, {"loss", key.c_str()});
      const json* n = at(e, {"loss", key == "image_loss" ? "gen_records" : "text_tokens"});
      return o && o->is_number() && n && n->is_number() && n->get<double>() > 0 ? Metric{o->get<double>()} : Metric{};
    };
    if (std::any_of(evals.begin(), evals.end(), [&](const auto& e) { return e && get(*e).value; }))
      cols.push_back({title, get});
  }
  return cols;
}

int count_at(const json& e, std::initializer_list<const char*> path) {
  const json* t = at(e, path);
  return t && t->is_number_integer() ? t->get<int>() : 0;
}

std::string records_cell(const json& e) {
  return std::to_string(count_at(e, {"gen", "images_scored", "total"})) + " / " +
         std::to_string(count_at(e, {"understand", "total"})) + " / " + std::to_string(count_at(e, {"edit", "edits", "total"}));
}

// Paths under `dir` ordered by modification time, oldest first (the order the run wrote them).
std::vector<fs::path> oldest_first(std::vector<fs::path> paths) {
  std::vector<std::pair<fs::file_time_type, fs::path>> t;
  for (const fs::path& p : paths) t.emplace_back(fs::last_write_time(p), p);
  std::stable_sort(t.begin(), t.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  paths.clear();
  for (auto& [time, p] : t) paths.push_back(p);
  return paths;
}

std::vector<std::string> discover_stages(const fs::path& out) {
  std::vector<fs::path> logs;
  for (const auto& e : fs::directory_iterator(out))
    if (e.is_directory() && fs::is_regular_file(e.path() / "log.jsonl")) logs.push_back(e.path() / "log.jsonl");
  std::vector<std::string> names;
  for (const fs::path& p : oldest_first(logs)) names.push_back(p.parent_path().filename().string());
  return names;
}

std::vector<std::string> discover_evals(const fs::path& out) {
  std::vector<fs::path> files;
  if (fs::is_directory(out / "eval"))
    for (const auto& e : fs::directory_iterator(out / "eval"))
      if (e.is_regular_file() && e.path().extension() == ".json") files.push_back(e.path());
  std::vector<std::string> names;
  for (const fs::path& p : oldest_first(files)) names.push_back(p.stem().string());
  return names;
}

json read_json(const fs::path& path) {
  std::ifstream in(path);
  VT_CHECK(in, path.string(), ": cannot open");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    VT_FAIL(path.string(), ": not valid JSON: ", e.what());
  }
}

// The last logged number under `key`, if any.
std::optional<double> last_value(const std::vector<json>& log, const char* key) {
  for (auto it = log.rbegin(); it != log.rend(); ++it)
    if (it->is_object() && it->contains(key) && (*it)[key].is_number()) return (*it)[key].get<double>();
  return std::nullopt;
}
std::optional<double> first_value(const std::vector<json>& log, const char* key) {
  for (const json& r : log)
    if (r.is_object() && r.contains(key) && r[key].is_number()) return r[key].get<double>();
  return std::nullopt;
}
std::string opt_cell(const std::optional<double>& v, const char* fmt = "%.4f") { return v ? format(fmt, *v) : "-"; }

std::string today_utc() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", &tm);
  return buf;
}

std::string with_thousands(int64_t n) {
  const std::string digits = std::to_string(n);
  std::string s;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && digits[i - 1] != '-' && (digits.size() - i) % 3 == 0) s += ',';
    s += digits[i];
  }
  return s;
}

struct StageLog {
  std::string name;
  bool found = false;
  std::vector<json> rows;
};

// "<before> (`b`) to <after> (`a`)" for the summary.
std::string change(const Metric& before, const Metric& after, const std::string& b, const std::string& a) {
  return cell(before) + " (`" + b + "`) to " + cell(after) + " (`" + a + "`)";
}

}  // namespace

ReportResult write_report(const ReportOptions& o) {
  VT_CHECK(fs::is_directory(o.out_dir), "--out ", o.out_dir, ": no such directory");
  ReportResult res;
  std::vector<std::string>& warn = res.warnings;
  const fs::path out(o.out_dir), data(o.data_dir);

  // ---- inputs -----------------------------------------------------------------------------------------
  std::vector<StageLog> stages;
  for (const std::string& s : o.stages.empty() ? discover_stages(out) : o.stages) {
    StageLog st{s, false, {}};
    const fs::path log = out / s / "log.jsonl";
    if (fs::is_regular_file(log)) st.found = true, st.rows = read_log(log.string());
    else warn.push_back("stage " + s + ": no " + log.string());
    stages.push_back(std::move(st));
  }
  const std::vector<std::string> eval_names = o.evals.empty() ? discover_evals(out) : o.evals;
  std::vector<std::optional<json>> evals;
  for (const std::string& e : eval_names) {
    const fs::path p = out / "eval" / (e + ".json");
    if (fs::is_regular_file(p)) evals.push_back(read_json(p));
    else evals.push_back(std::nullopt), warn.push_back("evaluation " + e + ": no " + p.string());
  }

  // ---- loss_curves.png ----------------------------------------------------------------------------------
  std::vector<StagePlot> plots;
  for (const StageLog& s : stages) plots.push_back(stage_curves(s.name, s.rows));
  shapes::write_png((out / "loss_curves.png").string(), draw_loss_curves(plots));

  // ---- samples.png: the first test prompts the last evaluation generated --------------------------------
  std::vector<Sample> samples;
  const std::string last = eval_names.empty() ? "" : eval_names.back();
  if (!last.empty()) {
    std::map<std::string, bool> verdict;
    if (evals.back())
      if (const json* imgs = at(*evals.back(), {"gen", "images"}); imgs && imgs->is_array())
        for (const json& r : *imgs)
          if (r.is_object() && r.contains("id") && r["id"].is_string())
            verdict[r["id"].get<std::string>()] = r.contains("correct") && r["correct"].is_boolean() && r["correct"].get<bool>();
    const fs::path gen_dir = out / "eval" / last / "gen", records = data / o.split / "generation.json";
    if (!fs::is_regular_file(records)) warn.push_back("samples: no " + records.string());
    else
      for (const json& r : shapes::load_records(records.string())) {
        if (int(samples.size()) >= o.samples) break;
        if (!r.is_object() || !r.contains("id") || !r["id"].is_string()) continue;
        const std::string id = r["id"].get<std::string>();
        const fs::path img = gen_dir / (id + ".png");
        const auto v = verdict.find(id);
        if (verdict.empty() ? !fs::is_regular_file(img) : v == verdict.end()) continue;
        Sample s{id, id, std::nullopt, img.string(), ""};
        if (v != verdict.end()) s.correct = v->second;
        if (const json* p = at(r, {"geneval", "prompt"}); p && p->is_string()) s.prompt = p->get<std::string>();
        if (const json* im = at(r, {"images"}); im && im->is_array() && !im->empty() && (*im)[0].is_string())
          s.truth_path = (data / (*im)[0].get<std::string>()).string();
        samples.push_back(std::move(s));
      }
    if (samples.empty()) warn.push_back("samples: evaluation " + last + " has no generated images in " + gen_dir.string());
  }
  shapes::write_png((out / "samples.png").string(),
                    draw_samples(samples, last.empty() ? "no evaluation" : last + ": first " +
                                                                              std::to_string(samples.size()) + " " +
                                                                              o.split + " prompts"));

  // ---- REPORT.md -------------------------------------------------------------------------------------------
  std::ostringstream md;
  md << "# " << o.title << "\n\n";
  if (!o.command.empty()) md << "Run: `" << o.command << "`, ";
  md << "report written " << (o.date.empty() ? today_utc() : o.date) << ".\n";
  md << "Inputs: `" << o.out_dir << "` (logs, evaluations, `init/`), dataset `" << o.data_dir << "` (split `" << o.split
     << "`).\n";

  // Evaluations: headline numbers, then each later checkpoint minus the first.
  const std::vector<Column> cols = headline_columns(evals);
  md << "\n## Evaluations (" << o.split << " split)\n\n";
  if (eval_names.empty()) md << "No evaluation JSON under `" << (out / "eval").string() << "`.\n";
  else {
    md << "Accuracies, with (correct/total) where the judge counts them. GenEval overall is the mean of the six "
          "category accuracies. Records: generation prompts / understanding questions / edits.\n\n| checkpoint |";
    for (const Column& c : cols) md << " " << c.title << " |";
    md << " records |\n|---|";
    for (size_t i = 0; i <= cols.size(); ++i) md << "---:|";
    md << "\n";
    for (size_t i = 0; i < eval_names.size(); ++i) {
      md << "| " << eval_names[i] << " |";
      for (const Column& c : cols) md << " " << (evals[i] ? cell(c.get(*evals[i])) : "-") << " |";
      md << " " << (evals[i] ? records_cell(*evals[i]) : "missing") << " |\n";
    }
    if (eval_names.size() > 1) {
      md << "\nChange from `" << eval_names[0] << "` (before training) to each later checkpoint:\n\n| checkpoint |";
      for (const Column& c : cols) md << " " << c.title << " |";
      md << "\n|---|";
      for (size_t i = 0; i < cols.size(); ++i) md << "---:|";
      md << "\n";
      for (size_t i = 1; i < eval_names.size(); ++i) {
        md << "| " << eval_names[i] << " |";
        for (const Column& c : cols) {
          const Metric b = evals[0] ? c.get(*evals[0]) : Metric{}, a = evals[i] ? c.get(*evals[i]) : Metric{};
          md << " " << (a.value && b.value ? format("%+.4f", *a.value - *b.value) : "-") << " |";
        }
        md << "\n";
      }
    }
  }

  // Time per stage.
  md << "\n## Time per stage\n\n";
  if (o.times_path.empty()) md << "No times given (`--times FILE`).\n";
  else {
    const auto times = read_stage_times(o.times_path, warn);
    double total = 0;
    for (const auto& [s, t] : times) total += t;
    md << "| stage | wall time (s) | share |\n|---|---:|---:|\n";
    for (const auto& [s, t] : times)
      md << "| " << s << " | " << format("%.1f", t) << " | " << format("%.1f%%", total > 0 ? 100 * t / total : 0) << " |\n";
    md << "| **total** | **" << format("%.1f", total) << "** | |\n";
  }

  // Training logs.
  md << "\n## Training logs\n\nFrom each stage's `log.jsonl` (one line per logged optimizer step).\n\n"
     << "| stage | logged steps | steps | first loss | last loss | last bit accuracy | last rewards/margins | "
        "last psnr (dB) |\n|---|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const StageLog& s : stages) {
    if (!s.found) {
      md << "| " << s.name << " | no log | | | | | | |\n";
      continue;
    }
    const auto f = first_value(s.rows, "step"), l = last_value(s.rows, "step");
    md << "| " << s.name << " | " << s.rows.size() << " | "
       << (f && l ? format("%.0f", *f) + "-" + format("%.0f", *l) : "-") << " | " << opt_cell(first_value(s.rows, "loss"))
       << " | " << opt_cell(last_value(s.rows, "loss")) << " | " << opt_cell(last_value(s.rows, "bit_accuracy")) << " | "
       << opt_cell(last_value(s.rows, "rewards/margins")) << " | " << opt_cell(last_value(s.rows, "psnr"), "%.2f")
       << " |\n";
  }
  md << "\n![loss curves](loss_curves.png)\n\n"
     << "One panel per stage: loss, image_loss and text_loss; for DPO loss and rewards/margins (right axis); for "
        "the tokenizer l1 and psnr (right axis). Tick labels are each axis's minimum and maximum.\n";

  md << "\n## Samples\n\n![samples](samples.png)\n\n";
  if (samples.empty()) md << "No generated images to show.\n";
  else {
    int right = 0, judged = 0;
    for (const Sample& s : samples) judged += s.correct.has_value(), right += s.correct.value_or(false);
    md << "The first " << samples.size() << " " << o.split << " prompts as generated by `" << last
       << "` (left, border green when the judge counted the image correct, red when not: " << right << " of " << judged
       << " correct) beside the ground-truth render (right), captioned with the GenEval prompt.\n";
  }

  // Model.
  md << "\n## Model\n\n";
  int64_t total_params = 0;
  const fs::path init = out / "init";
  if (fs::is_regular_file(init / "config.json")) {
    const json c = read_json(init / "config.json");
    md << "From `" << (init / "config.json").string() << "`:\n\n| setting | value |\n|---|---|\n";
    for (const char* k : {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                          "num_key_value_heads", "vocab_size", "torch_dtype", "vt_gen_sides"})
      if (c.contains(k)) md << "| " << k << " | " << (c[k].is_string() ? c[k].get<std::string>() : c[k].dump()) << " |\n";
    if (const json* v = at(c, {"vision_config"}); v && v->is_object())
      for (const char* k : {"depth", "embed_dim", "num_heads", "patch_size"})
        if (v->contains(k)) md << "| vision " << k << " | " << (*v)[k].dump() << " |\n";
  } else {
    warn.push_back("model: no " + (init / "config.json").string());
    md << "No `" << (init / "config.json").string() << "`.\n";
  }
  try {
    const auto counts = parameter_counts(init.string());
    for (const auto& [name, n] : counts) total_params += n;
    md << "\nParameters by component (tensor shapes summed from the safetensors header):\n\n"
       << "| component | parameters | share |\n|---|---:|---:|\n";
    for (const auto& [name, n] : counts)
      md << "| " << name << " | " << with_thousands(n) << " | " << format("%.1f%%", 100.0 * double(n) / double(total_params))
         << " |\n";
    md << "| **total** | **" << with_thousands(total_params) << "** | |\n";
  } catch (const vt::Error& e) {
    warn.push_back(std::string("model: no parameter counts: ") + e.what());
  }

  // What the numbers show, and what they do not: a template filled with the numbers above only.
  md << "\n## What this shows, and what it does not\n\nEach statement restates numbers from the tables above.\n\n"
     << "What it shows:\n\n";
  std::vector<std::string> moved;
  for (const StageLog& s : stages) {
    const auto f = first_value(s.rows, "loss"), l = last_value(s.rows, "loss");
    if (f && l) moved.push_back("`" + s.name + "` " + format("%.4f", *f) + " to " + format("%.4f", *l));
  }
  if (!moved.empty()) {
    md << "- Training: the logged loss went from its first to its last logged step as follows: ";
    for (size_t i = 0; i < moved.size(); ++i) md << (i ? "; " : "") << moved[i];
    md << ".\n";
  }
  const size_t first_ok = std::find_if(evals.begin(), evals.end(), [](const auto& e) { return e.has_value(); }) - evals.begin();
  const size_t last_ok = evals.rend() - std::find_if(evals.rbegin(), evals.rend(), [](const auto& e) { return e.has_value(); });
  if (first_ok < evals.size()) {
    const json &b = *evals[first_ok], &a = *evals[last_ok - 1];
    const std::string bn = eval_names[first_ok], an = eval_names[last_ok - 1];
    const Column& overall = cols[0];
    const Metric held_b = score(b, {"gen", "heldout"}), held_a = score(a, {"gen", "heldout"});
    md << "- Generation (" << count_at(a, {"gen", "images_scored", "total"}) << " prompts): GenEval overall "
       << change(overall.get(b), overall.get(a), bn, an);
    if (held_b.value || held_a.value) md << "; held-out colour/shape pairs " << change(held_b, held_a, bn, an);
    if (const json* r = at(a, {"recon", "overall"}); r && r->is_number())
      md << ". The same prompts' own images through `" << an << "`'s tokenizer (encode, decode) score "
         << format("%.4f", r->get<double>()) << ": no generator on this tokenizer can score higher";
    md << ".\n"
       << "- Understanding: accuracy " << change(score(b, {"understand"}), score(a, {"understand"}), bn, an) << ".\n"
       << "- Editing: overall " << change(cols.back().get(b), cols.back().get(a), bn, an) << ".\n";
    md << "\nWhat it does not show:\n\n";
    int categories = 0, smallest = 0;
    if (const json* cats = at(a, {"gen", "categories"}); cats && cats->is_object())
      for (const auto& [tag, sc] : cats->items())
        if (const int t = sc.value("total", 0); t > 0) ++categories, smallest = smallest ? std::min(smallest, t) : t;
    if (categories > 0)
      md << "- Differences smaller than one image: in `" << an << "` the smallest GenEval category has " << smallest
         << (smallest == 1 ? " image" : " images") << ", so one image moves it by " << format("%.4f", 1.0 / smallest)
         << " and the overall score by " << format("%.4f", 1.0 / (smallest * categories)) << ".\n";
    if (const int n = count_at(a, {"understand", "total"}); n > 0)
      md << "- One understanding answer moves the accuracy by " << format("%.4f", 1.0 / n) << " (" << n
         << " questions).\n";
  } else {
    md << "\nWhat it does not show:\n\n";
  }
  md << "- Spread: this is one run with one seed; nothing here measures how the numbers vary across seeds or data.\n"
     << "- Causes: the checkpoints differ in every stage run between them; the tables do not separate the effect of "
        "each stage's data, steps or learning rate.\n"
     << "- Scope: ShapeWorld is a synthetic dataset judged by this project's detector (docs/shapeworld.md); these "
        "are not GenEval, POPE or editing-benchmark results of VARGPT-v1.1";
  if (total_params > 0) md << ", and the model here has " << with_thousands(total_params) << " parameters";
  md << ".\n";

  if (!warn.empty()) {
    md << "\n## Missing inputs\n\n";
    for (const std::string& w : warn) md << "- " << w << "\n";
  }
  res.markdown = md.str();
  shapes::write_text_atomic((out / "REPORT.md").string(), res.markdown);
  return res;
}

}  // namespace vt::train
