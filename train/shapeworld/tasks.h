// tasks.h: what one ShapeWorld scene turns into: a GenEval-style generation sample, a render that
// violates it on purpose, an edit, and understanding questions. Pure functions of their inputs and
// an Rng; the dataset writer (dataset.h) and the tests call them.
#pragma once
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "shapeworld/geneval.h"
#include "shapeworld/scene.h"

namespace vt::shapes {

// What a split may draw. In the train split no object anywhere takes a held-out (colour, shape)
// pair; in the test split half of the colour prompts name one on purpose.
struct SplitContext {
  int size = 128;
  bool train = true;
  HeldOut heldout;
  float noise_sigma = 0;
  bool plain = false;  // uniform backgrounds (sample_background)
  float object_scale = 1;  // half_extent's multiplier
  // (colour, shape) pairs by decreasing frequency in the train split: POPE's "popular" negatives.
  std::vector<std::pair<int, int>> popular;

  bool allowed(Shape s, int color) const { return !(train && heldout.contains(s, color)); }
};

struct GenSample {
  GenEvalMeta meta;
  Scene scene;
  bool heldout = false;  // the prompt names a held-out (colour, shape) pair
};

// The scene contains exactly the objects the prompt asks for; unasked attributes are random.
GenSample sample_generation(Tag tag, const SplitContext& ctx, Rng& rng);

enum class Violation : uint8_t { wrong_shape, missing_object, wrong_count, wrong_color, wrong_position };
inline constexpr int kNumViolations = 5;
const char* violation_name(Violation v);  // "shape", "missing", "count", "color", "position"
// The GenEval check that must fail on a render with this violation.
Failure expected_failure(Violation v);
// Whether the violation applies to a tag (e.g. wrong_position only to position prompts).
bool violation_applies(Tag tag, Violation v);
// The violation a preference pair uses for this tag (drawn among the applicable ones).
Violation pick_violation(Tag tag, Rng& rng);
// The scene with one named attribute made wrong; nullopt when the violation does not apply or the
// scene has no room for it. The result never satisfies the prompt.
std::optional<Scene> violate(const GenSample& sample, Violation v, const SplitContext& ctx, Rng& rng);

enum class EditOp : uint8_t { recolor, remove, add, move };
const char* edit_op_name(EditOp op);  // "recolor", "remove", "add", "move"
EditOp parse_edit_op(std::string_view name, std::string_view what);

struct EditSpec {
  EditOp op = EditOp::recolor;
  int object = -1;       // index into the source scene (recolor, remove, move)
  int new_color = -1;    // recolor
  Relation direction = Relation::left_of;  // move: left_of = left, right_of = right, above = up, below = down
  Object added;          // add
  std::string instruction;
  Scene target;
};
// An edit of the scene; every object it names is unique by (colour, shape) in the source.
std::optional<EditSpec> sample_edit(const Scene& source, const SplitContext& ctx, Rng& rng);

struct Question {
  std::string task;      // "count", "color", "exist", "position", "describe"
  std::string question;  // without the <image> token
  std::string answer;    // the reference answer, also the training target
  std::string pope;      // exist only: the POPE negative type of the yes/no pair it belongs to
};
inline constexpr const char* kPopeTypes[3] = {"random", "popular", "adversarial"};
// Questions about a scene: count, colour, one yes and one no existence question (negatives of type
// `pope_type`), position when two objects stand in a clear relation, and a description.
std::vector<Question> sample_questions(const Scene& scene, const SplitContext& ctx, int pope_type, Rng& rng);

}  // namespace vt::shapes
