// init.cpp: random VARGPT models as model directories; see init.h.
#include "vargpt/init.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include "tokenizer/bpe.h"
#include "vt/autograd.h"
#include "vt/ops.h"
#include "vt/random.h"

namespace vt::vargpt {

using json = nlohmann::json;

namespace {

const json& section(const json& spec, const char* name) {
  VT_CHECK(spec.contains(name) && spec[name].is_object(), "model spec: no \"", name, "\" object");
  return spec[name];
}

int64_t need(const json& o, const char* section_name, const char* key) {
  VT_CHECK(o.contains(key) && o[key].is_number_integer() && o[key].get<int64_t>() > 0, "model spec: ", section_name,
           ".", key, " must be a positive integer");
  return o[key].get<int64_t>();
}

void write_json_atomic(const std::string& path, const json& j) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    VT_CHECK(out.good(), "cannot write '", tmp, "'");
    out << j.dump(2) << "\n";
  }
  std::filesystem::rename(tmp, path);
}

}  // namespace

ModelDir make_config(const json& spec, const tok::Tokenizer& tokenizer) {
  ModelDir d;
  VargptConfig& c = d.config;
  // ---- the generation tokens and the vocabulary -------------------------------------------------------
  auto token = [&](const char* t) {
    const int32_t id = tokenizer.find_token(t);
    VT_CHECK(id >= 0, "model spec: the tokenizer has no ", t, " (cut vocabularies add it: vargpt tokenizer cut)");
    return int64_t(id);
  };
  c.tokens = {token("<|image_gen_start|>"), token("<|image_gen_end|>"), token("<|image_gen_pad|>")};
  c.sos_rows = c.tokens.start + 1;
  const int64_t vocab = (static_cast<int64_t>(tokenizer.vocab_size()) + 63) / 64 * 64;
  // ---- the LLM ---------------------------------------------------------------------------------------------
  const json& l = section(spec, "llm");
  qwen2::Qwen2Config& q = c.llm;
  q.model_type = "vargpt_qwen2_vl";
  q.vocab_size = vocab;
  q.hidden_size = need(l, "llm", "hidden_size");
  q.intermediate_size = need(l, "llm", "intermediate_size");
  q.num_hidden_layers = need(l, "llm", "num_hidden_layers");
  q.num_attention_heads = need(l, "llm", "num_attention_heads");
  q.num_key_value_heads = l.value("num_key_value_heads", q.num_attention_heads);
  q.head_dim = q.hidden_size / q.num_attention_heads;
  q.rope_theta = l.value("rope_theta", 1e6);
  const int64_t half = q.head_dim / 2, t = half / 4;
  std::array<int64_t, 3> mrope = {t, (half - t) / 2, half - t - (half - t) / 2};
  if (l.contains("mrope_section")) mrope = l["mrope_section"].get<std::array<int64_t, 3>>();
  q.mrope_section = mrope;
  q.dtype = DType::F32;
  q.image_token_id = token("<|image_pad|>");
  q.video_token_id = token("<|video_pad|>");
  q.vision_start_token_id = token("<|vision_start|>");
  q.vision_end_token_id = token("<|vision_end|>");
  q.eos_token_ids = {token("<|im_end|>")};
  q.validate("model spec llm");
  // ---- the ViT -----------------------------------------------------------------------------------------------
  const json& v = section(spec, "vision");
  c.vision.depth = need(v, "vision", "depth");
  c.vision.embed_dim = need(v, "vision", "embed_dim");
  c.vision.num_heads = need(v, "vision", "num_heads");
  c.vision.patch_size = v.value("patch_size", int64_t(14));
  c.vision.spatial_merge_size = v.value("spatial_merge_size", int64_t(2));
  c.vision.hidden_size = q.hidden_size;
  c.vision.validate();
  // ---- Infinity and the VAE --------------------------------------------------------------------------------
  const json& g = section(spec, "gen");
  c.gen.depth = need(g, "gen", "depth");
  c.gen.embed_dim = need(g, "gen", "embed_dim");
  c.gen.num_heads = need(g, "gen", "num_heads");
  c.gen.codebook_dim = need(g, "gen", "codebook_dim");
  c.gen.text_channels = c.gen.embed_dim;
  c.gen.text_maxlen = g.value("text_maxlen", int64_t(512));
  c.gen.num_levels = g.value("num_levels", int64_t(15));
  c.gen.block_chunks = g.value("block_chunks", int64_t(1));
  c.gen.validate();
  const json& a = section(spec, "vae");
  c.vae.base_channels = need(a, "vae", "base_channels");
  c.vae.channel_mult = a.at("channel_mult").get<std::vector<int64_t>>();
  c.vae.num_res_blocks = need(a, "vae", "num_res_blocks");
  c.vae.norm_groups = a.value("norm_groups", c.vae.norm_groups);
  c.vae.codebook_dim = c.gen.codebook_dim;
  c.vae.patch_size = int64_t(1) << (c.vae.num_levels() - 1);
  c.vae.validate();
  c.gen_sides = spec.value("gen_sides", std::vector<int64_t>{});
  if (!c.gen_sides.empty()) c.schedule_for();  // checks the sides
  // ---- config.json in the transformers-4.46 VARGPT layout (vargpt.md §15) ------------------------------------
  json& j = d.config_json;
  j = {{"architectures", {"VARGPTQwen2VLForConditionalGeneration"}},
       {"model_type", "vargpt_qwen2_vl"},
       {"hidden_act", "silu"},
       {"vocab_size", q.vocab_size},
       {"hidden_size", q.hidden_size},
       {"intermediate_size", q.intermediate_size},
       {"num_hidden_layers", q.num_hidden_layers},
       {"num_attention_heads", q.num_attention_heads},
       {"num_key_value_heads", q.num_key_value_heads},
       {"rms_norm_eps", q.rms_norm_eps},
       {"rope_theta", q.rope_theta},
       {"max_position_embeddings", 4096},
       {"tie_word_embeddings", false},
       {"rope_scaling", {{"type", "default"}, {"rope_type", "default"}, {"mrope_section", mrope}}},
       {"image_token_id", q.image_token_id},
       {"video_token_id", q.video_token_id},
       {"vision_start_token_id", q.vision_start_token_id},
       {"vision_end_token_id", q.vision_end_token_id},
       {"vision_token_id", token("<|vision_pad|>")},
       {"bos_token_id", token("<|endoftext|>")},
       {"eos_token_id", token("<|im_end|>")},
       {"pad_token_id", token("<|endoftext|>")},
       {"torch_dtype", "float32"},
       {"vision_config",
        {{"depth", c.vision.depth}, {"embed_dim", c.vision.embed_dim}, {"mlp_ratio", c.vision.mlp_ratio},
         {"num_heads", c.vision.num_heads}, {"in_chans", 3}, {"hidden_size", q.hidden_size},
         {"patch_size", c.vision.patch_size}, {"spatial_merge_size", c.vision.spatial_merge_size},
         {"temporal_patch_size", c.vision.temporal_patch_size}, {"hidden_act", "quick_gelu"}}},
       {"special_tokens",
        {{"image_gen_start", "<|image_gen_start|>"}, {"image_gen_start_token_id", c.tokens.start},
         {"image_gen_end", "<|image_gen_end|>"}, {"image_gen_end_token_id", c.tokens.end},
         {"image_gen_pad", "<|image_gen_pad|>"}, {"image_gen_pad_token_id", c.tokens.pad}}}};
  if (!c.gen_sides.empty()) j["vt_gen_sides"] = c.gen_sides;
  if (c.vae.norm_groups != bsq::BsqVaeConfig{}.norm_groups) j["vt_vae_norm_groups"] = c.vae.norm_groups;
  const json img = spec.value("image", json::object());
  const int64_t min_px = img.value("min_pixels", int64_t(56 * 56)), max_px = img.value("max_pixels", int64_t(56 * 56));
  d.preprocessor_json = {{"do_convert_rgb", true}, {"do_normalize", true}, {"do_rescale", true}, {"do_resize", true},
                         {"image_mean", {0.48145466, 0.4578275, 0.40821073}},
                         {"image_std", {0.26862954, 0.26130258, 0.27577711}},
                         {"image_processor_type", "Qwen2VLImageProcessor"}, {"merge_size", c.vision.spatial_merge_size},
                         {"patch_size", c.vision.patch_size}, {"resample", 3},
                         {"rescale_factor", 1.0 / 255.0}, {"temporal_patch_size", c.vision.temporal_patch_size},
                         {"min_pixels", min_px}, {"max_pixels", max_px},
                         {"size", {{"shortest_edge", min_px}, {"longest_edge", max_px}}}};
  return d;
}

void random_init(Vargpt& model, uint64_t seed) {
  NoGradGuard no_grad;
  Generator gen(seed);
  for (const auto& [name, p] : model.named_parameters()) {
    // Infinity and the VAE drew upstream's initialisation in their constructors.
    if (name.rfind("vargpt_gen.", 0) == 0 || name.rfind("vae_local.", 0) == 0) continue;
    if (p.dim() < 2) continue;  // norms are constructed as 1, biases as 0
    const int64_t fan_in = p.numel() / p.size(0);
    const bool embedding = name == "model.embed_tokens.weight" || name == "sos_embedding.weight";
    const double std = embedding ? 1.0 : 1.0 / std::sqrt(static_cast<double>(fan_in));
    Tensor dst = p.detach();
    copy_(dst, normal(p.shape(), 0.0, std, {p.dtype(), p.device()}, &gen));
  }
}

void write_model_dir(const std::string& dir, const Vargpt& model, const ModelDir& files,
                     const std::string& tokenizer_path) {
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  write_json_atomic(dir + "/config.json", files.config_json);
  write_json_atomic(dir + "/preprocessor_config.json", files.preprocessor_json);
  fs::copy_file(tokenizer_path, dir + "/tokenizer.json.tmp", fs::copy_options::overwrite_existing);
  fs::rename(dir + "/tokenizer.json.tmp", dir + "/tokenizer.json");
  model.save_sharded(dir, 4ull << 30);
}

}  // namespace vt::vargpt
