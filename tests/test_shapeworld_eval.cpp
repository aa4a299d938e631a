// test_shapeworld_eval.cpp: the GenEval-style judge must be right on clean renders, robust to
// degraded ones, and must catch wrong ones (issue 7, "Tests that must be able to fail").
//
// Degradation strengths (also in docs/shapeworld.md): noise sigma 8 grey levels; colour jitter 0.1
// (gain 0.9..1.1 and offset +-12 per channel); blur sigma 1 px at 128 px, scaled with the image:
// passes of [1 2 1]/4 (each adds 0.5 px^2 of variance) = 1 at 64 px, 2 at 128, 8 at 256; and all
// three at once. A fixed 1 px blur at 64 px (objects 10 px wide) scores ~97%: it is the one
// setting where the guarantee does not hold, and is why the blur scales.
#include <doctest/doctest.h>

#include <string>
#include <tuple>
#include <vector>

#include "shapeworld/detect.h"
#include "shapeworld/geneval.h"
#include "shapeworld/render.h"
#include "shapeworld/tasks.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-function"
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

using namespace vt::shapes;

namespace {

SplitContext test_context(int size, uint64_t seed) {
  SplitContext ctx;
  ctx.size = size;
  ctx.train = false;
  ctx.heldout = make_heldout(seed);
  return ctx;
}

std::vector<GenSample> make_samples(int size, int n, uint64_t seed) {
  SplitContext ctx = test_context(size, seed);
  std::vector<GenSample> out(static_cast<size_t>(n));
#pragma omp parallel for schedule(dynamic, 8)
  for (int i = 0; i < n; ++i) {
    Rng rng(stream_key(seed, uint64_t(size), uint64_t(i)));
    out[size_t(i)] = sample_generation(Tag(i % kNumTags), ctx, rng);
  }
  return out;
}

// The image saved as a JPEG by stb_image_write (4:2:0 chroma subsampling below quality 91, as
// most encoders do by default) and read back through vt's loader.
Image jpeg_roundtrip(const Image& img, int quality) {
  std::vector<uint8_t> bytes;
  const auto sink = [](void* ctx, void* data, int size) {
    auto* out = static_cast<std::vector<uint8_t>*>(ctx);
    out->insert(out->end(), static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + size);
  };
  REQUIRE(stbi_write_jpg_to_func(sink, &bytes, img.width, img.height, 3, img.rgb.data(), quality));
  return decode_image(bytes.data(), bytes.size(), "jpeg round trip");
}

struct Tally {
  int correct = 0, total = 0;
  std::string first_failure;
};

// Judges every sample's render after `transform`; counts verdicts equal to `want_correct`.
template <class Transform>
Tally judge_all(const std::vector<GenSample>& samples, Transform transform) {
  Tally t;
  t.total = int(samples.size());
  std::vector<std::string> why(samples.size());
  std::vector<char> ok(samples.size(), 0);
#pragma omp parallel for schedule(dynamic, 8)
  for (long i = 0; i < long(samples.size()); ++i) {
    const GenSample& g = samples[size_t(i)];
    Verdict v = judge_geneval_image(g.meta, transform(render_scene(g.scene), size_t(i)));
    ok[size_t(i)] = v.correct;
    if (!v.correct) why[size_t(i)] = std::string(tag_name(g.meta.tag)) + " '" + g.meta.prompt + "': " + v.detail;
  }
  for (size_t i = 0; i < samples.size(); ++i) {
    t.correct += ok[i];
    if (!ok[i] && t.first_failure.empty()) t.first_failure = why[i];
  }
  return t;
}

}  // namespace

TEST_CASE("shapeworld eval: ground-truth renders score 100% at 64, 128, 256 and 512 pixels") {
  for (auto [size, n] : {std::pair{64, 600}, {128, 600}, {256, 120}, {512, 36}}) {
    std::vector<GenSample> samples = make_samples(size, n, 11);
    Tally t = judge_all(samples, [](Image img, size_t) { return img; });
    INFO("size ", size, ": ", t.correct, "/", t.total, " first failure: ", t.first_failure);
    CHECK(t.correct == t.total);
  }
}

TEST_CASE("shapeworld eval: at least 98% on renders degraded by noise, blur and colour jitter") {
  for (auto [size, n] : {std::pair{64, 600}, {128, 600}, {256, 96}}) {
    const int passes = size == 64 ? 1 : size == 128 ? 2 : 8;
    const Degradation noise{0, 0, 8.0f, 0}, blur{0, passes, 0, 0}, jitter{0.1f, 0, 0, 0}, all{0.1f, passes, 8.0f, 0};
    const std::pair<const char*, Degradation> kinds[] = {{"noise", noise}, {"blur", blur}, {"jitter", jitter}, {"all", all}};
    std::vector<GenSample> samples = make_samples(size, n, 23);
    for (const auto& [name, d] : kinds) {
      Tally t = judge_all(samples, [&, d = d](const Image& img, size_t i) {
        Degradation di = d;
        di.seed = i;
        return degrade(img, di);
      });
      MESSAGE("degraded (", std::string(name), ") at ", size, ": ", t.correct, "/", t.total);
      INFO("first failure: ", t.first_failure);
      CHECK(double(t.correct) >= 0.98 * t.total);
    }
  }
}

// Issue #19: generated images will be about as rough as a JPEG at quality 30 with 4:2:0 chroma:
// ringing around edges, 8x8 blocks, colour bleeding over 2 px. Ground truth saved that way must
// still pass: at least 99% at 128 px (the default size) and 256 px. Measured before the coverage
// map followed luma: 128 px 559/600 (small crosses taken for diamonds, small diamonds for circles),
// 256 px 96/96; after: 597/600 and 96/96. At 64 px a 16x16 chroma block is as large as an object
// and quality 30 keeps little of its shape: 229/600 before, 499/600 after; the bound there is 80%.
TEST_CASE("shapeworld eval: ground-truth renders saved as JPEG quality 30 (4:2:0) pass: 99% at 128 and 256 px") {
  for (auto [size, n, rate] : {std::tuple{128, 600, 0.99}, {256, 96, 0.99}, {64, 600, 0.80}}) {
    std::vector<GenSample> samples = make_samples(size, n, 53);
    Tally t = judge_all(samples, [](const Image& img, size_t) { return jpeg_roundtrip(img, 30); });
    MESSAGE("JPEG q30 at ", size, ": ", t.correct, "/", t.total);
    INFO("first failure: ", t.first_failure);
    CHECK(double(t.correct) >= rate * t.total);
  }
}

TEST_CASE("shapeworld eval: wrong renders fail the right category in at least 99% of cases") {
  // Clean at 64 and 128 px, and at 128 px under all documented degradations at once.
  // degraded: 0 clean, 1 all documented degradations at once, 2 saved as JPEG quality 30 (4:2:0),
  // with the share of cases that must fail in the right category. JPEG at 64 px measured 1436/1500
  // (19 passed; the chroma-only judge: 1232/1500, 50 passed), at 128 px 1497/1500 (1 passed).
  for (auto [size, degraded, rate] :
       {std::tuple{64, 0, 0.99}, {128, 0, 0.99}, {128, 1, 0.99}, {128, 2, 0.99}, {64, 2, 0.95}}) {
    std::vector<GenSample> samples = make_samples(size, 600, 37);
    SplitContext ctx = test_context(size, 37);
    int cases = 0, right_category = 0, passed = 0;
    std::string first_miss;
    for (int v = 0; v < kNumViolations; ++v) {
      std::vector<int> outcome(samples.size(), -1);  // -1 n/a, 0 passed, 1 wrong category, 2 right
      std::vector<std::string> why(samples.size());
#pragma omp parallel for schedule(dynamic, 8)
      for (long i = 0; i < long(samples.size()); ++i) {
        Rng rng(stream_key(99, uint64_t(i), uint64_t(v)));
        std::optional<Scene> bad = violate(samples[size_t(i)], Violation(v), ctx, rng);
        if (!bad) continue;
        Image img = render_scene(*bad);
        if (degraded == 1) img = degrade(img, {0.1f, 2, 8.0f, uint64_t(i)});
        if (degraded == 2) img = jpeg_roundtrip(img, 30);
        Verdict verdict = judge_geneval(samples[size_t(i)].meta, detect_objects(img));
        Failure want = expected_failure(Violation(v));
        outcome[size_t(i)] = verdict.correct ? 0 : verdict.failure == want ? 2 : 1;
        why[size_t(i)] = std::string(violation_name(Violation(v))) + " on '" + samples[size_t(i)].meta.prompt +
                         "': got '" + failure_name(verdict.failure) + "' " + verdict.detail;
      }
      for (size_t i = 0; i < samples.size(); ++i) {
        if (outcome[i] < 0) continue;
        ++cases;
        right_category += outcome[i] == 2;
        passed += outcome[i] == 0;
        if (outcome[i] != 2 && first_miss.empty()) first_miss = why[i];
      }
    }
    MESSAGE("wrong renders at ", size, std::string(degraded == 1 ? " px (degraded)" : degraded == 2 ? " px (JPEG q30)" : " px"), ": ", right_category, "/", cases, " failed the right category, ", passed, " passed");
    INFO("first miss: ", first_miss);
    CHECK(cases >= 1000);
    CHECK(double(right_category) >= rate * cases);
  }
}

TEST_CASE("shapeworld eval: an empty image never passes") {
  std::vector<GenSample> samples = make_samples(128, 600, 41);
  REQUIRE(judge_all(samples, [](Image img, size_t) { return img; }).correct == int(samples.size()));
  // The same scenes without their objects: only the background, clean or degraded.
  std::vector<GenSample> empty = samples;
  for (GenSample& g : empty) g.scene.objects.clear();
  Tally clean = judge_all(empty, [](Image img, size_t) { return img; });
  Tally degraded = judge_all(empty, [](const Image& img, size_t i) { return degrade(img, {0.1f, 2, 8.0f, i}); });
  // Three times the documented noise and twice the jitter: blobs and colour casts, no objects.
  Tally noisy = judge_all(empty, [](const Image& img, size_t i) { return degrade(img, {0.2f, 0, 24.0f, i}); });
  Tally jpeg = judge_all(empty, [](const Image& img, size_t) { return jpeg_roundtrip(img, 30); });
  CHECK(clean.correct == 0);
  CHECK(degraded.correct == 0);
  CHECK(noisy.correct == 0);
  CHECK(jpeg.correct == 0);
  // Flat and random images, with no scene at all.
  Image black(128, 128), white(128, 128), noise(128, 128);
  std::fill(white.rgb.begin(), white.rgb.end(), 255);
  Rng rng(5);
  for (uint8_t& b : noise.rgb) b = uint8_t(rng.below(256));
  for (const Image* img : {&black, &white, &noise}) {
    std::vector<Detection> d = detect_objects(*img);
    CHECK(d.empty());
    for (const GenSample& g : samples) CHECK_FALSE(judge_geneval(g.meta, d).correct);
  }
}

// Generated images of a barely trained model are coloured speckle; the templates fit some of its
// blobs by chance (29 of 120 such samples of the miniature passed before the clutter rule). A render
// with specks scattered over it, or speckle alone, fails as clutter; the render itself passes.
TEST_CASE("shapeworld eval: speckled images fail as clutter, the same renders without specks pass") {
  std::vector<GenSample> samples = make_samples(64, 200, 61);
  auto speckle = [](Image img, size_t i, bool keep_scene) {
    Rng rng(1000 + i);
    if (!keep_scene) {  // the background only: the scene's first pixel everywhere
      for (int k = 0; k < img.width * img.height; ++k)
        for (int c = 0; c < 3; ++c) img.rgb[size_t(k) * 3 + c] = img.rgb[size_t(c)];
    }
    const int specks = img.width * img.height / 60;  // each 2x2: ~7% of the pixels
    for (int s = 0; s < specks; ++s) {
      const PaletteColor& col = palette()[size_t(rng.below(kNumColors))];
      const int x = rng.below(img.width - 1), y = rng.below(img.height - 1);
      for (int dy = 0; dy < 2; ++dy)
        for (int dx = 0; dx < 2; ++dx) {
          uint8_t* p = &img.rgb[(size_t(y + dy) * img.width + x + dx) * 3];
          p[0] = col.r, p[1] = col.g, p[2] = col.b;
        }
    }
    return img;
  };
  int clean = 0, clutter_on_scene = 0, clutter_alone = 0;
  for (size_t i = 0; i < samples.size(); ++i) {
    const Image img = render_scene(samples[i].scene);
    clean += judge_geneval_image(samples[i].meta, img).correct;
    const Verdict on = judge_geneval_image(samples[i].meta, speckle(img, i, true));
    const Verdict alone = judge_geneval_image(samples[i].meta, speckle(img, i, false));
    clutter_on_scene += on.failure == Failure::clutter;
    clutter_alone += alone.failure == Failure::clutter;
    CHECK_FALSE(alone.correct);
  }
  CHECK(clean == int(samples.size()));
  CHECK(clutter_on_scene == int(samples.size()));
  CHECK(clutter_alone == int(samples.size()));
  // The stray fraction itself: 0 on a render, above the bound on speckle.
  const Image img = render_scene(samples[0].scene);
  CHECK(stray_color_fraction(img, detect_objects(img)) == 0.0f);
  const Image sp = speckle(img, 0, false);
  CHECK(stray_color_fraction(sp, detect_objects(sp)) > 5 * kMaxStrayColor);
}

TEST_CASE("shapeworld eval: detections report colour, shape, size and position of a known scene") {
  Scene s;
  s.size = 128;
  Rng rng(3);
  s.background = sample_background(rng, 0);
  s.objects.push_back(make_object(Shape::triangle, 0, SizeClass::large, 128, rng));
  s.objects.back().cx = 30, s.objects.back().cy = 40;
  s.objects.push_back(make_object(Shape::cross, 4, SizeClass::small, 128, rng));
  s.objects.back().cx = 90, s.objects.back().cy = 95;
  std::vector<Detection> d = detect_objects(render_scene(s));
  REQUIRE(d.size() == 2);  // by decreasing area: the large triangle first
  CHECK(d[0].shape == Shape::triangle);
  CHECK(d[0].color == 0);
  CHECK(d[0].size == SizeClass::large);
  CHECK(d[1].shape == Shape::cross);
  CHECK(d[1].color == 4);
  CHECK(d[1].size == SizeClass::small);
  // Each object's box: centre within a pixel, half extent within 5%, the pixel box within 2 px.
  for (size_t i = 0; i < 2; ++i) {
    CAPTURE(i);
    const Object& o = s.objects[i];
    CHECK(std::fabs(d[i].cx - o.cx) <= 1.0f);
    CHECK(std::fabs(d[i].cy - o.cy) <= 1.0f);
    CHECK(std::fabs(d[i].r - o.r) <= 0.05f * o.r);
    CHECK(std::abs(d[i].x0 - int(std::floor(o.cx - o.r))) <= 2);
    CHECK(std::abs(d[i].x1 - int(std::ceil(o.cx + o.r))) <= 2);
    CHECK(std::abs(d[i].y0 - int(std::floor(o.cy - o.r))) <= 2);
    CHECK(std::abs(d[i].y1 - int(std::ceil(o.cy + o.r))) <= 2);
  }
  CHECK((relations(d[0], d[1]) >> int(Relation::left_of) & 1u));
  CHECK((relations(d[0], d[1]) >> int(Relation::above) & 1u));
}
