// cmd_train.cpp: `vargpt train`: one recipe (train/recipes/...) from a starting checkpoint to a new
// one, resumable. The loop is train/trainer.h; the data pipeline train/data/loader.h.
#include <cstdio>
#include <filesystem>
#include <memory>

#include "checkpoint.h"
#include "commands.h"
#include "data/loader.h"
#include "options.h"
#include "qwen2_vl/image_processor.h"
#include "recipe.h"
#include "samples.h"
#include "tokenizer/bpe.h"
#include "trainer.h"
#include "vt/dist/process_group.h"
#include "vargpt/vargpt.h"

namespace {

using namespace vt;
namespace fs = std::filesystem;

const char* const kUsage =
    "usage:\n"
    "  vargpt train --recipe FILE [--data DIR] [--init DIR] [--out DIR] [--resume] [--set key=value]...\n"
    "\n"
    "Runs one training phase. FILE is a recipe (train/recipes/vargpt_v1_1/*.json: kind sft, dpo or vae,\n"
    "the freeze preset, batch, lr, schedule, steps, data files relative to --data).\n"
    "  --init DIR        the checkpoint to start from (overrides the recipe's \"init\")\n"
    "  --previous DIR    the output directory of the phase before: \"@previous\" in the recipe's init and\n"
    "                    reference means its latest checkpoint (recipes chain SFT -> DPO -> SFT ...)\n"
    "  --reference DIR   dpo: the frozen reference (overrides the recipe's \"reference\")\n"
    "  --out DIR         checkpoints, log.jsonl, samples/step-<step>.png when the recipe's sample_every\n"
    "                    is set (default out/<recipe name>)\n"
    "  --resume          continue from OUT/latest (weights, optimizer, schedule, RNG, data position)\n"
    "  --set key=value   override a recipe value (repeatable), e.g. --set steps=100 --set dpo.beta=0.2\n"
    "  --quiet           no progress bar;  --threads N\n"
    "Each checkpoint OUT/checkpoint-<step> is a model directory for vargpt chat | generate | edit.\n"
    "Data parallel: launch N copies (mpirun -np N vargpt train ..., srun, or RANK/WORLD_SIZE/LOCAL_RANK\n"
    "variables as torchrun sets them); the recipe's zero_stage (0-3, --set zero_stage=2) picks ZeRO and\n"
    "global_batch = micro_batch x N x accumulation. A checkpoint of N ranks resumes on any M.\n";

// A recipe path value: "@previous" -> the latest checkpoint under --previous.
std::string resolve(const std::string& value, const std::string& previous, const char* what) {
  if (value != "@previous") return value;
  VT_CHECK(!previous.empty(), "the recipe's ", what, " is \"@previous\": give --previous DIR (the output of the "
           "phase before) or --", what, " DIR");
  const auto ck = train::latest_checkpoint(previous);
  VT_CHECK(ck.has_value(), "--previous ", previous, " holds no complete checkpoint (no 'latest')");
  return *ck;
}

}  // namespace

int cmd_train(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "--help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  const auto o = ::vargpt::parse_options(argc, argv, 1,
                                       {"recipe", "data", "init", "previous", "reference", "out", "set", "threads"},
                                       {"resume", "quiet"}, kUsage);
  ::vargpt::set_threads(o);
  // The ranks of this job (world 1 without a launcher). A CPU run uses MPI; a CUDA one would use NCCL.
  const std::shared_ptr<dist::ProcessGroup> group = dist::init_process_group();
  const bool lead = group->rank() == 0;
  train::Recipe recipe = train::Recipe::load(o.required("recipe"));
  for (const std::string& s : o.all("set")) recipe.set(s);
  const std::string previous = o.value_or("previous", "");
  train::TrainOptions opt;
  opt.init_dir = resolve(o.value_or("init", recipe.init), previous, "init");
  VT_CHECK(!opt.init_dir.empty(), "no model to start from: give --init DIR or \"init\" in the recipe");
  VT_CHECK(fs::is_directory(opt.init_dir), "--init ", opt.init_dir, " is not a directory");
  if (recipe.kind == "dpo") opt.reference_dir = resolve(o.value_or("reference", recipe.reference), previous, "reference");
  opt.out_dir = o.value_or("out", "out/" + recipe.name);
  opt.resume = o.has("resume");
  opt.quiet = o.has("quiet");
  if (group->size() > 1) opt.group = group;
  if (!opt.quiet && lead) std::fprintf(stderr, "train: recipe %s\n%s\n", recipe.name.c_str(), recipe.to_json().dump(1).c_str());

  // The data: the recipe's files under --data, tokenized with the starting model's tokenizer.
  const tok::Tokenizer tokenizer = tok::Tokenizer::from_file(opt.init_dir + "/tokenizer.json");
  const std::string data_dir = o.value_or("data", ".");
  std::vector<train::DataSource> sources;
  for (const train::RecipeData& d : recipe.data) {
    train::DataSource s;
    s.path = (fs::path(data_dir) / d.file).string();
    if (d.kind != "auto") s.kind = train::parse_task_kind(d.kind);
    s.root = d.root.empty() ? "" : (fs::path(data_dir) / d.root).string();
    s.fraction = d.fraction;
    sources.push_back(s);
  }
  VT_CHECK(!sources.empty(), "recipe ", recipe.name, " lists no data files");
  // The sample grids' prompts: the first generation / preference records, the same at every grid.
  if (recipe.sample_every > 0) opt.sample_prompts = train::sample_prompts_from_data(sources, recipe.sample_prompts);
  train::LoaderOptions lo;
  lo.batch_size = recipe.micro_batch;
  lo.seed = recipe.seed;
  lo.cutoff_len = recipe.cutoff_len;
  lo.strict = recipe.strict;
  lo.num_workers = static_cast<int>(recipe.workers);
  lo.sequence.gen.size = recipe.gen_size;
  lo.sequence.gen_pads = vt::vargpt::VargptConfig::load(opt.init_dir)
                             .schedule_for(recipe.gen_size, recipe.gen_size)
                             .padded_tokens(infinity::kSequencePadMultiple);
  if (fs::exists(opt.init_dir + "/preprocessor_config.json"))
    lo.sequence.vit = qwen2_vl::ImageProcessorConfig::from_json_file(opt.init_dir + "/preprocessor_config.json");
  auto loader = std::make_shared<train::Loader>(tokenizer, sources, lo);
  train::BatchSource data;
  data.next = [loader, &recipe] {
    std::optional<train::Batch> b = loader->next();
    VT_CHECK(b.has_value(), "recipe ", recipe.name, ": the data ran out (no usable records?)");
    return std::move(*b);
  };
  data.position = [loader] { return loader->position().to_json(); };
  data.restore = [loader](const nlohmann::json& p) { loader->restore(train::LoaderPosition::from_json(p)); };

  train::TrainResult r;
  try {
    r = train::train(recipe, data, opt);
  } catch (const std::exception& e) {
    if (group->size() == 1) throw;
    dist::abort_job(group.get(), e.what());  // the other ranks would wait in a collective: end the job
  }
  const train::DataStats st = loader->stats();
  (void)st;
  if (!lead) return 0;
  std::printf("%s\n", r.checkpoint.c_str());
  if (!opt.quiet) std::fprintf(stderr, "train: %s done after %lld steps: %s\n", recipe.name.c_str(), (long long)r.steps,
                               r.last_log.dump().c_str());
  return 0;
}
