// commands.h: the subcommands of the `vargpt` command line.
//
// Each subcommand is one function `int cmd_xxx(int argc, char** argv)` in its own apps/cmd_xxx.cpp,
// called with argv[0] = "xxx" and the remaining arguments. To add one: declare it here and add one
// line to the table in apps/vargpt.cpp. Functions return the process exit status; they may throw
// vt::Error, which main() prints as "vargpt xxx: error: <message>" with exit status 1.
#pragma once
#include <cstdint>
#include <string>
#include <utility>

int cmd_shapes(int argc, char** argv);  // ShapeWorld data and evaluation (apps/cmd_shapes.cpp)
int cmd_vae(int argc, char** argv);     // BSQ-VAE tokenizer: encode, decode, round trip (apps/cmd_vae.cpp)
int cmd_chat(int argc, char** argv);    // Qwen2 / Qwen2-VL / VARGPT chat with images (apps/cmd_chat.cpp)
int cmd_generate(int argc, char** argv);  // VARGPT text to image, batched (apps/cmd_generate.cpp)
int cmd_edit(int argc, char** argv);      // VARGPT image editing (apps/cmd_generate.cpp)
int cmd_train(int argc, char** argv);     // one training phase from a recipe (apps/cmd_train.cpp)
int cmd_init(int argc, char** argv);      // a VARGPT model of given sizes from random weights (apps/cmd_init.cpp)
int cmd_eval(int argc, char** argv);      // a VARGPT checkpoint on a ShapeWorld split, judged (apps/cmd_eval.cpp)
int cmd_tokenizer(int argc, char** argv);  // a vocabulary cut from the Qwen2 tokenizer (apps/cmd_tokenizer.cpp)
int cmd_report(int argc, char** argv);     // REPORT.md and its pictures from a demo run's OUT (apps/cmd_report.cpp)

// --size of generate, edit and chat: "256", "512" (square) or "WxH" (width x height) -> (height,
// width); "" -> (0, 0), the model's default. The model's schedules check the size (VargptConfig::
// schedule_for lists the allowed sizes).
// Defined in apps/cmd_generate.cpp.
std::pair<int64_t, int64_t> parse_image_size(const std::string& text);
