// cmd_report.cpp: `vargpt report`: REPORT.md, loss_curves.png and samples.png of a ShapeWorld
// miniature run, from the logs and evaluations it left in OUT (the engine is train/report.h).
#include <cstdio>
#include <cstring>
#include <sstream>

#include "commands.h"
#include "options.h"
#include "report.h"
#include "vt/error.h"

namespace {

const char* const kUsage =
    "usage:\n"
    "  vargpt report --out OUT --data SHAPEWORLD_DIR [options]\n"
    "\n"
    "Writes OUT/REPORT.md, OUT/loss_curves.png and OUT/samples.png from OUT/<stage>/log.jsonl,\n"
    "OUT/eval/<name>.json (+ OUT/eval/<name>/gen/<id>.png), OUT/init/ and the dataset's prompts.\n"
    "options:\n"
    "  --title TEXT      the report's heading\n"
    "  --stages A,B,C    stages in this order (default: every OUT/<dir>/log.jsonl, oldest first)\n"
    "  --evals X,Y,Z     evaluations in this order, the first being 'before' (default: every\n"
    "                    OUT/eval/*.json, oldest first); samples come from the last one\n"
    "  --times FILE      lines 'stage seconds' (the stage may contain spaces): the time table\n"
    "  --command TEXT    the run command quoted in the report\n"
    "  --date TEXT       the date shown (default: now, UTC)\n"
    "  --split NAME      the dataset split the evaluations used (default test)\n"
    "  --samples N       test prompts in samples.png (default 16)\n";

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

}  // namespace

int cmd_report(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const auto o = ::vargpt::parse_options(
      argc, argv, 1, {"out", "data", "title", "stages", "evals", "times", "command", "date", "split", "samples"}, {},
      kUsage);
  vt::train::ReportOptions r;
  r.out_dir = o.required("out");
  r.data_dir = o.required("data");
  r.title = o.value_or("title", r.title);
  r.stages = split_list(o.value_or("stages", ""));
  r.evals = split_list(o.value_or("evals", ""));
  r.times_path = o.value_or("times", "");
  r.command = o.value_or("command", "");
  r.date = o.value_or("date", "");
  r.split = o.value_or("split", "test");
  r.samples = int(o.integer("samples", 16));
  VT_CHECK(r.samples >= 0 && r.samples <= 256, "--samples must be in [0, 256], got ", r.samples);
  const vt::train::ReportResult res = vt::train::write_report(r);
  for (const std::string& w : res.warnings) std::fprintf(stderr, "vargpt report: warning: %s\n", w.c_str());
  std::printf("%s/REPORT.md\n", r.out_dir.c_str());
  return 0;
}
