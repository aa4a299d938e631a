// The module system (include/vt/nn/module.h): dotted HF-style names, buffers, train/eval, freezing by
// glob and regex patterns, parameter counts with tied weights, in-place dtype conversion, and
// checkpoint loading: one error listing every missing, unexpected and mis-shaped tensor, non-strict
// loading, round trips through a file and a sharded directory, dtype casting on load, and a
// non-persistent parameter kept in step with a saved buffer by the state-dict hooks.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "vt/io/tensor_io.h"
#include "vt/nn/functional.h"
#include "vt/nn/module.h"
#include "vt/ops.h"
#include "vt/random.h"

using namespace vt;
using nn::Module;

namespace {

Tensor init(const Shape& s, uint64_t seed) {
  Generator g(seed);
  return randn(s, DType::F32, &g);
}

// y = x W^T + b: a test-only layer.
struct TestLinear : Module {
  Tensor weight, bias;
  TestLinear(int64_t in, int64_t out, bool with_bias, uint64_t seed) {
    weight = register_parameter("weight", init({out, in}, seed));  // (out, in)
    if (with_bias) bias = register_parameter("bias", init({out}, seed + 1));
  }
  Tensor forward(const Tensor& x) const { return nn::linear(x, weight, bias); }
};

struct Mlp : Module {
  std::shared_ptr<TestLinear> up, down;
  explicit Mlp(uint64_t seed) {
    up = register_module("up_proj", std::make_shared<TestLinear>(4, 6, false, seed));
    down = register_module("down_proj", std::make_shared<TestLinear>(6, 4, false, seed + 2));
  }
};

struct Block : Module {
  std::shared_ptr<TestLinear> q;
  std::shared_ptr<Mlp> mlp;
  Tensor norm;
  explicit Block(uint64_t seed) {
    auto attn = register_module("self_attn", std::make_shared<Module>());
    q = attn->register_module("q_proj", std::make_shared<TestLinear>(4, 4, true, seed));
    mlp = register_module("mlp", std::make_shared<Mlp>(seed + 10));
    norm = register_parameter("input_layernorm_weight", ones({4}));
  }
};

// model.embed_tokens.weight, model.layers.<i>.{self_attn.q_proj, mlp.up_proj, mlp.down_proj, ...},
// model.norm.weight, lm_head.weight (tied to the embedding), plus buffers.
struct TinyLM : Module {
  std::shared_ptr<Module> model = register_module("model", std::make_shared<Module>());
  std::shared_ptr<nn::ModuleList> layers;
  Tensor embed, lm_head_weight, rope, positions;
  explicit TinyLM(int n_layers = 2, bool tied = true) {
    auto embed_tokens = model->register_module("embed_tokens", std::make_shared<Module>());
    embed = embed_tokens->register_parameter("weight", init({10, 4}, 1));  // (V, D)
    layers = model->register_module("layers", std::make_shared<nn::ModuleList>());
    for (int i = 0; i < n_layers; ++i) layers->push_back(std::make_shared<Block>(100 + 20 * i));
    auto norm = model->register_module("norm", std::make_shared<Module>());
    norm->register_parameter("weight", ones({4}));
    auto head = register_module("lm_head", std::make_shared<Module>());
    lm_head_weight = head->register_parameter("weight", tied ? embed : init({10, 4}, 2));
    rope = register_buffer("rope_cache", init({3}, 5), /*persistent=*/false);
    positions = register_buffer("position_ids", arange(3));  // int64, persistent
  }
};

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  Tensor x = a.contiguous(), y = b.contiguous();
  return std::memcmp(x.raw_data(), y.raw_data(), x.nbytes()) == 0;
}

std::vector<std::string> names_of(const std::vector<std::pair<std::string, Tensor>>& v) {
  std::vector<std::string> out;
  for (auto& [n, t] : v) out.push_back(n);
  return out;
}

struct TempDir {
  std::filesystem::path path = std::filesystem::temp_directory_path() / ("vt_test_module_" + std::to_string(::getpid()));
  TempDir() { std::filesystem::create_directories(path); }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string operator/(const std::string& f) const { return (path / f).string(); }
};

}  // namespace

TEST_CASE("named_parameters: dotted HF names in registration order, tied weights once") {
  TinyLM m;
  const std::vector<std::string> expected = {
      "model.embed_tokens.weight",
      "model.layers.0.input_layernorm_weight",  // own parameters before children, as in torch
      "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.q_proj.bias",
      "model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.down_proj.weight",
      "model.layers.1.input_layernorm_weight",  // own parameters before children, as in torch
      "model.layers.1.self_attn.q_proj.weight", "model.layers.1.self_attn.q_proj.bias",
      "model.layers.1.mlp.up_proj.weight", "model.layers.1.mlp.down_proj.weight",
      "model.norm.weight"};
  CHECK(names_of(m.named_parameters()) == expected);  // lm_head.weight is the embedding: listed once
  CHECK(m.parameters().size() == expected.size());
  auto sd = m.state_dict();  // every name, tied ones included, persistent buffers only
  CHECK(sd.count("lm_head.weight"));
  CHECK(sd.count("position_ids"));
  CHECK(!sd.count("rope_cache"));
  CHECK(sd.size() == expected.size() + 2);
  CHECK(names_of(m.named_buffers()) == std::vector<std::string>{"rope_cache", "position_ids"});
  CHECK(m.parameter("model.layers.1.mlp.up_proj.weight").is_same(m.layers->at<Block>(1).mlp->up->weight));
  CHECK(m.has_parameter("model.norm.weight"));
  CHECK(!m.has_parameter("model.norm"));
  CHECK(&m.child("model.layers.1.mlp") == m.layers->at<Block>(1).mlp.get());
  CHECK_THROWS_WITH_AS(m.parameter("model.layers.7.mlp.up_proj.weight"), doctest::Contains("model.layers.7"), Error);
  auto mods = m.named_modules();
  CHECK(mods[0].first == "");
  CHECK(mods[1].first == "model");
  CHECK(mods[2].first == "model.embed_tokens");
  CHECK(mods[3].first == "model.layers");
  CHECK(mods[4].first == "model.layers.0");
  // A child name may carry dots itself.
  Module root;
  root.register_module("layers.0", std::make_shared<TestLinear>(2, 3, true, 9));
  CHECK(names_of(root.named_parameters()) == std::vector<std::string>{"layers.0.weight", "layers.0.bias"});
  CHECK(&root.child("layers.0") != nullptr);
}

TEST_CASE("registration errors name the offending entry") {
  Module m;
  m.register_parameter("w", zeros({2}));
  CHECK_THROWS_WITH_AS(m.register_parameter("w", zeros({2})), doctest::Contains("'w'"), Error);
  CHECK_THROWS_WITH_AS(m.register_buffer("w", zeros({2})), doctest::Contains("'w'"), Error);
  CHECK_THROWS_WITH_AS(m.register_parameter("a.b", zeros({2})), doctest::Contains("'a.b'"), Error);
  CHECK_THROWS_AS(m.register_module("c", std::shared_ptr<Module>()), Error);
  CHECK(m.parameter("w").requires_grad());
}

TEST_CASE("train / eval reach every submodule") {
  TinyLM m;
  CHECK(m.is_training());
  m.eval();
  for (auto& [name, mod] : m.named_modules()) CHECK_MESSAGE(!mod->is_training(), name);
  m.train();
  CHECK(m.layers->at<Block>(1).mlp->is_training());
}

TEST_CASE("freeze / unfreeze by glob and regex patterns; counts follow") {
  TinyLM m;
  const int64_t total = m.num_parameters();
  CHECK(total == 40 + 2 * (16 + 4 + 24 + 24 + 4) + 4);  // embed, 2 layers, norm; lm_head tied
  CHECK(m.num_parameters(true) == total);

  CHECK(m.freeze("model.layers.*.mlp.*") == 4);  // up and down of both layers
  CHECK(!m.layers->at<Block>(0).mlp->up->weight.requires_grad());
  CHECK(m.layers->at<Block>(0).q->weight.requires_grad());
  CHECK(m.num_parameters(true) == total - 2 * 48);
  CHECK(m.num_parameters() == total);

  CHECK(m.unfreeze("model.layers.1") == 5);  // a module prefix selects everything below it
  CHECK(m.layers->at<Block>(1).mlp->up->weight.requires_grad());
  CHECK(!m.layers->at<Block>(0).mlp->down->weight.requires_grad());

  CHECK(m.freeze("*") == 12);
  CHECK(m.num_parameters(true) == 0);
  CHECK(m.parameters(true).empty());
  CHECK(m.unfreeze("model.layers.?.self_attn.q_proj.bias") == 2);
  CHECK(m.unfreeze(R"(model\.layers\.[0-9]+\.(self_attn|mlp)\..*weight)", nn::PatternSyntax::Regex) == 6);
  CHECK(m.num_parameters(true) == 2 * (4 + 16 + 24 + 24));
  CHECK(m.freeze("nothing.matches") == 0);
  CHECK_THROWS_AS(m.freeze("([", nn::PatternSyntax::Regex), Error);

  CHECK(nn::name_matches("model.*.weight", "model.layers.0.mlp.up_proj.weight"));
  CHECK(!nn::name_matches("model.layers.1*", "model.layers.0.x"));
  CHECK(nn::name_matches("model.layers.1*", "model.layers.12.x"));
  CHECK(!nn::name_matches("model.lay", "model.layers.0.x"));  // prefixes end at a dot
}

TEST_CASE("to(dtype) converts floating tensors in place: held handles follow, int buffers stay") {
  TinyLM m;
  Tensor w = m.layers->at<Block>(0).q->weight;
  Tensor f32 = w.clone();
  m.to(DType::BF16);
  CHECK(w.dtype() == DType::BF16);
  CHECK(w.requires_grad());
  CHECK(bitwise_equal(w, f32.to(DType::BF16)));
  CHECK(m.positions.dtype() == DType::I64);
  CHECK(m.rope.dtype() == DType::BF16);
  CHECK(m.lm_head_weight.is_same(m.embed));  // still tied
  m.to(Device::cpu());
  CHECK(w.device() == Device::cpu());
}

TEST_CASE("load: one error lists every missing, unexpected and mis-shaped tensor with paths and shapes") {
  TempDir dir;
  TinyLM src;
  auto sd = src.state_dict();
  sd.erase("model.layers.1.mlp.down_proj.weight");
  sd.erase("model.norm.weight");
  sd["model.layers.0.mlp.gate_proj.weight"] = zeros({6, 4});
  sd["model.layers.0.self_attn.q_proj.weight"] = zeros({4, 5});
  const std::string path = dir / "bad.safetensors";
  io::save_safetensors(path, sd);

  TinyLM m;
  Tensor before = m.layers->at<Block>(0).mlp->up->weight.clone();
  std::string msg;
  try {
    m.load(path);
  } catch (const Error& e) {
    msg = e.what();
  }
  MESSAGE(msg);
  CHECK(msg.find(path) != std::string::npos);
  CHECK(msg.find("2 missing, 1 unexpected, 1 mis-shaped") != std::string::npos);
  CHECK(msg.find("missing    model.layers.1.mlp.down_proj.weight (module 'model.layers.1.mlp.down_proj'): module "
                 "expects (4, 6) float32") != std::string::npos);
  CHECK(msg.find("missing    model.norm.weight") != std::string::npos);
  CHECK(msg.find("unexpected model.layers.0.mlp.gate_proj.weight: checkpoint has (6, 4) float32") != std::string::npos);
  CHECK(msg.find("mis-shaped model.layers.0.self_attn.q_proj.weight (module 'model.layers.0.self_attn.q_proj'): "
                 "checkpoint has (4, 5) float32, module expects (4, 4) float32") != std::string::npos);
  CHECK(bitwise_equal(before, m.layers->at<Block>(0).mlp->up->weight));  // nothing loaded on failure

  // strict=false tolerates missing and unexpected tensors, never a wrong shape.
  sd["model.layers.0.self_attn.q_proj.weight"] = src.layers->at<Block>(0).q->weight;
  nn::LoadResult r = m.load_state_dict(sd, false);
  CHECK(r.missing == std::vector<std::string>{"model.layers.1.mlp.down_proj.weight", "model.norm.weight"});
  CHECK(r.unexpected == std::vector<std::string>{"model.layers.0.mlp.gate_proj.weight"});
  CHECK(bitwise_equal(src.layers->at<Block>(0).mlp->up->weight, m.layers->at<Block>(0).mlp->up->weight));
  CHECK_THROWS_WITH_AS(m.load(path, false), doctest::Contains("0 missing, 0 unexpected, 1 mis-shaped"), Error);
}

TEST_CASE("save / load round trip through a file and a sharded directory") {
  TempDir dir;
  TinyLM a(2, /*tied=*/false);
  a.save(dir / "model.safetensors", {{"format", "pt"}});
  TinyLM b(2, false);
  for (auto& [n, t] : b.named_parameters()) {  // make b differ from a everywhere
    Tensor d = t.detach();
    NoGradGuard ng;
    fill_(d, 0.25);
  }
  nn::LoadResult r = b.load(dir / "model.safetensors");
  CHECK(r.loaded == static_cast<int64_t>(a.state_dict().size()));
  for (auto& [n, t] : a.state_dict()) CHECK_MESSAGE(bitwise_equal(t, b.parameter(n)), n);
  CHECK(io::SafetensorsFile::open(dir / "model.safetensors")->metadata().at("format") == "pt");

  a.save_sharded(dir / "sharded", 200);  // several shards + model.safetensors.index.json
  CHECK(std::filesystem::exists(dir / "sharded/model.safetensors.index.json"));
  TinyLM c(2, false);
  c.load(dir / "sharded");
  for (auto& [n, t] : a.state_dict()) CHECK_MESSAGE(bitwise_equal(t, c.parameter(n)), n);
}

TEST_CASE("load casts checkpoint tensors to the parameter dtype") {
  TempDir dir;
  TinyLM f32;
  f32.save(dir / "f32.safetensors");
  TinyLM bf;
  bf.to(DType::BF16);
  bf.load(dir / "f32.safetensors");
  for (auto& [n, t] : f32.named_parameters()) CHECK_MESSAGE(bitwise_equal(t.to(DType::BF16), bf.parameter(n)), n);
  bf.save(dir / "bf16.safetensors");
  TinyLM back;  // bf16 checkpoint into an f32 model: exact widening
  back.load(dir / "bf16.safetensors");
  for (auto& [n, t] : bf.named_parameters()) CHECK_MESSAGE(bitwise_equal(t.to(DType::F32), back.parameter(n)), n);
  CHECK(back.parameter("position_ids").dtype() == DType::I64);
}

// A saved table of which one row is trained (vargpt's sos_embedding with sos_single_row): the table
// is a buffer, the row a non-persistent parameter kept in step by the state-dict hooks.
struct OneRowTable : Module {
  Tensor table, row;  // table (4, 3) "table", row (1, 3) "row"
  static constexpr int64_t kRead = 2;
  OneRowTable() {
    table = register_buffer("table", init({4, 3}, 7));
    row = register_parameter("row", table.narrow(0, kRead, 1).clone(), true, /*persistent=*/false);
  }
  void before_state_dict() const override {
    NoGradGuard ng;
    Tensor dst = table.narrow(0, kRead, 1);
    copy_(dst, row.detach());
  }
  void after_load() override {
    NoGradGuard ng;
    Tensor dst = row.detach();
    copy_(dst, table.narrow(0, kRead, 1));
  }
};

TEST_CASE("a non-persistent parameter is trained but not saved; the state-dict hooks keep it in step") {
  TempDir dir;
  OneRowTable a;
  CHECK(a.named_parameters(/*trainable_only=*/true).size() == 1);
  CHECK(a.num_parameters(true) == 3);
  CHECK(a.parameter("row").is_same(a.row));  // found by name although not in the state dict
  {
    NoGradGuard ng;
    Tensor r = a.row.detach();
    fill_(r, 1.5);  // "trained"
  }
  const Tensor before = a.table.clone();
  const auto sd = a.state_dict();
  CHECK(sd.size() == 1);  // "table" only
  const Tensor saved = sd.at("table");
  CHECK(bitwise_equal(saved.narrow(0, OneRowTable::kRead, 1), full({1, 3}, 1.5)));
  for (int64_t i : {0, 1, 3}) CHECK(bitwise_equal(saved.narrow(0, i, 1), before.narrow(0, i, 1)));  // others kept
  a.save(dir / "t.safetensors");
  OneRowTable b;
  b.load(dir / "t.safetensors");
  CHECK(bitwise_equal(b.row, full({1, 3}, 1.5)));  // read back out of the table
  CHECK(bitwise_equal(b.table, saved));
  // load_state_dict runs the same hook.
  OneRowTable c;
  c.load_state_dict({{"table", zeros({4, 3})}});
  CHECK(bitwise_equal(c.row, zeros({1, 3})));
}
