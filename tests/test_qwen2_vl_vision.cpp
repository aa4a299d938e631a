// Qwen2-VL image preprocessing and vision encoder (models/qwen2_vl) against transformers
// (tools/gen_qwen2_vl_fixtures.py): smart_resize cases, Pillow's BICUBIC resize bit for bit, the
// PIL image processor's pixel values and grids, the tiny random model's vision tower output, and
// the errors for bad files, bad checkpoints and bad inputs.
#include <doctest/doctest.h>

#include <cmath>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <fstream>
#include <nlohmann/json.hpp>

#include "qwen2_vl/image_processor.h"
#include "qwen2_vl/vision.h"
#include "vt/io/tensor_io.h"
#include "vt/ops.h"

using namespace vt;
using namespace vt::qwen2_vl;
namespace fs = std::filesystem;

namespace {

const std::string kPre = std::string(VT_FIXTURES) + "/qwen2_vl";
const std::string kTiny = std::string(VT_FIXTURES) + "/qwen2_vl_tiny";

const std::map<std::string, Tensor>& pre() {
  static const auto fx = io::load_safetensors(kPre + "/preprocess.safetensors");
  return fx;
}
const nlohmann::json& pre_meta() {
  static const nlohmann::json j = [] {
    std::ifstream in(kPre + "/preprocess.json");
    REQUIRE(in.good());
    return nlohmann::json::parse(in);
  }();
  return j;
}
const std::map<std::string, Tensor>& ref() {
  static const auto fx = io::load_safetensors(kTiny + "/reference.safetensors");
  return fx;
}

ImageProcessorConfig fixture_processor() {
  ImageProcessorConfig c;
  c.min_pixels = pre_meta()["min_pixels"].get<int64_t>();
  c.max_pixels = pre_meta()["max_pixels"].get<int64_t>();
  return c;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  return amax(abs(a.to(DType::F64) - b.to(DType::F64))).item();
}

// Max |a - b| / (|b| + mean |b|): relative error, with the tensor's mean magnitude as a floor so
// that entries near zero (f32 cancellation) do not dominate.
double max_rel_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  Tensor b64 = b.to(DType::F64), d = abs(a.to(DType::F64) - b64);
  return amax(div(d, add(abs(b64), mean(abs(b64)).item()))).item();
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const vt::Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

fs::path scratch_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("vt_qwen2_vl_" + name + "_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

std::shared_ptr<VisionTransformer> tiny_tower() {
  auto tower = std::make_shared<VisionTransformer>(VisionConfig::from_file(kTiny));
  load_vision_tower(tower, kTiny + "/model.safetensors");
  return tower;
}

}  // namespace

// ---- smart_resize --------------------------------------------------------------------------------

TEST_CASE("smart_resize: the spec's examples, round-half-to-even and the min/max clamps") {
  using P = std::pair<int64_t, int64_t>;
  CHECK(smart_resize(512, 512, 28, 3136, 12845056) == P{504, 504});    // round(18.29) = 18
  CHECK(smart_resize(1000, 750, 28, 3136, 12845056) == P{1008, 756});  // qwen2_vl.md §9.1
  CHECK(smart_resize(70, 42, 28, 3136, 12845056) == P{56, 56});        // 2.5 -> 2, 1.5 -> 2
  CHECK(smart_resize(126, 126, 28, 3136, 12845056) == P{112, 112});    // 4.5 -> 4
  CHECK(smart_resize(30, 40, 28, 3136, 6272) == P{56, 84});            // below min_pixels: ceil
  CHECK(smart_resize(200, 150, 28, 3136, 6272) == P{84, 56});          // above max_pixels: floor
  CHECK(smart_resize(28, 5600) == P{28, 5600});                        // aspect exactly 200
}

TEST_CASE("smart_resize: every case of the fixture, and HF's errors") {
  int n = 0;
  for (const auto& c : pre_meta()["smart_resize"]) {
    int64_t h = c["h"], w = c["w"], mn = c["min"], mx = c["max"];
    CAPTURE(h);
    CAPTURE(w);
    CAPTURE(mn);
    CAPTURE(mx);
    if (c["out"].is_string()) {
      CHECK_THROWS_AS(smart_resize(h, w, 28, mn, mx), vt::Error);
    } else {
      auto [rh, rw] = smart_resize(h, w, 28, mn, mx);
      CHECK(rh == c["out"][0].get<int64_t>());
      CHECK(rw == c["out"][1].get<int64_t>());
    }
    ++n;
  }
  CHECK(n >= 15);
  CHECK(contains(error_of([] { smart_resize(28, 5601); }), "aspect ratio"));
  CHECK(contains(error_of([] { smart_resize(27, 100); }), "smaller than factor 28"));
  CHECK(contains(error_of([] { smart_resize(100, 20); }), "smaller than factor 28"));
}

// ---- the pixel pipeline --------------------------------------------------------------------------

TEST_CASE("Pillow BICUBIC resize: bit-identical to PIL on the fixture images (up, down, mixed, RGBA)") {
  const auto& images = pre_meta()["images"];
  REQUIRE(images.size() == 5);
  for (size_t i = 0; i < images.size(); ++i) {
    const auto& m = images[i];
    CAPTURE(i);
    RgbImage im = load_image(kPre + "/" + m["file"].get<std::string>());
    REQUIRE(im.height == m["height"].get<int64_t>());
    REQUIRE(im.width == m["width"].get<int64_t>());
    int64_t rh = m["resized_height"], rw = m["resized_width"];
    RgbImage r = resize_bicubic(im, rh, rw);
    Tensor want = pre().at("img" + std::to_string(i) + ".resized");  // (rh, rw, 3) uint8
    REQUIRE(want.shape() == Shape{rh, rw, 3});
    std::vector<uint8_t> w = want.tolist<uint8_t>();
    int64_t differ = 0, worst = 0;
    for (size_t k = 0; k < w.size(); ++k) {
      int64_t d = std::abs(int64_t{r.pixels[k]} - int64_t{w[k]});
      differ += d != 0, worst = std::max(worst, d);
    }
    CHECK(differ == 0);
    CHECK(worst == 0);
  }
}

TEST_CASE("preprocess: pixel values and grids equal the HF processor's, one image and several") {
  const auto cfg = fixture_processor();
  const auto& images = pre_meta()["images"];
  std::vector<std::string> paths;
  std::vector<Tensor> wants;
  double tol = (1.0 / 255) / kClipStd[1];  // one uint8 level after normalisation (the widest std)
  for (size_t i = 0; i < images.size(); ++i) {
    CAPTURE(i);
    paths.push_back(kPre + "/" + images[i]["file"].get<std::string>());
    ProcessedImages p = preprocess_files({paths.back()}, cfg);
    Tensor want = pre().at("img" + std::to_string(i) + ".pixels");
    wants.push_back(want);
    CHECK(p.image_grid_thw.tolist<int64_t>() == pre().at("img" + std::to_string(i) + ".grid").tolist<int64_t>());
    REQUIRE(p.pixel_values.shape() == want.shape());
    CHECK(p.pixel_values.dtype() == DType::F32);
    double d = max_abs_diff(p.pixel_values, want);
    CHECK(d <= tol);
    CHECK(d <= 1e-6);  // in fact the same f32 arithmetic as numpy
  }
  ProcessedImages all = preprocess_files(paths, cfg);
  CHECK(all.image_grid_thw.shape() == Shape{5, 3});
  CHECK(all.image_grid_thw.tolist<int64_t>() == pre().at("all.grid").tolist<int64_t>());
  CHECK(max_abs_diff(all.pixel_values, cat(wants, 0)) <= 1e-6);
}

TEST_CASE("preprocess_rgb from raw memory equals the file path; from_memory handles gray and alpha") {
  const auto cfg = fixture_processor();
  RgbImage im = load_image(kPre + "/img0.png");
  ProcessedImages a = preprocess_rgb(im.pixels.data(), im.height, im.width, cfg);
  ProcessedImages b = preprocess_files({kPre + "/img0.png"}, cfg);
  CHECK(max_abs_diff(a.pixel_values, b.pixel_values) == 0);
  CHECK(a.image_grid_thw.tolist<int64_t>() == std::vector<int64_t>{1, 4, 6});

  uint8_t gray_alpha[4] = {100, 255, 100, 0};  // opaque, then fully transparent (-> white)
  RgbImage g = RgbImage::from_memory(gray_alpha, 1, 2, 2);
  CHECK(g.pixels == std::vector<uint8_t>{100, 100, 100, 255, 255, 255});
  uint8_t rgba[4] = {0, 128, 255, 128};  // PIL: alpha_composite(white, .) = (127, 191, 255)
  CHECK(RgbImage::from_memory(rgba, 1, 1, 4).pixels == std::vector<uint8_t>{127, 191, 255});
  // default limits: a 512x512 image gives 36x36 patches, 1176 values each
  std::vector<uint8_t> big(512 * 512 * 3, 77);
  ProcessedImages p = preprocess_rgb(big.data(), 512, 512);
  CHECK(p.pixel_values.shape() == Shape{1296, 1176});
  CHECK(p.image_grid_thw.tolist<int64_t>() == std::vector<int64_t>{1, 36, 36});
}

TEST_CASE("load_image: missing, unreadable and truncated files give errors naming the path") {
  fs::path dir = scratch_dir("images");
  std::string missing = (dir / "no_such_image.png").string();
  CHECK(contains(error_of([&] { load_image(missing); }), missing));

  std::string text = (dir / "not_an_image.png").string();
  std::ofstream(text) << "hello, this is not a PNG";
  std::string e = error_of([&] { load_image(text); });
  CHECK(contains(e, text));
  CHECK(contains(e, "cannot decode"));

  std::ifstream in(kPre + "/img1.png", std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string cut = (dir / "truncated.png").string();
  std::ofstream(cut, std::ios::binary).write(bytes.data(), bytes.size() / 2);
  e = error_of([&] { load_image(cut); });
  CHECK(contains(e, cut));

  std::string jpg = (dir / "truncated.jpg").string();
  const char jpeg_start[] = {'\xFF', '\xD8', '\xFF', '\xE0', 0, 16, 'J', 'F', 'I', 'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0};
  std::ofstream(jpg, std::ios::binary).write(jpeg_start, sizeof jpeg_start);
  e = error_of([&] { load_image(jpg); });
  CHECK(contains(e, jpg));
  CHECK(contains(e, "truncated"));

  std::string empty = (dir / "empty.png").string();
  std::ofstream(empty).close();
  CHECK(contains(error_of([&] { load_image(empty); }), empty));
  CHECK(contains(error_of([&] { preprocess_files({kPre + "/img0.png", missing}); }), missing));
  fs::remove_all(dir);
}

// ---- the vision tower ----------------------------------------------------------------------------

TEST_CASE("vision config from the tiny model's config.json") {
  VisionConfig c = VisionConfig::from_file(kTiny);
  CHECK(c.depth == 2);
  CHECK(c.embed_dim == 32);
  CHECK(c.num_heads == 4);
  CHECK(c.head_dim() == 8);
  CHECK(c.mlp_hidden() == 128);
  CHECK(c.hidden_size == 64);
  CHECK(c.patch_dim() == 1176);
  CHECK(c.rope_theta == 1e4);
  // a hub-style vision_config (in_chans, no rope_parameters); hidden_size from the LLM when absent
  nlohmann::json hub = {{"hidden_size", 1536},
                        {"vision_config",
                         {{"depth", 32}, {"embed_dim", 1280}, {"mlp_ratio", 4}, {"num_heads", 16}, {"in_chans", 3},
                          {"patch_size", 14}, {"spatial_merge_size", 2}, {"temporal_patch_size", 2}}}};
  VisionConfig h = VisionConfig::from_json(hub);
  CHECK(h.hidden_size == 1536);
  CHECK(h.head_dim() == 80);
  // patch embed 32·1176; per block 4·32 (norms) + 96·33 + 32·33 + 128·33 + 32·129; merger 64 + 128·129 + 64·129
  CHECK(VisionTransformer(c).num_parameters() == 37632 + 2 * 12704 + 24832);
}

TEST_CASE("vision tower: tensor names and shapes are the hub's") {
  auto tower = std::make_shared<VisionTransformer>(VisionConfig::from_file(kTiny));
  auto sd = tower->state_dict();
  CHECK(sd.size() == 1 + 2 * 12 + 6);
  CHECK(sd.at("patch_embed.proj.weight").shape() == Shape{32, 3, 2, 14, 14});
  CHECK(sd.at("blocks.1.attn.qkv.weight").shape() == Shape{96, 32});
  CHECK(sd.at("blocks.0.mlp.fc1.bias").shape() == Shape{128});
  CHECK(sd.at("merger.mlp.0.weight").shape() == Shape{128, 128});
  CHECK(sd.at("merger.mlp.2.weight").shape() == Shape{64, 128});
  CHECK(sd.count("merger.ln_q.bias") == 1);
}

TEST_CASE("vision tower: two images of different sizes match transformers to 1e-4 (f32)") {
  auto tower = tiny_tower();
  tower->eval();
  Tensor px = ref().at("pixel_values"), grid = ref().at("image_grid_thw");
  REQUIRE(grid.tolist<int64_t>() == std::vector<int64_t>{1, 4, 4, 1, 4, 6});
  auto rows = grid_rows(grid);
  CHECK(VisionTransformer::cu_seqlens(rows) == std::vector<int64_t>{0, 16, 40});
  Tensor hidden = tower->forward_blocks(px, rows);
  CHECK(hidden.shape() == Shape{40, 32});
  CHECK(max_rel_diff(hidden, ref().at("vision.hidden")) <= 1e-4);
  Tensor out = tower->forward(px, grid);
  CHECK(out.shape() == Shape{10, 64});
  CHECK(max_rel_diff(out, ref().at("vision.out")) <= 1e-4);
  // each image alone gives its own rows: the attention is block-diagonal per image
  Tensor first = tower->forward(px.narrow(0, 0, 16), std::vector<GridTHW>{{1, 4, 4}});
  CHECK(max_abs_diff(first, out.narrow(0, 0, 4)) <= 1e-5);
  // and the preprocessing chain end to end: files -> processor -> tower
  ImageProcessorConfig cfg = fixture_processor();
  ProcessedImages p = preprocess_files({kPre + "/img3.png", kPre + "/img0.png"}, cfg);
  CHECK(max_rel_diff(tower->forward(p.pixel_values, p.image_grid_thw), ref().at("vision.out")) <= 1e-4);
}

TEST_CASE("vision tower as a child module named visual; bf16 runs") {
  struct Wrapper : nn::Module {
    std::shared_ptr<VisionTransformer> visual;
    Wrapper() { visual = register_module("visual", std::make_shared<VisionTransformer>(VisionConfig::from_file(kTiny))); }
  } w;
  auto r = w.load(kTiny + "/model.safetensors", /*strict=*/false);
  CHECK(r.missing.empty());
  CHECK(w.has_parameter("visual.merger.mlp.2.bias"));
  Tensor out = w.visual->forward(ref().at("pixel_values"), ref().at("image_grid_thw"));
  CHECK(max_rel_diff(out, ref().at("vision.out")) <= 1e-4);
  w.to(DType::BF16);
  Tensor ob = w.visual->forward(ref().at("pixel_values"), ref().at("image_grid_thw"));
  CHECK(ob.dtype() == DType::BF16);
  CHECK(max_abs_diff(ob, ref().at("vision.out")) <= 0.1 * amax(abs(ref().at("vision.out"))).item());
}

TEST_CASE("vision tower: missing or mis-shaped checkpoint tensors, and bad inputs, are named") {
  auto base = io::load_safetensors(kTiny + "/model.safetensors");
  fs::path dir = scratch_dir("ckpt");
  auto tower = std::make_shared<VisionTransformer>(VisionConfig::from_file(kTiny));

  auto missing = base;
  missing.erase("visual.blocks.1.attn.qkv.weight");
  std::string p1 = (dir / "missing.safetensors").string();
  io::save_safetensors(p1, missing);
  std::string e = error_of([&] { load_vision_tower(tower, p1); });
  CHECK(contains(e, p1));
  CHECK(contains(e, "visual.blocks.1.attn.qkv.weight"));

  auto bad = base;
  bad["visual.merger.mlp.2.weight"] = zeros({63, 128});
  std::string p2 = (dir / "misshaped.safetensors").string();
  io::save_safetensors(p2, bad);
  e = error_of([&] { load_vision_tower(tower, p2); });
  CHECK(contains(e, "visual.merger.mlp.2.weight"));
  CHECK(contains(e, "63"));
  fs::remove_all(dir);

  Tensor px = ref().at("pixel_values");
  CHECK(contains(error_of([&] { tower->forward(px, std::vector<GridTHW>{{1, 4, 4}}); }), "describes 16 patches"));
  CHECK(contains(error_of([&] { tower->forward(px.narrow(1, 0, 100), ref().at("image_grid_thw")); }), "(N, 1176)"));
  CHECK(contains(error_of([&] { tower->forward(px, std::vector<GridTHW>{{1, 5, 8}}); }), "spatial_merge_size"));
  CHECK(contains(error_of([] { VisionConfig::from_file("/nonexistent/dir/config.json"); }), "/nonexistent/dir"));
}

TEST_CASE("vision config: a value of the wrong type is a vt::Error naming the file, not a JSON exception") {
  // Found by tools/fuzz/fuzz_config.
  nlohmann::json bad = {{"vision_config", {{"depth", "two"}, {"embed_dim", 64}, {"num_heads", 4}}}};
  try {
    (void)VisionConfig::from_json(bad, "edited/config.json");
    FAIL("accepted depth \"two\"");
  } catch (const vt::Error& e) {
    CHECK(std::string(e.what()).find("edited/config.json") != std::string::npos);
  }
}
