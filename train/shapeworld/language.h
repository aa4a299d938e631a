// language.h: the words of ShapeWorld: noun phrases, the paper's prompt templates, scene
// descriptions, and the answer normalisation the understanding scorer relies on.
#pragma once
#include <array>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shapeworld/geneval.h"
#include "shapeworld/scene.h"

namespace vt::shapes {

std::string number_word(int n);  // 0..20 -> "zero".."twenty", else digits

// "a circle", "a red circle", "a small red circle", "three circles", "three red circles".
std::string noun_phrase(Shape s, int color = -1, int count = 1, const SizeClass* size = nullptr);

// The phrase p of a GenEval prompt, built from its metadata:
//   single_object "a circle"; two_object "a circle and a square"; counting "three circles";
//   colors "a red circle"; position "a circle to the left of a square" (include 1 relative to
//   include 0); color_attr "a red circle and a blue square".
std::string geneval_phrase(const GenEvalMeta& m);

// User prompts in the phrasings of the paper's demo and evaluation data (spec vargpt.md §3).
inline constexpr int kNumPromptTemplates = 3;
std::string t2i_prompt(const std::string& phrase, int template_index);
// The generation training target: "Here's a rendered painting of {p}.<image_gen>".
std::string t2i_reply(const std::string& phrase);

// "The image shows a small red circle and a large blue square." (objects left to right).
std::string describe_scene(const Scene& scene);

// Answer normalisation. Each returns -1 when the text holds no answer of that kind.
int normalize_count(std::string_view text);     // "3", "three", "There are 3." -> 3
int normalize_color(std::string_view text);     // palette index; violet/magenta -> purple, teal -> cyan
int normalize_yes_no(std::string_view text);    // 1 yes, 0 no
int normalize_relation(std::string_view text);  // Relation: left/right/above(top, up)/below(under, bottom)

// (colour, shape) -> count, read from a free description. A shape word takes the nearest colour
// and number word among the three words before it; a missing number counts 1, a missing colour -1.
using ObjectCounts = std::map<std::pair<int, int>, int>;
ObjectCounts parse_description(std::string_view text);
ObjectCounts count_objects(const Scene& scene);

// Lower-case words of the text (letters and digits; everything else separates).
std::vector<std::string> words_of(std::string_view text);

}  // namespace vt::shapes
