// test_vocab_cut.cpp: the ShapeWorld-sized vocabulary cut from the Qwen2 tokenizer
// (models/tokenizer/vocab_cut.h).
//
// A small ShapeWorld dataset is written to a temporary directory, its record texts (markers replaced
// by the special-token spans) plus the chat template's strings make the corpus, and the cut must
// encode every conversation, rendered with the chat template as training renders it, to the same
// tokens as the full tokenizer. The real vocabulary is third_party/qwen2/tokenizer.json
// (scripts/setup.sh, tools/fetch_qwen2_tokenizer.sh) or VT_QWEN2_TOKENIZER; a missing one fails the
// test unless VT_ALLOW_MISSING_VOCAB=1, as in test_tokenizer.cpp.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "shapeworld/dataset.h"
#include "test_skip.h"
#include "tokenizer/bpe.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/unicode.h"
#include "tokenizer/vocab_cut.h"
#include "vargpt/vargpt.h"
#include "vt/error.h"

namespace fs = std::filesystem;
using nlohmann::json;
using vt::tok::Tokenizer;

namespace {

std::string vocab_path() {
  if (const char* p = std::getenv("VT_QWEN2_TOKENIZER")) return p;
  return std::string(VT_FIXTURES) + "/../../third_party/qwen2/tokenizer.json";
}

// The full tokenizer.json, parsed once; nullptr (after a MESSAGE or a failure) when it is absent.
const json* qwen2_json() {
  static std::unique_ptr<json> j;
  static bool tried = false;
  if (!tried) {
    tried = true;
    if (fs::exists(vocab_path())) {
      std::ifstream f(vocab_path());
      j = std::make_unique<json>(json::parse(f));
    }
  }
  if (!j) {
    const char* allow = std::getenv("VT_ALLOW_MISSING_VOCAB");
    if (allow && std::string(allow) == "1") {
      MESSAGE("SKIPPED: the Qwen2 vocabulary ", vocab_path(),
              " is missing (run tools/fetch_qwen2_tokenizer.sh); VT_ALLOW_MISSING_VOCAB=1 skips the case");
      vt::test::note_skipped();
    } else {
      FAIL_CHECK("the Qwen2 vocabulary ", vocab_path(),
                 " is missing: run tools/fetch_qwen2_tokenizer.sh (or set VT_ALLOW_MISSING_VOCAB=1 to skip)");
    }
  }
  return j.get();
}

// <image> -> the vision span, <image_gen> -> the generation span (one pad each: the number of pads
// does not change how the text around them encodes).
std::string expand_markers(const std::string& text) {
  std::string out;
  for (size_t pos = 0; pos < text.size();) {
    if (text.compare(pos, 7, "<image>") == 0) {
      out += vt::tok::image_placeholder(1);
      pos += 7;
    } else if (text.compare(pos, 11, "<image_gen>") == 0) {
      out += vt::tok::image_gen_span(1);
      pos += 11;
    } else {
      out += text[pos++];
    }
  }
  return out;
}

// A record turn as a chat part list, markers as the training expands them.
vt::tok::ChatMessage message_of(const json& turn) {
  const std::string from = turn.at("from").get<std::string>();
  const std::string role = from == "human" ? "user" : from == "gpt" ? "assistant" : from;
  return {role, {vt::tok::ChatPart::of_text(expand_markers(turn.at("value").get<std::string>()))}};
}

struct ShapeWorldTexts {
  std::vector<std::string> values;         // every "value", markers expanded: the corpus
  std::vector<std::string> conversations;  // every conversation rendered with the chat template
};

ShapeWorldTexts read_shapeworld(const fs::path& dir) {
  ShapeWorldTexts out;
  for (const char* split : {"train", "test"})
    for (const char* kind : {"generation", "understanding", "editing", "preference"}) {
      const fs::path file = dir / split / (std::string(kind) + ".json");
      std::ifstream f(file);
      REQUIRE_MESSAGE(f, "cannot open ", file.string());
      for (const json& r : json::parse(f)) {
        std::vector<vt::tok::ChatMessage> msgs;
        for (const json& t : r.at("conversations")) {
          msgs.push_back(message_of(t));
          out.values.push_back(msgs.back().content[0].text);
        }
        std::vector<std::vector<vt::tok::ChatMessage>> convs;
        if (r.contains("chosen")) {
          for (const char* reply : {"chosen", "rejected"}) {
            convs.push_back(msgs);
            convs.back().push_back(message_of(r.at(reply)));
            out.values.push_back(convs.back().back().content[0].text);
          }
        } else {
          convs.push_back(msgs);
        }
        for (const auto& c : convs)
          out.conversations.push_back(vt::tok::apply_chat_template(c, /*add_generation_prompt=*/false));
      }
    }
  return out;
}

struct TempDir {
  fs::path path;
  TempDir() : path(fs::temp_directory_path() / ("vt_vocab_cut_" + std::to_string(getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// The dataset, the cut and both tokenizers, made once for the test cases below.
struct Fixture {
  TempDir tmp;
  ShapeWorldTexts sw;
  vt::tok::VocabularyCut cut;
  std::string out;  // the written tokenizer.json
  std::unique_ptr<Tokenizer> full, small;
};

const Fixture* fixture() {
  static std::unique_ptr<Fixture> fx;
  static bool tried = false;
  if (tried) return fx.get();
  tried = true;
  const json* full_json = qwen2_json();
  if (!full_json) return nullptr;
  auto f = std::make_unique<Fixture>();
  f->full = std::make_unique<Tokenizer>(Tokenizer::from_json(*full_json, vocab_path()));
  vt::shapes::MakeOptions mo;
  mo.out_dir = (f->tmp.path / "shapes").string();
  mo.size = 64;
  mo.train = 36;
  mo.test = 12;
  mo.seed = 11;
  vt::shapes::make_dataset(mo);
  f->sw = read_shapeworld(f->tmp.path / "shapes");
  std::vector<std::string> corpus = vt::tok::chat_template_corpus();
  corpus.insert(corpus.end(), f->sw.values.begin(), f->sw.values.end());
  f->cut = vt::tok::cut_vocabulary(*full_json, corpus, {.origin = vocab_path()});
  f->out = (f->tmp.path / "cut" / "tokenizer.json").string();
  vt::tok::write_vocabulary_cut(f->cut, f->out, vocab_path());
  f->small = std::make_unique<Tokenizer>(Tokenizer::from_file(f->out));
  fx = std::move(f);
  return fx.get();
}

}  // namespace

TEST_CASE("vocab cut: ShapeWorld texts encode to the full tokenizer's tokens") {
  const Fixture* fx = fixture();
  if (!fx) return;
  const json* full_json = qwen2_json();
  const Tokenizer& full = *fx->full;
  const Tokenizer& small = *fx->small;
  const vt::tok::VocabularyCut& cut = fx->cut;
  const ShapeWorldTexts& sw = fx->sw;
  const std::string& out = fx->out;
  const std::vector<int32_t>& id_map = cut.id_map;
  REQUIRE(sw.conversations.size() > 100);
  REQUIRE(small.vocab_size() == id_map.size());

  SUBCASE("(1) every rendered conversation: the same tokens, ids through id_map") {
    size_t tokens = 0;
    for (const std::string& text : sw.conversations) {
      const std::vector<int32_t> want = full.encode(text), got = small.encode(text);
      std::vector<int32_t> mapped;
      for (int32_t id : got) {
        REQUIRE(id >= 0);
        REQUIRE(size_t(id) < id_map.size());
        mapped.push_back(id_map[size_t(id)]);
        CHECK(small.token_bytes(id) == full.token_bytes(id_map[size_t(id)]));
      }
      CHECK_MESSAGE(mapped == want, text);
      tokens += got.size();
    }
    MESSAGE(sw.conversations.size(), " conversations, ", tokens, " tokens, all identical to the full tokenizer's");
  }

  SUBCASE("(2) decode(encode(text)) round-trips") {
    for (const std::string& text : sw.conversations) CHECK(small.decode(small.encode(text)) == text);
  }

  SUBCASE("(3) text outside the corpus still encodes (by bytes) and decodes exactly") {
    for (const std::string text : {"zebra 123 \u2713", "Ein gr\u00fcner W\u00fcrfel? \U0001F600\n\t  end",
                                   "<|im_start|>user\nWhat is a hexagon?<|im_end|>\n"}) {
      const std::vector<int32_t> ids = small.encode(text);
      CHECK(small.decode(ids) == text);
      CHECK(ids.size() >= full.encode(text).size());
    }
    // A token of the cut for every byte.
    for (int b = 0; b < 256; ++b) {
      std::string bytes(1, char(b));
      CHECK(small.find_token(bytes) >= 0);
    }
  }

  SUBCASE("(4) small, specials contiguous after the regular tokens, merges closed") {
    const int32_t n = cut.vocab_size(), regular = cut.regular_tokens;
    MESSAGE("ShapeWorld cut: ", n, " tokens = ", regular, " regular (", cut.corpus_tokens, " used by the corpus) + ",
            n - regular, " added; ", cut.merges, " merges");
    CHECK(regular > 256);
    CHECK(n < 1000);
    for (int32_t id = 1; id < regular; ++id) CHECK(id_map[size_t(id)] > id_map[size_t(id - 1)]);  // source order
    std::vector<std::string> want_added;
    for (const json& a : full_json->at("added_tokens")) want_added.push_back(a.at("content").get<std::string>());
    for (const char* g : {"<|image_gen_start|>", "<|image_gen_end|>", "<|image_gen_pad|>"})
      if (std::find(want_added.begin(), want_added.end(), g) == want_added.end()) want_added.push_back(g);
    REQUIRE(small.added_tokens().size() == want_added.size());
    std::string specials;
    for (size_t k = 0; k < want_added.size(); ++k) {
      const auto& a = small.added_tokens()[k];
      CHECK(a.id == regular + int32_t(k));
      CHECK(a.content == want_added[k]);
      CHECK(a.special);
      CHECK(id_map[size_t(a.id)] == full.find_token(a.content));
      specials += " " + a.content + "=" + std::to_string(a.id);
    }
    CHECK(regular + int32_t(want_added.size()) == n);
    MESSAGE("special ids:", specials);

    // Every kept merge joins kept tokens into a kept token; every kept token of 2+ bytes has one.
    const json& vocab = cut.tokenizer["model"]["vocab"];
    std::set<std::string> produced;
    for (const json& m : cut.tokenizer["model"]["merges"]) {
      const std::string l = m[0].get<std::string>(), r = m[1].get<std::string>();
      CHECK(vocab.contains(l));
      CHECK(vocab.contains(r));
      CHECK(vocab.contains(l + r));
      produced.insert(l + r);
    }
    for (auto it = vocab.begin(); it != vocab.end(); ++it)
      if (vt::unicode::decode_utf8(it.key()).size() > 1) CHECK_MESSAGE(produced.count(it.key()), it.key());
    // The rest of the file is the source's.
    for (const char* key : {"normalizer", "pre_tokenizer", "decoder", "post_processor"})
      CHECK(cut.tokenizer[key] == full_json->at(key));
  }

  SUBCASE("(5) the file loads and check_tokenizer accepts its generation tokens; the id map is next to it") {
    vt::vargpt::GenerationTokens gen;
    gen.start = small.token_id("<|image_gen_start|>");
    gen.end = small.token_id("<|image_gen_end|>");
    gen.pad = small.token_id("<|image_gen_pad|>");
    CHECK_NOTHROW(vt::vargpt::check_tokenizer(small, gen, out));
    CHECK(gen.pad == cut.vocab_size() - 1);  // the generation tokens close the vocabulary
    CHECK(gen.start == cut.vocab_size() - 3);
    std::ifstream f(vt::tok::id_map_path(out));
    REQUIRE(f);
    const json summary = json::parse(f);
    CHECK(summary.at("vocab_size").get<int32_t>() == cut.vocab_size());
    CHECK(summary.at("id_map").get<std::vector<int32_t>>() == id_map);
    CHECK(summary.at("special_tokens").size() == small.added_tokens().size());
  }
}

TEST_CASE("vocab cut: the generation tokens are added when the source lacks them; bad input is named") {
  const json* full_json = qwen2_json();
  if (!full_json) return;
  json plain = *full_json;  // Qwen2-VL's tokenizer before VARGPT added its three tokens
  json added = json::array();
  for (const json& a : plain["added_tokens"])
    if (a["content"].get<std::string>().rfind("<|image_gen_", 0) != 0) added.push_back(a);
  plain["added_tokens"] = added;
  const std::string text = "Here's a rendered painting of a red circle." + vt::tok::image_gen_span(2);
  const vt::tok::VocabularyCut cut = vt::tok::cut_vocabulary(plain, {text}, {.origin = "plain"});
  const Tokenizer small = Tokenizer::from_json(cut.tokenizer, "cut");
  const int32_t regular = cut.regular_tokens, n_source = int32_t(added.size());
  CHECK(small.token_id("<|image_gen_start|>") == regular + n_source);
  CHECK(small.token_id("<|image_gen_end|>") == regular + n_source + 1);
  CHECK(small.token_id("<|image_gen_pad|>") == regular + n_source + 2);
  CHECK(cut.id_map.back() == -1);
  const std::vector<int32_t> ids = small.encode(text);
  CHECK(ids.back() == regular + n_source + 1);
  CHECK(small.decode(ids) == text);

  CHECK(vt::tok::id_map_path("dir/tokenizer.json") == "dir/tokenizer.id_map.json");
  json broken = json::object();
  broken["model"] = json::object();
  try {
    vt::tok::cut_vocabulary(broken, {"x"}, {.origin = "broken.json"});
    FAIL("a tokenizer.json without a vocabulary was accepted");
  } catch (const vt::Error& e) {
    CHECK(std::string(e.what()).find("broken.json") != std::string::npos);
  }
}
