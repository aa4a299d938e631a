// The Qwen2 decoder (models/qwen2) against transformers 4.46.3 (tools/gen_qwen2_fixtures.py): config
// parsing in both config layouts and its errors, loading tied and untied checkpoints, f32 logits
// (one prompt and a left-padded batch), greedy generation token for token (plain, with a stop
// token, with a repetition penalty), KV-cached decoding against the full forward, Qwen2-VL
// get_rope_index, checkpoint errors, and the sampler's processors against hand-computed values.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "qwen2/config.h"
#include "qwen2/generate.h"
#include "qwen2/qwen2.h"
#include "qwen2/rope_index.h"
#include "vt/autograd.h"
#include "vt/io/tensor_io.h"
#include "vt/ops.h"

using namespace vt;
using namespace vt::qwen2;
namespace fs = std::filesystem;

namespace {

const std::string kFx = VT_FIXTURES;
const std::string kTied = kFx + "/qwen2_tiny_tied", kUntied = kFx + "/qwen2_tiny_untied";
constexpr float kInf = std::numeric_limits<float>::infinity();

const std::map<std::string, Tensor>& fixture() {
  static const auto fx = io::load_safetensors(kFx + "/qwen2.safetensors");
  return fx;
}
const Tensor& fx(const std::string& key) {
  auto it = fixture().find(key);
  REQUIRE_MESSAGE(it != fixture().end(), "qwen2.safetensors has no ", key);
  return it->second;
}
const nlohmann::json& fixture_json() {
  static const nlohmann::json j = [] {
    std::ifstream in(kFx + "/qwen2.json");
    return nlohmann::json::parse(in);
  }();
  return j;
}

std::shared_ptr<Qwen2ForCausalLM> model(const std::string& tag, DType dtype = DType::F32) {
  static std::map<std::string, std::shared_ptr<Qwen2ForCausalLM>> cache;
  auto& m = cache[tag + std::string(dtype_name(dtype))];
  if (!m) m = Qwen2ForCausalLM::from_pretrained(tag == "tied" ? kTied : kUntied, dtype);
  return m;
}

// max |got - want| / max(1, max |want|): the relative error of a whole logits tensor.
double rel_err(const Tensor& got, const Tensor& want) {
  REQUIRE(got.shape() == want.shape());
  const Tensor g = got.to(DType::F64), w = want.to(DType::F64);
  return amax(abs(g - w)).item() / std::max(1.0, amax(abs(w)).item());
}

std::vector<int64_t> ints(const Tensor& t) { return t.to(DType::I64).contiguous().tolist<int64_t>(); }

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

GenerateResult greedy(const Qwen2ForCausalLM& m, const Tensor& ids, const Tensor& mask, GenerateOptions opt = {}) {
  std::vector<nn::KVCache> caches = m.make_caches();
  return generate(qwen2_text_step(m, caches), ids, mask, opt);
}

}  // namespace

// ---- config ------------------------------------------------------------------------------------

TEST_CASE("config.json: qwen2 and both qwen2_vl layouts") {
  const Qwen2Config c = Qwen2Config::load(kTied);
  CHECK(c.model_type == "qwen2");
  CHECK(c.vocab_size == 300);
  CHECK(c.hidden_size == 64);
  CHECK(c.intermediate_size == 128);
  CHECK(c.num_hidden_layers == 2);
  CHECK(c.num_attention_heads == 4);
  CHECK(c.num_key_value_heads == 2);
  CHECK(c.head_dim == 16);
  CHECK(c.rope_theta == 10000.0);
  CHECK(c.rms_norm_eps == 1e-6);
  CHECK(c.tie_word_embeddings);
  CHECK(c.max_position_embeddings == 256);
  CHECK(c.dtype == DType::F32);
  CHECK(!c.mrope_section.has_value());
  CHECK(!Qwen2Config::load(kUntied).tie_word_embeddings);

  // transformers 4.x Qwen2-VL-7B-Instruct: LLM fields and token ids at the top level.
  const Qwen2Config v4 = Qwen2Config::from_json_text(R"({
    "model_type": "qwen2_vl", "vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944,
    "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4, "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16", "eos_token_id": 151645,
    "image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652,
    "vision_end_token_id": 151653, "max_position_embeddings": 32768,
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}, "vision_config": {"depth": 32}})");
  CHECK(v4.head_dim == 128);
  CHECK(v4.rope_theta == 1e6);
  CHECK(v4.mrope_section == std::array<int64_t, 3>{16, 24, 24});
  CHECK(v4.dtype == DType::BF16);
  CHECK(v4.image_token_id == 151655);
  CHECK(v4.video_token_id == 151656);
  CHECK(v4.vision_start_token_id == 151652);
  CHECK(v4.eos_token_ids == std::vector<int64_t>{151645});

  // transformers 5.x: nested text_config, rope_parameters, "dtype".
  const Qwen2Config v5 = Qwen2Config::from_json_text(R"({
    "model_type": "qwen2_vl", "image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652,
    "text_config": {"model_type": "qwen2_vl_text", "vocab_size": 151936, "hidden_size": 1536,
      "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2,
      "dtype": "bfloat16", "tie_word_embeddings": true, "eos_token_id": [151645, 151643],
      "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]}}})");
  CHECK(v5.hidden_size == 1536);
  CHECK(v5.head_dim == 128);
  CHECK(v5.num_key_value_heads == 2);
  CHECK(v5.rope_theta == 1e6);
  CHECK(v5.tie_word_embeddings);
  CHECK(v5.mrope_section == std::array<int64_t, 3>{16, 24, 24});
  CHECK(v5.image_token_id == 151655);
  CHECK(v5.eos_token_ids == std::vector<int64_t>{151645, 151643});
}

TEST_CASE("config.json errors name the file, the model type or the field") {
  const std::string base = R"("vocab_size": 10, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
                              "num_attention_heads": 2)";
  CHECK(error_of([&] { Qwen2Config::from_json_text(R"({"model_type": "llama", )" + base + "}", "x/config.json"); })
            .find("\"llama\"") != std::string::npos);
  const std::string bad = error_of([] { Qwen2Config::from_json_text("{\"model_type\": \"qwen2\",", "dir/config.json"); });
  CHECK(bad.find("dir/config.json") != std::string::npos);
  // A number beyond double (found by tools/fuzz/fuzz_config): vt::Error naming the file, not nlohmann's out_of_range.
  CHECK(error_of([] { Qwen2Config::from_json_text(R"({"vocab_size": 1e309320})", "big/config.json"); })
            .find("big/config.json: malformed JSON") != std::string::npos);
  CHECK(bad.find("malformed JSON") != std::string::npos);
  CHECK(error_of([] { Qwen2Config::from_json_text(R"({"model_type": "qwen2", "vocab_size": 10})", "c.json"); })
            .find("hidden_size") != std::string::npos);
  CHECK(error_of([&] {
          Qwen2Config::from_json_text(R"({"model_type": "qwen2", "num_key_value_heads": 3, )" + base + "}", "c.json");
        }).find("num_key_value_heads 3") != std::string::npos);
  CHECK(error_of([&] {
          Qwen2Config::from_json_text(
              R"({"model_type": "qwen2_vl", "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 1]}, )" + base +
                  "}",
              "c.json");
        }).find("mrope_section") != std::string::npos);
  CHECK(error_of([] { Qwen2Config::load("/nonexistent/qwen2"); }).find("/nonexistent/qwen2") != std::string::npos);
}

// ---- loading and the forward -------------------------------------------------------------------

TEST_CASE("tied and untied checkpoints load under the hub names") {
  auto tied = model("tied"), untied = model("untied");
  CHECK(!tied->lm_head);
  CHECK(tied->lm_head_weight().is_same(tied->model->embed_tokens));
  CHECK(!tied->has_parameter("lm_head.weight"));
  CHECK(untied->has_parameter("lm_head.weight"));
  CHECK(tied->has_parameter("model.layers.1.self_attn.k_proj.bias"));
  CHECK(tied->parameter("model.layers.1.self_attn.k_proj.weight").shape() == Shape{32, 64});
  CHECK(tied->state_dict().size() == 26);
  CHECK(untied->state_dict().size() == 39);
  // The loaded values are the checkpoint's (norm weights are not their init value 1).
  const auto st = io::load_safetensors(kUntied + "/model.safetensors");
  CHECK(rel_err(untied->parameter("model.norm.weight"), st.at("model.norm.weight")) == 0);
  CHECK(rel_err(untied->parameter("lm_head.weight"), st.at("lm_head.weight")) == 0);
}

TEST_CASE("f32 logits equal transformers' (one prompt, both checkpoints)") {
  NoGradGuard no_grad;
  for (std::string tag : {"tied", "untied"}) {
    const Tensor ids = fx(tag + ".prompt");  // (1, 12)
    const Tensor logits = model(tag)->forward(ids, sequential_positions(1, ids.size(1)));
    const double e = rel_err(logits, fx(tag + ".logits"));
    CHECK_MESSAGE(e < 1e-4, tag, ": relative error ", e);
  }
}

TEST_CASE("left-padded batch logits equal transformers' at every real token") {
  NoGradGuard no_grad;
  for (std::string tag : {"tied", "untied"}) {
    const Tensor ids = fx(tag + ".batch_ids"), mask = fx(tag + ".batch_mask");  // (2, 10)
    const Tensor logits = model(tag)->forward(ids, positions_from_mask(mask), mask);
    const Tensor want = fx(tag + ".batch_logits");
    const auto m = ints(mask);
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t t = 0; t < ids.size(1); ++t) {
        if (!m[b * ids.size(1) + t]) continue;
        const double e = rel_err(logits[b][t], want[b][t]);
        CHECK_MESSAGE(e < 1e-4, tag, " row ", b, " token ", t, ": relative error ", e);
      }
  }
}

TEST_CASE("bf16 weights: logits close to the f32 reference") {
  NoGradGuard no_grad;
  const Tensor ids = fx("untied.prompt");
  auto m = model("untied", DType::BF16);
  CHECK(m->dtype() == DType::BF16);
  const Tensor logits = m->forward(ids, sequential_positions(1, ids.size(1)));
  CHECK(logits.dtype() == DType::BF16);
  const double e = rel_err(logits, fx("untied.logits"));
  CHECK_MESSAGE(e < 0.05, "relative error ", e);
  CHECK(e > 0);  // really bf16
}

// ---- generation ---------------------------------------------------------------------------------

TEST_CASE("32 greedy tokens identical to model.generate(do_sample=False)") {
  for (std::string tag : {"tied", "untied"}) {
    auto m = model(tag);
    const Tensor one = fx(tag + ".prompt");
    GenerateOptions opt;
    opt.max_new_tokens = 32;
    CHECK(ints(greedy(*m, one, Tensor(), opt).tokens) == ints(fx(tag + ".greedy")));
    const GenerateResult batch = greedy(*m, fx(tag + ".batch_ids"), fx(tag + ".batch_mask"), opt);
    CHECK(batch.tokens.shape() == Shape{2, 32});
    CHECK(ints(batch.tokens) == ints(fx(tag + ".batch_greedy")));
  }
}

TEST_CASE("greedy with a stop token (pad after it) and with HF's repetition penalty") {
  auto m = model("tied");
  const Tensor ids = fx("tied.batch_ids"), mask = fx("tied.batch_mask");
  const auto& meta = fixture_json()["meta"];
  GenerateOptions opt;
  opt.max_new_tokens = 32;
  opt.stop_tokens = {meta["eos_token_id"].get<int64_t>()};
  std::vector<std::vector<int64_t>> streamed(2);
  opt.on_token = [&](int64_t row, int64_t token) { streamed[row].push_back(token); };
  const GenerateResult r = greedy(*m, ids, mask, opt);
  const auto want = ints(fx("tied.batch_greedy_eos"));
  CHECK(ints(r.tokens) == want);
  // Row 0 stopped at its stop token; the stream saw exactly the tokens up to it.
  CHECK(r.length[0] < 32);
  CHECK(streamed[0].back() == opt.stop_tokens[0]);
  for (int64_t b = 0; b < 2; ++b) {
    CHECK(static_cast<int64_t>(streamed[b].size()) == r.length[b]);
    for (int64_t i = 0; i < r.length[b]; ++i) CHECK(streamed[b][i] == want[b * r.tokens.size(1) + i]);
    for (int64_t i = r.length[b]; i < r.tokens.size(1); ++i) CHECK(want[b * r.tokens.size(1) + i] == 0);
  }

  GenerateOptions pen;
  pen.max_new_tokens = 32;
  pen.sampling.repetition_penalty = meta["repetition_penalty"].get<double>();
  CHECK(ints(greedy(*m, ids, mask, pen).tokens) == ints(fx("tied.batch_greedy_penalty")));
}

TEST_CASE("KV-cached decoding (token by token and chunked) equals the full forward") {
  NoGradGuard no_grad;
  auto m = model("untied");
  // A 20-token sequence: the prompt and the first 8 greedy tokens.
  const Tensor seq = cat({fx("untied.prompt"), fx("untied.greedy").narrow(1, 0, 8)}, 1);  // (1, 20)
  const int64_t T = seq.size(1);
  const Tensor full = m->forward(seq, sequential_positions(1, T));  // (1, 20, V)
  for (std::vector<int64_t> chunks : {std::vector<int64_t>(20, 1), std::vector<int64_t>{7, 5, 8}}) {
    auto caches = m->make_caches();
    int64_t past = 0;
    for (int64_t n : chunks) {
      const Tensor got = m->forward(seq.narrow(1, past, n), sequential_positions(1, n, past), Tensor(), &caches);
      const double e = rel_err(got, full.narrow(1, past, n));
      CHECK_MESSAGE(e < 1e-5, "chunk of ", n, " at ", past, ": relative error ", e);
      past += n;
    }
    CHECK(caches[0].length == T);
  }
  // Left-padded batch: prefill 6 then 4 cached tokens with the growing key mask.
  auto tied = model("tied");
  const Tensor ids = fx("tied.batch_ids"), mask = fx("tied.batch_mask");  // (2, 10)
  const Tensor pos = positions_from_mask(mask);
  const Tensor want = tied->forward(ids, pos, mask);
  auto caches = tied->make_caches();
  const Tensor a = tied->forward(ids.narrow(1, 0, 6), pos.narrow(1, 0, 6), mask.narrow(1, 0, 6), &caches);
  const Tensor b = tied->forward(ids.narrow(1, 6, 4), pos.narrow(1, 6, 4), mask, &caches);
  CHECK(rel_err(a[0], want[0].narrow(0, 0, 6)) < 1e-5);  // row 0 has no padding
  CHECK(rel_err(b, want.narrow(1, 6, 4)) < 1e-5);        // both rows are real from column 4 on
  // last_only gives the last position of the same forward.
  auto c2 = tied->make_caches();
  CHECK(rel_err(tied->forward(ids, pos, mask, &c2, true), want.narrow(1, 9, 1)) < 1e-6);
}

// ---- M-RoPE positions -----------------------------------------------------------------------------

TEST_CASE("get_rope_index equals transformers 4.46 Qwen2-VL") {
  const auto& cases = fixture_json()["rope_index"];
  REQUIRE(cases.size() >= 7);
  for (const auto& c : cases) {
    const auto rows = c["input_ids"].get<std::vector<std::vector<int64_t>>>();
    const int64_t B = rows.size(), L = rows[0].size();
    std::vector<int64_t> flat;
    for (const auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
    Tensor mask;
    if (!c["attention_mask"].is_null()) {
      std::vector<int64_t> m;
      for (const auto& r : c["attention_mask"].get<std::vector<std::vector<int64_t>>>()) m.insert(m.end(), r.begin(), r.end());
      mask = from_vector(m, {B, L});
    }
    const auto grids = [](const nlohmann::json& j) { return j.get<std::vector<std::array<int64_t, 3>>>(); };
    const RopeIndex r = get_rope_index(from_vector(flat, {B, L}), grids(c["image_grid_thw"]), grids(c["video_grid_thw"]), mask);
    std::vector<int64_t> want;
    for (const auto& axis : c["position_ids"])
      for (const auto& row : axis) for (int64_t p : row) want.push_back(p);
    CHECK_MESSAGE(ints(r.position_ids) == want, c["name"].get<std::string>());
    CHECK_MESSAGE(r.rope_deltas == c["rope_deltas"].get<std::vector<int64_t>>(), c["name"].get<std::string>());
  }
  // Decoding after the spec example (13 tokens, delta -2): the next token is at 13 - 2 = 11 on every axis.
  CHECK(ints(decode_positions({-2, 0}, 13)) == std::vector<int64_t>{11, 13, 11, 13, 11, 13});
  // An image token count that does not fit the grid is an error naming the grid.
  const Tensor short_ids = from_vector(std::vector<int64_t>{1, 151652, 151655, 151653}, {1, 4});
  CHECK(error_of([&] { get_rope_index(short_ids, {{1, 4, 4}}); }).find("(1, 2, 2)") != std::string::npos);
}

TEST_CASE("M-RoPE with t = h = w positions equals 1-D RoPE in the decoder") {
  NoGradGuard no_grad;
  Qwen2Config cfg = Qwen2Config::load(kUntied);
  cfg.mrope_section = std::array<int64_t, 3>{2, 3, 3};  // head_dim 16
  Qwen2ForCausalLM vl(cfg);
  vl.load(kUntied);
  const Tensor ids = fx("untied.prompt");
  const Tensor pos = sequential_positions(1, ids.size(1));
  const Tensor pos3 = stack({pos, pos, pos});  // (3, 1, T)
  CHECK(rel_err(vl.forward(ids, pos3), fx("untied.logits")) < 1e-4);
  CHECK(error_of([&] { model("untied")->rope(pos3); }).find("mrope_section") != std::string::npos);
}

TEST_CASE("the fused residual stream gives the bits of the decoder written op by op (bf16 and f32)") {
  // The reference: HF's layer as separate ops (norm, attention, add, norm, MLP, add), then the final
  // norm. The model runs every add fused with the norm after it (add_rms_norm): bit for bit the same.
  NoGradGuard no_grad;
  for (DType dt : {DType::BF16, DType::F32}) {
    CAPTURE(dtype_name(dt));
    const auto m = model("untied", dt);
    const Tensor ids = fx("untied.prompt");
    const nn::RopeCosSin rope = m->rope(sequential_positions(1, ids.size(1)));
    const Tensor embeds = m->model->embed(ids);
    Tensor h = embeds;
    for (size_t i = 0; i < m->model->layers->size(); ++i) {
      const DecoderLayer& L = m->model->layers->at<DecoderLayer>(i);
      const Tensor r = add(h, L.self_attn->forward(L.input_layernorm->forward(h), rope, nn::AttentionMask::causal(),
                                                   nullptr));
      h = add(r, L.mlp->forward(L.post_attention_layernorm->forward(r)));
    }
    const Tensor want = m->model->norm->forward(h);
    const Tensor got = m->model->forward(embeds, rope);
    REQUIRE(got.shape() == want.shape());
    CHECK(sum(ne(got, want)).item() == 0);  // no element differs
  }
}

// ---- checkpoint errors ------------------------------------------------------------------------------

TEST_CASE("a checkpoint with a missing, extra or mis-shaped tensor names it and the expected shape") {
  const auto good = io::load_safetensors(kTied + "/model.safetensors");
  const fs::path dir = fs::temp_directory_path() / ("vt_qwen2_bad_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::copy_file(kTied + "/config.json", dir / "config.json", fs::copy_options::overwrite_existing);
  auto try_load = [&](std::map<std::string, Tensor> st) {
    io::save_safetensors((dir / "model.safetensors").string(), st);
    return error_of([&] { Qwen2ForCausalLM::from_pretrained(dir.string(), DType::F32); });
  };
  auto missing = good;
  missing.erase("model.layers.1.mlp.up_proj.weight");
  std::string e = try_load(missing);
  CHECK(e.find("missing    model.layers.1.mlp.up_proj.weight") != std::string::npos);
  CHECK(e.find(Shape{128, 64}.str()) != std::string::npos);

  auto extra = good;
  extra["lm_head.weight"] = zeros({300, 64});  // a tied model has no lm_head
  e = try_load(extra);
  CHECK(e.find("unexpected lm_head.weight") != std::string::npos);

  auto bad = good;
  bad["model.layers.0.self_attn.k_proj.weight"] = zeros({16, 64});
  e = try_load(bad);
  CHECK(e.find("mis-shaped model.layers.0.self_attn.k_proj.weight") != std::string::npos);
  CHECK(e.find(Shape{32, 64}.str()) != std::string::npos);
  CHECK(e.find(Shape{16, 64}.str()) != std::string::npos);

  // Issue #19: a config.json whose sizes do not match the weights fails before allocating, naming it.
  std::ifstream cfg_in(kTied + "/config.json");
  nlohmann::json cfg = nlohmann::json::parse(cfg_in);
  cfg["vocab_size"] = 1000000;  // refused before the (1000000, 64) embedding is allocated
  std::ofstream(dir / "config.json") << cfg.dump();
  e = try_load(good);
  CHECK_MESSAGE(e.find((dir / "config.json").string() + ": vocab_size and hidden_size give (1000000, 64)") !=
                    std::string::npos,
                e);

  std::ofstream(dir / "config.json") << R"({"model_type": "llama", "vocab_size": 300})";
  CHECK(try_load(good).find("\"llama\"") != std::string::npos);
  fs::remove_all(dir);
}

// ---- sampler ---------------------------------------------------------------------------------------

namespace {
Tensor row(std::vector<float> v) { return from_vector(v, {1, static_cast<int64_t>(v.size())}); }
std::vector<float> floats(const Tensor& t) { return t.contiguous().tolist<float>(); }
}  // namespace

TEST_CASE("top-k and top-p masks match hand-computed expectations") {
  Tensor s = row({1, 3, 2, 5, 4});
  apply_top_k(s, 2);
  CHECK(floats(s) == std::vector<float>{-kInf, -kInf, -kInf, 5, 4});
  s = row({2, 2, 1, 0});  // ties with the k-th value are kept (HF compares with <)
  apply_top_k(s, 1);
  CHECK(floats(s) == std::vector<float>{2, 2, -kInf, -kInf});
  s = row({1, 2});
  apply_top_k(s, 10);  // k > V keeps all
  CHECK(floats(s) == std::vector<float>{1, 2});

  // Probabilities 0.1, 0.2, 0.3, 0.4 (shuffled): ascending cumulative 0.1, 0.3, 0.6, 1.0.
  const std::vector<float> logp = {std::log(0.3f), std::log(0.1f), std::log(0.4f), std::log(0.2f)};
  s = row(logp);
  apply_top_p(s, 0.5);  // drop cumulative <= 0.5: the 0.1 and 0.2 tokens
  CHECK(floats(s) == std::vector<float>{logp[0], -kInf, logp[2], -kInf});
  s = row(logp);
  apply_top_p(s, 0.75);  // drop <= 0.25: only the 0.1 token
  CHECK(floats(s) == std::vector<float>{logp[0], -kInf, logp[2], logp[3]});
  s = row(logp);
  apply_top_p(s, 0.05);  // the largest always stays
  CHECK(floats(s) == std::vector<float>{-kInf, -kInf, logp[2], -kInf});

  s = row({2, -4, 1});
  apply_temperature(s, 0.5);
  CHECK(floats(s) == std::vector<float>{4, -8, 2});
}

TEST_CASE("repetition penalty: divide positive scores, multiply negative ones, once per id") {
  Tensor s = from_vector(std::vector<float>{2, -2, 1, 0.5f, 3, 3, 3, 3}, {2, 4});
  apply_repetition_penalty(s, {{0, 1, 1, 1}, {3}}, 2.0);
  CHECK(floats(s) == std::vector<float>{1, -4, 1, 0.5f, 3, 3, 3, 1.5f});
  CHECK(error_of([&] { apply_repetition_penalty(s, {{4}, {}}, 2.0); }).find("id 4") != std::string::npos);
  // Greedy picks the first maximum, after the penalty.
  Sampler greedy_sampler({.repetition_penalty = 2.0});
  CHECK(greedy_sampler.next(row({5, 9, 9, 6}), {{}}) == std::vector<int64_t>{1});
  CHECK(greedy_sampler.next(row({5, 9, 9, 6}), {{1, 2}}) == std::vector<int64_t>{3});
}

TEST_CASE("sampling: seeded, filtered, and equal to greedy with top_k = 1") {
  const Tensor flat = zeros({2, 1000});
  auto draw = [&](uint64_t seed) {
    Sampler s({.do_sample = true, .seed = seed});
    std::vector<int64_t> out;
    for (int i = 0; i < 16; ++i)
      for (int64_t t : s.next(flat, {{}, {}})) out.push_back(t);
    return out;
  };
  CHECK(draw(7) == draw(7));
  CHECK(draw(7) != draw(8));
  const auto d = draw(7);
  CHECK(std::set<int64_t>(d.begin(), d.end()).size() > 16);  // a flat distribution spreads out

  Generator g(3);
  const Tensor logits = randn({4, 50}, DType::F32, &g);
  Sampler top1({.do_sample = true, .temperature = 0.7, .top_k = 1, .seed = 1});
  Sampler argmax(SamplingOptions{});
  const std::vector<std::vector<int64_t>> none(4);
  CHECK(top1.next(logits, none) == argmax.next(logits, none));
  // top-k 3 and top-p: every draw lies among the survivors of the processed scores.
  Sampler s({.do_sample = true, .temperature = 1.3, .top_k = 3, .top_p = 0.9, .seed = 5});
  const Tensor kept = s.process(logits, none);
  const auto k = floats(kept);
  for (int i = 0; i < 50; ++i) {
    const auto t = s.next(logits, none);
    for (int64_t b = 0; b < 4; ++b) CHECK(std::isfinite(k[b * 50 + t[b]]));
  }
  int64_t survivors = 0;
  for (float v : k) survivors += std::isfinite(v);
  CHECK(survivors >= 4);
  CHECK(survivors <= 12);
}
