// geneval.h: GenEval-style prompt metadata and the judge that scores one image against it.
//
// The metadata follows GenEval's evaluation_metadata.jsonl, with ShapeWorld kinds as classes:
//   {"tag": "position", "prompt": "a circle to the left of a square",
//    "include": [{"class": "square", "count": 1},
//                {"class": "circle", "count": 1, "position": ["left of", 0]}],
//    "exclude": []}
// An include asks for at least `count` objects of `class` (all of `color` when given; the
// position entry [relation, j] asks that one of them stands in that relation to include j). An
// exclude fails the image when `count` or more objects of `class` are present; counting prompts
// use it to forbid n+1.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "shapeworld/detect.h"
#include "shapeworld/scene.h"

namespace vt::shapes {

// The six GenEval categories, in the column order of the paper's table.
enum class Tag : uint8_t { single_object, two_object, counting, colors, position, color_attr };
inline constexpr int kNumTags = 6;
const char* tag_name(Tag t);     // "single_object", ...
const char* tag_title(Tag t);    // "Single Obj.", ... (table header)
Tag parse_tag(std::string_view name, std::string_view what);

struct Requirement {
  Shape shape = Shape::circle;
  int count = 1;
  int color = -1;  // -1: any colour
  std::optional<std::pair<Relation, int>> position;  // relation to include[index]
};

struct GenEvalMeta {
  Tag tag = Tag::single_object;
  std::string prompt;  // the noun phrase p, e.g. "a red circle and a blue square"
  std::vector<Requirement> include, exclude;
};

nlohmann::json geneval_to_json(const GenEvalMeta& m);
// Throws vt::Error naming `what` (a record id) when a field is missing or malformed.
GenEvalMeta geneval_from_json(const nlohmann::json& j, std::string_view what);

// Which check failed first. Checks run in this order over all requirements: presence ("missing":
// no object of a required class), number ("count": too few, or an exclude hit), colour ("color":
// fewer than `count` of the class have the colour), position ("position").
enum class Failure : uint8_t { none, missing, count, color, position, clutter };
const char* failure_name(Failure f);  // "", "missing", "count", "color", "position", "clutter"

struct Verdict {
  bool correct = false;
  Failure failure = Failure::none;
  std::string detail;  // human-readable reason, e.g. "found 2 circle, need 3"
};

Verdict judge_geneval(const GenEvalMeta& meta, const std::vector<Detection>& detections);

// The most stray colour (detect.h) an image may carry and still be judged. Measured on 64 px
// ShapeWorld: renders 0, renders saved as JPEG quality 30 (4:2:0) at most 0.0034, the miniature
// tokenizer's round trips at most 0.0017; the miniature generator's speckled samples a median of
// 0.09, whose blobs the templates sometimes fit (before this rule 29 of 120 such images passed).
inline constexpr float kMaxStrayColor = 0.01f;
// The clutter verdict's detail when `stray_color` exceeds kMaxStrayColor; empty otherwise. Both
// whole-image judges (generation here, edits in evaluate.h) start with it.
std::string clutter_detail(float stray_color);
// The whole judgement of one image: detection, then `clutter` when the stray colour exceeds
// kMaxStrayColor, else judge_geneval.
Verdict judge_geneval_image(const GenEvalMeta& meta, const Image& image, const DetectOptions& options = {});

}  // namespace vt::shapes
