// cmd_chat.cpp: `vargpt chat`: talk to a Qwen2, Qwen2-VL or VARGPT-v1.1 checkpoint directory
// (config.json, tokenizer.json, safetensors), with images, one prompt or interactively, streaming
// tokens as they are produced. A VARGPT-v1.1 checkpoint with generation tensors is loaded whole and
// answers through vargpt::decode_text: when its reply reaches <|image_gen_start|>, the per-scale loop
// draws the image and it is written as a PNG (vargpt.md §5). Without generation tensors it runs as
// Qwen2-VL, the generation prefixes skipped.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include "commands.h"
#include "options.h"
#include "qwen2/generate.h"
#include "qwen2/qwen2.h"
#include "qwen2_vl/image_processor.h"
#include "qwen2_vl/qwen2_vl.h"
#include "shapeworld/render.h"
#include "tokenizer/bpe.h"
#include "tokenizer/chat_template.h"
#include "vargpt/generate.h"
#include "vt/ops.h"

namespace {

using namespace vt;
namespace vg = vt::vargpt;  // the model; ::vargpt is the command line
namespace cli = ::vargpt;

const char* const kUsage =
    "usage:\n"
    "  vargpt chat --model DIR [--image PATH]... --prompt TEXT [options]\n"
    "  vargpt chat --model DIR [options]                    (interactive: one user turn per line)\n"
    "\n"
    "DIR holds config.json, tokenizer.json and model.safetensors (or shards + index): a Qwen2\n"
    "(model_type qwen2), Qwen2-VL or VARGPT-v1.1 checkpoint (qwen2_vl; generation tensors skipped).\n"
    "options:\n"
    "  --image PATH          an image for the prompt (repeatable; placed before the text, in order)\n"
    "  --system TEXT         system prompt (default: \"You are a helpful assistant.\")\n"
    "  --max-new-tokens N    default 256; clamped, with a warning, to what the model's\n"
    "                        max_position_embeddings leaves after the prompt\n"
    "  --sample              sample instead of greedy; with --temperature T (1.0), --top-k K (0 = off),\n"
    "                        --top-p P (1.0 = off), --seed S\n"
    "  --repetition-penalty R  HF's rule (1.0 = off), also with greedy\n"
    "  --positions mrope|sequential  Qwen2-VL positions (default mrope; sequential = VARGPT training)\n"
    "  --device cpu|cuda     default cpu;  --dtype f32|bf16: weights (default: the config's)\n"
    "  --tokenizer PATH      default DIR/tokenizer.json;  --threads N\n"
    "  --print-ids           also print the generated token ids\n"
    "a VARGPT-v1.1 checkpoint with generation tensors draws an image when its reply asks for one:\n"
    "  --image-out PATH      where (default vargpt_chat_<n>.png, n = 1, 2, ... in the current directory;\n"
    "                        a given PATH takes the first image, PATH's stem + _<n> the later ones)\n"
    "  --size SIZE           256, 512 or WxH, width x height (default 512);  --cfg C (default 3)\n"
    "  --seed S              also the image seed: image n of the session uses S + n - 1\n"
    "interactive commands: /image PATH (attach to the next turn), /reset, /quit\n";

bool file_exists(const std::string& p) { return std::ifstream(p).good(); }

struct Chat {
  std::shared_ptr<qwen2::Qwen2ForCausalLM> text;                  // model_type qwen2
  std::shared_ptr<qwen2_vl::Qwen2VLForConditionalGeneration> vl;  // qwen2_vl (also vargpt->vl)
  std::shared_ptr<vg::Vargpt> vargpt;  // a VARGPT-v1.1 checkpoint with generation tensors
  vg::ImageOptions image;              // its images: --size, --cfg
  std::string image_out;               // --image-out, or empty for vargpt_chat_<n>.png
  int64_t images_written = 0;
  std::unique_ptr<tok::Tokenizer> tokenizer;
  qwen2_vl::ImageProcessorConfig image_cfg;
  qwen2_vl::PositionMode positions = qwen2_vl::PositionMode::MRope;
  qwen2::GenerateOptions gen;
  bool print_ids = false;
  Device device;

  const qwen2::Qwen2Config& config() const { return vl ? vl->config() : text->config(); }
};

Chat load_chat(const cli::Options& o) {
  Chat c;
  const std::string dir = o.required("model");
  c.device = Device::parse(o.value_or("device", "cpu"));
  std::optional<DType> dtype;
  const std::string d = o.value_or("dtype", "");
  if (d == "f32") dtype = DType::F32;
  else if (d == "bf16") dtype = DType::BF16;
  else VT_CHECK(d.empty(), "--dtype must be f32 or bf16, got '", d, "'");
  const qwen2::Qwen2Config cfg = qwen2::Qwen2Config::load(dir);
  const std::string pm = o.value_or("positions", "mrope");
  VT_CHECK(pm == "mrope" || pm == "sequential", "--positions must be mrope or sequential, got '", pm, "'");
  c.positions = pm == "mrope" ? qwen2_vl::PositionMode::MRope : qwen2_vl::PositionMode::Sequential;
  std::tie(c.image.height, c.image.width) = parse_image_size(o.value_or("size", ""));
  c.image.cfg = o.real("cfg", 3.0);
  c.image_out = o.value_or("image-out", "");
  const bool generation = cfg.model_type != "qwen2" && vg::VargptConfig::has_generation(dir);
  if (generation && c.positions != qwen2_vl::PositionMode::MRope)
    std::fprintf(stderr, "chat: --positions sequential: the generation half is not loaded (decode_text uses M-RoPE)\n");
  const auto t0 = std::chrono::steady_clock::now();
  if (generation && c.positions == qwen2_vl::PositionMode::MRope) {
    c.vargpt = vg::Vargpt::from_pretrained(dir, dtype);
    c.vargpt->to(c.device);
    c.vl = c.vargpt->vl;
    const int64_t scales = c.vargpt->config().schedule_for(c.image.height, c.image.width).num_scales();
    VT_CHECK(scales <= c.vargpt->config().gen.num_levels, "--size ", c.image.width, "x", c.image.height, " takes ",
             scales, " scales; this checkpoint's generator has ", c.vargpt->config().gen.num_levels,
             " level embeddings (try a smaller --size)");
    if (file_exists(dir + "/preprocessor_config.json"))
      c.image_cfg = qwen2_vl::ImageProcessorConfig::from_json_file(dir + "/preprocessor_config.json");
  } else if (cfg.model_type == "qwen2") {
    c.text = qwen2::Qwen2ForCausalLM::from_pretrained(dir, dtype);
    c.text->to(c.device);
  } else {
    c.vl = qwen2_vl::Qwen2VLForConditionalGeneration::from_pretrained(dir, dtype);
    c.vl->to(c.device);
    if (file_exists(dir + "/preprocessor_config.json"))
      c.image_cfg = qwen2_vl::ImageProcessorConfig::from_json_file(dir + "/preprocessor_config.json");
  }
  c.tokenizer = std::make_unique<tok::Tokenizer>(tok::Tokenizer::from_file(o.value_or("tokenizer", dir + "/tokenizer.json")));
  std::fprintf(stderr, "chat: loaded %s (%s, %lld layers, %s%s) in %.1f s\n", dir.c_str(), cfg.model_type.c_str(),
               (long long)cfg.num_hidden_layers, std::string(dtype_name(c.vl ? c.vl->dtype() : c.text->dtype())).c_str(),
               c.vargpt ? ", image generation" : "",
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  c.gen.max_new_tokens = o.integer("max-new-tokens", 256);
  VT_CHECK(c.gen.max_new_tokens > 0, "--max-new-tokens must be positive");
  c.gen.stop_tokens = cfg.eos_token_ids;
  for (const char* stop : {"<|im_end|>", "<|endoftext|>"}) {
    const int32_t id = c.tokenizer->find_token(stop);
    if (id >= 0) c.gen.stop_tokens.push_back(id);
  }
  c.gen.pad_token_id = c.gen.stop_tokens.empty() ? 0 : c.gen.stop_tokens.back();
  auto& s = c.gen.sampling;
  s.do_sample = o.has("sample");
  s.temperature = o.real("temperature", 1.0);
  s.top_k = o.integer("top-k", 0);
  s.top_p = o.real("top-p", 1.0);
  s.repetition_penalty = o.real("repetition-penalty", 1.0);
  s.seed = uint64_t(o.integer("seed", 0));
  VT_CHECK(s.temperature > 0 && s.top_p > 0 && s.top_p <= 1 && s.top_k >= 0 && s.repetition_penalty > 0,
           "sampling options out of range: need temperature > 0, 0 < top-p <= 1, top-k >= 0, repetition-penalty > 0");
  c.print_ids = o.has("print-ids");
  return c;
}

// Prints the text of `ids` as it grows, holding back an incomplete UTF-8 tail.
struct Streamer {
  const tok::Tokenizer& tokenizer;
  std::vector<int32_t> ids;
  size_t printed = 0;
  void push(int64_t id) {
    ids.push_back(int32_t(id));
    const std::string text = tokenizer.decode(ids, /*skip_special=*/true);
    if (text.size() >= 3 && text.compare(text.size() - 3, 3, "\xEF\xBF\xBD") == 0) return;  // U+FFFD: wait
    if (text.size() > printed) std::fwrite(text.data() + printed, 1, text.size() - printed, stdout);
    printed = text.size();
    std::fflush(stdout);
  }
};

// The path of the session's n-th image (n from 1).
std::string image_path(const Chat& c, int64_t n) {
  if (c.image_out.empty()) return "vargpt_chat_" + std::to_string(n) + ".png";
  if (n == 1) return c.image_out;
  const std::filesystem::path p(c.image_out);
  return (p.parent_path() / (p.stem().string() + "_" + std::to_string(n) + p.extension().string())).string();
}

// A VARGPT-v1.1 reply: decode_text streams the text and, when the model writes
// <|image_gen_start|>, hands its state to generate_image; the image is written as a PNG.
std::string reply_vargpt(Chat& c, const vg::Prompt& prompt, int64_t max_new_tokens) {
  Streamer stream{*c.tokenizer, {}, 0};
  vg::TextOptions text;
  text.max_new_tokens = max_new_tokens;
  text.sampling = c.gen.sampling;
  text.stop_tokens = c.gen.stop_tokens;
  const int64_t start_id = c.vargpt->tokens().start;
  text.on_token = [&](int64_t, int64_t token) {
    for (int64_t stop : text.stop_tokens)
      if (token == stop) return;
    // the start token, and ids past the tokenizer (the embedding has more rows), are not text
    if (token != start_id && token < int64_t(c.tokenizer->vocab_size())) stream.push(token);
  };
  const auto t0 = std::chrono::steady_clock::now();
  vg::TextResult r = vg::decode_text(*c.vargpt, {prompt}, text);
  std::printf("\n");
  std::fprintf(stderr, "chat: prompt %zu tokens, %zu new tokens in %.2f s\n", prompt.ids.size(), r.tokens[0].size(),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  if (c.print_ids) {
    std::printf("ids:");
    for (int64_t id : r.tokens[0]) std::printf(" %lld", (long long)id);
    std::printf("\n");
  }
  if (r.wants_image[0]) {
    vg::ImageOptions opt = c.image;
    opt.seeds = {c.gen.sampling.seed + uint64_t(c.images_written)};
    const auto t1 = std::chrono::steady_clock::now();
    const vg::ImageResult image = vg::generate_image(*c.vargpt, r.state, opt);
    for (const std::string& w : image.warnings) std::fprintf(stderr, "chat: warning: %s\n", w.c_str());
    const Tensor pixels = image.pixels.contiguous();  // (1, H, W, 3) uint8 RGB
    shapes::Image png{int(pixels.size(2)), int(pixels.size(1))};
    std::copy(pixels.data<uint8_t>(), pixels.data<uint8_t>() + pixels.numel(), png.rgb.begin());
    const std::string path = image_path(c, ++c.images_written);
    shapes::write_png(path, png);
    std::printf("[image: %s]\n", path.c_str());
    std::fflush(stdout);
    std::fprintf(stderr, "chat: %dx%d image in %.2f s\n", png.width, png.height,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count());
  }
  return c.tokenizer->decode(stream.ids, true);
}

// One assistant reply to `messages` (whose user turns reference `images` in order). Returns its text.
std::string reply(Chat& c, const std::vector<tok::ChatMessage>& messages, const std::vector<std::string>& images) {
  qwen2_vl::ProcessedImages px;
  std::vector<tok::ChatMessage> rendered = messages;
  if (!images.empty()) {
    VT_CHECK(c.vl, "--image needs a Qwen2-VL or VARGPT checkpoint; this one is text-only (model_type qwen2)");
    px = qwen2_vl::preprocess_files(images, c.image_cfg);
    // Each image part gets its merged token count, in order of appearance.
    const Tensor grid = px.image_grid_thw.to(DType::I64).contiguous();
    size_t k = 0;
    for (auto& m : rendered)
      for (auto& part : m.content)
        if (part.kind == tok::ChatPart::Kind::kImage) {
          VT_CHECK(k < images.size(), "chat: more image slots than images");
          const int64_t* g = grid.data<int64_t>() + 3 * k++;
          part.image_tokens = int(g[0] * g[1] * g[2] / 4);
        }
    VT_CHECK(k == images.size(), "chat: ", images.size(), " images for ", k, " image slots");
  }
  const std::string prompt = tok::apply_chat_template(rendered, true);
  const std::vector<int32_t> ids32 = c.tokenizer->encode(prompt);
  for (int32_t id : ids32)
    VT_CHECK(id < c.config().vocab_size, "chat: token id ", id, " is outside the model's vocabulary (",
             c.config().vocab_size, "): does the tokenizer belong to this checkpoint?");
  std::vector<int64_t> ids(ids32.begin(), ids32.end());
  // The prompt and the reply must fit the model's positions: --max-new-tokens is clamped to what
  // max_position_embeddings leaves after the prompt, with a warning (a prompt that fills it is an error).
  const int64_t limit = c.config().max_position_embeddings, budget = limit - int64_t(ids.size());
  VT_CHECK(budget > 0, "chat: the prompt has ", ids.size(), " tokens, which fills the model's max_position_embeddings ",
           limit, " (config.json); shorten the prompt, the history (/reset) or the images");
  const int64_t max_new = std::min(c.gen.max_new_tokens, budget);
  if (max_new < c.gen.max_new_tokens)
    std::fprintf(stderr,
                 "chat: warning: --max-new-tokens %lld would go past max_position_embeddings %lld (config.json) after "
                 "the %zu-token prompt; generating at most %lld tokens\n",
                 (long long)c.gen.max_new_tokens, (long long)limit, ids.size(), (long long)max_new);
  if (c.vargpt) {
    vg::Prompt p{ids, {}, {}};
    if (!images.empty()) {
      p.pixel_values = px.pixel_values;
      p.image_grid_thw = qwen2_vl::grid_rows(px.image_grid_thw);
    }
    return reply_vargpt(c, p, max_new);
  }
  const Tensor input_ids = from_blob(ids.data(), {1, int64_t(ids.size())}, DType::I64).clone();

  Streamer stream{*c.tokenizer, {}, 0};
  qwen2::GenerateOptions gen = c.gen;
  gen.max_new_tokens = max_new;
  gen.on_token = [&](int64_t, int64_t token) {
    for (int64_t stop : gen.stop_tokens)
      if (token == stop) return;
    stream.push(token);
  };
  std::vector<nn::KVCache> caches;
  qwen2::StepFn step;
  if (c.vl) {
    qwen2_vl::MultimodalInputs in;
    if (!images.empty()) {
      in.pixel_values = px.pixel_values;
      in.image_grid_thw = qwen2_vl::grid_rows(px.image_grid_thw);
    }
    step = c.vl->step_fn(in, caches, c.positions);
  } else {
    caches = c.text->make_caches();
    step = qwen2::qwen2_text_step(*c.text, caches);
  }
  NoGradGuard no_grad;
  const auto t0 = std::chrono::steady_clock::now();
  const qwen2::GenerateResult r = qwen2::generate(step, input_ids, Tensor(), gen);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("\n");
  const int64_t n = r.length.at(0);
  std::fprintf(stderr, "chat: prompt %zu tokens, %lld new tokens in %.2f s\n", ids.size(), (long long)n, s);
  if (c.print_ids) {
    std::printf("ids:");
    const Tensor t = r.tokens.to(DType::I64).contiguous();
    for (int64_t i = 0; i < n; ++i) std::printf(" %lld", (long long)t.data<int64_t>()[i]);
    std::printf("\n");
  }
  return c.tokenizer->decode(stream.ids, true);
}

tok::ChatMessage user_turn(const std::string& text, size_t n_images) {
  tok::ChatMessage m{"user", {}};
  for (size_t i = 0; i < n_images; ++i) m.content.push_back(tok::ChatPart::of_image(1));
  m.content.push_back(tok::ChatPart::of_text(text));
  return m;
}

}  // namespace

int cmd_chat(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "--help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  auto o = cli::parse_options(argc, argv, 1,
                              {"model", "image", "prompt", "system", "max-new-tokens", "temperature", "top-k", "top-p",
                               "repetition-penalty", "seed", "positions", "device", "dtype", "tokenizer", "threads",
                               "image-out", "size", "cfg"},
                              {"sample", "print-ids"}, kUsage);
  cli::set_threads(o);
  Chat c = load_chat(o);
  std::vector<tok::ChatMessage> history;
  if (o.has("system")) history.push_back({"system", {tok::ChatPart::of_text(o.value_or("system", ""))}});
  if (o.has("prompt")) {
    const std::vector<std::string> images = o.all("image");
    history.push_back(user_turn(o.value_or("prompt", ""), images.size()));
    reply(c, history, images);
    return 0;
  }
  // Interactive: the whole conversation is re-rendered each turn (simple, and exact for the template).
  std::vector<std::string> images = o.all("image"), pending = images;
  const size_t system_turns = history.size();
  std::string line;
  std::fprintf(stderr, "chat: interactive; /image PATH, /reset, /quit\n");
  while (std::fputs("> ", stderr), std::getline(std::cin, line)) {
    if (line == "/quit") break;
    if (line == "/reset") {
      history.resize(system_turns);
      images.clear();
      pending.clear();
      continue;
    }
    if (line.rfind("/image ", 0) == 0) {
      pending.push_back(line.substr(7));
      images.push_back(line.substr(7));
      continue;
    }
    if (line.empty()) continue;
    history.push_back(user_turn(line, pending.size()));
    pending.clear();
    try {
      const std::string answer = reply(c, history, images);
      history.push_back({"assistant", {tok::ChatPart::of_text(answer)}});
    } catch (const vt::Error& e) {  // a bad image or prompt ends the turn, not the session
      std::fprintf(stderr, "chat: error: %s\n", e.what());
      history.pop_back();
    }
  }
  return 0;
}
