// bpe.cpp: loading tokenizer.json, the pre-tokenisation scanner, BPE merging, decoding.
#include "tokenizer/bpe.h"

#include <algorithm>
#include <fstream>
#include <queue>

#include <nlohmann/json.hpp>

#include "tokenizer/unicode.h"
#include "vt/error.h"

namespace vt::tok {
namespace {

// Hugging Face tokenizers' Split pattern for Qwen2 (qwen2_vl.md §12.2); other patterns are refused,
// since the scanner below implements exactly this one.
constexpr std::string_view kQwen2Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// Case-insensitive match of the contraction letters. Unicode simple case folding also folds
// U+017F (long s) to 's'; Oniguruma's (?i) honours that, so the scanner does too.
inline char32_t fold(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c == 0x17F) return 's';
  return c;
}

inline bool is_newline(char32_t c) { return c == '\r' || c == '\n'; }

// The end of the match of the Qwen2 pattern at s[i], trying its alternatives in order as a
// backtracking engine would (leftmost-first, not longest).
size_t match_at(std::u32string_view s, size_t i) {
  using namespace vt::unicode;
  const size_t n = s.size();
  const char32_t c = s[i];
  const uint8_t p = props(c);
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)
  if (c == '\'' && i + 1 < n) {
    const char32_t a = fold(s[i + 1]);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if (i + 2 < n) {
      const char32_t b = fold(s[i + 2]);
      if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    }
  }
  // [^\r\n\p{L}\p{N}]?\p{L}+
  size_t j = i;
  if (!(p & kLetter) && !(p & kNumber) && !is_newline(c) && i + 1 < n && is_letter(s[i + 1])) j = i + 1;
  if (is_letter(s[j])) {
    while (j < n && is_letter(s[j])) ++j;
    return j;
  }
  // \p{N}
  if (p & kNumber) return i + 1;
  //  ?[^\s\p{L}\p{N}]+[\r\n]*
  const auto other = [&](size_t k) { return !(props(s[k]) & (kLetter | kNumber | kSpace)); };
  j = (c == ' ' && i + 1 < n && other(i + 1)) ? i + 1 : i;
  if (other(j)) {
    while (j < n && other(j)) ++j;
    while (j < n && is_newline(s[j])) ++j;
    return j;
  }
  // c is whitespace here. \s*[\r\n]+ : \s* backs off to the last newline of the run.
  size_t k = i, last_newline = SIZE_MAX;
  for (; k < n && is_space(s[k]); ++k)
    if (is_newline(s[k])) last_newline = k;
  if (last_newline != SIZE_MAX) return last_newline + 1;
  // \s+(?!\S) leaves the last space of a run for the next word; then \s+.
  if (k < n && k - i >= 2) return k - 1;
  return k;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  VT_CHECK(f, "tokenizer: cannot open ", path);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

}  // namespace

char32_t byte_to_unicode(uint8_t b) {
  if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE)) return b;
  // The 68 remaining bytes, in byte order, map to U+0100, U+0101, ...
  int n = 0;
  for (int x = 0; x < b; ++x)
    if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE))) ++n;
  return 0x100 + n;
}

void pretokenize(std::u32string_view text, std::vector<std::pair<uint32_t, uint32_t>>& pieces) {
  for (size_t i = 0; i < text.size();) {
    const size_t end = match_at(text, i);
    pieces.emplace_back(uint32_t(i), uint32_t(end));
    i = end;
  }
}

// ---- loading -------------------------------------------------------------------------------------

struct Tokenizer::Cache {
  std::mutex mutex;
  std::unordered_map<std::string, std::vector<int32_t>> words;
  static constexpr size_t kMaxWords = 1 << 18;  // cleared when full; a hit rate guard, not an LRU
};

int32_t read_token_id(const nlohmann::json& value, const std::string& origin, std::string_view token) {
  VT_CHECK(value.is_number_integer(), "tokenizer: ", origin, ": token '", token, "' has id ", value.dump(),
           ", not an integer");
  // is_number_unsigned: a value above INT64_MAX is held as uint64 and would wrap in get<int64_t>.
  const bool huge = value.is_number_unsigned() && value.get<uint64_t>() >= uint64_t(kMaxTokenId);
  const int64_t id = huge ? kMaxTokenId : value.get<int64_t>();
  VT_CHECK(id >= 0, "tokenizer: ", origin, ": token '", token, "' has negative id ", value.dump());
  VT_CHECK(id < kMaxTokenId, "tokenizer: ", origin, ": token '", token, "' has id ", value.dump(),
           ", beyond the largest supported id ", kMaxTokenId - 1);
  return int32_t(id);
}

Tokenizer::Tokenizer() : cache_(std::make_unique<Cache>()) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_file(const std::string& path) {
  const std::string text = read_file(path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    VT_FAIL("tokenizer: ", path, " is not valid JSON: ", e.what());
  }
  return from_json(j, path);
}

Tokenizer Tokenizer::from_json(const nlohmann::json& j, const std::string& origin) {
  try {
    return from_json_checked(j, origin);
  } catch (const nlohmann::json::exception& e) {  // a key missing or of the wrong type, e.g. an added token without "content"
    VT_FAIL("tokenizer: ", origin, ": ", e.what());
  }
}

Tokenizer Tokenizer::from_json_checked(const nlohmann::json& j, const std::string& origin) {
  VT_CHECK(j.is_object() && j.contains("model") && j["model"].is_object(), "tokenizer: ", origin,
           " has no \"model\" object; expected a Hugging Face tokenizer.json");
  const auto& model = j["model"];
  const std::string type = model.value("type", std::string("?"));
  VT_CHECK(type == "BPE", "tokenizer: ", origin, " has model type ", type, "; only byte-level BPE (Qwen2) is supported");
  VT_CHECK(!model.value("byte_fallback", false), "tokenizer: ", origin, " uses byte_fallback (a SentencePiece-style BPE), not Qwen2's byte-level BPE");
  if (j.contains("normalizer") && !j["normalizer"].is_null()) {
    const std::string norm = j["normalizer"].value("type", std::string("?"));
    VT_CHECK(norm == "NFC", "tokenizer: ", origin, " has normalizer ", norm, "; only NFC is supported");
  }
  const std::string pre = j.contains("pre_tokenizer") ? j["pre_tokenizer"].dump() : "null";
  VT_CHECK(pre.find(nlohmann::json(std::string(kQwen2Pattern)).dump()) != std::string::npos,
           "tokenizer: ", origin, " does not use the Qwen2 pre-tokenisation pattern; pre_tokenizer is ",
           pre.substr(0, 300));

  Tokenizer t;
  // Invert the byte-to-unicode map, to turn vocab keys back into raw bytes.
  std::unordered_map<char32_t, uint8_t> unicode_to_byte;
  for (int b = 0; b < 256; ++b) unicode_to_byte[byte_to_unicode(uint8_t(b))] = uint8_t(b);
  const auto to_bytes = [&](const std::string& key) {
    std::string out;
    for (char32_t c : unicode::decode_utf8(key, "vocab key")) {
      auto it = unicode_to_byte.find(c);
      VT_CHECK(it != unicode_to_byte.end(), "tokenizer: ", origin, ": vocab key '", key,
               "' has a character outside the byte-level alphabet; not a byte-level BPE vocabulary");
      out.push_back(char(it->second));
    }
    return out;
  };

  const auto& vocab = model.at("vocab");
  std::unordered_map<std::string, int32_t> key_to_id;  // vocab keys as written (byte-mapped)
  key_to_id.reserve(vocab.size());
  int32_t max_id = -1;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const int32_t id = read_token_id(it.value(), origin, it.key());
    key_to_id.emplace(it.key(), id);
    max_id = std::max(max_id, id);
  }
  const nlohmann::json added = j.value("added_tokens", nlohmann::json::array());
  VT_CHECK(added.is_array(), "tokenizer: ", origin, ": \"added_tokens\" is not an array");
  for (const auto& a : added) {
    VT_CHECK(a.is_object() && a.contains("id") && a.contains("content") && a["content"].is_string(), "tokenizer: ",
             origin, ": added token ", a.dump().substr(0, 200), " has no \"id\" and string \"content\"");
    max_id = std::max(max_id, read_token_id(a["id"], origin, a["content"].get<std::string>()));
  }
  t.id_to_bytes_.assign(size_t(max_id) + 1, std::string());
  t.id_is_special_.assign(size_t(max_id) + 1, 0);
  t.bytes_to_id_.reserve(key_to_id.size());
  for (const auto& [key, id] : key_to_id) {
    std::string bytes = to_bytes(key);
    t.id_to_bytes_[id] = bytes;
    t.bytes_to_id_.emplace(std::move(bytes), id);
  }
  for (int b = 0; b < 256; ++b) {
    auto it = t.bytes_to_id_.find(std::string(1, char(b)));
    VT_CHECK(it != t.bytes_to_id_.end(), "tokenizer: ", origin, ": byte 0x", std::hex, b, std::dec,
             " has no token; not a byte-level BPE vocabulary");
    t.byte_id_[b] = it->second;
  }

  // Merges: "a b" strings (older files) or ["a", "b"] pairs (newer).
  const auto& merges = model.at("merges");
  t.merges_.reserve(merges.size() * 2);
  uint32_t rank = 0;
  for (const auto& m : merges) {
    std::string left, right;
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t sp = s.find(' ', 1);
      VT_CHECK(sp != std::string::npos, "tokenizer: ", origin, ": merge ", rank, " '", s, "' is not 'a b'");
      left = s.substr(0, sp);
      right = s.substr(sp + 1);
    } else {
      VT_CHECK(m.is_array() && m.size() == 2, "tokenizer: ", origin, ": merge ", rank, " is not a pair");
      left = m[0].get<std::string>();
      right = m[1].get<std::string>();
    }
    const auto find = [&](const std::string& key) {
      auto it = key_to_id.find(key);
      VT_CHECK(it != key_to_id.end(), "tokenizer: ", origin, ": merge ", rank, " uses '", key, "', not in the vocab");
      return uint64_t(uint32_t(it->second));
    };
    const uint64_t a = find(left), b = find(right), merged = find(left + right);
    t.merges_.emplace((a << 32) | b, (uint64_t(rank) << 32) | merged);
    ++rank;
  }

  // Added tokens: matched on the raw text before normalisation. Every Qwen2 added token has
  // normalized = false; ones marked normalized = true are matched the same way here.
  t.added_by_first_byte_.resize(256);
  for (const auto& a : added) {
    AddedToken tok{read_token_id(a["id"], origin, a["content"].get<std::string>()), a.at("content").get<std::string>(), a.value("special", false)};
    VT_CHECK(!tok.content.empty(), "tokenizer: ", origin, ": added token ", tok.id, " is empty");
    unicode::validate_utf8(tok.content, "added token");
    t.id_to_bytes_[tok.id] = tok.content;
    t.id_is_special_[tok.id] = tok.special;
    t.added_to_id_[tok.content] = tok.id;
    t.added_.push_back(std::move(tok));
  }
  for (uint32_t k = 0; k < t.added_.size(); ++k)
    t.added_by_first_byte_[uint8_t(t.added_[k].content[0])].push_back(k);
  for (auto& list : t.added_by_first_byte_)
    std::sort(list.begin(), list.end(),
              [&](uint32_t a, uint32_t b) { return t.added_[a].content.size() > t.added_[b].content.size(); });
  return t;
}

// ---- lookups -------------------------------------------------------------------------------------

int32_t Tokenizer::find_token(std::string_view token) const {
  if (auto it = added_to_id_.find(std::string(token)); it != added_to_id_.end()) return it->second;
  if (auto it = bytes_to_id_.find(std::string(token)); it != bytes_to_id_.end()) return it->second;
  return -1;
}

int32_t Tokenizer::token_id(std::string_view token) const {
  const int32_t id = find_token(token);
  VT_CHECK(id >= 0, "tokenizer: no token '", token, "' in the vocabulary");
  return id;
}

const std::string& Tokenizer::token_bytes(int32_t id) const {
  VT_CHECK(id >= 0 && size_t(id) < id_to_bytes_.size(), "tokenizer: id ", id, " is outside the vocabulary of ",
           id_to_bytes_.size());
  return id_to_bytes_[id];
}

bool Tokenizer::is_special(int32_t id) const { return id >= 0 && size_t(id) < id_is_special_.size() && id_is_special_[id]; }

// ---- encoding ------------------------------------------------------------------------------------

size_t Tokenizer::match_added(std::string_view text, size_t pos) const {
  for (uint32_t k : added_by_first_byte_[uint8_t(text[pos])]) {
    const std::string& c = added_[k].content;
    if (text.compare(pos, c.size(), c) == 0) return c.size();
  }
  return 0;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  unicode::validate_utf8(text, "input text");
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  std::lock_guard<std::mutex> lock(cache_->mutex);
  size_t start = 0;  // start of the pending plain-text segment
  for (size_t i = 0; i < text.size(); ++i) {
    if (added_by_first_byte_[uint8_t(text[i])].empty()) continue;
    const size_t len = match_added(text, i);
    if (len == 0) continue;
    encode_segment(text.substr(start, i - start), out);
    out.push_back(added_to_id_.at(std::string(text.substr(i, len))));
    i += len - 1;
    start = i + 1;
  }
  encode_segment(text.substr(start), out);
  return out;
}

void Tokenizer::encode_segment(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  const std::u32string cps = unicode::nfc(unicode::decode_utf8(text, "input text"));
  std::vector<std::pair<uint32_t, uint32_t>> pieces;
  pretokenize(cps, pieces);
  std::string bytes;
  for (const auto& [b, e] : pieces) {
    bytes.clear();
    for (uint32_t k = b; k < e; ++k) unicode::append_utf8(bytes, cps[k]);
    auto it = cache_->words.find(bytes);
    if (it != cache_->words.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      continue;
    }
    const size_t first = out.size();
    bpe_piece(bytes, out);
    if (cache_->words.size() >= Cache::kMaxWords) cache_->words.clear();
    cache_->words.emplace(bytes, std::vector<int32_t>(out.begin() + first, out.end()));
  }
}

// Merges the lowest-ranked adjacent pair until none is left; ties (the same pair twice) go to the
// leftmost. Symbols form a linked list; a min-heap holds candidate merges and stale entries are
// skipped when popped (their left or right symbol has changed since).
void Tokenizer::bpe_piece(std::string_view piece, std::vector<int32_t>& out) const {
  const int n = int(piece.size());
  if (n == 1) {
    out.push_back(byte_id_[uint8_t(piece[0])]);
    return;
  }
  struct Symbol {
    int32_t id;
    int prev, next;
  };
  std::vector<Symbol> sym(n);
  for (int k = 0; k < n; ++k) sym[k] = {byte_id_[uint8_t(piece[k])], k - 1, k + 1 < n ? k + 1 : -1};
  struct Candidate {
    uint32_t rank;
    int pos;
    int32_t left, right, merged;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  const auto push = [&](int pos) {
    const int nx = sym[pos].next;
    if (nx < 0) return;
    auto it = merges_.find((uint64_t(uint32_t(sym[pos].id)) << 32) | uint32_t(sym[nx].id));
    if (it == merges_.end()) return;
    heap.push({uint32_t(it->second >> 32), pos, sym[pos].id, sym[nx].id, int32_t(uint32_t(it->second))});
  };
  for (int k = 0; k + 1 < n; ++k) push(k);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    Symbol& s = sym[c.pos];
    if (s.id != c.left || s.next < 0 || sym[s.next].id != c.right) continue;  // stale
    const int gone = s.next;
    s.id = c.merged;
    s.next = sym[gone].next;
    if (s.next >= 0) sym[s.next].prev = c.pos;
    sym[gone].id = -1;
    if (s.prev >= 0) push(s.prev);
    push(c.pos);
  }
  for (int k = 0; k >= 0; k = sym[k].next) out.push_back(sym[k].id);
}

// ---- decoding ------------------------------------------------------------------------------------

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string bytes;
  for (int32_t id : ids) {
    const std::string& b = token_bytes(id);
    if (skip_special && is_special(id)) continue;
    bytes += b;
  }
  // Invalid UTF-8 (a multi-byte character cut between tokens) becomes U+FFFD, one per maximal
  // ill-formed subpart, as Rust's from_utf8_lossy and Python's errors="replace" do.
  std::string out;
  out.reserve(bytes.size());
  const auto u = [&](size_t k) { return static_cast<unsigned char>(bytes[k]); };
  for (size_t i = 0; i < bytes.size();) {
    const unsigned char c0 = u(i);
    int n = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte (Unicode Table 3-7)
    if (c0 < 0x80) n = 1;
    else if (c0 >= 0xC2 && c0 <= 0xDF) n = 2;
    else if (c0 >= 0xE0 && c0 <= 0xEF) { n = 3; if (c0 == 0xE0) lo = 0xA0; if (c0 == 0xED) hi = 0x9F; }
    else if (c0 >= 0xF0 && c0 <= 0xF4) { n = 4; if (c0 == 0xF0) lo = 0x90; if (c0 == 0xF4) hi = 0x8F; }
    int k = 1;
    for (; n > 1 && k < n && i + k < bytes.size(); ++k) {
      const unsigned char ck = u(i + k);
      if (k == 1 ? (ck < lo || ck > hi) : (ck & 0xC0) != 0x80) break;
    }
    if (n > 0 && k == n) {
      out.append(bytes, i, n);
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      i += std::max(k, 1);
    }
  }
  return out;
}

}  // namespace vt::tok
