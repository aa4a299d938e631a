// cmd_generate.cpp: `vargpt generate` (text to image) and `vargpt edit` (an image and an instruction
// to an image) on a VARGPT-v1.1 checkpoint (vargpt.md §3, §5-§7, §9). Both render the user turn with
// the chat template, let the LLM write its reply up to <|image_gen_start|> (or take a forced one),
// and run the per-scale loop:
//
//   rows g = j N + i (prompt j, image i): the text sampler and the bits of row g use seed S + g
//   each batch of --batch rows:  decode_text (force_image) -> select_rows -> generate_image -> PNGs
//
// A row's image depends on its prompt and its seed, not on the batch it runs in.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <set>

#include "commands.h"
#include "options.h"
#include "sampler_options.h"
#include "qwen2_vl/image_processor.h"
#include "shapeworld/render.h"
#include "tokenizer/bpe.h"
#include "tokenizer/chat_template.h"
#include "vargpt/generate.h"
#include "vt/ops.h"

namespace {

using namespace vt;
namespace fs = std::filesystem;
namespace vg = vt::vargpt;  // the model; ::vargpt is the command line
namespace cli = ::vargpt;

// A macro, so that each usage is one string literal (Options::usage is a single const char*).
#define GENERATION_OPTIONS_USAGE                                                                                \
  "  --n N                 images per prompt (default 1)\n"                                               \
  "  --seed S              default 0: image i of prompt j uses seed S + j*N + i, for its bits and its text\n" \
  "  --size SIZE           256, 512 (square) or WxH, width x height, an Infinity template, or a size of\n" \
  "                        the model's vt_gen_sides (default: the model's, 512 for templates)\n" \
  "  --cfg C (3)  --tau T (0.5)  --top-p P (0.97)  --top-k K (900): the bitwise sampler (vargpt.md §7)\n" \
  "  --batch B             rows per model call (default 8)\n"                                             \
  "  --system TEXT         system prompt (default: \"You are a helpful assistant.\")\n"                    \
  "  --reply TEXT          force the assistant's reply before <|image_gen_start|> (no text decoding)\n"   \
  "  --max-text-tokens N   the longest decoded reply (default 64; its end becomes <|image_gen_start|>)\n" \
  "  --sample [--temperature T]  sample the reply (default greedy; T 1.0)\n"                              \
  "  --uncond-llm-cache    Q4 fix: the unconditional LLM pass keeps its own cache\n"                      \
  "  --uncond-len truncate|tile  Q6: unconditional memory longer than cfg_uncond (default truncate)\n"   \
  "  --mrope-consistent    Q10 fix: image chunks continue the prompt's M-RoPE positions\n"                 \
  "  --llm-block-causal    Q11 fix: in the LLM the tokens of a scale see each other (not causally)\n"     \
  "  --round-pixels        Q14 fix: round pixels instead of truncating\n"                                 \
  "  --device cpu|cuda     default cpu;  --dtype f32|bf16 (default: the config's);  --threads N\n"        \
  "  --quiet               no progress or replies on stderr\n"                                            \
  "\n"                                                                                                    \
  "One image in all is written to exactly FILE.png; more go to FILE_<j>_<i>.png next to it (j the\n"      \
  "prompt, i the image). Each written path is printed on stdout.\n"

const char* const kGenerateUsage =
    "usage:\n"
    "  vargpt generate --model DIR --prompt TEXT --out FILE.png [options]\n"
    "  vargpt generate --model DIR --prompts FILE --out FILE.png [options]\n"
    "                        (batch mode: one prompt per line, blank lines skipped)\n"
    "\n"
    "DIR: a VARGPT-v1.1 checkpoint with generation tensors (config.json, tokenizer.json, safetensors).\n"
    "The prompt is the user's text, e.g. \"Please create a painting of a cat.\"\n"
    "options:\n" GENERATION_OPTIONS_USAGE;

const char* const kEditUsage =
    "usage:\n"
    "  vargpt edit --model DIR --image IN --prompt TEXT --out FILE.png [options]\n"
    "\n"
    "The prompt may hold the marker <image> where the source image goes, e.g. \"Transform this image\n"
    "<image> to match the style of a watercolor\"; without it the image goes before the text.\n"
    "options:\n" GENERATION_OPTIONS_USAGE;

const std::set<std::string> kValueOptions = {"model", "prompt", "out", "n", "seed", "size", "cfg", "tau", "top-p",
                                             "top-k", "batch", "system", "reply", "max-text-tokens", "temperature",
                                             "uncond-len", "device", "dtype", "threads"};
const std::set<std::string> kFlags = {"sample",       "uncond-llm-cache", "mrope-consistent", "llm-block-causal",
                                      "round-pixels", "quiet"};

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Everything a run needs besides its prompts.
struct Session {
  std::shared_ptr<vg::Vargpt> model;
  std::unique_ptr<tok::Tokenizer> tokenizer;
  qwen2_vl::ImageProcessorConfig image_cfg;
  vg::TextOptions text;
  vg::ImageOptions image;
  std::string system, reply;
  bool has_system = false, forced_reply = false, quiet = false;
  uint64_t seed = 0;
  int64_t n = 1, batch = 8;
  std::string out;
};

// Options of both commands, checked before the model is loaded.
Session parse_session(const cli::Options& o) {
  Session s;
  s.out = o.required("out");
  VT_CHECK(fs::path(s.out).extension() == ".png", "--out must name a .png file, got '", s.out, "'");
  const fs::path parent = fs::path(s.out).parent_path();
  VT_CHECK(parent.empty() || fs::is_directory(parent), "--out ", s.out, ": directory '", parent.string(),
           "' does not exist");
  parse_sampler_options(o, s.image);
  s.image.uncond_llm_cache = o.has("uncond-llm-cache");
  s.image.mrope_consistent = o.has("mrope-consistent");
  s.image.llm_block_causal = o.has("llm-block-causal");
  s.image.round_pixels = o.has("round-pixels");
  const std::string ul = o.value_or("uncond-len", "truncate");
  VT_CHECK(ul == "truncate" || ul == "tile", "--uncond-len must be truncate or tile, got '", ul, "'");
  s.image.uncond_length = ul == "tile" ? vg::UncondLength::Tile : vg::UncondLength::Truncate;

  s.text.force_image = true;
  s.text.max_new_tokens = o.integer("max-text-tokens", 64);
  s.text.sampling.do_sample = o.has("sample");
  s.text.sampling.temperature = o.real("temperature", 1.0);
  VT_CHECK(s.text.max_new_tokens >= 1 && s.text.sampling.temperature > 0,
           "need --max-text-tokens >= 1 and --temperature > 0");
  s.has_system = o.has("system");
  s.system = o.value_or("system", "");
  s.forced_reply = o.has("reply");
  s.reply = o.value_or("reply", "");
  const std::string start = "<|image_gen_start|>";  // the reply ends with it anyway
  if (s.reply.size() >= start.size() && s.reply.compare(s.reply.size() - start.size(), start.size(), start) == 0)
    s.reply.resize(s.reply.size() - start.size());
  // A forced reply is rendered into the prompt; the one decoding step left is forced to
  // <|image_gen_start|> (TextOptions.force_image on the last allowed token), so nothing is sampled.
  if (s.forced_reply) s.text.max_new_tokens = 1;
  s.quiet = o.has("quiet");
  s.seed = uint64_t(o.integer("seed", 0));
  s.n = o.integer("n", 1);
  s.batch = o.integer("batch", 8);
  VT_CHECK(s.n >= 1 && s.batch >= 1, "--n and --batch must be at least 1");
  return s;
}

void load_model(Session& s, const cli::Options& o) {
  const std::string dir = o.required("model");
  VT_CHECK(fs::is_directory(dir), "--model ", dir, ": no such directory");
  VT_CHECK(vg::VargptConfig::has_generation(dir), dir,
           ": this checkpoint has no generation tensors; `vargpt chat` still works");
  std::optional<DType> dtype;
  const std::string d = o.value_or("dtype", "");
  if (d == "f32") dtype = DType::F32;
  else if (d == "bf16") dtype = DType::BF16;
  else VT_CHECK(d.empty(), "--dtype must be f32 or bf16, got '", d, "'");
  const Device device = Device::parse(o.value_or("device", "cpu"));
  // The size against the model's schedules (Infinity's templates, or its vt_gen_sides) before the
  // weights are read.
  try {
    vg::VargptConfig::load(dir).schedule_for(s.image.height, s.image.width);
  } catch (const vt::Error& e) {
    VT_FAIL("--size ", s.image.width, "x", s.image.height, ": ", e.what());
  }
  const auto t0 = std::chrono::steady_clock::now();
  s.model = vg::Vargpt::from_pretrained(dir, dtype);
  s.model->to(device);
  s.tokenizer = std::make_unique<tok::Tokenizer>(tok::Tokenizer::from_file(dir + "/tokenizer.json"));
  vg::check_tokenizer(*s.tokenizer, s.model->tokens(), dir + "/tokenizer.json");
  for (const char* stop : {"<|im_end|>", "<|endoftext|>"})
    if (const int32_t id = s.tokenizer->find_token(stop); id >= 0) s.text.stop_tokens.push_back(id);
  const int64_t scales = s.model->config().schedule_for(s.image.height, s.image.width).num_scales();
  const int64_t levels = s.model->config().gen.num_levels;
  VT_CHECK(scales <= levels, "--size ", s.image.width, "x", s.image.height, " takes ", scales,
           " scales; this checkpoint's generator has ", levels, " level embeddings (try a smaller --size)");
  if (!s.quiet)
    std::fprintf(stderr, "loaded %s (%s) in %.1f s\n", dir.c_str(), std::string(dtype_name(s.model->dtype())).c_str(),
                 seconds_since(t0));
}

// One user turn (text and image parts) rendered with the chat template, plus the forced reply.
vg::Prompt render_prompt(const Session& s, std::vector<tok::ChatPart> user, const qwen2_vl::ProcessedImages* px) {
  std::vector<tok::ChatMessage> messages;
  if (s.has_system) messages.push_back({"system", {tok::ChatPart::of_text(s.system)}});
  messages.push_back({"user", std::move(user)});
  const std::string text = tok::apply_chat_template(messages, /*add_generation_prompt=*/true) + s.reply;
  const int64_t vocab = s.model->config().llm.vocab_size;
  vg::Prompt p;
  for (int32_t id : s.tokenizer->encode(text)) {
    VT_CHECK(id < vocab, "token id ", id, " is outside the model's vocabulary (", vocab,
             "): does the tokenizer belong to this checkpoint?");
    p.ids.push_back(id);
  }
  if (px) {
    p.pixel_values = px->pixel_values;
    p.image_grid_thw = qwen2_vl::grid_rows(px->image_grid_thw);
  }
  return p;
}

// The path of image i of prompt j: exactly --out when one image is written in all.
std::string output_path(const Session& s, int64_t prompts, int64_t j, int64_t i) {
  if (prompts * s.n == 1) return s.out;
  const fs::path out(s.out);
  return (out.parent_path() / (out.stem().string() + "_" + std::to_string(j) + "_" + std::to_string(i) + ".png"))
      .string();
}

// The reply budget that keeps every position inside max_position_embeddings: the longest prompt,
// the reply (its last token is <|image_gen_start|>) and the image's tokens, which the conditional LLM
// pass appends to the same cache (vargpt.md §6), all take positions. --max-text-tokens is clamped with
// a warning; a prompt that leaves no room for one reply token and the image is an error.
int64_t reply_budget(const Session& s, const std::vector<vg::Prompt>& prompts) {
  size_t longest = 0;
  for (const vg::Prompt& p : prompts) longest = std::max(longest, p.ids.size());
  const int64_t limit = s.model->config().llm.max_position_embeddings;
  const int64_t image = s.model->config().schedule_for(s.image.height, s.image.width).total_tokens;
  const int64_t budget = limit - int64_t(longest) - image;
  VT_CHECK(budget >= 1, "generate: the longest prompt (", longest, " tokens) and the image (", image,
           " tokens) leave no room for a reply within max_position_embeddings ", limit, " (config.json)");
  if (budget < s.text.max_new_tokens)
    std::fprintf(stderr,
                 "generate: warning: --max-text-tokens %lld would go past max_position_embeddings %lld (config.json) "
                 "with a %zu-token prompt and %lld image tokens; using %lld\n",
                 (long long)s.text.max_new_tokens, (long long)limit, longest, (long long)image, (long long)budget);
  return std::min(s.text.max_new_tokens, budget);
}

// Generates every row (prompt j repeated N times) in batches; writes and prints the PNGs.
void run(const Session& s, const std::vector<vg::Prompt>& prompts) {
  const int64_t max_text = reply_budget(s, prompts);
  const int64_t rows = int64_t(prompts.size()) * s.n;
  const int64_t batches = (rows + s.batch - 1) / s.batch;
  const auto start = std::chrono::steady_clock::now();
  for (int64_t first = 0; first < rows; first += s.batch) {
    const int64_t B = std::min(s.batch, rows - first);
    if (!s.quiet && batches > 1)
      std::fprintf(stderr, "batch %lld/%lld: rows %lld..%lld\n", (long long)(first / s.batch + 1),
                   (long long)batches, (long long)first, (long long)(first + B - 1));
    std::vector<vg::Prompt> batch;
    for (int64_t g = first; g < first + B; ++g) batch.push_back(prompts[g / s.n]);
    vg::TextOptions text = s.text;
    text.max_new_tokens = max_text;
    text.sampling.seed = s.seed + uint64_t(first);  // decode_text adds the row: row g samples with S + g
    const vg::TextResult reply = vg::decode_text(*s.model, batch, text);

    std::vector<int64_t> want;
    for (int64_t b = 0; b < B; ++b) {
      VT_CHECK(reply.wants_image[b], "row ", first + b, " ended its reply without <|image_gen_start|>");
      want.push_back(b);
      if (s.quiet) continue;
      const std::string said =
          s.forced_reply ? s.reply : vg::decode_reply(*s.tokenizer, reply.tokens[b], s.model->tokens().start);
      std::fprintf(stderr, "prompt %lld image %lld: reply \"%s\"\n", (long long)((first + b) / s.n),
                   (long long)((first + b) % s.n), said.c_str());
    }
    vg::HandOff state = vg::select_rows(reply.state, want);
    vg::ImageOptions image = s.image;
    for (int64_t b : want) image.seeds.push_back(s.seed + uint64_t(first + b));
    if (!s.quiet)
      image.on_scale = [&](int64_t k, int64_t K, int64_t h, int64_t w) {
        std::fprintf(stderr, "scale %lld/%lld %lldx%lld %.2f s\n", (long long)(k + 1), (long long)K, (long long)h,
                     (long long)w, seconds_since(start));
      };
    const vg::ImageResult result = vg::generate_image(*s.model, state, image);
    for (const std::string& w : result.warnings)  // "row r" counts from the batch's first row
      std::fprintf(stderr, "warning: batch from row %lld: %s\n", (long long)first, w.c_str());

    const Tensor pixels = result.pixels.contiguous();  // (B, H, W, 3) uint8 RGB
    const int64_t H = pixels.size(1), W = pixels.size(2);
    for (size_t r = 0; r < want.size(); ++r) {
      const int64_t g = first + want[r];
      shapes::Image img{int(W), int(H)};
      const uint8_t* p = pixels.data<uint8_t>() + int64_t(r) * H * W * 3;
      std::copy(p, p + H * W * 3, img.rgb.begin());
      const std::string path = output_path(s, int64_t(prompts.size()), g / s.n, g % s.n);
      shapes::write_png(path, img);
      std::printf("%s\n", path.c_str());
      std::fflush(stdout);
    }
  }
  if (!s.quiet) std::fprintf(stderr, "%lld images in %.1f s\n", (long long)rows, seconds_since(start));
}

std::vector<std::string> read_prompts(const std::string& path) {
  std::ifstream in(path);
  VT_CHECK(in.good(), "--prompts: cannot open '", path, "'");
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") != std::string::npos) out.push_back(line);
  }
  VT_CHECK(!out.empty(), "--prompts: '", path, "' holds no prompt");
  return out;
}

bool wants_help(int argc, char** argv, const char* usage) {
  if (argc >= 2 && std::string(argv[1]) != "--help") return false;
  std::fputs(usage, argc < 2 ? stderr : stdout);
  return true;
}

}  // namespace

int cmd_generate(int argc, char** argv) {
  if (wants_help(argc, argv, kGenerateUsage)) return argc < 2 ? 2 : 0;
  std::set<std::string> allowed = kValueOptions;
  allowed.insert("prompts");
  auto o = cli::parse_options(argc, argv, 1, allowed, kFlags, kGenerateUsage);
  cli::set_threads(o);
  VT_CHECK(o.has("prompt") != o.has("prompts"), "give exactly one of --prompt and --prompts\n", kGenerateUsage);
  Session s = parse_session(o);
  const std::vector<std::string> texts =
      o.has("prompts") ? read_prompts(o.value_or("prompts", "")) : std::vector<std::string>{o.required("prompt")};
  load_model(s, o);
  std::vector<vg::Prompt> prompts;
  for (const std::string& t : texts) prompts.push_back(render_prompt(s, {tok::ChatPart::of_text(t)}, nullptr));
  run(s, prompts);
  return 0;
}

int cmd_edit(int argc, char** argv) {
  if (wants_help(argc, argv, kEditUsage)) return argc < 2 ? 2 : 0;
  std::set<std::string> allowed = kValueOptions;
  allowed.insert("image");
  auto o = cli::parse_options(argc, argv, 1, allowed, kFlags, kEditUsage);
  cli::set_threads(o);
  Session s = parse_session(o);
  const std::string text = o.required("prompt"), image = o.required("image");
  const std::string dir = o.required("model");
  if (fs::exists(dir + "/preprocessor_config.json"))
    s.image_cfg = qwen2_vl::ImageProcessorConfig::from_json_file(dir + "/preprocessor_config.json");
  // The source image is an understanding image in the user turn (vargpt.md §9), never VAE-encoded (Q18).
  // Read before the model loads, so that a bad image fails fast.
  const qwen2_vl::ProcessedImages px = qwen2_vl::preprocess_files({image}, s.image_cfg);
  load_model(s, o);
  const Tensor grid = px.image_grid_thw.to(DType::I64).contiguous();
  const int64_t* g = grid.data<int64_t>();
  const int tokens = int(g[0] * g[1] * g[2] / (s.image_cfg.merge_size * s.image_cfg.merge_size));

  // "before <image> after" -> [before, image, after]; without the marker the image goes first.
  const std::string marker = "<image>";
  const size_t at = text.find(marker);
  VT_CHECK(at == std::string::npos || text.find(marker, at + 1) == std::string::npos,
           "--prompt holds more than one <image> marker; edit takes one source image");
  std::vector<tok::ChatPart> user;
  const std::string before = at == std::string::npos ? "" : text.substr(0, at);
  const std::string after = at == std::string::npos ? text : text.substr(at + marker.size());
  if (!before.empty()) user.push_back(tok::ChatPart::of_text(before));
  user.push_back(tok::ChatPart::of_image(tokens));
  if (!after.empty()) user.push_back(tok::ChatPart::of_text(after));
  run(s, {render_prompt(s, user, &px)});
  return 0;
}

void parse_sampler_options(const ::vargpt::Options& o, vt::vargpt::ImageOptions& image) {
  std::tie(image.height, image.width) = parse_image_size(o.value_or("size", ""));
  image.cfg = o.real("cfg", 3.0);
  image.tau = o.real("tau", 0.5);
  image.top_p = o.real("top-p", 0.97);
  image.top_k = o.integer("top-k", 900);
  VT_CHECK(image.tau > 0 && image.top_p >= 0 && image.top_p <= 1 && image.top_k >= 0,
           "sampling options out of range: need tau > 0, 0 <= top-p <= 1, top-k >= 0");
}

std::pair<int64_t, int64_t> parse_image_size(const std::string& text) {
  const size_t x = text.find('x');
  char* end = nullptr;
  const long long w = std::strtoll(text.c_str(), &end, 10);
  bool ok = !text.empty() && end == text.c_str() + (x == std::string::npos ? text.size() : x);
  long long h = w;
  if (x != std::string::npos) {
    h = std::strtoll(text.c_str() + x + 1, &end, 10);
    ok = ok && x + 1 < text.size() && *end == '\0';
  }
  if (text.empty()) return {0, 0};  // the model's default size
  VT_CHECK(ok && w > 0 && h > 0, "--size must be 256, 512 or WxH (width x height), got '", text, "'");
  return {h, w};
}
