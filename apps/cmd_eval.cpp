// cmd_eval.cpp: `vargpt eval`: a VARGPT-v1.1 checkpoint on a ShapeWorld split, judged by the
// project's evaluator, with the model loaded once (the engine is train/eval.h):
//
//   check the data (split files) -> load model, tokenizer, preprocessor_config.json
//   -> gen / understand / edit in batches -> tables on stdout, the JSON summary in --json FILE
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <sstream>

#include "commands.h"
#include "eval.h"
#include "options.h"
#include "sampler_options.h"
#include "shapeworld/render.h"
#include "vt/error.h"

namespace {

using namespace vt;
namespace fs = std::filesystem;
namespace vg = vt::vargpt;

const char* const kUsage =
    "usage:\n"
    "  vargpt eval --model DIR --data SHAPEWORLD_DIR [options]\n"
    "\n"
    "Evaluates a VARGPT-v1.1 checkpoint on a ShapeWorld split (`vargpt shapes make`) with the judge of\n"
    "`vargpt shapes eval`: gen (text to image, GenEval-style), understand (questions, POPE), edit, and\n"
    "recon: the generation records' own images through the tokenizer (vae_local encode + decode), judged\n"
    "as gen is: the ceiling of any generator on this tokenizer; and loss: the held-out teacher-forced bit\n"
    "cross-entropy of the generation records' images and text cross-entropy of the answers (no sampling).\n"
    "options:\n"
    "  --split NAME          default test\n"
    "  --tasks LIST          subset of gen,understand,edit,recon,loss (default gen,understand,edit)\n"
    "  --limit N             the first N records of each task (default 0: all)\n"
    "  --batch B             rows per model call (default 8)\n"
    "  --seed S              record i of gen and edit draws its image with seed S + i (default 0)\n"
    "  --out DIR             OUT/gen/<id>.png, OUT/edit/<id>.png, OUT/recon/<id>.png, OUT/understand/answers.jsonl and the\n"
    "                        decoded replies (default vargpt_eval)\n"
    "  --json FILE           the summary {\"gen\", \"understand\", \"edit\", \"recon\", \"loss\", \"seconds\"}\n"
    "  --size SIZE           generated image size: 256, 512 or WxH (default: the model's)\n"
    "  --cfg C (3)  --tau T (0.5)  --top-p P (0.97)  --top-k K (900): the bitwise sampler\n"
    "  --gen-tokens N        the longest reply before the forced image (default 24)\n"
    "  --answer-tokens N     the longest understanding answer (default 32)\n"
    "  --device cpu|cuda     default cpu;  --dtype f32|bf16 (default: the config's);  --threads N\n"
    "  --quiet               no progress on stderr\n";

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

train::EvalConfig parse_config(const ::vargpt::Options& o) {
  train::EvalConfig c;
  c.data_dir = o.required("data");
  c.split = o.value_or("split", "test");
  c.out_dir = o.value_or("out", "vargpt_eval");
  const std::string tasks = o.value_or("tasks", "gen,understand,edit");
  c.gen = c.understand = c.edit = false;
  std::istringstream in(tasks);
  for (std::string t; std::getline(in, t, ',');) {
    if (t == "gen") c.gen = true;
    else if (t == "understand") c.understand = true;
    else if (t == "edit") c.edit = true;
    else if (t == "recon") c.recon = true;
    else if (t == "loss") c.loss = true;
    else VT_FAIL("--tasks: unknown task '", t, "' in '", tasks, "' (expected gen, understand, edit, recon, loss)");
  }
  c.limit = o.integer("limit", 0);
  c.batch = o.integer("batch", 8);
  c.seed = uint64_t(o.integer("seed", 0));
  c.gen_text_tokens = o.integer("gen-tokens", 24);
  c.answer_tokens = o.integer("answer-tokens", 32);
  parse_sampler_options(o, c.image);
  c.quiet = o.has("quiet");
  return c;
}

}  // namespace

int cmd_eval(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const auto o = ::vargpt::parse_options(
      argc, argv, 1,
      {"model", "data", "split", "tasks", "limit", "batch", "seed", "out", "json", "size", "cfg", "tau", "top-p",
       "top-k", "gen-tokens", "answer-tokens", "device", "dtype", "threads"},
      {"quiet"}, kUsage);
  ::vargpt::set_threads(o);
  const train::EvalConfig cfg = parse_config(o);
  const std::string dir = o.required("model");
  // Bad input fails before the weights are read.
  VT_CHECK(fs::is_directory(dir), "--model ", dir, ": no such directory");
  train::check_eval_inputs(cfg);
  if (cfg.gen || cfg.edit || cfg.recon || cfg.loss) {
    VT_CHECK(vg::VargptConfig::has_generation(dir), dir,
             ": this checkpoint has no generation tensors; run --tasks understand, or `vargpt chat`");
    try {  // the size against the model's schedules, from config.json and the tensor shapes
      vg::VargptConfig::load(dir).schedule_for(cfg.image.height, cfg.image.width);
    } catch (const vt::Error& e) {
      VT_FAIL("--size ", cfg.image.width, "x", cfg.image.height, ": ", e.what());
    }
  }
  std::optional<DType> dtype;
  const std::string d = o.value_or("dtype", "");
  if (d == "f32") dtype = DType::F32;
  else if (d == "bf16") dtype = DType::BF16;
  else VT_CHECK(d.empty(), "--dtype must be f32 or bf16, got '", d, "'");
  const Device device = Device::parse(o.value_or("device", "cpu"));

  const auto t0 = std::chrono::steady_clock::now();
  const auto model = vg::Vargpt::from_pretrained(dir, dtype);
  model->to(device);
  model->eval();  // no drop path in the held-out loss (generation never applies it)
  const tok::Tokenizer tokenizer = tok::Tokenizer::from_file(dir + "/tokenizer.json");
  vg::check_tokenizer(tokenizer, model->tokens(), dir + "/tokenizer.json");
  qwen2_vl::ImageProcessorConfig vit;
  if (fs::exists(dir + "/preprocessor_config.json"))
    vit = qwen2_vl::ImageProcessorConfig::from_json_file(dir + "/preprocessor_config.json");
  const double load_s = seconds_since(t0);
  if (!cfg.quiet) std::fprintf(stderr, "loaded %s in %.1f s\n", dir.c_str(), load_s);

  const train::EvalResult result = train::run_evaluation(*model, tokenizer, vit, cfg);
  nlohmann::json summary = result.to_json();
  summary["seconds"]["load"] = load_s;
  std::fputs(result.table().c_str(), stdout);
  if (o.has("json")) shapes::write_text_atomic(o.value_or("json", ""), summary.dump(2) + "\n");
  return 0;
}
