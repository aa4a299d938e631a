// vargpt.cpp: the `vargpt` command: a table of subcommands and the dispatch into them.
#include <cstdio>
#include <cstring>
#include <exception>

#include "commands.h"
#include "vt/error.h"

namespace {

struct Subcommand {
  const char* name;
  int (*run)(int argc, char** argv);
  const char* summary;
};

// One line per subcommand; the functions are declared in commands.h.
const Subcommand kSubcommands[] = {
    {"shapes", cmd_shapes, "ShapeWorld: write the procedural dataset; score generations, answers, edits"},
    {"chat", cmd_chat, "talk to a Qwen2 / Qwen2-VL / VARGPT-v1.1 checkpoint, with images"},
    {"generate", cmd_generate, "VARGPT-v1.1 text to image: prompts (or a prompts file) -> PNGs, batched"},
    {"edit", cmd_edit, "VARGPT-v1.1 image editing: an image and an instruction -> PNG"},
    {"eval", cmd_eval, "evaluate a VARGPT-v1.1 checkpoint on a ShapeWorld split: gen, understand, edit"},
    {"init", cmd_init, "a VARGPT model of given sizes from random weights, as a model directory"},
    {"train", cmd_train, "train one phase from a recipe: sft, dpo or the BSQ tokenizer; resumable"},
    {"tokenizer", cmd_tokenizer, "a small vocabulary (ShapeWorld) cut from the Qwen2 tokenizer; same tokens for its corpus"},
    {"report", cmd_report, "REPORT.md, loss_curves.png and samples.png from a ShapeWorld run's logs and evaluations"},
    {"vae", cmd_vae, "BSQ-VAE tokenizer: image -> per-scale bits -> image, round-trip PSNR"},
};

void print_usage(FILE* out) {
  std::fprintf(out, "usage: vargpt <command> [options]\n\ncommands:\n");
  for (const Subcommand& c : kSubcommands) std::fprintf(out, "  %-10s %s\n", c.name, c.summary);
  std::fprintf(out, "\nRun 'vargpt <command> --help' for the options of a command.\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
    print_usage(stdout);
    return argc < 2 ? 2 : 0;
  }
  for (const Subcommand& c : kSubcommands) {
    if (std::strcmp(argv[1], c.name) != 0) continue;
    try {
      return c.run(argc - 1, argv + 1);
    } catch (const vt::Error& e) {
      std::fprintf(stderr, "vargpt %s: error: %s\n", c.name, e.what());
      return 1;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "vargpt %s: unexpected error: %s\n", c.name, e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "vargpt: unknown command '%s'\n\n", argv[1]);
  print_usage(stderr);
  return 2;
}
