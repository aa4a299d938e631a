// cmd_shapes.cpp: `vargpt shapes`: write a ShapeWorld dataset and score generated images,
// understanding answers and edits against it (formats in docs/shapeworld.md).
#include <omp.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "commands.h"
#include "options.h"
#include "shapeworld/dataset.h"
#include "shapeworld/evaluate.h"
#include "shapeworld/render.h"
#include "vt/error.h"

namespace {

using namespace vt::shapes;
using vargpt::Options;

const char* const kUsage =
    "usage:\n"
    "  vargpt shapes make --out DIR [--size 128] [--train 1000] [--test 200] [--seed 0] [--noise 0] [--plain]\n"
    "                     [--object-scale 1]\n"
    "  vargpt shapes eval gen        --data DIR [--split test] [--images DIR] [--json FILE]\n"
    "  vargpt shapes eval understand --data DIR --answers FILE [--split test] [--json FILE]\n"
    "  vargpt shapes eval edit       --data DIR [--split test] [--images DIR] [--json FILE]\n"
    "\n"
    "make   writes scenes of 1-4 coloured shapes at 64, 128, 256 or 512 pixels with generation pairs,\n"
    "       LLaVA-format questions, editing triples and preference triples for a train and a test\n"
    "       split; the same seed writes the same bytes. --noise adds per-pixel background noise\n"
    "       (grey levels; makes PNGs ~30x larger). --plain draws uniform backgrounds (one tinted grey\n"
    "       per scene) instead of textured gradients. --object-scale (0.5 to 2) multiplies the object\n"
    "       sizes (half extents 0.08 and 0.13 of the side); the manifest records it for the judge.\n"
    "eval   gen: GenEval-style scores of images named <record id>.png in --images (default: the\n"
    "       dataset's own renders, which score 1.0); understand: answers as JSON lines\n"
    "       {\"id\": ..., \"answer\": ...}; edit: edited images named <record id>.png.\n"
    "       Prints a table; --json also writes the full report. Unreadable records or images are\n"
    "       reported by id and count as failures.\n"
    "common: --quiet (no progress), --threads N (OpenMP threads)\n";

// Progress on stderr: a rewritten line on a terminal, a line per 10% otherwise.
std::function<void(const char*, size_t, size_t)> progress_printer(bool quiet) {
  if (quiet) return {};
  const bool tty = isatty(2);
  auto start = std::chrono::steady_clock::now();
  auto last_decile = std::make_shared<size_t>(0);
  return [tty, start, last_decile](const char* stage, size_t done, size_t total) {
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    size_t decile = total ? done * 10 / total : 10;
    if (tty) {
      std::fprintf(stderr, "\r%s: %zu/%zu (%.1f s)%s", stage, done, total, s, done == total ? "\n" : "");
    } else if (decile > *last_decile || done == total) {
      *last_decile = decile;
      std::fprintf(stderr, "%s: %zu/%zu (%.1f s)\n", stage, done, total, s);
    }
  };
}

int run_make(int argc, char** argv) {
  auto o = vargpt::parse_options(argc, argv, 2, {"out", "size", "train", "test", "seed", "noise", "object-scale", "threads"}, {"quiet", "plain"}, kUsage);
  vargpt::set_threads(o);
  MakeOptions m;
  m.out_dir = o.required("out");
  m.size = int(o.integer("size", 128));
  long long train = o.integer("train", 1000), test = o.integer("test", 200);
  VT_CHECK(train >= 0 && test >= 0 && train + test <= 100000000, "--train and --test must be in [0, 1e8]");
  m.train = int(train);
  m.test = int(test);
  m.seed = uint64_t(o.integer("seed", 0));
  m.noise_sigma = float(std::atof(o.value_or("noise", "0").c_str()));
  m.plain = o.has("plain");
  m.object_scale = float(o.real("object-scale", 1.0));
  m.progress = progress_printer(o.has("quiet"));
  auto start = std::chrono::steady_clock::now();
  nlohmann::json manifest = make_dataset(m);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (const char* split : {"train", "test"}) {
    const auto& sp = manifest["splits"][split];
    std::printf("%s: %d scenes, %d images, %d generation, %d understanding, %d editing, %d preference records\n", split,
                sp["scenes"].get<int>(), sp["images"].get<int>(), sp["generation"].get<int>(),
                sp["understanding"].get<int>(), sp["editing"].get<int>(), sp["preference"].get<int>());
  }
  std::printf("wrote %s in %.1f s\n", m.out_dir.c_str(), s);
  return 0;
}

int run_eval(int argc, char** argv) {
  VT_CHECK(argc >= 3, "eval needs a kind: gen, understand or edit\n", kUsage);
  const std::string kind = argv[2];
  auto o = vargpt::parse_options(argc, argv, 3, {"data", "split", "images", "answers", "json", "threads"}, {"quiet"}, kUsage);
  vargpt::set_threads(o);
  EvalOptions e;
  e.data_dir = o.required("data");
  e.split = o.value_or("split", "test");
  e.images_dir = o.value_or("images", "");
  e.progress = progress_printer(o.has("quiet"));
  std::string table;
  nlohmann::json report;
  if (kind == "gen") {
    GenReport r = evaluate_generation(e);
    table = r.table();
    report = r.to_json();
  } else if (kind == "understand") {
    e.answers_path = o.required("answers");
    UnderstandingReport r = evaluate_understanding(e);
    table = r.table();
    report = r.to_json();
  } else if (kind == "edit") {
    EditReport r = evaluate_edits(e);
    table = r.table();
    report = r.to_json();
  } else {
    VT_FAIL("unknown eval kind '", kind, "' (expected gen, understand or edit)\n", kUsage);
  }
  std::fputs(table.c_str(), stdout);
  if (o.has("json")) write_text_atomic(o.value_or("json", ""), report.dump(2) + "\n");
  return 0;
}

}  // namespace

int cmd_shapes(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string sub = argv[1];
  if (sub == "make") return run_make(argc, argv);
  if (sub == "eval") return run_eval(argc, argv);
  VT_FAIL("unknown subcommand '", sub, "' (expected make or eval)\n", kUsage);
}
