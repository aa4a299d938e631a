// evaluate.h: ShapeWorld's judges over a dataset directory: GenEval-style scoring of generated
// images, exact-match and POPE scoring of understanding answers, and scoring of edited images.
//
// Bad input never stops an evaluation: a record that does not parse, an image that is missing or
// undecodable, an answer that is absent: each becomes a line in `errors` that names the record,
// and the record counts as a failure in its category (and in the totals).
#pragma once
#include <array>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "shapeworld/detect.h"
#include "shapeworld/geneval.h"
#include "shapeworld/render.h"

namespace vt::shapes {

struct Score {
  int correct = 0, total = 0;
  double accuracy() const { return total ? double(correct) / double(total) : 0.0; }
  void add(bool ok) { correct += ok, total += 1; }
};

struct EvalOptions {
  std::string data_dir;            // a directory written by make_dataset
  std::string split = "test";
  std::string images_dir;          // generated/edited images named <record id>.png; empty: ground truth
  std::string answers_path;        // understanding answers (JSON lines or a JSON array)
  DetectOptions detect;
  std::function<void(const char* stage, size_t done, size_t total)> progress;
};

// What the judge takes from a dataset's manifest.json: the image size (0 when there is no readable
// manifest) and the object scale (1 when the manifest has none). A present but mistyped or
// out-of-range object_scale is an error naming the manifest.
struct DatasetInfo {
  int size = 0;
  float object_scale = 1.0f;
  // `base` with this dataset's object scale: what the judges detect with.
  DetectOptions detect(DetectOptions base = {}) const {
    base.object_scale = object_scale;
    return base;
  }
};
DatasetInfo read_dataset_info(const std::string& data_dir);

// Reads a JSON array file (or JSON lines); throws vt::Error naming the file and the line (and, in
// an array, the column) of a syntax error. An empty file gives no records; the evaluations below
// refuse that, and an images_dir that is not a folder, instead of scoring 0.
std::vector<nlohmann::json> load_records(const std::string& path);

// ---- generation ---------------------------------------------------------------------------------
struct GenImageResult {
  std::string id;
  int tag = -1;  // Tag, or -1 when the metadata did not parse
  bool heldout = false;
  bool correct = false;
  std::string failure;  // failure_name(), or "error"
  std::string detail;
};

struct GenReport {
  std::array<Score, kNumTags> by_tag{};
  Score all, heldout;
  std::map<std::string, int> failures;  // failure kind -> images
  std::vector<std::string> errors;      // "<record id>: <what went wrong>"
  std::vector<GenImageResult> images;
  std::string split;
  // GenEval's overall score: the mean of the per-category accuracies (categories with images).
  double overall() const;
  std::string table() const;  // the paper's GenEval table layout, as text
  nlohmann::json to_json() const;
};

// Scores records (generation.json entries) with images from `load(record, id)`.
GenReport evaluate_generation_records(const std::vector<nlohmann::json>& records,
                                      const std::function<Image(const nlohmann::json&, const std::string&)>& load,
                                      const EvalOptions& options);
GenReport evaluate_generation(const EvalOptions& options);

// ---- understanding ------------------------------------------------------------------------------
struct PopeScore {
  int tp = 0, fp = 0, tn = 0, fn = 0;
  int total() const { return tp + fp + tn + fn; }
  double accuracy() const { return total() ? double(tp + tn) / total() : 0.0; }
  double precision() const { return tp + fp ? double(tp) / (tp + fp) : 0.0; }
  double recall() const { return tp + fn ? double(tp) / (tp + fn) : 0.0; }
  double f1() const {
    double p = precision(), r = recall();
    return p + r > 0 ? 2 * p * r / (p + r) : 0.0;
  }
  double yes_ratio() const { return total() ? double(tp + fp) / total() : 0.0; }
};

// Whether `answer` matches `reference` for a task after normalisation (language.h): numbers for
// count, colour words for color, yes/no for exist, left/right/above/below for position, and the
// multiset of (colour, shape) for describe.
bool answer_matches(const std::string& task, const std::string& answer, const std::string& reference);

struct UnderstandingReport {
  std::map<std::string, Score> by_task;
  Score all;
  std::array<PopeScore, 3> pope{};  // random, popular, adversarial; a yes/no-less answer counts wrong
  std::vector<std::string> errors;
  std::string table() const;
  nlohmann::json to_json() const;
};

// Record id -> answer text, from JSON lines or a JSON array of {"id"|"question_id", "answer"|"text"}.
// Entries that do not parse are reported in `errors` (naming the line) and skipped; a file that
// cannot be read throws vt::Error.
std::map<std::string, std::string> load_answers(const std::string& path, std::vector<std::string>& errors);
UnderstandingReport score_understanding(const std::vector<nlohmann::json>& records,
                                        const std::map<std::string, std::string>& answers);
UnderstandingReport evaluate_understanding(const EvalOptions& options);

// ---- editing ------------------------------------------------------------------------------------
struct EditVerdict {
  bool correct = false;
  bool edit_ok = false;     // the edited attribute changed as asked
  int kept = 0, to_keep = 0;  // untouched objects found again (same shape, colour, place)
  int extra = 0;            // detections nobody asked for
  std::string detail;
};
// Judges detections in an edited image against an editing.json record; `image_size` scales the
// record's coordinates when the image is not the dataset's size.
EditVerdict judge_edit(const nlohmann::json& record, const std::vector<Detection>& detections, int image_size,
                       int dataset_size);
// The whole judgement of one edited image: detection, then a failure ("clutter") when the stray
// colour exceeds kMaxStrayColor (geneval.h), else judge_edit.
EditVerdict judge_edit_image(const nlohmann::json& record, const Image& image, int dataset_size,
                             const DetectOptions& options = {});

struct EditReport {
  std::array<Score, 4> by_op{};  // recolor, remove, add, move
  Score all, edit_ok;
  int kept = 0, to_keep = 0;
  std::vector<std::string> errors;
  std::string table() const;
  nlohmann::json to_json() const;
};
EditReport evaluate_edits(const EvalOptions& options);

}  // namespace vt::shapes
