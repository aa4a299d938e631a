// train/report.h: the run report of the ShapeWorld miniature (scripts/main_job.sh), made from what
// the run left in OUT; no model is loaded and no plotting library is used:
//
//   OUT/<stage>/log.jsonl ------------------> loss_curves.png (one panel per stage) + first/last numbers
//   OUT/eval/<name>.json -------------------> headline table per evaluation, before vs each later one
//   OUT/eval/<last>/gen/<id>.png, DATA/<split>/generation.json (prompts, ground-truth images),
//   the last evaluation's per-image verdicts -> samples.png (green border: judged correct, red: wrong)
//   --times FILE ("stage seconds" lines) ---> time per stage
//   OUT/init/config.json + safetensors header -> sizes and parameter counts per component
//   all of it --------------------------------> OUT/REPORT.md (written atomically, the PNGs first)
//
// The pictures are rasterised here into shapes::Image: 1-pixel-wide Bresenham lines drawn with a
// 2x2 brush, and text in a built-in 5x7 bitmap font (printable ASCII; 6 px advance per scale unit).
// Their layouts are small structs, so a test can find each panel's plot area and each sample's
// border without decoding the drawing code.
//
// Missing pieces (a stage without a log, an evaluation without a task, no config) become "-" in the
// tables, an empty panel, or a line in `warnings`; only an unreadable OUT or an unparsable JSON file
// stops the report.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "shapeworld/render.h"

namespace vt::train {

struct ReportOptions {
  std::string out_dir;   // OUT: the demo's output directory
  std::string data_dir;  // the ShapeWorld dataset the evaluations used (prompts, ground truth)
  std::string split = "test";
  std::string title = "ShapeWorld miniature: VARGPT-v1.1 trained from random weights";
  std::string command;   // the run command quoted in the report; empty: not shown
  std::string date;      // empty: today (UTC)
  std::vector<std::string> stages;  // OUT/<stage>/ in this order; empty: every log.jsonl, oldest first
  std::vector<std::string> evals;   // OUT/eval/<name>.json in this order (the first is "before");
                                    // empty: every OUT/eval/*.json, oldest first
  std::string times_path;           // lines "stage seconds" (the stage may contain spaces); empty: none
  int samples = 16;                 // the first N test prompts of the last evaluation
};

struct ReportResult {
  std::string markdown;               // what REPORT.md holds
  std::vector<std::string> warnings;  // what was missing, one line each
};

// Writes OUT/loss_curves.png, OUT/samples.png and OUT/REPORT.md.
ReportResult write_report(const ReportOptions& options);

// ---- the pieces, for tests and other callers --------------------------------------------------------

struct Rgb {
  uint8_t r, g, b;
  bool operator==(const Rgb&) const = default;
};
inline constexpr Rgb kBackground{255, 255, 255};
inline constexpr Rgb kCorrectBorder{30, 170, 50};
inline constexpr Rgb kWrongBorder{215, 35, 35};
inline constexpr Rgb kUnjudgedBorder{150, 150, 150};  // an image the evaluation JSON does not list
// Curve i of a panel gets colour i (tab10's blue, orange, green, purple).
inline constexpr Rgb kCurveColors[4] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {148, 103, 189}};

struct Rect {
  int x0 = 0, y0 = 0, x1 = 0, y1 = 0;  // [x0, x1) x [y0, y1)
};

// A log.jsonl as JSON objects, one per line (blank lines skipped); throws vt::Error naming the file
// and line of a line that does not parse.
std::vector<nlohmann::json> read_log(const std::string& path);

// One plotted series: (step, value) pairs of the rows that have a number under `key`. Axis 0 is the
// left y axis, 1 the right one (for a second quantity of another scale).
struct Curve {
  std::string key;
  int axis = 0;
  std::vector<std::pair<double, double>> points;
};
struct StagePlot {
  std::string stage;
  std::vector<Curve> curves;  // empty: nothing to plot (no log, or no known keys)
};
// The curves of a stage by what its log holds: DPO (rewards/margins logged): loss | rewards/margins;
// the tokenizer (psnr logged): l1 | psnr; otherwise loss, image_loss, text_loss on one axis.
StagePlot stage_curves(const std::string& stage, const std::vector<nlohmann::json>& log);

struct LossCurvesLayout {
  static constexpr int kPanelWidth = 360, kPanelHeight = 220, kMargin = 10, kHeader = 30, kMaxColumns = 4;
  int panels = 0, cols = 1, rows = 1;
  explicit LossCurvesLayout(int n_panels);
  int width() const;
  int height() const;
  Rect panel(int i) const;  // the whole panel
  Rect plot(int i) const;   // the area the curves are drawn in (frame excluded)
};
shapes::Image draw_loss_curves(const std::vector<StagePlot>& stages);

struct Sample {
  std::string id, prompt;       // the record id and its GenEval prompt (the caption)
  std::optional<bool> correct;  // the evaluation's verdict; nullopt: not judged
  std::string image_path;       // the generated image; unreadable: a grey "missing" tile
  std::string truth_path;       // the ground-truth render; empty or unreadable: an empty frame
};

// A grid of pairs [generated | ground truth], each image framed by a kBorder-wide border and shown
// at kImage x kImage (nearest-neighbour), with the caption below the pair.
struct SamplesLayout {
  static constexpr int kImage = 128, kBorder = 4, kFrame = kImage + 2 * kBorder, kPairGap = 6,
                       kCaption = 42, kCellWidth = 2 * kFrame + kPairGap, kCellHeight = kFrame + 4 + kCaption,
                       kGapX = 16, kGapY = 12, kMargin = 12, kHeader = 40, kMaxColumns = 4;
  int count = 0, cols = 1, rows = 1;
  explicit SamplesLayout(int n_samples);
  int width() const;
  int height() const;
  Rect generated(int i) const;  // sample i's generated image with its border
  Rect truth(int i) const;      // its ground-truth image with its (grey) border
};
shapes::Image draw_samples(const std::vector<Sample>& samples, const std::string& title);

// The sample grid of a training run (train/samples.h): one generated image per prompt, framed by a
// kBorder-wide grey border, with the prompt below. An image of side s is shown at side() =
// s·ceil(128 / s) when s < 128 (whole-number nearest-neighbour upscaling), else at min(s, 256).
struct SampleGridLayout {
  static constexpr int kBorder = 2, kMinCellWidth = 176, kCaption = 42, kGapX = 16, kGapY = 12, kMargin = 12,
                       kHeader = 26, kMaxColumns = 4;
  int count = 0, cols = 1, rows = 1, shown = 128;
  SampleGridLayout(int n_images, int image_side);
  int cell_width() const;
  int width() const;
  int height() const;
  Rect image(int i) const;  // image i as shown, inside its border
};
// `images` all square of one side; captions[i] goes under images[i].
shapes::Image draw_sample_grid(const std::vector<shapes::Image>& images, const std::vector<std::string>& captions,
                               const std::string& title);

// Parameter counts per top-level component (the first dotted part of each tensor name: "model",
// "visual", "vargpt_gen", ...), by summing the shapes in the safetensors header(s) of `model_dir`.
std::vector<std::pair<std::string, int64_t>> parameter_counts(const std::string& model_dir);

// "stage seconds" lines: the last field is the seconds ("12", "12s" and "12 s" all work), the
// rest the stage's name; blank and '#' lines are skipped, other malformed lines go to `warnings`.
std::vector<std::pair<std::string, double>> read_stage_times(const std::string& path,
                                                              std::vector<std::string>& warnings);

}  // namespace vt::train
