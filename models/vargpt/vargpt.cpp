// vargpt.cpp: VARGPT-v1.1's configuration, projectors, decoder conditions and checkpoint loading;
// see vargpt.h.
#include "vargpt/vargpt.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "tokenizer/bpe.h"
#include "vt/autograd.h"
#include "vt/io/safetensors.h"
#include "vt/io/tensor_io.h"
#include "vt/nn/functional.h"
#include "vt/ops.h"

namespace vt::vargpt {

namespace {

using json = nlohmann::json;

const char* const kGenerationPrefixes[] = {"vargpt_gen.", "vae_local.", "image_gen_projector.",
                                           "image_gen_projector_out.", "sos_embedding."};
// A persistent buffer upstream saves and vt does not keep (the BSQ bit weights 2^(d-1) .. 1).
const char* const kIgnoredBuffer = "vae_local.quantizer.lfq.mask";

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

json read_config_json(const std::string& dir) {
  const std::string file = std::filesystem::is_directory(dir) ? dir + "/config.json" : dir;
  std::ifstream in(file);
  VT_CHECK(in.good(), "VARGPT: cannot open '", file, "'");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    VT_FAIL("VARGPT: '", file, "' is not valid JSON: ", e.what());
  }
}

std::string checkpoint_dir(const std::string& path) {
  return std::filesystem::is_directory(path) ? path : std::filesystem::path(path).parent_path().string();
}

// Zero-copy views of the mapped tensors under `prefix` (prefix removed), for shape inference.
std::map<std::string, Tensor> mapped_tensors(io::CheckpointReader& reader, const std::string& prefix) {
  std::map<std::string, Tensor> out;
  for (const std::string& name : reader.names()) {
    if (!starts_with(name, prefix.c_str())) continue;
    const uint8_t* data = reader.data(name);
    std::shared_ptr<void> view(std::shared_ptr<void>(), const_cast<uint8_t*>(data));
    out[name.substr(prefix.size())] = io::tensor_from_entry(reader.entry(name), data, view, true, reader.path());
  }
  return out;
}

// Infinity's hyper-parameters off its tensors (upstream builds infinity_2b in code, M:1518).
infinity::InfinityConfig infer_infinity_config(io::CheckpointReader& reader, const std::string& source) {
  auto shape = [&](const std::string& name, size_t dims) -> std::vector<int64_t> {
    VT_CHECK(reader.contains(name), source, ": the checkpoint has no '", name, "'");
    const std::vector<int64_t>& s = reader.entry(name).shape;
    VT_CHECK(s.size() == dims, source, ": '", name, "' has ", s.size(), " dims, expected ", dims);
    return s;
  };
  infinity::InfinityConfig c;
  const auto word = shape("vargpt_gen.word_embed.weight", 2);  // (C, d)
  c.embed_dim = word[0];
  c.codebook_dim = word[1];
  const auto uncond = shape("vargpt_gen.cfg_uncond", 2);  // (text_maxlen, Ctext)
  c.text_maxlen = uncond[0];
  c.text_channels = uncond[1];
  c.num_levels = shape("vargpt_gen.lvl_embed.weight", 2)[0];
  // Blocks are vargpt_gen.block_chunks.<c>.module.<m>.*: depth = chunks x per-chunk.
  int64_t chunks = 0, per = 0;
  const std::string blocks = "vargpt_gen.block_chunks.";
  for (const std::string& name : reader.names()) {
    if (!starts_with(name, blocks.c_str())) continue;
    const size_t a = blocks.size(), b = name.find('.', a);
    const std::string mod = ".module.";
    if (b == std::string::npos || name.compare(b, mod.size(), mod) != 0) continue;
    const size_t m0 = b + mod.size(), m1 = name.find('.', m0);
    chunks = std::max<int64_t>(chunks, std::stoll(name.substr(a, b - a)) + 1);
    per = std::max<int64_t>(per, std::stoll(name.substr(m0, m1 - m0)) + 1);
  }
  VT_CHECK(chunks > 0 && per > 0, source, ": no vargpt_gen.block_chunks.<c>.module.<m> tensors");
  c.block_chunks = chunks;
  c.depth = chunks * per;
  const std::string b0 = "vargpt_gen.block_chunks.0.module.0.";
  const auto scale_mul = shape(b0 + "sa.scale_mul_1H11", 4);
  c.num_heads = scale_mul[0] * scale_mul[1] * scale_mul[2] * scale_mul[3];
  const int64_t ffn = shape(b0 + "ffn.fc1.weight", 2)[0];
  c.mlp_ratio = static_cast<double>(ffn) / static_cast<double>(c.embed_dim);
  VT_CHECK(c.ffn_hidden() == ffn, source, ": FFN width ", ffn, " is not Infinity's round(C * ratio / 256) * 256 for C = ",
           c.embed_dim);
  c.validate();
  return c;
}

}  // namespace

// ---- configuration ----------------------------------------------------------------------------------
bool VargptConfig::has_generation(const std::string& dir) {
  const json top = read_config_json(dir);
  if (top.value("model_type", "") != "vargpt_qwen2_vl" && !top.contains("special_tokens")) return false;
  io::CheckpointReader reader(checkpoint_dir(dir));
  return reader.contains("vargpt_gen.word_embed.weight");
}

int64_t vae_norm_groups(const json& config, const std::string& source) {
  if (!config.is_object() || !config.contains("vt_vae_norm_groups")) return bsq::BsqVaeConfig{}.norm_groups;
  const json& g = config["vt_vae_norm_groups"];
  VT_CHECK(g.is_number_integer() && g.get<int64_t>() > 0, source, ": \"vt_vae_norm_groups\" must be a positive ",
           "integer, got ", g.dump());
  return g.get<int64_t>();
}

VargptConfig VargptConfig::load(const std::string& path) {
  const std::string dir = checkpoint_dir(path);
  const std::string source = dir + "/config.json";
  VargptConfig c;
  c.llm = qwen2::Qwen2Config::load(dir);
  c.vision = qwen2_vl::VisionConfig::from_file(dir);
  const json top = read_config_json(dir);
  VT_CHECK(top.contains("special_tokens") && top["special_tokens"].is_object(), source,
           ": no \"special_tokens\" object: not a VARGPT-v1.1 config (a Qwen2-VL checkpoint runs with `vargpt chat`)");
  const json& st = top["special_tokens"];
  auto id = [&](const char* key) {
    VT_CHECK(st.contains(key) && st[key].is_number_integer(), source, ": special_tokens.", key,
             " is missing or not an integer");
    const int64_t v = st[key].get<int64_t>();
    VT_CHECK(v >= 0 && v < c.llm.vocab_size, source, ": special_tokens.", key, " = ", v, " is outside the ",
             c.llm.vocab_size, " embedding rows");
    return v;
  };
  c.tokens = {id("image_gen_start_token_id"), id("image_gen_end_token_id"), id("image_gen_pad_token_id")};
  VT_CHECK(c.tokens.start != c.tokens.end && c.tokens.start != c.tokens.pad && c.tokens.end != c.tokens.pad, source,
           ": the generation token ids must differ (start ", c.tokens.start, ", end ", c.tokens.end, ", pad ",
           c.tokens.pad, ")");
  c.sos_rows = c.tokens.start + 1;
  if (top.contains("vt_gen_sides")) {
    try {
      c.gen_sides = top["vt_gen_sides"].get<std::vector<int64_t>>();
    } catch (const json::exception& e) {
      VT_FAIL(source, ": \"vt_gen_sides\" must be a list of integers: ", e.what());
    }
    for (size_t i = 0; i < c.gen_sides.size(); ++i)
      VT_CHECK(c.gen_sides[i] > 0 && (i == 0 || c.gen_sides[i] > c.gen_sides[i - 1]), source,
               ": \"vt_gen_sides\" must be increasing positive sides, got ", top["vt_gen_sides"].dump());
  }

  io::CheckpointReader reader(dir);
  VT_CHECK(reader.contains("vargpt_gen.word_embed.weight"), "VARGPT checkpoint ", dir,
           " has no generation tensors (vargpt_gen.*): it cannot generate images; `vargpt chat` still runs "
           "its understanding half");
  c.gen = infer_infinity_config(reader, dir);
  const int64_t groups = vae_norm_groups(top, source);
  try {
    c.vae = bsq::infer_bsq_vae_config(mapped_tensors(reader, "vae_local."), dir + " (vae_local.*)", groups);
  } catch (const Error& e) {
    if (groups == bsq::BsqVaeConfig{}.norm_groups) throw;
    VT_FAIL(source, ": \"vt_vae_norm_groups\" = ", groups, " does not fit the VAE: ", e.what());
  }
  // The sentinel shapes of vargpt.md §15.
  for (const auto& [name, want] :
       std::vector<std::pair<std::string, std::vector<int64_t>>>{
           {"sos_embedding.weight", {c.sos_rows, c.gen.embed_dim}},
           {"vargpt_gen.head.weight", {2 * c.gen.codebook_dim, c.gen.embed_dim}}}) {
    VT_CHECK(reader.contains(name), "VARGPT checkpoint ", dir, ": '", name, "' is missing");
    VT_CHECK(reader.entry(name).shape == want, "VARGPT checkpoint ", dir, ": '", name, "' has shape ",
             Shape(reader.entry(name).shape).str(), ", expected ", Shape(want).str(),
             " (image_gen_start_token_id + 1 rows, Infinity width; head 2d x C)");
  }
  VT_CHECK(c.gen.text_channels == c.gen.embed_dim, "VARGPT checkpoint ", dir, ": cfg_uncond is ",
           c.gen.text_channels, " wide but Infinity is ", c.gen.embed_dim, " (VARGPT conditions in Infinity's width)");
  VT_CHECK(c.vae.codebook_dim == c.gen.codebook_dim, "VARGPT checkpoint ", dir, ": the VAE has ",
           c.vae.codebook_dim, " bits per token, Infinity ", c.gen.codebook_dim);
  return c;
}

infinity::ScaleSchedule VargptConfig::schedule_for(int64_t h, int64_t w) const {
  if (gen_sides.empty()) return infinity::schedule_for_image(h > 0 ? h : 512, w > 0 ? w : 512);
  const int64_t patch = vae.patch_size, full = gen_sides.back() * patch;
  if (h <= 0 && w <= 0) h = w = full;
  std::string allowed;
  std::vector<infinity::ScaleHW> scales;
  for (int64_t s : gen_sides) {
    allowed += " " + std::to_string(s * patch);
    scales.push_back({s, s});
    if (h == w && s * patch == h) {
      infinity::ScaleSchedule sched = infinity::custom_schedule(scales);
      // RoPE positions normalised to the largest grid at every size, as Infinity's templates do (Q20).
      sched.rope_grid_h = sched.rope_grid_w = gen_sides.back();
      return sched;
    }
  }
  VT_FAIL("VARGPT: this model generates square images of", allowed, " pixels (vt_gen_sides x VAE patch ", patch,
          "), not ", w, "x", h);
}

void check_tokenizer(const tok::Tokenizer& tokenizer, const GenerationTokens& tokens, const std::string& source) {
  const std::pair<const char*, int64_t> want[] = {
      {"<|image_gen_start|>", tokens.start}, {"<|image_gen_end|>", tokens.end}, {"<|image_gen_pad|>", tokens.pad}};
  for (const auto& [text, id] : want) {
    const int32_t found = tokenizer.find_token(text);
    if (found == id) continue;
    std::string at_id = "nothing";
    if (id < static_cast<int64_t>(tokenizer.vocab_size())) at_id = "'" + tokenizer.token_bytes(int32_t(id)) + "'";
    VT_FAIL(source, ": the config's ", text, " is id ", id, " but the tokenizer ",
            found < 0 ? std::string("has no such token") : "gives it id " + std::to_string(found), " and maps ", id,
            " to ", at_id,
            ". VARGPT-v1.1 needs the Qwen2-VL tokenizer with its three generation tokens added; a Qwen2.5 "
            "tokenizer uses ids 151657 and up for other tokens (<tool_call>, ...)");
  }
}

std::string decode_reply(const tok::Tokenizer& tokenizer, std::vector<int64_t> tokens, int64_t start_id) {
  if (!tokens.empty() && tokens.back() == start_id) tokens.pop_back();
  std::string text;
  std::vector<int32_t> run;  // ids the tokenizer knows, decoded together (multi-byte characters)
  auto flush = [&] {
    text += tokenizer.decode(run, /*skip_special=*/true);
    run.clear();
  };
  for (int64_t id : tokens) {
    if (id >= 0 && id < static_cast<int64_t>(tokenizer.vocab_size())) {
      run.push_back(static_cast<int32_t>(id));
      continue;
    }
    flush();
    text += "<id " + std::to_string(id) + ">";
  }
  flush();
  const size_t a = text.find_first_not_of(" \t\r\n"), b = text.find_last_not_of(" \t\r\n");
  return a == std::string::npos ? "" : text.substr(a, b - a + 1);
}

// ---- projectors ----------------------------------------------------------------------------------------
GenPatchMerger::GenPatchMerger(int64_t dim_out, int64_t in_dim, DType dtype) {
  auto ln_q = register_module("ln_q", std::make_shared<nn::Module>());
  ln_q_weight = ln_q->register_parameter("weight", ones({in_dim}, dtype));
  ln_q_bias = ln_q->register_parameter("bias", zeros({in_dim}, dtype));
  auto mlp = register_module("mlp", std::make_shared<nn::Module>());
  fc1 = mlp->register_module("0", std::make_shared<nn::Linear>(in_dim, in_dim, true, dtype));
  fc2 = mlp->register_module("2", std::make_shared<nn::Linear>(in_dim, dim_out, true, dtype));
}

Tensor GenPatchMerger::forward(const Tensor& x) const {
  // M:1455: ln_q is not applied (Q1); the GELU is the erf form, unlike Infinity's FFN.
  return fc2->forward(nn::gelu(fc1->forward(x), /*approximate_tanh=*/false));
}

// ---- the model -------------------------------------------------------------------------------------------
VARGPTQwen2VLForConditionalGeneration::VARGPTQwen2VLForConditionalGeneration(const VargptConfig& cfg, DType dtype,
                                                                             const VargptOptions& options)
    : cfg_(cfg), options_(options) {
  vl = std::make_shared<qwen2_vl::Qwen2VLForConditionalGeneration>(cfg.llm, cfg.vision, dtype);
  visual = register_module("visual", vl->visual);
  lm = vl->lm;
  register_module("model", lm->model);
  if (lm->lm_head) register_module("lm_head", lm->lm_head);
  vargpt_gen = register_module("vargpt_gen", std::make_shared<infinity::Infinity>(cfg.gen));
  vargpt_gen->to(dtype);
  vae_local = register_module("vae_local", std::make_shared<bsq::BsqVae>(cfg.vae));
  const int64_t C = cfg.gen.embed_dim, Cl = cfg.llm.hidden_size;
  image_gen_projector = register_module("image_gen_projector", std::make_shared<GenPatchMerger>(Cl, C, dtype));
  image_gen_projector_out = register_module("image_gen_projector_out", std::make_shared<GenPatchMerger>(C, Cl, dtype));
  // Q2: only row tokens.start is ever read (M:1806).
  auto sos = register_module("sos_embedding", std::make_shared<nn::Module>());
  if (options.sos_single_row) {
    sos_embedding = sos->register_buffer("weight", zeros({cfg.sos_rows, C}, dtype));
    sos_row = sos->register_parameter("row", zeros({1, C}, dtype), /*requires_grad=*/true, /*persistent=*/false);
  } else {
    sos_embedding = sos->register_parameter("weight", zeros({cfg.sos_rows, C}, dtype));
  }
}

void VARGPTQwen2VLForConditionalGeneration::before_state_dict() const {
  if (!options_.sos_single_row) return;
  VT_CHECK(sos_row.storage() && sos_row.storage()->nbytes > 0, "VARGPT: sos_embedding.row holds no data (released ",
           "by ZeRO stage 3?); gather the parameters before saving the model");
  NoGradGuard no_grad;
  Tensor dst = sos_embedding.detach().narrow(0, cfg_.tokens.start, 1);
  copy_(dst, sos_row.detach());
}

void VARGPTQwen2VLForConditionalGeneration::after_load() {
  if (!options_.sos_single_row) return;
  NoGradGuard no_grad;
  Tensor dst = sos_row.detach();
  copy_(dst, sos_embedding.detach().narrow(0, cfg_.tokens.start, 1));
}

std::shared_ptr<VARGPTQwen2VLForConditionalGeneration> VARGPTQwen2VLForConditionalGeneration::from_pretrained(
    const std::string& path, std::optional<DType> dtype, const VargptOptions& options) {
  const std::string dir = checkpoint_dir(path);
  const VargptConfig cfg = VargptConfig::load(dir);
  {  // the LLM's and the vision tower's sizes against the checkpoint's headers, before allocating
    io::CheckpointReader reader(dir);
    cfg.llm.check_checkpoint(reader, dir + "/config.json");
    cfg.vision.check_checkpoint(reader, dir + "/config.json");
  }
  if (std::filesystem::exists(dir + "/tokenizer.json"))
    check_tokenizer(tok::Tokenizer::from_file(dir + "/tokenizer.json"), cfg.tokens, dir + "/tokenizer.json");
  std::shared_ptr<VARGPTQwen2VLForConditionalGeneration> m;
  {
    SkipInitGuard no_init;  // Infinity's and the VAE's constructors draw upstream's init; load replaces it
    m = std::make_shared<VARGPTQwen2VLForConditionalGeneration>(cfg, dtype.value_or(cfg.llm.dtype), options);
  }
  // The VAE's convs and norms carry one more name level upstream (`conv1.conv.weight`); map them
  // onto vt's names, skip the quantiser's bit-weight buffer, and load everything strictly.
  std::set<std::string> own;
  for (const auto& [name, t] : m->state_dict()) own.insert(name);
  auto rename = [&](const std::string& name) -> std::optional<std::string> {
    if (name == kIgnoredBuffer) return std::nullopt;
    if (own.count(name) || !starts_with(name, "vae_local.")) return name;
    const size_t leaf = name.rfind('.');
    const size_t wrap = leaf == std::string::npos || leaf == 0 ? std::string::npos : name.rfind('.', leaf - 1);
    if (wrap == std::string::npos) return name;
    const std::string level = name.substr(wrap + 1, leaf - wrap - 1);
    const std::string plain = name.substr(0, wrap) + name.substr(leaf);
    return (level == "conv" || level == "norm") && own.count(plain) ? plain : name;
  };
  m->load(dir, /*strict=*/true, rename);
  m->eval();
  return m;
}

Tensor VARGPTQwen2VLForConditionalGeneration::sos_condition(int64_t batch, bool unconditional) const {
  // sos = sos_embedding.weight[<|image_gen_start|>] (M:1806), one "text" row with lens [1]; the
  // unconditional row is cfg_uncond[0:1] through the same text_norm and text_proj_for_sos.
  const Tensor row = unconditional          ? vargpt_gen->cfg_uncond.narrow(0, 0, 1)
                     : options_.sos_single_row ? sos_row
                                               : sos_embedding.narrow(0, cfg_.tokens.start, 1);  // (1, C)
  const Tensor cond = vargpt_gen->condition_vector(infinity::PackedText{row, {0, 1}});     // (1, C)
  return cond.expand({batch, cond.size(1)});
}

infinity::PackedText VARGPTQwen2VLForConditionalGeneration::prefix_memory(
    const std::vector<Tensor>& prefix_hidden) const {
  VT_CHECK(!prefix_hidden.empty(), "VARGPT: no prefix hidden states for the cross-attention memory");
  for (size_t b = 0; b < prefix_hidden.size(); ++b)
    VT_CHECK(prefix_hidden[b].dim() == 2 && prefix_hidden[b].size(0) > 0, "VARGPT: sample ", b,
             " has no tokens before <|image_gen_start|> (prefix ", prefix_hidden[b].shape().str(), ")");
  infinity::PackedText packed = infinity::pack_text(prefix_hidden);
  // Straight into every block's ca.mat_kv: Infinity's text_norm / text_proj_for_ca are bypassed (Q7).
  packed.rows = image_gen_projector_out->forward(packed.rows);  // (ΣL, C)
  return packed;
}

}  // namespace vt::vargpt
