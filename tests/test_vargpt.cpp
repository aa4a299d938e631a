// VARGPT-v1.1 (models/vargpt) against a PyTorch reference written from the spec
// (tools/vargpt_reference.py, fixtures by tools/gen_vargpt_fixtures.py) at a tiny size: the sharded
// checkpoint loads by mmap; the teacher-forced forward gives the text and generation logits, the
// §11 loss and the gradient of every parameter of each stage's trainable set; the per-scale loop
// with the LLM in the loop, fed the reference's uniform draws, gives its bits at every scale and its
// pixels (text-to-image and editing). Then invariants with no reference: the KV-cached loop fed its
// own bits equals one teacher-forced forward; a batch equals each prompt alone; loader and tokenizer
// errors name what is wrong.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include "infinity/sampler.h"
#include "infinity/self_correction.h"
#include "tokenizer/bpe.h"
#include "vargpt/generate.h"
#include "vargpt/init.h"
#include "vargpt/training.h"
#include "vt/autograd.h"
#include "vt/io/safetensors.h"
#include "vt/io/tensor_io.h"
#include "vt/ops.h"

using namespace vt;
using vargpt::Vargpt;

namespace {

const std::string kTiny = std::string(VT_FIXTURES) + "/vargpt_tiny";

const std::map<std::string, Tensor>& ref() {
  static const auto r = io::load_safetensors(kTiny + "/reference.safetensors");
  return r;
}

std::map<std::string, Tensor> reference_grads() {
  std::map<std::string, Tensor> g;
  for (const char* f : {"/grads.safetensors", "/grads_llm.safetensors", "/grads_gen.safetensors"})
    if (std::filesystem::exists(kTiny + f))
      for (auto& [k, v] : io::load_safetensors(kTiny + f)) g[k] = v;
  return g;
}

std::shared_ptr<Vargpt> model() {
  static auto m = Vargpt::from_pretrained(kTiny, DType::F32);
  return m;
}

// max |a - b| / max(mean |b| over b's nonzero entries, 1e-3 max |b|): relative to the reference's
// scale (sos_embedding's gradient is one nonzero row of 289).
double rel_err(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const Tensor bb = b.to(DType::F64), d = abs(a.detach().to(Device::cpu()).to(DType::F64) - bb);
  const double nonzero = sum(ne(bb, 0.0)).item();
  if (nonzero == 0) return amax(d).item();
  const double scale = std::max(sum(abs(bb)).item() / nonzero, 1e-3 * amax(abs(bb)).item());
  return amax(d).item() / scale;
}

// A gradient vt did not produce (the tensor is not used by the loss: ln_q (Q1), text_proj_for_ca
// (Q7), cfg_uncond without condition dropout) must be zero in the reference.
double grad_err(const Tensor& p, const Tensor& want) {
  if (p.grad().defined()) return rel_err(p.grad(), want);
  return amax(abs(want.to(DType::F64))).item();
}

// Pixels are uint8 truncations of the decoder's output: a value within float rounding of an
// integer may land one level apart from torch. Returns the pixels that differ, after checking
// that none differs by more than one level.
int64_t pixels_off_by_one(const Tensor& a, const Tensor& b) {
  const Tensor d = abs(a.to(DType::I64) - b.to(DType::I64));
  CHECK(amax(d).item() <= 1);
  return static_cast<int64_t>(sum(ne(d, 0.0)).item());
}

std::vector<int64_t> ids_of(const Tensor& t) {
  const Tensor c = t.to(DType::I64).contiguous().reshape({-1});
  return std::vector<int64_t>(c.data<int64_t>(), c.data<int64_t>() + c.numel());
}

int64_t count_ne(const Tensor& a, const Tensor& b) {
  return static_cast<int64_t>(sum(ne(a.to(DType::I64), b.to(DType::I64))).item());
}

infinity::ScaleSchedule schedule_256() { return infinity::schedule_for_image(256, 256); }

vargpt::TrainingBatch reference_batch() {
  const auto& r = ref();
  vargpt::TrainingBatch b;
  b.input_ids = r.at("train.input_ids");
  b.attention_mask = r.at("train.attention_mask");
  b.pixel_values = r.at("train.pixel_values");
  b.image_grid_thw = qwen2_vl::grid_rows(r.at("train.image_grid_thw"));
  b.gen_inputs = r.at("train.inputs");
  b.gen_labels = r.at("train.labels");
  b.schedule = schedule_256();
  return b;
}

vargpt::Prompt reference_prompt(const std::string& which) {
  vargpt::Prompt p;
  p.ids = ids_of(ref().at(which + ".input_ids"));
  if (ref().count(which + ".pixel_values")) {
    p.pixel_values = ref().at(which + ".pixel_values");
    p.image_grid_thw = qwen2_vl::grid_rows(ref().at(which + ".image_grid_thw"));
  }
  return p;
}

// The hand-off of prompts that end with <|image_gen_start|>: the prefill itself (the reference
// prefills the start token with the prompt). With `as_decode_step` the start token is stripped and
// decode_text forces it as its first token instead, which must give the same image.
vargpt::HandOff hand_off(const Vargpt& m, std::vector<vargpt::Prompt> prompts, bool as_decode_step = false) {
  vargpt::TextOptions opt;
  opt.max_new_tokens = 1;
  opt.force_image = true;
  for (auto& p : prompts) {
    REQUIRE(p.ids.back() == m.tokens().start);
    if (as_decode_step) p.ids.pop_back();
  }
  vargpt::TextResult r = vargpt::decode_text(m, prompts, opt);
  for (size_t b = 0; b < prompts.size(); ++b) {
    REQUIRE(r.wants_image[b]);
    CHECK(r.tokens[b].size() == (as_decode_step ? 1u : 0u));
  }
  return std::move(r.state);
}

vargpt::ImageOptions reference_image_options() {
  vargpt::ImageOptions o;
  o.height = o.width = 256;
  o.cfg = 3.0;
  o.tau = 0.5;
  o.top_p = 0.97;
  return o;
}

}  // namespace

TEST_CASE("VARGPT: the sharded tiny checkpoint loads with the configuration read off its tensors") {
  const auto m = model();
  const vargpt::VargptConfig& c = m->config();
  CHECK(c.tokens.start == 288);
  CHECK(c.tokens.end == 289);
  CHECK(c.tokens.pad == 290);
  CHECK(c.gen.depth == 2);
  CHECK(c.gen.block_chunks == 2);
  CHECK(c.gen.embed_dim == 64);
  CHECK(c.gen.num_heads == 4);
  CHECK(c.gen.codebook_dim == 16);
  CHECK(c.gen.text_maxlen == 128);
  CHECK(c.vae.codebook_dim == 16);
  CHECK(c.vae.patch_size == 16);
  CHECK(m->sos_embedding.shape() == Shape{289, 64});
  CHECK(vargpt::VargptConfig::has_generation(kTiny));
  CHECK_FALSE(vargpt::VargptConfig::has_generation(std::string(VT_FIXTURES) + "/qwen2_vl_tiny"));
}

TEST_CASE("VARGPT: teacher-forced text and generation logits, loss and gradients equal the PyTorch reference") {
  const auto m = model();
  const auto& r = ref();
  vargpt::TrainingOptions opt;
  opt.text_logits = true;
  m->unfreeze("*");
  m->freeze("vae_local");
  m->zero_grad();
  vargpt::TrainingOutput out = vargpt::training_forward(*m, reference_batch(), opt);
  // Text logits at the positions the reference kept (every non-pad position).
  const Tensor pos = r.at("train.text_logit_positions").to(DType::I64).contiguous();
  std::vector<Tensor> rows;
  for (int64_t i = 0; i < pos.size(0); ++i)
    rows.push_back(out.text_logits.select(0, pos.data<int64_t>()[2 * i]).select(0, pos.data<int64_t>()[2 * i + 1]));
  CHECK(rel_err(stack(rows, 0), r.at("train.text_logits_rows")) < 1e-4);
  CHECK(rel_err(out.gen_logits, r.at("train.gen_logits")) < 1e-4);
  CHECK(std::abs(out.text_loss.item() - r.at("train.text_loss").item()) < 1e-4);
  CHECK(std::abs(out.image_loss.item() - r.at("train.image_loss").item()) < 1e-4);
  CHECK(std::abs(out.loss.item() - r.at("train.loss").item()) < 1e-4);
  out.loss.backward();
  const auto g = reference_grads();
  REQUIRE(g.size() > 50);
  int64_t compared = 0;
  for (const auto& [name, want] : g) {
    INFO(name);
    CHECK(grad_err(m->parameter(name), want) < 1e-4);
    ++compared;
  }
  // Every trainable parameter outside the VAE has a reference gradient.
  for (const auto& [name, p] : m->named_parameters(/*trainable_only=*/true)) {
    INFO(name);
    CHECK(g.count(name) == 1);
  }
  MESSAGE("compared the gradients of ", compared, " tensors");
  m->zero_grad();
  m->freeze("*");
}

TEST_CASE("VARGPT: each stage's freeze preset trains exactly its set, and its gradients are the reference's") {
  const auto m = model();
  const auto g = reference_grads();
  struct Want {
    int stage;
    std::vector<std::string> prefixes;
  };
  for (const Want& w : std::vector<Want>{
           {1, {"sos_embedding.", "image_gen_projector.", "image_gen_projector_out."}},
           {2, {"model.", "lm_head."}},
           {3, {"vargpt_gen.", "sos_embedding.", "image_gen_projector.", "image_gen_projector_out."}},
           {5, {"visual.", "model.", "lm_head.", "vargpt_gen.", "sos_embedding.", "image_gen_projector."}}}) {
    INFO("stage ", w.stage);
    vargpt::apply_freeze_preset(*m, w.stage);
    m->zero_grad();
    vargpt::training_forward(*m, reference_batch()).loss.backward();
    int64_t trained = 0;
    for (const auto& [name, p] : m->named_parameters()) {
      bool in_set = false;
      for (const std::string& pre : w.prefixes) in_set |= name.rfind(pre, 0) == 0;
      in_set |= w.stage == 5 && name.rfind("image_gen_projector_out.", 0) == 0;
      INFO(name);
      CHECK(p.requires_grad() == in_set);
      if (!in_set) {
        CHECK_FALSE(p.grad().defined());
        continue;
      }
      CHECK(grad_err(p, g.at(name)) < 1e-4);
      ++trained;
    }
    CHECK(trained > 0);
  }
  m->zero_grad();
  m->freeze("*");
  CHECK_THROWS_WITH_AS(vargpt::freeze_preset_stage("stage9"), doctest::Contains("stage1"), Error);
}

namespace {
// The autograd nodes reachable from `root` (the graph a backward would walk).
int64_t graph_size(const Tensor& root) {
  std::vector<Node*> stack{root.grad_fn().get()};
  std::set<Node*> seen;
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    if (!n || !seen.insert(n).second) continue;
    for (const auto& next : n->next) stack.push_back(next.get());
  }
  return static_cast<int64_t>(seen.size());
}
}  // namespace

TEST_CASE("VARGPT: activation checkpointing keeps one node per block and gives bit-identical gradients") {
  const auto m = model();
  m->unfreeze("*");
  m->freeze("vae_local");
  const vargpt::TrainingBatch batch = reference_batch();
  REQUIRE(batch.pixel_values.defined());  // the ViT's blocks run too
  std::map<std::string, Tensor> plain;
  m->zero_grad();
  vargpt::TrainingOutput a = vargpt::training_forward(*m, batch);
  const int64_t nodes_plain = graph_size(a.loss);
  a.loss.backward();
  for (const auto& [name, p] : m->named_parameters(/*trainable_only=*/true))
    if (p.grad().defined()) plain[name] = p.grad().clone();  // (ln_q is kept for saving, never applied)
  REQUIRE(plain.size() > 50);

  m->gradient_checkpointing_enable();
  m->zero_grad();
  vargpt::TrainingOutput b = vargpt::training_forward(*m, batch);
  const int64_t nodes_ckpt = graph_size(b.loss);
  b.loss.backward();
  m->gradient_checkpointing_enable(false);
  MESSAGE("autograd nodes: ", nodes_plain, " plain, ", nodes_ckpt, " with checkpointing");
  // Each tower on its own shrinks the graph: a tower that ignored its switch would not.
  for (bool* on : {&m->visual->gradient_checkpointing, &m->lm->model->gradient_checkpointing,
                   &m->vargpt_gen->gradient_checkpointing}) {
    *on = true;
    const int64_t n = graph_size(vargpt::training_forward(*m, batch).loss);
    *on = false;
    CHECK(n < nodes_plain - 10);
  }
  // Each block's dozens of nodes become one: a switch that does nothing keeps the graph as it was.
  CHECK(nodes_ckpt < nodes_plain / 2);
  CHECK(b.loss.item() == a.loss.item());
  for (const auto& [name, g] : plain) {
    INFO(name);
    REQUIRE(m->parameter(name).grad().defined());
    CHECK(amax(abs(m->parameter(name).grad() - g)).item() == 0.0);
  }
  m->zero_grad();
  m->freeze("*");
}

TEST_CASE("VARGPT: the per-scale loop fed the reference's draws gives its bits, logits and pixels") {
  const auto m = model();
  const auto& r = ref();
  for (const auto& [which, as_step] : std::vector<std::pair<std::string, bool>>{{"t2i", false}, {"edit", false},
                                                                               {"t2i", true}}) {
    INFO(which, as_step ? " (start token as a decode step)" : "");
    vargpt::HandOff st = hand_off(*m, {reference_prompt(which)}, as_step);
    vargpt::ImageOptions opt = reference_image_options();
    opt.uniforms = r.at(which + ".uniform");
    const vargpt::ImageResult out = vargpt::generate_image(*m, st, opt);
    CHECK(rel_err(out.memory.rows, r.at(which + ".memory")) < 1e-4);
    const auto sched = schedule_256();
    for (int64_t k = 0; k < sched.num_scales(); ++k) {
      INFO("scale ", k);
      CHECK(rel_err(out.logits[k], r.at(which + ".logits." + std::to_string(k))) < 1e-4);
      CHECK(count_ne(out.bits[k], r.at(which + ".bits." + std::to_string(k))) == 0);
    }
    CHECK(rel_err(out.latent, r.at(which + ".latent")) < 1e-5);
    // The same image: at most one level apart, in under 0.05% of the values (float rounding at a
    // truncation boundary; the latent above is equal to 1e-5).
    CHECK(pixels_off_by_one(out.pixels, r.at(which + ".pixels")) <= out.pixels.numel() / 2000);
    // The draws decide some bits: the test would notice a sampler that ignored them.
    int64_t drawn = 0;
    for (const Tensor& l : out.logits) {
      const Tensor p = infinity::bit_probabilities(l, 900, 0.97);
      drawn += static_cast<int64_t>(sum(logical_and(gt(p, 0.0), lt(p, 1.0))).item());
    }
    CHECK(drawn > 100);
  }
}

TEST_CASE("VARGPT: the KV-cached per-scale loop fed its own bits equals one teacher-forced forward") {
  const auto m = model();
  NoGradGuard no_grad;
  // Faithful (causal inside a scale's LLM chunk), and with the Q11 fix in both paths.
  for (const bool block_causal : {false, true}) {
  INFO("llm_block_causal ", block_causal);
  vargpt::Prompt p = reference_prompt("t2i");
  vargpt::HandOff st = hand_off(*m, {p});
  vargpt::ImageOptions opt = reference_image_options();
  opt.seeds = {7};
  opt.decode = false;
  opt.llm_block_causal = block_causal;
  const vargpt::ImageResult out = vargpt::generate_image(*m, st, opt);
  // The training sequence: the same prompt, the start token, P pads, end, <|im_end|>.
  const auto sched = schedule_256();
  std::vector<int64_t> ids = p.ids;
  ids.insert(ids.end(), sched.padded_tokens(infinity::kSequencePadMultiple), m->tokens().pad);
  ids.push_back(m->tokens().end);
  vargpt::TrainingBatch b;
  b.input_ids = from_vector(ids, {1, static_cast<int64_t>(ids.size())});
  b.gen_inputs = infinity::teacher_inputs_from_bits(out.bits, sched);
  std::vector<Tensor> labels;
  for (const Tensor& bits : out.bits) labels.push_back(bits.reshape({1, -1, bits.size(3)}));
  b.gen_labels = cat(labels, 1);
  b.schedule = sched;
  vargpt::TrainingOptions topt;
  topt.llm_block_causal = block_causal;
  const vargpt::TrainingOutput t = vargpt::training_forward(*m, b, topt);
  CHECK(rel_err(cat(out.cond_logits, 1), t.gen_logits) < 1e-4);
  // The fix changes the logits (so the check above tells the two masks apart).
  if (block_causal) CHECK(rel_err(t.gen_logits, vargpt::training_forward(*m, b).gen_logits) > 1e-3);
  }
}

TEST_CASE("VARGPT: a batch of three prompts equals each prompt alone; a seed fixes the image") {
  const auto m = model();
  NoGradGuard no_grad;
  const vargpt::Prompt t2i = reference_prompt("t2i"), edit = reference_prompt("edit");
  vargpt::Prompt shorter = t2i;  // a third prompt of another length: left padding in the batch
  shorter.ids.erase(shorter.ids.begin() + 3, shorter.ids.begin() + 8);
  const std::vector<vargpt::Prompt> prompts = {t2i, edit, shorter};
  const std::vector<uint64_t> seeds = {11, 12, 13};
  vargpt::ImageOptions opt = reference_image_options();
  vargpt::HandOff all = hand_off(*m, prompts);
  opt.seeds = seeds;
  const vargpt::ImageResult batch = vargpt::generate_image(*m, all, opt);
  for (size_t i = 0; i < prompts.size(); ++i) {
    INFO("row ", i);
    vargpt::HandOff one = hand_off(*m, {prompts[i]});
    vargpt::ImageOptions o = opt;
    o.seeds = {seeds[i]};
    const vargpt::ImageResult alone = vargpt::generate_image(*m, one, o);
    for (size_t k = 0; k < alone.bits.size(); ++k) {
      CHECK(rel_err(batch.logits[k].narrow(0, int64_t(i), 1), alone.logits[k]) < 1e-4);
      CHECK(count_ne(batch.bits[k].narrow(0, int64_t(i), 1), alone.bits[k]) == 0);
    }
    CHECK(count_ne(batch.pixels.narrow(0, int64_t(i), 1), alone.pixels) == 0);
  }
  // Another seed gives other bits (so the comparison above is not vacuous).
  vargpt::HandOff again = hand_off(*m, {t2i});
  vargpt::ImageOptions o = opt;
  o.seeds = {99};
  const vargpt::ImageResult other = vargpt::generate_image(*m, again, o);
  CHECK(count_ne(other.bits.back(), batch.bits.back().narrow(0, 0, 1)) > 0);
}

TEST_CASE("VARGPT: a memory longer than cfg_uncond warns (faithful) or tiles; the text loop hands off on its own") {
  const auto m = model();
  NoGradGuard no_grad;
  vargpt::Prompt p = reference_prompt("t2i");
  p.ids.pop_back();
  std::vector<int64_t> longer(p.ids.begin(), p.ids.begin() + 3);
  for (int i = 0; i < 140; ++i) longer.push_back(p.ids[5 + i % 10]);
  longer.insert(longer.end(), p.ids.begin() + 3, p.ids.end());
  vargpt::TextOptions topt;
  topt.max_new_tokens = 4;
  topt.force_image = true;
  vargpt::TextResult tr = vargpt::decode_text(*m, {vargpt::Prompt{longer, {}, {}}}, topt);
  REQUIRE(tr.wants_image[0]);
  CHECK(tr.tokens[0].back() == m->tokens().start);
  CHECK(tr.tokens[0].size() <= 4);
  // The prefix holds every real token before the start token.
  CHECK(tr.state.prefix_hidden[0].size(0) == static_cast<int64_t>(longer.size() + tr.tokens[0].size() - 1));
  vargpt::ImageOptions opt = reference_image_options();
  opt.decode = false;
  vargpt::HandOff st = tr.state;
  const vargpt::ImageResult faithful = vargpt::generate_image(*m, st, opt);
  REQUIRE(faithful.warnings.size() == 1);
  CHECK(faithful.warnings[0].find("cfg_uncond") != std::string::npos);
  vargpt::HandOff st2 = vargpt::decode_text(*m, {vargpt::Prompt{longer, {}, {}}}, topt).state;
  opt.uncond_length = vargpt::UncondLength::Tile;
  CHECK(vargpt::generate_image(*m, st2, opt).warnings.empty());
}

TEST_CASE("VARGPT: missing, renamed and mis-shaped tensors are listed in one error; no generation tensors says chat works") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / "vt_vargpt_bad_ckpt";
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const char* f : {"config.json", "tokenizer.json"}) fs::copy_file(kTiny + "/" + f, dir / f);
  io::CheckpointReader reader(kTiny);
  std::vector<io::TensorToWrite> list;
  std::vector<std::vector<int64_t>> shapes;
  const std::vector<std::string> names = reader.names();
  shapes.reserve(names.size());
  std::vector<std::string> renamed_names;
  renamed_names.reserve(names.size());
  for (const std::string& name : names) {
    const io::TensorEntry& e = reader.entry(name);
    if (name == "vargpt_gen.head.bias") continue;  // missing
    std::string out = name == "image_gen_projector.mlp.0.bias" ? "image_gen_projector.mlp.zero.bias" : name;
    renamed_names.push_back(out);
    shapes.push_back(e.shape);
    const bool misshaped = name == "image_gen_projector_out.mlp.2.weight";
    if (misshaped) shapes.back()[0] -= 1;
    const uint64_t bytes = misshaped ? (e.end - e.begin) / e.shape[0] * shapes.back()[0] : e.end - e.begin;
    list.push_back({renamed_names.back(), e.dtype, shapes.back(), reader.data(name), bytes});
  }
  io::write_safetensors((dir / "model.safetensors").string(), list);
  try {
    Vargpt::from_pretrained(dir.string(), DType::F32);
    FAIL("a broken checkpoint loaded");
  } catch (const Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("vargpt_gen.head.bias") != std::string::npos);
    CHECK(msg.find("image_gen_projector.mlp.zero.bias") != std::string::npos);
    CHECK(msg.find("image_gen_projector.mlp.0.bias") != std::string::npos);
    CHECK(msg.find("image_gen_projector_out.mlp.2.weight") != std::string::npos);
    MESSAGE(msg);
  }
  // Without the generation half: the error says that chat still works.
  list.clear();
  for (const std::string& name : names)
    if (name.rfind("vargpt_gen.", 0) != 0) {
      const io::TensorEntry& e = reader.entry(name);
      list.push_back({name, e.dtype, e.shape, reader.data(name), e.end - e.begin});
    }
  io::write_safetensors((dir / "model.safetensors").string(), list);
  CHECK_THROWS_WITH_AS(Vargpt::from_pretrained(dir.string(), DType::F32), doctest::Contains("vargpt chat"), Error);
  CHECK_FALSE(vargpt::VargptConfig::has_generation(dir.string()));
  fs::remove_all(dir);
}

TEST_CASE("VARGPT: a tokenizer whose generation ids are other tokens (Qwen2.5) is refused") {
  std::ifstream in(kTiny + "/tokenizer.json");
  nlohmann::json j = nlohmann::json::parse(in);
  const tok::Tokenizer good = tok::Tokenizer::from_json(j, "tiny");
  CHECK_NOTHROW(vargpt::check_tokenizer(good, model()->tokens(), "tiny"));
  for (auto& t : j["added_tokens"])
    if (t["content"] == "<|image_gen_start|>") t["content"] = "<tool_call>";
  const tok::Tokenizer qwen25 = tok::Tokenizer::from_json(j, "qwen2.5-like");
  CHECK_THROWS_WITH_AS(vargpt::check_tokenizer(qwen25, model()->tokens(), "qwen2.5-like"),
                       doctest::Contains("Qwen2.5"), Error);
}

TEST_CASE("VARGPT: the tokenizer and chat template give the reference's prompt ids") {
  std::ifstream in(kTiny + "/reference.json");
  const nlohmann::json j = nlohmann::json::parse(in);
  const tok::Tokenizer t = tok::Tokenizer::from_file(kTiny + "/tokenizer.json");
  for (const std::string which : {"t2i", "edit"}) {
    INFO(which);
    REQUIRE(j.contains(which));
    const std::string text = j[which]["rendered"].get<std::string>();
    const std::vector<int32_t> got = t.encode(text);
    CHECK(std::vector<int64_t>(got.begin(), got.end()) == ids_of(ref().at(which + ".input_ids")));
  }
}

TEST_CASE("VARGPT: a non-square aspect template generates an image of its size") {
  const auto m = model();
  NoGradGuard no_grad;
  const infinity::ScaleSchedule s = infinity::scale_schedule(0.75, "0.06M");  // h / w = 0.75
  REQUIRE(s.image_h() != s.image_w());
  vargpt::HandOff st = hand_off(*m, {reference_prompt("t2i")});
  vargpt::ImageOptions opt = reference_image_options();
  opt.height = s.image_h();
  opt.width = s.image_w();
  const vargpt::ImageResult out = vargpt::generate_image(*m, st, opt);
  CHECK(out.pixels.shape() == Shape{1, s.image_h(), s.image_w(), 3});
  CHECK(out.bits.back().shape() == Shape{1, s.scales.back().h, s.scales.back().w, 16});
  // A size no template holds is refused, naming the sizes the aspect allows.
  opt.height = 300;
  opt.width = 300;
  vargpt::HandOff st2 = hand_off(*m, {reference_prompt("t2i")});
  CHECK_THROWS_WITH_AS(vargpt::generate_image(*m, st2, opt), doctest::Contains("256x256"), Error);
}

TEST_CASE("VARGPT: the VAE's GroupNorm group count survives init, config.json and from_pretrained") {
  namespace fs = std::filesystem;
  // Not readable off any tensor shape: config.json carries it (vt_vae_norm_groups) when it is not
  // upstream's 32, and a value that does not divide the VAE's channels is an error naming the key.
  const std::string tokenizer_path = std::string(VT_FIXTURES) + "/vargpt_tiny/tokenizer.json";
  const tok::Tokenizer tokenizer = tok::Tokenizer::from_file(tokenizer_path);
  const nlohmann::json spec = nlohmann::json::parse(R"({
      "llm": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4,
              "num_key_value_heads": 2},
      "vision": {"depth": 1, "embed_dim": 32, "num_heads": 2},
      "gen": {"depth": 1, "embed_dim": 64, "num_heads": 4, "codebook_dim": 8, "text_maxlen": 64},
      "vae": {"base_channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1, "norm_groups": 4},
      "gen_sides": [1, 2]})");
  const vargpt::ModelDir files = vargpt::make_config(spec, tokenizer);
  CHECK(files.config.vae.norm_groups == 4);
  CHECK(files.config_json.at("vt_vae_norm_groups") == 4);
  const fs::path dir = fs::temp_directory_path() / ("vt_vargpt_groups_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  {
    vargpt::Vargpt m(files.config, DType::F32);
    vargpt::write_model_dir(dir.string(), m, files, tokenizer_path);
  }
  const auto loaded = Vargpt::from_pretrained(dir.string());
  CHECK(loaded->config().vae.norm_groups == 4);
  CHECK(loaded->vae_local->config().norm_groups == 4);
  // 5 groups do not divide 16 channels.
  nlohmann::json bad = files.config_json;
  bad["vt_vae_norm_groups"] = 5;
  std::ofstream(dir / "config.json") << bad.dump();
  CHECK_THROWS_WITH_AS(Vargpt::from_pretrained(dir.string()), doctest::Contains("vt_vae_norm_groups"), Error);
  fs::remove_all(dir);
}
