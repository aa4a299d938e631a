// Qwen2VLForConditionalGeneration (models/qwen2_vl/qwen2_vl.h) against transformers: a tiny random
// checkpoint saved with save_pretrained (tools/gen_qwen2_vl_fixtures.py) run on a prompt holding two
// images of different sizes: M-RoPE positions and deltas, f32 logits to 1e-4, 32 greedy tokens equal
// to generate(); the KV-cached decode equals a full forward; a batch of two left-padded prompts
// equals each prompt alone; the placeholder/image count check and the VARGPT prefix skipping.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "qwen2_vl/qwen2_vl.h"
#include "vt/io/safetensors.h"
#include "vt/io/tensor_io.h"
#include "vt/ops.h"

using namespace vt;
using qwen2_vl::MultimodalInputs;
using qwen2_vl::PositionMode;
using qwen2_vl::Qwen2VLForConditionalGeneration;

namespace {

const std::string kTiny = std::string(VT_FIXTURES) + "/qwen2_vl_tiny";

const std::map<std::string, Tensor>& ref() {
  static const auto r = io::load_safetensors(kTiny + "/reference.safetensors");
  return r;
}

std::shared_ptr<Qwen2VLForConditionalGeneration> model() {
  static auto m = Qwen2VLForConditionalGeneration::from_pretrained(kTiny, DType::F32);
  return m;
}

MultimodalInputs prompt() {
  MultimodalInputs in;
  in.input_ids = ref().at("input_ids");
  in.pixel_values = ref().at("pixel_values");
  in.image_grid_thw = qwen2_vl::grid_rows(ref().at("image_grid_thw"));
  return in;
}

// max |a - b| / max(mean |b|, max |b| * 1e-3): relative to the reference's scale.
double rel_err(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const Tensor d = abs(a.to(DType::F64) - b.to(DType::F64));
  const double scale = std::max(mean(abs(b.to(DType::F64))).item(), 1e-3 * amax(abs(b.to(DType::F64))).item());
  return amax(d).item() / scale;
}

std::vector<int64_t> row(const Tensor& t) {
  const Tensor c = t.to(DType::I64).contiguous().reshape({-1});
  return std::vector<int64_t>(c.data<int64_t>(), c.data<int64_t>() + c.numel());
}

}  // namespace

TEST_CASE("Qwen2-VL: positions, logits and greedy tokens equal transformers on a two-image prompt") {
  NoGradGuard no_grad;
  const auto m = model();
  const MultimodalInputs in = prompt();
  const qwen2::RopeIndex pos = m->positions(in, PositionMode::MRope);
  CHECK(row(pos.position_ids) == row(ref().at("position_ids")));
  CHECK(pos.rope_deltas == row(ref().at("rope_deltas")));

  const Tensor logits = m->forward(in);
  const double err = rel_err(logits, ref().at("logits"));
  INFO("logits relative error " << err);
  CHECK(err < 1e-4);

  std::vector<nn::KVCache> caches;
  qwen2::GenerateOptions opt;
  opt.max_new_tokens = 32;
  const qwen2::GenerateResult r = qwen2::generate(m->step_fn(in, caches), in.input_ids, Tensor(), opt);
  CHECK(row(r.tokens) == row(ref().at("generated")));
}

TEST_CASE("Qwen2-VL: KV-cached decoding equals the full forward over the same tokens") {
  NoGradGuard no_grad;
  const auto m = model();
  MultimodalInputs in = prompt();
  const std::vector<int64_t> gen = row(ref().at("generated"));
  // Full forward over prompt + 8 generated tokens (positions by get_rope_index over all of it).
  std::vector<int64_t> all = row(in.input_ids);
  const int64_t L = int64_t(all.size());
  all.insert(all.end(), gen.begin(), gen.begin() + 8);
  MultimodalInputs full = in;
  full.input_ids = from_blob(all.data(), {1, int64_t(all.size())}, DType::I64).clone();
  const Tensor ref_logits = m->forward(full);  // (1, L + 8, V)

  std::vector<nn::KVCache> caches;
  qwen2::StepFn step = m->step_fn(in, caches);
  Tensor mask = ones({1, L}, DType::I64);
  Tensor last = step(in.input_ids, mask);  // (1, V)
  CHECK(rel_err(last, ref_logits.select(1, L - 1)) < 1e-4);
  for (int64_t i = 0; i < 8; ++i) {
    mask = ones({1, L + i + 1}, DType::I64);
    last = step(full.input_ids.narrow(1, L + i, 1), mask);
    INFO("decode step " << i);
    CHECK(rel_err(last, ref_logits.select(1, L + i)) < 1e-4);
  }
}

TEST_CASE("Qwen2-VL: a left-padded batch gives each row the logits of its prompt alone") {
  NoGradGuard no_grad;
  const auto m = model();
  const MultimodalInputs one = prompt();
  const std::vector<int64_t> ids = row(one.input_ids);
  const int64_t L = int64_t(ids.size());
  // Row 0: the two-image prompt; row 1: 6 of its text tokens alone, left-padded with 0.
  std::vector<int64_t> text_ids;
  for (int64_t id : ids)
    if (id < 290 && text_ids.size() < 6) text_ids.push_back(id);  // 290..294: the vision tokens
  REQUIRE(text_ids.size() == 6);
  std::vector<int64_t> batch(2 * L, 0), mask(2 * L, 0);
  for (int64_t t = 0; t < L; ++t) batch[t] = ids[t], mask[t] = 1;
  for (int64_t t = 0; t < 6; ++t) batch[2 * L - 6 + t] = text_ids[t], mask[2 * L - 6 + t] = 1;
  MultimodalInputs in = one;
  in.input_ids = from_blob(batch.data(), {2, L}, DType::I64).clone();
  in.attention_mask = from_blob(mask.data(), {2, L}, DType::I64).clone();
  const Tensor logits = m->forward(in);  // (2, L, V)
  CHECK(rel_err(logits.select(0, 0), ref().at("logits").select(0, 0)) < 1e-4);
  MultimodalInputs text;
  text.input_ids = from_blob(text_ids.data(), {1, 6}, DType::I64).clone();
  const Tensor alone = m->forward(text);  // (1, 6, V)
  CHECK(rel_err(logits.select(0, 1).narrow(0, L - 6, 6), alone.select(0, 0)) < 1e-4);
}

TEST_CASE("Qwen2-VL: sequential positions are 0..L-1 on all three axes") {
  const auto m = model();
  const MultimodalInputs in = prompt();
  const qwen2::RopeIndex pos = m->positions(in, PositionMode::Sequential);
  const std::vector<int64_t> p = row(pos.position_ids);
  const int64_t L = in.input_ids.size(1);
  for (int64_t a = 0; a < 3; ++a)
    for (int64_t t = 0; t < L; ++t) REQUIRE(p[a * L + t] == t);
  CHECK(pos.rope_deltas == std::vector<int64_t>{0});
  NoGradGuard no_grad;
  CHECK(m->forward(in, PositionMode::Sequential).size(1) == L);
}

TEST_CASE("Qwen2-VL: placeholder counts and checkpoint contents are checked") {
  NoGradGuard no_grad;
  const auto m = model();
  MultimodalInputs in = prompt();
  in.image_grid_thw.pop_back();  // one image fewer than the prompt's placeholders
  const int64_t n_first = in.image_grid_thw[0][0] * in.image_grid_thw[0][1] * in.image_grid_thw[0][2];
  in.pixel_values = in.pixel_values.narrow(0, 0, n_first);
  CHECK_THROWS_WITH_AS(m->forward(in), doctest::Contains("<|image_pad|> tokens but the 1 image(s) give"), Error);

  // A VARGPT-style checkpoint: the generation half is skipped, anything else unexpected is named.
  const std::string dir = "/tmp/vt_qwen2_vl_ckpt_" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(kTiny + "/config.json", dir + "/config.json",
                             std::filesystem::copy_options::overwrite_existing);
  std::map<std::string, Tensor> state = m->state_dict();
  state["vargpt_gen.head.weight"] = zeros({64, 8});
  state["sos_embedding.weight"] = zeros({4, 8});
  io::save_safetensors(dir + "/model.safetensors", state);
  CHECK_NOTHROW(Qwen2VLForConditionalGeneration::from_pretrained(dir, DType::F32));
  state["mystery.weight"] = zeros({2});
  state.erase("model.norm.weight");
  io::save_safetensors(dir + "/model.safetensors", state);
  CHECK_THROWS_WITH_AS(Qwen2VLForConditionalGeneration::from_pretrained(dir, DType::F32),
                       doctest::Contains("unexpected: mystery.weight"), Error);
  CHECK_THROWS_WITH_AS(Qwen2VLForConditionalGeneration::from_pretrained(dir, DType::F32),
                       doctest::Contains("missing: model.norm.weight"), Error);
  std::filesystem::remove_all(dir);
}

// Issue #19: a config.json without vision_config built the 7B vision tower (2.7 GB, 15 s) before
// failing on mis-shaped tensors; a huge vocab_size ran out of memory without naming config.json;
// hidden_size not divisible by the head count was not caught at load. Each is refused now, before
// anything is allocated, naming config.json and the key or the tensor.
TEST_CASE("Qwen2-VL: config.json sizes are checked against the checkpoint before allocation") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("vt_qwen2_vl_cfg_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::create_symlink(kTiny + "/model.safetensors", dir / "model.safetensors");
  std::ifstream in(kTiny + "/config.json");
  const nlohmann::json good = nlohmann::json::parse(in);
  const std::string cfg = (dir / "config.json").string();
  const auto load_with = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json j = good;
    edit(j);
    std::ofstream(cfg) << j.dump(2);
    try {
      Qwen2VLForConditionalGeneration::from_pretrained(dir.string(), DType::F32);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(loaded)");
  };
  CHECK(load_with([](nlohmann::json&) {}) == "(loaded)");
  struct Case {
    std::function<void(nlohmann::json&)> edit;
    std::vector<std::string> says;
  };
  const Case cases[] = {
      {[](nlohmann::json& j) { j.erase("vision_config"); }, {cfg + ": no \"vision_config\""}},
      {[](nlohmann::json& j) { j["text_config"]["vocab_size"] = 1000000; },
       {cfg + ": vocab_size and hidden_size give (1000000, 64) for model.embed_tokens.weight", "holds (300, 64)"}},
      {[](nlohmann::json& j) { j["text_config"]["intermediate_size"] = 4096; },
       {cfg + ": intermediate_size and hidden_size give (4096, 64) for model.layers.0.mlp.gate_proj.weight"}},
      {[](nlohmann::json& j) { j["text_config"]["num_hidden_layers"] = 40; },
       {cfg + ": num_hidden_layers is 40", "holds 2 layers"}},
      {[](nlohmann::json& j) { j["text_config"]["hidden_size"] = 66; },
       {cfg + ": hidden_size 66 is not divisible by num_attention_heads 4"}},
      {[](nlohmann::json& j) { j["vision_config"]["depth"] = 32; }, {cfg + ": vision_config.depth is 32", "holds 2"}},
      {[](nlohmann::json& j) { j["vision_config"]["embed_dim"] = 1280; },
       {cfg + ": vision_config's embed_dim, in_chans, temporal_patch_size and patch_size give (1280, 3, 2, 14, 14)"}},
  };
  for (const Case& c : cases) {
    const std::string e = load_with(c.edit);
    for (const std::string& s : c.says) CHECK_MESSAGE(e.find(s) != std::string::npos, e);
  }
  fs::remove_all(dir);
}
