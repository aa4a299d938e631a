// understanding.cpp: scoring understanding answers: exact match after normalisation, and POPE's
// accuracy / precision / recall / F1 per negative type (see evaluate.h).
#include <cstdio>
#include <sstream>

#include "shapeworld/evaluate.h"
#include "shapeworld/language.h"
#include "shapeworld/tasks.h"
#include "vt/error.h"

namespace vt::shapes {

using nlohmann::json;

bool answer_matches(const std::string& task, const std::string& answer, const std::string& reference) {
  auto both = [](int a, int b) { return a >= 0 && a == b; };
  if (task == "count") return both(normalize_count(answer), normalize_count(reference));
  if (task == "color") return both(normalize_color(answer), normalize_color(reference));
  if (task == "exist") return both(normalize_yes_no(answer), normalize_yes_no(reference));
  if (task == "position") return both(normalize_relation(answer), normalize_relation(reference));
  if (task == "describe") return parse_description(answer) == parse_description(reference);
  return words_of(answer) == words_of(reference);
}

std::map<std::string, std::string> load_answers(const std::string& path, std::vector<std::string>& errors) {
  const std::string text = read_text(path);
  std::vector<std::pair<std::string, json>> items;  // (where, entry)
  json whole = json::parse(text, nullptr, false);
  if (!whole.is_discarded() && whole.is_array()) {
    for (size_t i = 0; i < whole.size(); ++i) items.push_back({path + " entry " + std::to_string(i), whole[i]});
  } else {
    std::istringstream in(text);
    std::string line;
    for (int lineno = 1; std::getline(in, line); ++lineno) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      items.push_back({path + ":" + std::to_string(lineno), json::parse(line, nullptr, false)});
    }
  }
  VT_CHECK(!items.empty(), path, ": no answers; there is nothing to evaluate");
  std::map<std::string, std::string> out;
  for (auto& [where, j] : items) {
    if (j.is_discarded() || !j.is_object()) {
      errors.push_back(where + ": not a JSON object");
      continue;
    }
    const char* id_key = j.contains("id") ? "id" : "question_id";
    const char* ans_key = j.contains("answer") ? "answer" : "text";
    if (!j.contains(id_key) || !j[id_key].is_string() || !j.contains(ans_key) || !j[ans_key].is_string()) {
      errors.push_back(where + ": needs string fields id (or question_id) and answer (or text)");
      continue;
    }
    out[j[id_key].get<std::string>()] = j[ans_key].get<std::string>();
  }
  return out;
}

UnderstandingReport score_understanding(const std::vector<json>& records, const std::map<std::string, std::string>& answers) {
  UnderstandingReport rep;
  for (size_t i = 0; i < records.size(); ++i) {
    const json& r = records[i];
    std::string id = r.is_object() && r.contains("id") && r["id"].is_string() ? r["id"].get<std::string>()
                                                                             : "record #" + std::to_string(i);
    std::string task = r.is_object() && r.contains("task") && r["task"].is_string() ? r["task"].get<std::string>() : "unknown";
    std::string reference;
    if (r.is_object() && r.contains("conversations") && r["conversations"].is_array() && r["conversations"].size() >= 2 &&
        r["conversations"][1].is_object() && r["conversations"][1].contains("value") && r["conversations"][1]["value"].is_string())
      reference = r["conversations"][1]["value"].get<std::string>();
    auto it = answers.find(id);
    bool ok = false;
    if (reference.empty()) {
      rep.errors.push_back(id + ": record has no reference answer in conversations[1].value");
    } else if (it == answers.end()) {
      rep.errors.push_back(id + ": no answer given");
    } else {
      ok = answer_matches(task, it->second, reference);
    }
    rep.by_task[task].add(ok);
    rep.all.add(ok);
    if (task == "exist" && r.contains("pope") && r["pope"].is_string() && !reference.empty()) {
      int type = -1;
      for (int k = 0; k < 3; ++k)
        if (r["pope"].get<std::string>() == kPopeTypes[k]) type = k;
      if (type < 0) {
        rep.errors.push_back(id + ": unknown POPE type '" + r["pope"].get<std::string>() + "'");
        continue;
      }
      bool truth = normalize_yes_no(reference) == 1;
      // A missing answer or one with neither yes nor no is wrong either way.
      bool said_yes = it != answers.end() && normalize_yes_no(it->second) >= 0 ? normalize_yes_no(it->second) == 1 : !truth;
      PopeScore& p = rep.pope[size_t(type)];
      if (truth && said_yes) ++p.tp;
      if (truth && !said_yes) ++p.fn;
      if (!truth && said_yes) ++p.fp;
      if (!truth && !said_yes) ++p.tn;
    }
  }
  return rep;
}

UnderstandingReport evaluate_understanding(const EvalOptions& opt) {
  VT_CHECK(!opt.answers_path.empty(), "shapes eval understanding: no answers file given");
  const std::string path = opt.data_dir + "/" + opt.split + "/understanding.json";
  std::vector<json> records = load_records(path);
  VT_CHECK(!records.empty(), path, ": no records; there is nothing to evaluate");
  std::vector<std::string> answer_errors;
  std::map<std::string, std::string> answers = load_answers(opt.answers_path, answer_errors);
  UnderstandingReport rep = score_understanding(records, answers);
  rep.errors.insert(rep.errors.begin(), answer_errors.begin(), answer_errors.end());
  return rep;
}

std::string UnderstandingReport::table() const {
  std::ostringstream os;
  char buf[128];
  os << "ShapeWorld understanding (" << all.total << " questions, " << errors.size() << " errors)\n";
  os << "| Task     | Accuracy |  Correct |    Total |\n|----------|---------:|---------:|---------:|\n";
  for (const auto& [task, s] : by_task) {
    std::snprintf(buf, sizeof buf, "| %-8s | %8.4f | %8d | %8d |\n", task.c_str(), s.accuracy(), s.correct, s.total);
    os << buf;
  }
  std::snprintf(buf, sizeof buf, "| %-8s | %8.4f | %8d | %8d |\n", "all", all.accuracy(), all.correct, all.total);
  os << buf << "\nPOPE\n| Negatives   | Accuracy | Precision |   Recall |       F1 | Yes ratio |\n"
     << "|-------------|---------:|----------:|---------:|---------:|----------:|\n";
  for (int k = 0; k < 3; ++k) {
    const PopeScore& p = pope[size_t(k)];
    std::snprintf(buf, sizeof buf, "| %-11s | %8.4f | %9.4f | %8.4f | %8.4f | %9.4f |\n", kPopeTypes[k], p.accuracy(),
                  p.precision(), p.recall(), p.f1(), p.yes_ratio());
    os << buf;
  }
  for (size_t i = 0; i < errors.size() && i < 10; ++i) os << "error: " << errors[i] << "\n";
  if (errors.size() > 10) os << "... and " << errors.size() - 10 << " more errors\n";
  return os.str();
}

json UnderstandingReport::to_json() const {
  json tasks = json::object(), pj = json::object();
  for (const auto& [task, s] : by_task) tasks[task] = {{"correct", s.correct}, {"total", s.total}, {"accuracy", s.accuracy()}};
  for (int k = 0; k < 3; ++k) {
    const PopeScore& p = pope[size_t(k)];
    pj[kPopeTypes[k]] = {{"accuracy", p.accuracy()}, {"precision", p.precision()}, {"recall", p.recall()},
                         {"f1", p.f1()}, {"yes_ratio", p.yes_ratio()}, {"tp", p.tp}, {"fp", p.fp},
                         {"tn", p.tn}, {"fn", p.fn}};
  }
  return {{"accuracy", all.accuracy()}, {"correct", all.correct}, {"total", all.total},
          {"tasks", tasks}, {"pope", pj}, {"errors", errors}};
}

}  // namespace vt::shapes
