// fuzz_chat.cpp: chat input through the chat template and a real tokenizer (the tiny chat fixture's
// tokenizer.json, which has Qwen2's special tokens). The input is a conversation: lines starting
// "user:", "assistant:" or "system:" open a message; "<image N>" inside a message is an image of N
// pad tokens. Rendering may refuse (vt::Error); what renders must encode, and decode back to its
// NFC form (the fixture normalises to NFC, as Qwen2's does; byte-level BPE loses nothing else).
// Text that is not UTF-8 must be refused by encode with vt::Error.
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "tokenizer/bpe.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/unicode.h"

#ifndef VT_FUZZ_TOKENIZER
#error "VT_FUZZ_TOKENIZER (a tokenizer.json path) must be defined by the build"
#endif

namespace {

std::vector<vt::tok::ChatMessage> parse_conversation(const std::string& in) {
  std::vector<vt::tok::ChatMessage> messages;
  size_t pos = 0;
  while (pos < in.size()) {
    size_t end = in.find('\n', pos);
    if (end == std::string::npos) end = in.size();
    std::string line = in.substr(pos, end - pos);
    pos = end + 1;
    const size_t colon = line.find(':');
    if (colon != std::string::npos && colon < 12 && line.find(' ') > colon) {
      messages.push_back({line.substr(0, colon), {}});
      line = line.substr(colon + 1);
    }
    if (messages.empty()) messages.push_back({"user", {}});
    auto& content = messages.back().content;
    for (size_t at; (at = line.find("<image ")) != std::string::npos;) {
      content.push_back(vt::tok::ChatPart::of_text(line.substr(0, at)));
      const size_t close = line.find('>', at);
      const std::string n = line.substr(at + 7, close == std::string::npos ? std::string::npos : close - at - 7);
      content.push_back(vt::tok::ChatPart::of_image(int(std::strtol(n.c_str(), nullptr, 10) % 4096)));
      line = close == std::string::npos ? "" : line.substr(close + 1);
    }
    content.push_back(vt::tok::ChatPart::of_text(line));
  }
  return messages;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const vt::tok::Tokenizer tokenizer = vt::tok::Tokenizer::from_file(VT_FUZZ_TOKENIZER);
  const std::vector<vt::tok::ChatMessage> messages =
      parse_conversation(std::string(reinterpret_cast<const char*>(data), size));
  vt::fuzz::expect_vt_errors_only([&] {
    const std::string text = vt::tok::apply_chat_template(messages, size % 2 == 0);
    const std::vector<int32_t> ids = tokenizer.encode(text);
    for (int32_t id : ids)
      vt::fuzz::require(id >= 0 && size_t(id) < tokenizer.vocab_size(), "encode gives ids inside the vocabulary");
    const std::string normal = vt::unicode::encode_utf8(vt::unicode::nfc(vt::unicode::decode_utf8(text)));
    vt::fuzz::require(tokenizer.decode(ids) == normal, "decode(encode(text)) == NFC(text)");
  });
  return 0;
}
