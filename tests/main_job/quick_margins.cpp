// quick_margins.cpp: the margins of `scripts/main_job.sh --quick` (the CTest main_job_quick runs the
// script, then this on its output directory). Every metric that a minute of training can move must
// beat the untrained model's by the margin stated below; each line prints the numbers it compared.
//
//   quick_margins OUT      (OUT: the --out of main_job.sh --quick)
//
// Measured on the 2-core CI machine (seed 0, 12 test scenes): tokenizer PSNR 13.6 -> 22.7 dB, round
// trip 0 -> 3/12, understanding 0 -> 10/24, answer loss 6.33 -> 0.77 nats, bit loss 0.729 -> 0.704
// nats, editing loss 5.09 -> 3.10. GenEval and the editing judge are not checked here: the full
// run's generator draws speckle that the judge fails as clutter (README), so they stay at 0; the
// held-out bit loss is the generator's check, the editing stage's own loss the editor's.
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

using nlohmann::json;

namespace {

std::string g_out;
int g_failed = 0;

json read_json(const std::string& rel) {
  const std::string path = g_out + "/" + rel;
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot open (did every stage of main_job.sh --quick run?)");
  json j = json::parse(in, nullptr, false);
  if (j.is_discarded()) throw std::runtime_error(path + ": not valid JSON");
  return j;
}

// The JSON lines of a stage's log.jsonl.
std::vector<json> read_log(const std::string& stage) {
  const std::string path = g_out + "/" + stage + "/log.jsonl";
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot open");
  std::vector<json> lines;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(json::parse(line));
  if (lines.empty()) throw std::runtime_error(path + ": no logged steps");
  return lines;
}

double number(const json& j, std::initializer_list<const char*> path, const std::string& what) {
  const json* p = &j;
  for (const char* k : path) {
    if (!p->is_object() || !p->contains(k)) throw std::runtime_error(what + ": no '" + k + "'");
    p = &(*p)[k];
  }
  if (!p->is_number()) throw std::runtime_error(what + ": not a number");
  return p->get<double>();
}

// after must be >= before + margin (higher is better) or <= before - margin (lower is better).
void check(const std::string& metric, double before, double after, double margin, bool higher_is_better) {
  const bool ok = higher_is_better ? after >= before + margin : after <= before - margin;
  std::printf("%s %-58s untrained/first %.4f -> %.4f (needs %s %.4f)\n", ok ? "ok  " : "FAIL", metric.c_str(), before,
              after, higher_is_better ? ">=" : "<=", higher_is_better ? before + margin : before - margin);
  g_failed += !ok;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: quick_margins OUT  (the --out of scripts/main_job.sh --quick)\n");
    return 2;
  }
  g_out = argv[1];
  try {
    const json untrained = read_json("eval/untrained.json"), stage2 = read_json("eval/stage2.json"),
               sft64 = read_json("eval/stage3_sft_64.json"), final_ = read_json("eval/final.json");
    // The tokenizer: PSNR of its training batch (first logged step = the untrained VAE), and the
    // round trip of the test prompts' images judged as generation.
    const std::vector<json> vae = read_log("bsq_tokenizer");
    check("tokenizer PSNR on its batch (dB)", number(vae.front(), {"psnr"}, "bsq_tokenizer step 1"),
          number(vae.back(), {"psnr"}, "bsq_tokenizer last step"), 5.0, true);
    check("tokenizer round trip (GenEval of the test images)", number(untrained, {"recon", "overall"}, "untrained"),
          number(stage2, {"recon", "overall"}, "stage2"), 0.08, true);
    // Understanding: accuracy on the test questions, and the answers' held-out loss.
    check("understanding accuracy after stage 2", number(untrained, {"understand", "accuracy"}, "untrained"),
          number(stage2, {"understand", "accuracy"}, "stage2"), 0.25, true);
    check("understanding accuracy, final", number(untrained, {"understand", "accuracy"}, "untrained"),
          number(final_, {"understand", "accuracy"}, "final"), 0.15, true);
    check("held-out answer loss after stage 2 (nats/token)", number(untrained, {"loss", "text_loss"}, "untrained"),
          number(stage2, {"loss", "text_loss"}, "stage2"), 3.0, false);
    // Generation: the held-out bit loss of the test images given their prompts.
    check("held-out bit loss after stage 3 SFT at 64 px (nats/bit)", number(untrained, {"loss", "image_loss"}, "untrained"),
          number(sft64, {"loss", "image_loss"}, "stage3_sft_64"), 0.015, false);
    check("held-out bit loss, final (nats/bit)", number(untrained, {"loss", "image_loss"}, "untrained"),
          number(final_, {"loss", "image_loss"}, "final"), 0.01, false);
    // Editing: its stage's training loss, first logged step (the stage's starting model) to last.
    const std::vector<json> edit = read_log("editing");
    check("editing stage loss", number(edit.front(), {"loss"}, "editing step 1"), number(edit.back(), {"loss"}, "editing last step"),
          1.0, false);
    // DPO logged its reward margins.
    for (const char* stage : {"stage3_dpo_32", "stage3_dpo_64"}) {
      const std::vector<json> dpo = read_log(stage);
      number(dpo.back(), {"rewards/margins"}, std::string(stage) + " last step");
      std::printf("ok   %s logged rewards/margins\n", stage);
    }
  } catch (const std::exception& e) {
    std::printf("FAIL %s\n", e.what());
    return 1;
  }
  std::printf("%s: %d margin(s) missed\n", g_failed ? "main_job --quick FAILED" : "main_job --quick margins met", g_failed);
  return g_failed ? 1 : 0;
}
