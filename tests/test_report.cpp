// test_report.cpp: `vargpt report`'s engine (train/report.h) on a fake OUT tree: three stages with
// logs written here (SFT, DPO, the tokenizer), a missing stage, two evaluations whose per-image
// verdicts and solid-colour generated images are known, a times file, a tiny init checkpoint and a
// ShapeWorld dataset for the prompts. REPORT.md must carry the numbers put in; loss_curves.png must
// have each curve's colour inside each panel's plot area (a drawing that plots nothing fails);
// samples.png must have the grid size of the images and the border colour of each verdict. A
// training run's sample grid (draw_sample_grid) must hold each image, upscaled, in its cell.
#include <doctest/doctest.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>

#include "report.h"
#include "shapeworld/dataset.h"
#include "shapeworld/render.h"
#include "vt/io/safetensors.h"

using namespace vt;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

shapes::Image solid(int size, train::Rgb c) {
  shapes::Image im(size, size);
  for (int i = 0; i < size * size; ++i) im.rgb[size_t(3 * i)] = c.r, im.rgb[size_t(3 * i + 1)] = c.g, im.rgb[size_t(3 * i + 2)] = c.b;
  return im;
}

train::Rgb pixel(const shapes::Image& im, int x, int y) {
  const uint8_t* p = im.px(x, y);
  return {p[0], p[1], p[2]};
}

int count_colour(const shapes::Image& im, train::Rect r, train::Rgb c) {
  int n = 0;
  for (int y = r.y0; y < r.y1; ++y)
    for (int x = r.x0; x < r.x1; ++x) n += pixel(im, x, y) == c;
  return n;
}

// An evaluation JSON as `vargpt eval --json` writes it (train/eval.h), with the given verdicts.
json eval_json(double overall, int single_correct, const std::vector<std::pair<std::string, bool>>& verdicts,
               int understand_correct, double edit_overall) {
  json images = json::array();
  for (const auto& [id, ok] : verdicts)
    images.push_back({{"id", id}, {"tag", "single_object"}, {"correct", ok}, {"failure", ok ? "" : "missing"},
                      {"detail", ""}, {"heldout", false}});
  auto score = [](int c, int t) { return json{{"correct", c}, {"total", t}, {"accuracy", double(c) / t}}; };
  json pope = {{"random", {{"accuracy", 0.75}, {"tp", 2}, {"fp", 1}, {"tn", 1}, {"fn", 0}}},
               {"popular", {{"accuracy", 0.0}, {"tp", 0}, {"fp", 0}, {"tn", 0}, {"fn", 0}}},
               {"adversarial", {{"accuracy", 0.5}, {"tp", 1}, {"fp", 1}, {"tn", 0}, {"fn", 0}}}};
  return {{"split", "test"},
          {"gen",
           {{"overall", overall},
            {"categories", {{"single_object", score(single_correct, 3)}, {"two_object", score(1, 3)}}},
            {"images_scored", score(3, 6)},
            {"heldout", score(1, 2)},
            {"images", images}}},
          {"understand", {{"accuracy", understand_correct / 8.0}, {"correct", understand_correct}, {"total", 8},
                          {"tasks", json::object()}, {"pope", pope}}},
          {"edit", {{"overall", edit_overall}, {"edits", score(int(edit_overall * 4), 4)}}},
          {"seconds", {{"total", 1.0}}}};
}

struct FakeRun {
  fs::path root = fs::temp_directory_path() / ("vt_report_" + std::to_string(getpid()));
  fs::path out = root / "out", data = root / "data";
  std::vector<std::string> ids;  // the test prompts with generated images
  train::ReportOptions options;

  FakeRun() {
    fs::remove_all(root);
    shapes::MakeOptions m;
    m.out_dir = data.string();
    m.size = 64;
    m.train = 2;
    m.test = 6;
    m.seed = 3;
    shapes::make_dataset(m);
    for (int i = 0; i < 3; ++i) ids.push_back(shapes::scene_id("test", i));

    write(out / "stage2" / "log.jsonl",
          "{\"step\":1,\"loss\":2.5,\"text_loss\":2.5,\"lr\":0.001}\n"
          "{\"step\":2,\"loss\":2.0,\"text_loss\":1.4,\"image_loss\":0.6,\"bit_accuracy\":0.55}\n"
          "{\"step\":3,\"loss\":1.75,\"text_loss\":1.2,\"image_loss\":0.55,\"bit_accuracy\":0.6}\n"
          "\n"
          "{\"step\":4,\"loss\":1.25,\"text_loss\":0.75,\"image_loss\":0.5,\"bit_accuracy\":0.75}\n");
    write(out / "stage3_dpo" / "log.jsonl",
          "{\"step\":1,\"loss\":0.6931,\"rewards/margins\":0.0}\n"
          "{\"step\":2,\"loss\":0.65,\"rewards/margins\":0.2}\n"
          "{\"step\":3,\"loss\":0.6,\"rewards/margins\":0.42}\n");
    write(out / "bsq_tokenizer" / "log.jsonl",
          "{\"step\":1,\"loss\":0.4,\"l1\":0.4,\"psnr\":12.0}\n"
          "{\"step\":2,\"loss\":0.3,\"l1\":0.3,\"psnr\":15.25}\n"
          "{\"step\":3,\"loss\":0.2,\"l1\":0.2,\"psnr\":21.5}\n");
    write(out / "eval" / "untrained.json", eval_json(0.125, 0, {{ids[0], false}, {ids[1], false}, {ids[2], false}}, 2, 0.0).dump());
    write(out / "eval" / "final.json", eval_json(0.625, 2, {{ids[0], true}, {ids[1], false}, {ids[2], true}}, 6, 0.5).dump());
    fs::create_directories(out / "eval" / "final" / "gen");
    for (int i = 0; i < 3; ++i)
      shapes::write_png((out / "eval" / "final" / "gen" / (ids[size_t(i)] + ".png")).string(),
                        solid(64, {uint8_t(40 * i), 90, 200}));
    write(root / "times.txt", "data, vocabulary, init 12\nstage2 30.5s\n# a comment\n\nstage3_dpo 7 s\n");
    write(out / "init" / "config.json", json{{"hidden_size", 32}, {"num_hidden_layers", 2}, {"vocab_size", 640}}.dump());
    const std::vector<float> w(6 * 4 + 7, 0.0f);
    io::write_sharded((out / "init").string(),
                      {{"model.embed_tokens.weight", DType::F32, {6, 4}, w.data(), 24 * 4},
                       {"lm_head.bias", DType::F32, {7}, w.data(), 7 * 4}},
                      1 << 20);

    options.out_dir = out.string();
    options.data_dir = data.string();
    options.title = "Fake run";
    options.command = "scripts/main_job.sh --quick";
    options.date = "2026-12-07";
    options.stages = {"bsq_tokenizer", "stage2", "stage3_dpo", "missing_stage"};
    options.evals = {"untrained", "final"};
    options.times_path = (root / "times.txt").string();
  }
  ~FakeRun() { fs::remove_all(root); }
};

}  // namespace

TEST_CASE("report: REPORT.md carries the logs', evaluations', times' and model's numbers") {
  FakeRun run;
  const train::ReportResult res = train::write_report(run.options);
  const std::string md = shapes::read_text((run.out / "REPORT.md").string());
  CHECK(md == res.markdown);
  CHECK(md.find("# Fake run") == 0);
  CHECK(md.find("scripts/main_job.sh --quick") != std::string::npos);
  CHECK(md.find("2026-12-07") != std::string::npos);
  // evaluations: overall, single object, held-out, understanding, POPE (popular asked nothing), editing
  CHECK(md.find("| untrained | 0.1250 | 0.0000 (0/3) | 0.5000 (1/2) | 0.2500 (2/8) | 0.7500 (3/4) | 0.5000 (1/2) | "
                "0.0000 (0/4) | 6 / 8 / 4 |") != std::string::npos);
  CHECK(md.find("| final | 0.6250 | 0.6667 (2/3) |") != std::string::npos);
  CHECK(md.find("POPE random") != std::string::npos);
  CHECK(md.find("POPE popular") == std::string::npos);
  CHECK(md.find("| final | +0.5000 | +0.6667 | +0.0000 | +0.5000 |") != std::string::npos);
  // times
  CHECK(md.find("| data, vocabulary, init | 12.0 |") != std::string::npos);
  CHECK(md.find("| stage2 | 30.5 |") != std::string::npos);
  CHECK(md.find("**49.5**") != std::string::npos);
  // logs: first and last loss, last bit accuracy, margins, psnr; the missing stage says so
  CHECK(md.find("| stage2 | 4 | 1-4 | 2.5000 | 1.2500 | 0.7500 | - | - |") != std::string::npos);
  CHECK(md.find("| stage3_dpo | 3 | 1-3 | 0.6931 | 0.6000 | - | 0.4200 | - |") != std::string::npos);
  CHECK(md.find("| bsq_tokenizer | 3 | 1-3 | 0.4000 | 0.2000 | - | - | 21.50 |") != std::string::npos);
  CHECK(md.find("| missing_stage | no log |") != std::string::npos);
  // model: config sizes and the parameters summed from the safetensors header (24 + 7)
  CHECK(md.find("| hidden_size | 32 |") != std::string::npos);
  CHECK(md.find("| model | 24 |") != std::string::npos);
  CHECK(md.find("| lm_head | 7 |") != std::string::npos);
  CHECK(md.find("| **total** | **31** |") != std::string::npos);
  // the pictures, the samples' tally and the filled template
  CHECK(md.find("![loss curves](loss_curves.png)") != std::string::npos);
  CHECK(md.find("![samples](samples.png)") != std::string::npos);
  CHECK(md.find("2 of 3 correct") != std::string::npos);
  CHECK(md.find("`stage2` 2.5000 to 1.2500") != std::string::npos);
  CHECK(md.find("GenEval overall 0.1250 (`untrained`) to 0.6250 (`final`)") != std::string::npos);
  CHECK(md.find("one image moves it by 0.3333 and the overall score by 0.1667") != std::string::npos);
  // the missing stage is a warning, not an error
  REQUIRE(res.warnings.size() == 1);
  CHECK(res.warnings[0].find("missing_stage") != std::string::npos);
}

TEST_CASE("report: loss_curves.png has a panel per stage with every curve drawn in its plot area") {
  FakeRun run;
  train::write_report(run.options);
  const shapes::Image im = shapes::read_image((run.out / "loss_curves.png").string());
  const train::LossCurvesLayout layout(4);
  REQUIRE(im.width == layout.width());
  REQUIRE(im.height == layout.height());
  // panel order = --stages order; curves per panel: tokenizer l1 | psnr, SFT loss, image_loss,
  // text_loss, DPO loss | margins, and nothing for the missing stage
  const int curves[4] = {2, 3, 2, 0};
  for (int p = 0; p < 4; ++p) {
    const train::Rect plot = layout.plot(p);
    CAPTURE(p);
    int drawn = 0;
    for (int k = 0; k < 4; ++k) {
      const int n = count_colour(im, plot, train::kCurveColors[k]);
      CAPTURE(k);
      if (k < curves[p]) CHECK(n >= 40);  // a line across the plot: well over 40 pixels
      else CHECK(n == 0);
      drawn += n;
    }
    if (curves[p] == 0) CHECK(drawn == 0);
  }
  // outside the panels the picture is background
  const train::Rect p0 = layout.panel(0);
  CHECK(pixel(im, p0.x0 - 3, p0.y1 + 3) == train::kBackground);
}

TEST_CASE("report: samples.png is a grid of the judged images with green and red borders") {
  FakeRun run;
  train::write_report(run.options);
  const shapes::Image im = shapes::read_image((run.out / "samples.png").string());
  const train::SamplesLayout layout(3);  // the evaluation judged 3 of the 6 test prompts
  REQUIRE(im.width == layout.width());
  REQUIRE(im.height == layout.height());
  const bool correct[3] = {true, false, true};
  for (int i = 0; i < 3; ++i) {
    CAPTURE(i);
    const train::Rect g = layout.generated(i), t = layout.truth(i);
    const train::Rgb border = correct[i] ? train::kCorrectBorder : train::kWrongBorder;
    CHECK(pixel(im, g.x0, g.y0) == border);
    CHECK(pixel(im, g.x1 - 1, (g.y0 + g.y1) / 2) == border);
    CHECK(pixel(im, (g.x0 + g.x1) / 2, g.y1 - 1) == border);
    // the generated image inside, scaled: its solid colour
    CHECK(pixel(im, (g.x0 + g.x1) / 2, (g.y0 + g.y1) / 2) == train::Rgb{uint8_t(40 * i), 90, 200});
    // the ground truth beside it: a ShapeWorld render is not flat
    std::set<std::array<uint8_t, 3>> colours;
    for (int y = t.y0 + train::SamplesLayout::kBorder; y < t.y1 - train::SamplesLayout::kBorder; y += 3)
      for (int x = t.x0 + train::SamplesLayout::kBorder; x < t.x1 - train::SamplesLayout::kBorder; x += 3) {
        const train::Rgb c = pixel(im, x, y);
        colours.insert({c.r, c.g, c.b});
      }
    CHECK(colours.size() > 10);
    // a caption below the pair
    const train::Rect caption{g.x0, g.y1 + 2, t.x1, g.y1 + 2 + train::SamplesLayout::kCaption};
    CHECK(count_colour(im, caption, train::kBackground) < (caption.x1 - caption.x0) * (caption.y1 - caption.y0));
  }
}

TEST_CASE("report: a training run's sample grid shows each image upscaled whole-number times, captioned") {
  // Five 48-pixel images, each pixel a function of (image, x, y): shown at 48 x 3 = 144 pixels.
  std::vector<shapes::Image> images;
  std::vector<std::string> captions;
  for (int i = 0; i < 5; ++i) {
    shapes::Image im(48, 48);
    for (int y = 0; y < 48; ++y)
      for (int x = 0; x < 48; ++x) {
        uint8_t* p = im.px(x, y);
        p[0] = uint8_t(5 * x), p[1] = uint8_t(5 * y), p[2] = uint8_t(40 * i);
      }
    images.push_back(im);
    captions.push_back("prompt " + std::to_string(i) + ": a red circle above a blue square");
  }
  const shapes::Image im = train::draw_sample_grid(images, captions, "stage3: step 2/3");
  const train::SampleGridLayout layout(5, 48);
  CHECK(layout.shown == 144);
  CHECK(layout.cols == 4);
  CHECK(layout.rows == 2);
  REQUIRE(im.width == layout.width());
  REQUIRE(im.height == layout.height());
  for (int i = 0; i < 5; ++i) {
    CAPTURE(i);
    const train::Rect r = layout.image(i);
    REQUIRE(r.x1 - r.x0 == 144);
    int wrong = 0;
    for (int y = r.y0; y < r.y1; ++y)
      for (int x = r.x0; x < r.x1; ++x)
        wrong += !(pixel(im, x, y) == pixel(images[size_t(i)], (x - r.x0) / 3, (y - r.y0) / 3));
    CHECK(wrong == 0);
    CHECK(pixel(im, r.x0 - 1, r.y0 - 1) == train::kUnjudgedBorder);
    CHECK(pixel(im, r.x1, r.y1) == train::kUnjudgedBorder);
    const train::Rect caption{r.x0, r.y1 + 4, r.x0 + layout.cell_width(), r.y1 + 4 + train::SampleGridLayout::kCaption};
    CHECK(count_colour(im, caption, train::kBackground) < (caption.x1 - caption.x0) * (caption.y1 - caption.y0));
  }
  // Sides: whole-number upscaling to at least 128, native up to 256, 256 beyond.
  CHECK(train::SampleGridLayout(1, 64).shown == 128);
  CHECK(train::SampleGridLayout(1, 256).shown == 256);
  CHECK(train::SampleGridLayout(1, 512).shown == 256);
  // Bad input names what is wrong.
  images[3] = shapes::Image(32, 32);
  CHECK_THROWS_WITH_AS(train::draw_sample_grid(images, captions, "t"), doctest::Contains("image 3 is 32x32"), vt::Error);
  captions.pop_back();
  CHECK_THROWS_WITH_AS(train::draw_sample_grid(images, captions, "t"), doctest::Contains("captions"), vt::Error);
}

TEST_CASE("report: default orders, times parsing and bad input") {
  FakeRun run;
  std::vector<std::string> warnings;
  const auto times = train::read_stage_times((run.root / "times.txt").string(), warnings);
  REQUIRE(times.size() == 3);
  CHECK(times[0].first == "data, vocabulary, init");
  CHECK(times[0].second == 12.0);
  CHECK(times[1].second == 30.5);
  CHECK(times[2].first == "stage3_dpo");
  CHECK(times[2].second == 7.0);
  CHECK(warnings.empty());
  write(run.root / "bad_times.txt", "stage1 fast\n");
  CHECK(train::read_stage_times((run.root / "bad_times.txt").string(), warnings).empty());
  CHECK(warnings.size() == 1);

  // Without --stages / --evals: every log and evaluation, oldest first.
  train::ReportOptions o = run.options;
  o.stages.clear(), o.evals.clear(), o.times_path.clear();
  const auto t0 = fs::file_time_type::clock::now();
  fs::last_write_time(run.out / "stage3_dpo" / "log.jsonl", t0 - std::chrono::hours(3));
  fs::last_write_time(run.out / "bsq_tokenizer" / "log.jsonl", t0 - std::chrono::hours(2));
  fs::last_write_time(run.out / "stage2" / "log.jsonl", t0 - std::chrono::hours(1));
  fs::last_write_time(run.out / "eval" / "untrained.json", t0 - std::chrono::hours(2));
  fs::last_write_time(run.out / "eval" / "final.json", t0 - std::chrono::hours(1));
  const std::string md = train::write_report(o).markdown;
  const size_t a = md.find("| stage3_dpo | 3"), b = md.find("| bsq_tokenizer | 3"), c = md.find("| stage2 | 4");
  CHECK(a < b);
  CHECK(b < c);
  CHECK(c != std::string::npos);
  CHECK(md.find("| untrained |") < md.find("| final | 0.6250"));
  CHECK(md.find("No times given") != std::string::npos);

  // A log line that is not JSON names the file and line.
  write(run.out / "stage2" / "log.jsonl", "{\"step\":1,\"loss\":2}\n{oops\n");
  try {
    train::write_report(run.options);
    FAIL("a broken log line must stop the report");
  } catch (const vt::Error& e) {
    CHECK(std::string(e.what()).find("log.jsonl:2") != std::string::npos);
  }
  // No OUT directory.
  o.out_dir = (run.root / "nowhere").string();
  CHECK_THROWS_AS(train::write_report(o), vt::Error);
}
