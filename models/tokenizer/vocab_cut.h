// vocab_cut.h: a small vocabulary cut from a byte-level BPE tokenizer.json, for a miniature model
// whose embedding cannot afford Qwen2's 151k rows (the ShapeWorld VARGPT trained on CPU).
//
//   full tokenizer.json + corpus texts
//     --encode each text with the full tokenizer--> the regular tokens the corpus uses
//     + the 256 byte tokens (any text still encodes, byte by byte at worst)
//     --closure: each kept token's producing merge (left + right = token) keeps left and right,
//       recursively--> the kept set
//     --renumber: kept tokens 0..R-1 in the source's id order; then every added token of the source
//       (in id order), then the extra added tokens the source lacks (VARGPT's generation tokens)-->
//     cut tokenizer.json: same normalizer, pre-tokenizer, decoder, post-processor; merges are the
//     source's, in rank order, restricted to kept (left, right, left + right)
//
// Contract: for every corpus text, the cut tokenizer's ids map through id_map to exactly the full
// tokenizer's ids (cut_vocabulary checks this before returning; "full" means the source with the
// extra tokens added when it lacks them, so they split out of the text the same way in both). Why it holds: BPE applies the
// lowest-ranked applicable merge until none applies. Every merge the full tokenizer applies to a
// corpus piece builds a token that is either in the output or consumed by a later merge, so all of
// them are in the closure and kept; the kept merges are a rank-ordered subset of the full ones, so
// at every step the full tokenizer's choice is still the lowest-ranked applicable kept merge.
// Text outside the corpus still encodes and decodes exactly, only into more (shorter) tokens.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace vt::tok {

struct CutOptions {
  // Added tokens appended, in this order, after the source's added tokens when the source lacks
  // them (VARGPT's generation tokens, vargpt.md §2; the released VARGPT tokenizer has them).
  std::vector<std::string> extra_special_tokens = {"<|image_gen_start|>", "<|image_gen_end|>", "<|image_gen_pad|>"};
  std::string origin = "tokenizer.json";  // names the source in error messages
  bool verify = true;                     // re-encode the corpus with the cut tokenizer and compare
};

struct VocabularyCut {
  nlohmann::json tokenizer;         // the cut tokenizer.json
  std::vector<int32_t> id_map;      // new id -> source id; -1 for an extra token the source lacks
  int32_t regular_tokens = 0;       // ids [0, regular_tokens) are BPE tokens; added tokens follow
  int64_t merges = 0;               // merges kept
  int64_t corpus_tokens = 0;        // regular tokens the corpus itself uses (before the closure)

  int32_t vocab_size() const { return int32_t(id_map.size()); }
  // {"vocab_size", "regular_tokens", "merges", "corpus_tokens", "special_tokens": [{"content",
  // "id", "source_id"}, ...], "id_map": [source id of new id 0, 1, ...]}; `source` names the input.
  nlohmann::json summary(const std::string& source) const;
};

// Cuts `full_tokenizer_json` (a Hugging Face byte-level BPE tokenizer.json, as tok::Tokenizer reads)
// down to what `corpus` needs, as described above. Errors name options.origin and the problem (no
// BPE model, an added token that is also a vocab entry, a post-processor that carries token ids).
VocabularyCut cut_vocabulary(const nlohmann::json& full_tokenizer_json, const std::vector<std::string>& corpus,
                             const CutOptions& options = {});

// The fixed text of the ChatML template (chat_template.h): the default system prompt, the role
// names, the newlines, and a rendered conversation with an image and an <image_gen> span. Add
// these to a corpus so the template's own pieces are in the cut.
std::vector<std::string> chat_template_corpus();

// "DIR/tokenizer.json" -> "DIR/tokenizer.id_map.json": where the summary goes.
std::string id_map_path(const std::string& tokenizer_path);

// Writes cut.tokenizer to `tokenizer_path` and cut.summary(source) to id_map_path(tokenizer_path),
// each atomically (temporary file, then rename); creates the directory. Errors name the file.
void write_vocabulary_cut(const VocabularyCut& cut, const std::string& tokenizer_path, const std::string& source);

}  // namespace vt::tok
