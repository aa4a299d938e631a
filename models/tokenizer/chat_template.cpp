// chat_template.cpp: ChatML rendering (see chat_template.h).
#include "tokenizer/chat_template.h"

#include "vt/error.h"

namespace vt::tok {
namespace {

std::string repeat_between(std::string_view open, std::string_view pad, std::string_view close, int n,
                           const char* what) {
  VT_CHECK(n > 0, "chat template: ", what, " needs at least one pad token, got ", n);
  std::string s;
  s.reserve(open.size() + close.size() + pad.size() * size_t(n));
  s += open;
  for (int k = 0; k < n; ++k) s += pad;
  s += close;
  return s;
}

void render_turn(std::string& out, std::string_view role, std::span<const ChatPart> parts) {
  out += "<|im_start|>";
  out += role;
  out += '\n';
  for (const ChatPart& p : parts) {
    if (p.kind == ChatPart::Kind::kText) out += p.text;
    else out += image_placeholder(p.image_tokens);
  }
  out += "<|im_end|>\n";
}

}  // namespace

std::string image_placeholder(int n) {
  return repeat_between("<|vision_start|>", "<|image_pad|>", "<|vision_end|>", n, "an image");
}

std::string image_gen_span(int n) {
  return repeat_between("<|image_gen_start|>", "<|image_gen_pad|>", "<|image_gen_end|>", n, "an image_gen span");
}

std::string apply_chat_template(std::span<const ChatMessage> messages, bool add_generation_prompt,
                                std::string_view default_system) {
  std::string out;
  if (messages.empty() || messages[0].role != "system") {
    const ChatPart system = ChatPart::of_text(std::string(default_system));
    render_turn(out, "system", std::span<const ChatPart>(&system, 1));
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    VT_CHECK(m.role == "system" || m.role == "user" || m.role == "assistant", "chat template: message ", i,
             " has role '", m.role, "'; expected system, user or assistant");
    VT_CHECK(m.role != "system" || i == 0, "chat template: message ", i,
             " is a system message; only the first message may be one");
    render_turn(out, m.role, m.content);
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

}  // namespace vt::tok
