// fuzz_tokenizer.cpp: tokenizer.json files. A file either loads or throws vt::Error; a loaded
// tokenizer then encodes a fixed text holding ASCII, multi-byte UTF-8 and every added token, and
// every id it gives must lie in its vocabulary and decode.
#include <string>

#include "fuzz_util.h"
#include "tokenizer/bpe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = vt::fuzz::write_input("tokenizer.json", data, size);
  vt::fuzz::expect_vt_errors_only([&] {
    const vt::tok::Tokenizer t = vt::tok::Tokenizer::from_file(path);
    std::string text = "Hello, world!  x=1+2\n\xc3\xa9t\xc3\xa9 \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x98\x80";
    for (const vt::tok::AddedToken& a : t.added_tokens()) text += a.content + " ";
    const std::vector<int32_t> ids = t.encode(text);
    for (int32_t id : ids)
      vt::fuzz::require(id >= 0 && size_t(id) < t.vocab_size(), "encode gives ids inside the vocabulary");
    (void)t.decode(ids);
    for (const vt::tok::AddedToken& a : t.added_tokens())
      vt::fuzz::require(a.id >= 0 && size_t(a.id) < t.vocab_size(), "added token ids lie inside the vocabulary");
  });
  return 0;
}
