// cmd_init.cpp: `vargpt init`: a VARGPT model of the sizes in a spec file, from random weights, as
// a model directory (models/vargpt/init.h). Training from scratch starts here.
#include <cstdio>
#include <fstream>

#include "commands.h"
#include "options.h"
#include "tokenizer/bpe.h"
#include "vargpt/init.h"
#include "vt/random.h"

namespace {

const char* const kUsage =
    "usage:\n"
    "  vargpt init --spec SPEC.json --tokenizer tokenizer.json --out DIR [--seed S]\n"
    "\n"
    "Writes DIR/config.json, tokenizer.json, preprocessor_config.json and random weights for a VARGPT\n"
    "model of the sizes in SPEC (keys: llm, vision, gen, vae, gen_sides, image; see models/vargpt/init.h).\n";

}  // namespace

int cmd_init(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "--help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  const auto o = ::vargpt::parse_options(argc, argv, 1, {"spec", "tokenizer", "out", "seed"}, {}, kUsage);
  const std::string spec_path = o.required("spec"), tok_path = o.required("tokenizer"), out = o.required("out");
  std::ifstream in(spec_path);
  VT_CHECK(in.good(), "cannot open --spec '", spec_path, "'");
  nlohmann::json spec;
  try {
    spec = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    VT_FAIL("--spec ", spec_path, ": malformed JSON: ", e.what());
  }
  const vt::tok::Tokenizer tokenizer = vt::tok::Tokenizer::from_file(tok_path);
  const vt::vargpt::ModelDir files = vt::vargpt::make_config(spec, tokenizer);
  const uint64_t seed = static_cast<uint64_t>(o.integer("seed", 0));
  vt::default_generator().manual_seed(seed);  // Infinity's and the VAE's constructors draw from it
  vt::vargpt::Vargpt model(files.config, vt::DType::F32);
  vt::vargpt::random_init(model, seed);
  vt::vargpt::write_model_dir(out, model, files, tok_path);
  std::printf("%s\n", out.c_str());
  std::fprintf(stderr, "init: %s: %.2fM parameters (LLM %.2fM, ViT %.2fM, Infinity %.2fM, VAE %.2fM)\n", out.c_str(),
               model.num_parameters() / 1e6, (model.lm->num_parameters()) / 1e6, model.visual->num_parameters() / 1e6,
               model.vargpt_gen->num_parameters() / 1e6, model.vae_local->num_parameters() / 1e6);
  return 0;
}
