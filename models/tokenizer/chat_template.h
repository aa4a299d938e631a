// chat_template.h: Qwen2 ChatML with images, as VARGPT-v1.1 renders it (vargpt.md §3).
//
//   <|im_start|>system\nYou are a helpful assistant.<|im_end|>\n
//   <|im_start|>user\n{text}<|vision_start|><|image_pad|>x N<|vision_end|>{more text}<|im_end|>\n
//   <|im_start|>assistant\n                      (the generation prompt)
//
// N is the number of merged ViT tokens of that image (grid_t * grid_h * grid_w / 4).
#pragma once
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace vt::tok {

constexpr std::string_view kDefaultSystemPrompt = "You are a helpful assistant.";

struct ChatPart {
  enum class Kind { kText, kImage } kind = Kind::kText;
  std::string text;      // kText
  int image_tokens = 0;  // kImage: number of <|image_pad|> tokens
  static ChatPart of_text(std::string t) { return {Kind::kText, std::move(t), 0}; }
  static ChatPart of_image(int n) { return {Kind::kImage, {}, n}; }
};

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::vector<ChatPart> content;
};

// <|vision_start|> + n x <|image_pad|> + <|vision_end|>
std::string image_placeholder(int n);
// VARGPT's <image_gen> expansion: <|image_gen_start|> + n x <|image_gen_pad|> + <|image_gen_end|>
// (n = 2560 at 512x512, 640 at 256x256).
std::string image_gen_span(int n);

// Renders the conversation. When the first message is not a system message, `default_system` is
// prepended as one (Qwen2-VL's template does the same). add_generation_prompt appends
// "<|im_start|>assistant\n". Unknown roles, empty images and misplaced system messages throw.
std::string apply_chat_template(std::span<const ChatMessage> messages, bool add_generation_prompt = true,
                                std::string_view default_system = kDefaultSystemPrompt);

}  // namespace vt::tok
