// cmd_tokenizer.cpp: `vargpt tokenizer cut`: a ShapeWorld-sized vocabulary cut from the Qwen2
// tokenizer (models/tokenizer/vocab_cut.h), for miniature models whose embedding cannot afford
// 151k rows.
//
// The corpus is every text the training would encode, rendered as the sequence builder renders it
// (train/data/sequence.cpp: ChatML, <image> -> the vision span, <image_gen> -> the generation span,
// the prompt and each reply as separate segments and the whole), plus the chat template's fixed
// strings and the ShapeWorld vocabulary: every noun phrase in every prompt template, and the
// questions, answers and edit instructions of a few thousand scenes sampled with the dataset's own
// functions (no images rendered).
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "data/records.h"
#include "options.h"
#include "shapeworld/language.h"
#include "shapeworld/rng.h"
#include "shapeworld/tasks.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/unicode.h"
#include "tokenizer/vocab_cut.h"
#include "vt/error.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const char* const kUsage =
    "usage:\n"
    "  vargpt tokenizer cut --from third_party/qwen2/tokenizer.json --out DIR/tokenizer.json\n"
    "                       [--corpus FILE...] [--shapeworld DIR] [--no-shapeworld-vocabulary]\n"
    "\n"
    "cut   keeps the 256 byte tokens, every token the corpus uses and the tokens their merges are\n"
    "      built from, renumbered 0..N-1 in Qwen2's order, then the added tokens (Qwen2-VL's, then\n"
    "      <|image_gen_start|>, <|image_gen_end|>, <|image_gen_pad|>). The corpus encodes to the same\n"
    "      tokens as with the full tokenizer; other text still encodes (into shorter tokens).\n"
    "      --corpus: .txt files (one text per line) or training record files (.json, .jsonl: every\n"
    "      conversation rendered as training renders it); repeat it or list several files.\n"
    "      --shapeworld DIR: the record files DIR/{train,test}/*.json of a ShapeWorld dataset.\n"
    "      The chat template's strings and the ShapeWorld vocabulary are always added (the latter\n"
    "      unless --no-shapeworld-vocabulary). Writes the tokenizer and, next to it,\n"
    "      <name>.id_map.json (sizes, special ids, new id -> Qwen2 id).\n";

// The corpus, deduplicated in first-seen order.
struct Corpus {
  std::vector<std::string> texts;
  std::unordered_set<std::string> seen;
  void add(std::string text) {
    if (text.empty() || seen.count(text)) return;
    seen.insert(text);
    texts.push_back(std::move(text));
  }
};

// A turn's text with its markers expanded as the sequence builder expands them; the number of pad
// tokens does not change how the text around them encodes, so one of each stands for any count.
std::vector<vt::tok::ChatPart> expand_markers(std::string_view text) {
  using vt::train::kImageGenMarker;
  using vt::train::kImageMarker;
  std::vector<vt::tok::ChatPart> parts;
  for (size_t pos = 0;;) {
    const size_t v = text.find(kImageMarker, pos), g = text.find(kImageGenMarker, pos);
    const size_t at = std::min(v, g);
    if (at == std::string_view::npos) {
      if (pos < text.size()) parts.push_back(vt::tok::ChatPart::of_text(std::string(text.substr(pos))));
      return parts;
    }
    if (at > pos) parts.push_back(vt::tok::ChatPart::of_text(std::string(text.substr(pos, at - pos))));
    if (v < g) {
      parts.push_back(vt::tok::ChatPart::of_image(1));
      pos = v + kImageMarker.size();
    } else {
      parts.push_back(vt::tok::ChatPart::of_text(vt::tok::image_gen_span(1)));
      pos = g + kImageGenMarker.size();
    }
  }
}

// The texts the sequence builder encodes for one conversation: the prompt up to each assistant
// turn and that turn, each as its own segment, the rest, and the whole rendering.
void add_conversation(const std::string& system, const std::vector<const vt::train::Turn*>& turns, Corpus& corpus) {
  std::vector<vt::tok::ChatMessage> msgs;
  if (!system.empty()) msgs.push_back({"system", {vt::tok::ChatPart::of_text(system)}});
  for (const vt::train::Turn* t : turns) msgs.push_back({t->role, expand_markers(t->text)});
  if (msgs.empty()) return;
  std::string done;
  const auto segment = [&](const std::string& text) {
    corpus.add(text.compare(0, done.size(), done) == 0 ? text.substr(done.size()) : text);
    done = text;
  };
  for (size_t i = 0; i < msgs.size(); ++i) {
    if (msgs[i].role != "assistant") continue;
    segment(vt::tok::apply_chat_template(std::span(msgs.data(), i), /*add_generation_prompt=*/true));
    segment(vt::tok::apply_chat_template(std::span(msgs.data(), i + 1), /*add_generation_prompt=*/false));
  }
  const std::string whole = vt::tok::apply_chat_template(msgs, msgs.back().role != "assistant");
  if (whole.size() > done.size()) segment(whole);
  corpus.add(whole);
}

void add_exchange(const std::string& user, const std::string& assistant, Corpus& corpus) {
  const vt::train::Turn u{"user", user}, a{"assistant", assistant};
  add_conversation("", {&u, &a}, corpus);
}

// Every record of a training data file (read_records: LLaVA-style conversations, preference
// records' chosen and rejected replies), rendered.
void add_record_file(const std::string& path, Corpus& corpus) {
  vt::train::ReadOptions ro;
  ro.strict = true;  // a bad record is an error naming the file and line, not a silent gap
  for (const vt::train::Record& r : vt::train::read_records(path, ro).records) {
    std::vector<const vt::train::Turn*> turns;
    for (const vt::train::Turn& t : r.turns) turns.push_back(&t);
    if (r.kind != vt::train::TaskKind::Preference) {
      add_conversation(r.system, turns, corpus);
      continue;
    }
    for (const vt::train::Turn* reply : {&r.chosen, &r.rejected}) {
      turns.push_back(reply);
      add_conversation(r.system, turns, corpus);
      turns.pop_back();
    }
  }
}

void add_text_file(const std::string& path, Corpus& corpus) {
  std::ifstream f(path, std::ios::binary);
  VT_CHECK(f, "cannot open corpus file ", path);
  std::string line;
  for (size_t n = 1; std::getline(f, line); ++n) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    try {
      vt::unicode::validate_utf8(line, "text");
    } catch (const vt::Error& e) {
      VT_FAIL("corpus file ", path, " line ", n, ": ", e.what());
    }
    corpus.add(line);
  }
}

void add_corpus_file(const std::string& path, Corpus& corpus) {
  VT_CHECK(fs::is_regular_file(path), "corpus file ", path, " does not exist or is not a file");
  const std::string ext = fs::path(path).extension().string();
  if (ext == ".txt") return add_text_file(path, corpus);
  if (ext == ".json" || ext == ".jsonl") return add_record_file(path, corpus);
  VT_FAIL("corpus file ", path, " has extension '", ext,
          "'; expected .txt (one text per line) or .json / .jsonl (training records)");
}

// The record files of a ShapeWorld dataset: DIR/train/*.json, DIR/test/*.json, sorted.
std::vector<std::string> shapeworld_files(const std::string& dir) {
  std::vector<std::string> files;
  for (const char* split : {"train", "test"}) {
    const fs::path sub = fs::path(dir) / split;
    VT_CHECK(fs::is_directory(sub), "--shapeworld ", dir, ": no directory ", sub.string(),
             " (a dataset written by `vargpt shapes make --out DIR` has DIR/train and DIR/test)");
    std::vector<std::string> here;
    for (const auto& e : fs::directory_iterator(sub))
      if (e.is_regular_file() && e.path().extension() == ".json") here.push_back(e.path().string());
    VT_CHECK(!here.empty(), "--shapeworld ", dir, ": ", sub.string(), " holds no .json record files");
    std::sort(here.begin(), here.end());
    files.insert(files.end(), here.begin(), here.end());
  }
  return files;
}

// The ShapeWorld vocabulary, independent of any one dataset: every noun phrase in every prompt
// template and the reply, and the conversations of scenes sampled in a train and a test context
// with the dataset writer's functions (the test context names held-out pairs). The record formats
// are train/shapeworld/dataset.cpp's.
void add_shapeworld_vocabulary(Corpus& corpus) {
  using namespace vt::shapes;
  const SizeClass sizes[] = {SizeClass::small, SizeClass::large};
  for (int s = 0; s < kNumShapes; ++s)
    for (int c = -1; c < kNumColors; ++c)
      for (int count = 1; count <= 4; ++count)
        for (int z = -1; z < 2; ++z) {
          const std::string p = noun_phrase(Shape(s), c, count, z < 0 ? nullptr : &sizes[z]);
          for (int k = 0; k < kNumPromptTemplates; ++k) add_exchange(t2i_prompt(p, k), t2i_reply(p), corpus);
        }
  for (int n = 0; n <= 20; ++n)
    for (const std::string& w : {number_word(n), std::to_string(n)}) {
      corpus.add(w);
      corpus.add(" " + w);
    }

  constexpr int kScenesPerContext = 1200;  // 200 per GenEval tag: every template many times over
  std::vector<std::pair<int, int>> popular;
  for (int c = 0; c < kNumColors; ++c)
    for (int s = 0; s < kNumShapes; ++s) popular.push_back({c, s});
  for (int split = 0; split < 2; ++split) {
    SplitContext ctx;
    ctx.train = split == 0;
    ctx.heldout = make_heldout(0);
    ctx.popular = popular;
    for (int i = 0; i < kScenesPerContext; ++i) {
      Rng rng(stream_key(0x766f636162ull, uint64_t(split), uint64_t(i)));
      const GenSample g = sample_generation(Tag(i % kNumTags), ctx, rng);
      const std::string p = geneval_phrase(g.meta);
      for (int k = 0; k < kNumPromptTemplates; ++k) add_exchange(t2i_prompt(p, k), t2i_reply(p), corpus);
      for (const Question& q : sample_questions(g.scene, ctx, i % 3, rng))
        add_exchange("<image>\n" + q.question, q.answer, corpus);
      if (const auto e = sample_edit(g.scene, ctx, rng))
        add_exchange("<image>\n" + e->instruction, "The output image is: <image_gen>", corpus);
    }
  }
}

// `--corpus a b c` as well as `--corpus a --corpus b`: the values after --corpus up to the next
// option become repeated --corpus options.
std::vector<std::string> expand_corpus_lists(int argc, char** argv) {
  std::vector<std::string> out;
  bool in_corpus = false;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    const bool option = a.rfind("--", 0) == 0;
    if (in_corpus && !option && out.back() != "--corpus") out.push_back("--corpus");
    if (option) in_corpus = a == "--corpus";
    out.push_back(a);
  }
  return out;
}

int run_cut(int argc, char** argv) {
  std::vector<std::string> args = expand_corpus_lists(argc, argv);
  std::vector<char*> ptrs;
  for (std::string& a : args) ptrs.push_back(a.data());
  const auto o = vargpt::parse_options(int(ptrs.size()), ptrs.data(), 2, {"from", "out", "corpus", "shapeworld"},
                                       {"no-shapeworld-vocabulary"}, kUsage);
  const std::string from = o.required("from"), out = o.required("out");

  std::ifstream f(from, std::ios::binary);
  VT_CHECK(f, "cannot open --from ", from, " (scripts/setup.sh fetches the Qwen2 tokenizer to third_party/qwen2)");
  json full;
  try {
    full = json::parse(f);
  } catch (const json::exception& e) {
    VT_FAIL("--from ", from, " is not valid JSON: ", e.what());
  }

  Corpus corpus;
  for (const std::string& t : vt::tok::chat_template_corpus()) corpus.add(t);
  if (!o.has("no-shapeworld-vocabulary")) add_shapeworld_vocabulary(corpus);
  const size_t fixed_texts = corpus.texts.size();
  std::vector<std::string> files = o.all("corpus");
  if (o.has("shapeworld")) {
    const std::vector<std::string> sw = shapeworld_files(o.value_or("shapeworld", ""));
    files.insert(files.end(), sw.begin(), sw.end());
  }
  for (const std::string& file : files) add_corpus_file(file, corpus);

  vt::tok::CutOptions opt;
  opt.origin = from;
  const vt::tok::VocabularyCut cut = vt::tok::cut_vocabulary(full, corpus.texts, opt);
  vt::tok::write_vocabulary_cut(cut, out, from);

  std::printf("corpus: %zu distinct texts (%zu from %zu files, %zu from the template and vocabulary)\n",
              corpus.texts.size(), corpus.texts.size() - fixed_texts, files.size(), fixed_texts);
  std::printf("vocabulary: %d tokens = %d regular (%lld used by the corpus, the rest bytes and merge parts) + %d "
              "added; %lld of %zu merges\n",
              cut.vocab_size(), cut.regular_tokens, static_cast<long long>(cut.corpus_tokens),
              cut.vocab_size() - cut.regular_tokens, static_cast<long long>(cut.merges),
              full["model"]["merges"].size());
  std::printf("special ids:");
  for (const json& a : cut.tokenizer["added_tokens"])
    std::printf(" %s=%d", a["content"].get<std::string>().c_str(), a["id"].get<int>());
  std::printf("\nwrote %s and %s\n", out.c_str(), vt::tok::id_map_path(out).c_str());
  return 0;
}

}  // namespace

int cmd_tokenizer(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string sub = argv[1];
  if (sub == "cut") return run_cut(argc, argv);
  VT_FAIL("unknown subcommand '", sub, "' (expected cut)\n", kUsage);
}
