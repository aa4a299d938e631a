// vocab_cut.cpp: cutting a byte-level BPE vocabulary down to a corpus (see vocab_cut.h).
#include "tokenizer/vocab_cut.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <unordered_map>
#include <unordered_set>

#include "tokenizer/bpe.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/unicode.h"
#include "vt/error.h"

namespace vt::tok {
namespace {

using nlohmann::json;

// One merge of the source, by vocab ids: left + right -> result.
struct Merge {
  int32_t left, right, result;
};

// "a b" (older files) or ["a", "b"] (newer) -> (a, b), as Tokenizer::from_json reads them.
std::pair<std::string, std::string> merge_pair(const json& m, size_t rank, const std::string& origin) {
  if (m.is_string()) {
    const std::string s = m.get<std::string>();
    const size_t sp = s.find(' ', 1);
    VT_CHECK(sp != std::string::npos, "vocabulary cut: ", origin, ": merge ", rank, " '", s, "' is not 'a b'");
    return {s.substr(0, sp), s.substr(sp + 1)};
  }
  VT_CHECK(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(), "vocabulary cut: ", origin,
           ": merge ", rank, " is neither 'a b' nor a pair of strings");
  return {m[0].get<std::string>(), m[1].get<std::string>()};
}

json added_token_entry(int32_t id, const std::string& content) {
  return {{"id", id},           {"content", content}, {"single_word", false}, {"lstrip", false},
          {"rstrip", false},    {"normalized", false}, {"special", true}};
}

std::string preview(const std::string& text) {
  return text.size() <= 80 ? text : text.substr(0, 77) + "...";
}

void write_atomic(const std::string& path, const std::string& text) {
  namespace fs = std::filesystem;
  const fs::path p(path);
  std::error_code ec;
  if (p.has_parent_path()) fs::create_directories(p.parent_path(), ec);
  VT_CHECK(!ec, "vocabulary cut: cannot create the directory of ", path, ": ", ec.message());
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    VT_CHECK(out.good(), "vocabulary cut: cannot write ", tmp);
    out << text;
    out.flush();
    VT_CHECK(out.good(), "vocabulary cut: writing ", tmp, " failed (disk full?)");
  }
  fs::rename(tmp, path, ec);
  VT_CHECK(!ec, "vocabulary cut: cannot rename ", tmp, " to ", path, ": ", ec.message());
}

}  // namespace

VocabularyCut cut_vocabulary(const json& full_tokenizer_json, const std::vector<std::string>& corpus,
                             const CutOptions& options) {
  const std::string& origin = options.origin;
  const json& src = full_tokenizer_json;
  const bool has_model = src.is_object() && src.contains("model") && src["model"].is_object();
  VT_CHECK(has_model && src["model"].contains("vocab") && src["model"]["vocab"].is_object() &&
               src["model"].contains("merges") && src["model"]["merges"].is_array(),
           "vocabulary cut: ", origin, " has no model.vocab object and model.merges array; expected a Hugging Face "
           "byte-level BPE tokenizer.json");
  if (src.contains("post_processor") && !src["post_processor"].is_null())
    VT_CHECK(src["post_processor"].dump().find("\"special_tokens\"") == std::string::npos, "vocabulary cut: ", origin,
             "'s post_processor names token ids (a TemplateProcessing); renumbering them is not implemented");

  // ---- the source's vocabulary by id, its added tokens, and the extra tokens it lacks
  const json& vocab = src["model"]["vocab"];
  std::unordered_map<std::string, int32_t> key_to_id;
  key_to_id.reserve(vocab.size());
  int32_t max_vocab_id = -1;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const int32_t id = read_token_id(it.value(), origin, it.key());
    key_to_id.emplace(it.key(), id);
    max_vocab_id = std::max(max_vocab_id, id);
  }
  std::vector<const std::string*> key_of(size_t(max_vocab_id) + 1, nullptr);  // id -> vocab key (byte-mapped)
  for (const auto& [key, id] : key_to_id) {
    VT_CHECK(!key_of[id], "vocabulary cut: ", origin, ": id ", id, " is given to both '", *key_of[id], "' and '", key,
             "'");
    key_of[id] = &key;
  }

  std::vector<json> added;  // the source's added tokens, in id order
  for (const json& a : src.value("added_tokens", json::array())) {
    VT_CHECK(a.is_object() && a.contains("id") && a.contains("content") && a["content"].is_string(),
             "vocabulary cut: ", origin, ": added token ", a.dump().substr(0, 200), " has no id and content");
    read_token_id(a["id"], origin, a["content"].get<std::string>());  // throws on a bad id
    added.push_back(a);
  }
  std::stable_sort(added.begin(), added.end(),
                   [](const json& a, const json& b) { return a.at("id").get<int64_t>() < b.at("id").get<int64_t>(); });
  std::unordered_set<std::string> added_contents;
  int32_t max_id = max_vocab_id;
  for (const json& a : added) {
    const int32_t id = a.at("id").get<int32_t>();
    VT_CHECK(id > max_vocab_id || !key_of[id], "vocabulary cut: ", origin, ": added token ",
             a.at("content").get<std::string>(), " has id ", id, ", which is also the vocab entry '",
             id >= 0 && id <= max_vocab_id && key_of[id] ? *key_of[id] : std::string("?"),
             "'; added tokens inside the vocab are not supported");
    added_contents.insert(a.at("content").get<std::string>());
    max_id = std::max(max_id, id);
  }
  std::vector<std::string> extras;  // extra tokens the source lacks, in options order
  for (const std::string& e : options.extra_special_tokens)
    if (!added_contents.count(e) && std::find(extras.begin(), extras.end(), e) == extras.end()) extras.push_back(e);

  // The reference tokenizer: the source, with the extra tokens added after its largest id (as
  // VARGPT adds them to Qwen2-VL's), so that corpus text holding them splits them out both ways.
  json augmented;
  const json* reference_json = &src;
  if (!extras.empty()) {
    augmented = src;
    for (size_t k = 0; k < extras.size(); ++k)
      augmented["added_tokens"].push_back(added_token_entry(max_id + 1 + int32_t(k), extras[k]));
    reference_json = &augmented;
  }
  const Tokenizer full = Tokenizer::from_json(*reference_json, origin);

  // ---- merges by id, and for each token the merges that produce it (a linked list per token)
  const json& merges_json = src["model"]["merges"];
  std::vector<Merge> merges;
  merges.reserve(merges_json.size());
  std::vector<int32_t> first_producer(key_of.size(), -1), next_producer(merges_json.size(), -1);
  for (size_t r = 0; r < merges_json.size(); ++r) {
    const auto [left, right] = merge_pair(merges_json[r], r, origin);
    const auto find = [&](const std::string& key) {
      auto it = key_to_id.find(key);
      VT_CHECK(it != key_to_id.end(), "vocabulary cut: ", origin, ": merge ", r, " uses '", key, "', not in the vocab");
      return it->second;
    };
    const Merge m{find(left), find(right), find(left + right)};
    merges.push_back(m);
    next_producer[r] = first_producer[m.result];
    first_producer[m.result] = int32_t(r);
  }

  // ---- the kept set: byte tokens, the corpus's tokens, the closure under producing merges
  std::vector<uint8_t> kept(key_of.size(), 0);
  std::vector<int32_t> pending;
  const auto keep = [&](int32_t id) {
    if (kept[id]) return;
    kept[id] = 1;
    pending.push_back(id);
  };
  for (int b = 0; b < 256; ++b) {
    std::string key;
    unicode::append_utf8(key, byte_to_unicode(uint8_t(b)));
    keep(key_to_id.at(key));  // present: from_json checked every byte has a token
  }
  if (src["model"].contains("unk_token") && src["model"]["unk_token"].is_string()) {
    auto it = key_to_id.find(src["model"]["unk_token"].get<std::string>());
    if (it != key_to_id.end()) keep(it->second);
  }
  std::vector<std::vector<int32_t>> reference_ids(corpus.size());
  std::vector<uint8_t> used(key_of.size(), 0);  // regular tokens the corpus itself uses
  for (size_t t = 0; t < corpus.size(); ++t) {
    try {
      reference_ids[t] = full.encode(corpus[t]);
    } catch (const Error& e) {
      VT_FAIL("vocabulary cut: corpus text ", t, " ('", preview(corpus[t]), "'): ", e.what());
    }
    for (int32_t id : reference_ids[t]) {
      if (id > max_vocab_id || !key_of[id]) continue;  // an added token
      used[id] = 1;
      keep(id);
    }
  }
  while (!pending.empty()) {
    const int32_t id = pending.back();
    pending.pop_back();
    for (int32_t r = first_producer[id]; r >= 0; r = next_producer[r]) {
      keep(merges[r].left);
      keep(merges[r].right);
    }
  }

  // ---- renumber: kept regular tokens in source id order, then the added tokens
  VocabularyCut cut;
  std::vector<int32_t> new_id(key_of.size(), -1);
  json new_vocab = json::object();
  for (size_t id = 0; id < key_of.size(); ++id) {
    if (!kept[id]) continue;
    new_id[id] = int32_t(cut.id_map.size());
    new_vocab[*key_of[id]] = new_id[id];
    cut.id_map.push_back(int32_t(id));
  }
  cut.regular_tokens = int32_t(cut.id_map.size());
  cut.corpus_tokens = std::count(used.begin(), used.end(), uint8_t(1));
  json new_merges = json::array();
  for (size_t r = 0; r < merges.size(); ++r)
    if (kept[merges[r].left] && kept[merges[r].right] && kept[merges[r].result]) new_merges.push_back(merges_json[r]);
  cut.merges = int64_t(new_merges.size());
  json new_added = json::array();
  std::unordered_map<int32_t, int32_t> added_new_id;  // reference (augmented) id -> new id
  for (json a : added) {
    added_new_id[a["id"].get<int32_t>()] = int32_t(cut.id_map.size());
    cut.id_map.push_back(a["id"].get<int32_t>());
    a["id"] = int32_t(cut.id_map.size()) - 1;
    new_added.push_back(std::move(a));
  }
  for (size_t k = 0; k < extras.size(); ++k) {
    added_new_id[max_id + 1 + int32_t(k)] = int32_t(cut.id_map.size());
    new_added.push_back(added_token_entry(int32_t(cut.id_map.size()), extras[k]));
    cut.id_map.push_back(-1);
  }

  cut.tokenizer = src;
  cut.tokenizer["model"]["vocab"] = std::move(new_vocab);
  cut.tokenizer["model"]["merges"] = std::move(new_merges);
  cut.tokenizer["added_tokens"] = std::move(new_added);

  // ---- the contract, checked: the cut encodes every corpus text to the same tokens
  if (options.verify) {
    const Tokenizer small = Tokenizer::from_json(cut.tokenizer, origin + " (cut)");
    for (size_t t = 0; t < corpus.size(); ++t) {
      std::vector<int32_t> want = reference_ids[t];
      for (int32_t& id : want) id = id <= max_vocab_id && key_of[id] ? new_id[id] : added_new_id.at(id);
      VT_CHECK(small.encode(corpus[t]) == want, "vocabulary cut: ", origin, ": the cut tokenizer encodes corpus text ",
               t, " ('", preview(corpus[t]), "') differently from the full one (a bug in the cut)");
    }
  }
  return cut;
}

json VocabularyCut::summary(const std::string& source) const {
  json specials = json::array();
  for (const json& a : tokenizer.at("added_tokens")) {
    const int32_t id = a.at("id").get<int32_t>();
    specials.push_back({{"content", a.at("content")}, {"id", id}, {"source_id", id_map.at(size_t(id))}});
  }
  return {{"source", source},           {"vocab_size", vocab_size()}, {"regular_tokens", regular_tokens},
          {"merges", merges},           {"corpus_tokens", corpus_tokens}, {"special_tokens", std::move(specials)},
          {"id_map", id_map}};
}

std::vector<std::string> chat_template_corpus() {
  std::vector<std::string> texts = {std::string(kDefaultSystemPrompt), "system", "user", "assistant", "\n"};
  const std::vector<ChatMessage> conversation = {
      {"user", {ChatPart::of_image(1), ChatPart::of_text("\n")}},
      {"assistant", {ChatPart::of_text(image_gen_span(1))}},
  };
  texts.push_back(apply_chat_template(conversation, /*add_generation_prompt=*/true));
  return texts;
}

std::string id_map_path(const std::string& tokenizer_path) {
  const std::string suffix = ".json";
  const bool json_name = tokenizer_path.size() > suffix.size() &&
                         tokenizer_path.compare(tokenizer_path.size() - suffix.size(), suffix.size(), suffix) == 0;
  const size_t stem = json_name ? tokenizer_path.size() - suffix.size() : tokenizer_path.size();
  return tokenizer_path.substr(0, stem) + ".id_map.json";
}

void write_vocabulary_cut(const VocabularyCut& cut, const std::string& tokenizer_path, const std::string& source) {
  write_atomic(tokenizer_path, cut.tokenizer.dump(2) + "\n");
  // One key per line, a special token per line, the id map last and on one line: a few hundred
  // numbers read better as one array than one per line.
  const json s = cut.summary(source);
  std::string text = "{";
  for (const char* key :
       {"source", "vocab_size", "regular_tokens", "merges", "corpus_tokens", "special_tokens", "id_map"}) {
    text += (text.size() == 1 ? "\n  " : ",\n  ") + json(key).dump() + ": ";
    const json& v = s.at(key);
    if (std::string_view(key) != "special_tokens") {
      text += v.dump();
      continue;
    }
    text += "[";
    for (size_t k = 0; k < v.size(); ++k) text += (k ? ",\n    " : "\n    ") + v[k].dump();
    text += "\n  ]";
  }
  write_atomic(id_map_path(tokenizer_path), text + "\n}\n");
}

}  // namespace vt::tok
