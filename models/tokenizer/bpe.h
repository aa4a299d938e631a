// bpe.h: the Qwen2 byte-level BPE tokenizer, read from a Hugging Face tokenizer.json.
//
// Encoding (qwen2_vl.md §12.3): added tokens are split out first by exact match on the raw text
// (leftmost-longest), the text between them is NFC-normalised, cut into pieces by the Qwen2
// pre-tokenisation pattern (a hand-written scanner, see pretokenize), and each piece's UTF-8 bytes
// are merged by BPE rank. Decoding concatenates token bytes and replaces invalid UTF-8 with U+FFFD.
//
// Tokens are held as raw bytes: the GPT-2 byte-to-unicode mapping of tokenizer.json's vocab keys
// ("Ġ" for a space) is undone once at load time, so it never runs per token.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace vt::tok {

struct AddedToken {
  int32_t id;
  std::string content;
  bool special;  // skipped by decode(..., skip_special = true)
};

// The Qwen2 pattern (qwen2_vl.md §12.2) as a scanner: appends [begin, end) code-point ranges that
// cover `text` in order.
void pretokenize(std::u32string_view text, std::vector<std::pair<uint32_t, uint32_t>>& pieces);

// A token id from tokenizer.json (a vocab value or an added token's "id"), read as a 64-bit integer
// so that 2^32 + 5 is not taken as 5. Refuses non-integers, negatives and ids >= kMaxTokenId with a
// vt::Error naming `origin`, the token and the id. The bound is checked before the id-indexed tables
// are allocated (~40 bytes an id: 4.2M ids ~ 170 MB); Qwen2 has 151,665 ids, the largest public
// vocabularies about 260,000.
inline constexpr int64_t kMaxTokenId = int64_t(1) << 22;
int32_t read_token_id(const nlohmann::json& value, const std::string& origin, std::string_view token);

// GPT-2's bytes_to_unicode: printable bytes map to themselves, the other 68 to U+0100 + n.
char32_t byte_to_unicode(uint8_t b);

class Tokenizer {
 public:
  // Reads a tokenizer.json; `origin` names the file in error messages.
  static Tokenizer from_file(const std::string& path);
  static Tokenizer from_json(const nlohmann::json& j, const std::string& origin);

  // Text -> ids. Added tokens in the text are recognised. Invalid UTF-8 throws vt::Error with the
  // byte offset. Safe to call from several threads (the word cache is locked per call).
  std::vector<int32_t> encode(std::string_view text) const;
  // Ids -> text. Ids outside the vocabulary throw.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;

  // The id of a regular or added token given as text (added tokens by content, regular tokens by
  // their raw bytes); -1 when absent. token_id() throws instead, naming the token.
  int32_t find_token(std::string_view token) const;
  int32_t token_id(std::string_view token) const;
  // Raw bytes of a regular token, or the content of an added one.
  const std::string& token_bytes(int32_t id) const;
  bool is_special(int32_t id) const;
  size_t vocab_size() const { return id_to_bytes_.size(); }  // largest id + 1
  const std::vector<AddedToken>& added_tokens() const { return added_; }

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

 private:
  // from_json without the translation of nlohmann's exceptions into vt::Error.
  static Tokenizer from_json_checked(const nlohmann::json& j, const std::string& origin);
  Tokenizer();
  void encode_segment(std::string_view text, std::vector<int32_t>& out) const;
  void bpe_piece(std::string_view piece, std::vector<int32_t>& out) const;
  size_t match_added(std::string_view text, size_t pos) const;  // length of the longest match, 0 if none

  std::vector<std::string> id_to_bytes_;
  std::vector<uint8_t> id_is_special_;
  std::unordered_map<std::string, int32_t> bytes_to_id_;  // regular tokens by raw bytes
  std::unordered_map<uint64_t, uint64_t> merges_;         // (left << 32 | right) -> (rank << 32 | merged)
  int32_t byte_id_[256];
  std::vector<AddedToken> added_;
  std::unordered_map<std::string, int32_t> added_to_id_;
  std::vector<std::vector<uint32_t>> added_by_first_byte_;  // indices into added_, longest first

  struct Cache;
  std::unique_ptr<Cache> cache_;  // piece bytes -> ids, bounded
};

}  // namespace vt::tok
