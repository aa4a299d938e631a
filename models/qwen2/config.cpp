// qwen2/config.cpp: config.json -> Qwen2Config (layouts described in config.h).
#include "qwen2/config.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "vt/error.h"
#include "vt/io/safetensors.h"

namespace vt::qwen2 {
namespace {

using json = nlohmann::json;

// Looks a field up in text_config first, then at the top level; nullptr when absent or null.
struct Fields {
  const json& top;
  const json* text;
  const std::string& source;

  const json* find(const char* key) const {
    if (text && text->contains(key) && !(*text)[key].is_null()) return &(*text)[key];
    if (top.contains(key) && !top[key].is_null()) return &top[key];
    return nullptr;
  }
  int64_t required_int(const char* key) const {
    const json* v = find(key);
    VT_CHECK(v, source, ": config has no \"", key, "\" (Qwen2's class defaults match no released model)");
    return as_int(*v, key);
  }
  int64_t as_int(const json& v, const char* key) const {
    VT_CHECK(v.is_number_integer(), source, ": \"", key, "\" must be an integer, got ", v.dump());
    return v.get<int64_t>();
  }
  int64_t int_or(const char* key, int64_t fallback) const {
    const json* v = find(key);
    return v ? as_int(*v, key) : fallback;
  }
  double number_or(const char* key, double fallback) const {
    const json* v = find(key);
    if (!v) return fallback;
    VT_CHECK(v->is_number(), source, ": \"", key, "\" must be a number, got ", v->dump());
    return v->get<double>();
  }
  bool bool_or(const char* key, bool fallback) const {
    const json* v = find(key);
    if (!v) return fallback;
    VT_CHECK(v->is_boolean(), source, ": \"", key, "\" must be true or false, got ", v->dump());
    return v->get<bool>();
  }
};

std::string dims_str(const std::vector<int64_t>& dims) {
  std::string s = "(";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + ")";
}

DType parse_dtype(const std::string& name, const std::string& source) {
  if (name == "bfloat16") return DType::BF16;
  if (name == "float32") return DType::F32;
  if (name == "float16") return DType::F16;
  VT_FAIL(source, ": unsupported torch_dtype \"", name, "\" (expected bfloat16, float16 or float32)");
}

}  // namespace

Qwen2Config Qwen2Config::from_json_text(const std::string& text, const std::string& source) {
  json top;
  try {
    top = json::parse(text);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number beyond double
    VT_FAIL(source, ": malformed JSON: ", e.what());
  }
  VT_CHECK(top.is_object(), source, ": expected a JSON object at the top level");
  Qwen2Config c;
  VT_CHECK(top.contains("model_type") && top["model_type"].is_string(), source,
           ": no \"model_type\" (expected \"qwen2\", \"qwen2_vl\" or \"vargpt_qwen2_vl\")");
  c.model_type = top["model_type"].get<std::string>();
  // vargpt_qwen2_vl (VARGPT-v1.1) is a qwen2_vl config plus its generation fields (vargpt.md §15).
  VT_CHECK(c.model_type == "qwen2" || c.model_type == "qwen2_vl" || c.model_type == "vargpt_qwen2_vl", source,
           ": model_type \"", c.model_type,
           "\" is not a Qwen2 decoder (expected \"qwen2\", \"qwen2_vl\" or \"vargpt_qwen2_vl\")");
  const json* text_config = nullptr;
  if (top.contains("text_config") && top["text_config"].is_object()) text_config = &top["text_config"];
  const Fields f{top, text_config, source};

  c.vocab_size = f.required_int("vocab_size");
  c.hidden_size = f.required_int("hidden_size");
  c.intermediate_size = f.required_int("intermediate_size");
  c.num_hidden_layers = f.required_int("num_hidden_layers");
  c.num_attention_heads = f.required_int("num_attention_heads");
  c.num_key_value_heads = f.int_or("num_key_value_heads", c.num_attention_heads);
  // Without "head_dim", D = C / nh as transformers computes it; a C that nh does not divide would
  // silently drop features, so it is refused here rather than at the first matmul.
  VT_CHECK(f.find("head_dim") || c.num_attention_heads <= 0 || c.hidden_size % c.num_attention_heads == 0, source,
           ": hidden_size ", c.hidden_size, " is not divisible by num_attention_heads ", c.num_attention_heads,
           " (and no head_dim is given)");
  c.head_dim = f.int_or("head_dim", c.num_attention_heads > 0 ? c.hidden_size / c.num_attention_heads : 0);
  c.rms_norm_eps = f.number_or("rms_norm_eps", c.rms_norm_eps);
  c.max_position_embeddings = f.int_or("max_position_embeddings", c.max_position_embeddings);
  c.tie_word_embeddings = f.bool_or("tie_word_embeddings", false);
  c.rope_theta = f.number_or("rope_theta", c.rope_theta);

  // rope_scaling (4.x) or rope_parameters (5.x); "mrope" and "default" both mean no frequency scaling.
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    const json* rope = f.find(key);
    if (!rope) continue;
    VT_CHECK(rope->is_object(), source, ": \"", key, "\" must be an object, got ", rope->dump());
    if (rope->contains("rope_theta")) c.rope_theta = (*rope)["rope_theta"].get<double>();
    for (const char* type_key : {"type", "rope_type"}) {
      if (!rope->contains(type_key)) continue;
      const std::string type = (*rope)[type_key].get<std::string>();
      VT_CHECK(type == "default" || type == "mrope", source, ": ", key, ".", type_key, " \"", type,
               "\" is not supported (only the default rope and M-RoPE)");
    }
    if (rope->contains("mrope_section")) {
      const json& s = (*rope)["mrope_section"];
      VT_CHECK(s.is_array() && s.size() == 3 && s[0].is_number_integer() && s[1].is_number_integer() &&
                   s[2].is_number_integer(),
               source, ": ", key, ".mrope_section must list 3 integers, got ", s.dump());
      c.mrope_section = std::array<int64_t, 3>{s[0].get<int64_t>(), s[1].get<int64_t>(), s[2].get<int64_t>()};
    }
  }

  const json* dt = f.find("torch_dtype");
  if (!dt) dt = f.find("dtype");
  if (dt) c.dtype = parse_dtype(dt->get<std::string>(), source);
  if (const json* eos = f.find("eos_token_id")) {
    if (eos->is_array()) {
      for (const auto& e : *eos) c.eos_token_ids.push_back(f.as_int(e, "eos_token_id"));
    } else {
      c.eos_token_ids.push_back(f.as_int(*eos, "eos_token_id"));
    }
  }
  c.image_token_id = f.int_or("image_token_id", -1);
  c.video_token_id = f.int_or("video_token_id", -1);
  c.vision_start_token_id = f.int_or("vision_start_token_id", -1);
  c.vision_end_token_id = f.int_or("vision_end_token_id", -1);
  c.validate(source);
  return c;
}

Qwen2Config Qwen2Config::load(const std::string& path) {
  std::filesystem::path p(path);
  if (std::filesystem::is_directory(p)) p /= "config.json";
  std::ifstream in(p);
  VT_CHECK(in, "Qwen2Config::load: cannot open ", p.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return from_json_text(ss.str(), p.string());
}

void Qwen2Config::validate(const std::string& source) const {
  VT_CHECK(vocab_size > 0 && hidden_size > 0 && intermediate_size > 0 && num_hidden_layers > 0 &&
               num_attention_heads > 0 && num_key_value_heads > 0 && head_dim > 0,
           source, ": sizes must be positive (vocab_size ", vocab_size, ", hidden_size ", hidden_size,
           ", intermediate_size ", intermediate_size, ", num_hidden_layers ", num_hidden_layers,
           ", num_attention_heads ", num_attention_heads, ", num_key_value_heads ", num_key_value_heads,
           ", head_dim ", head_dim, ")");
  // 2^31 bounds every size so that products of two (a weight's element count) cannot overflow.
  for (auto [name, v] : {std::pair{"vocab_size", vocab_size}, {"hidden_size", hidden_size},
                         {"intermediate_size", intermediate_size}, {"num_hidden_layers", num_hidden_layers},
                         {"num_attention_heads", num_attention_heads}, {"head_dim", head_dim}})
    VT_CHECK(v < (int64_t(1) << 31), source, ": ", name, " ", v, " is beyond 2^31");
  VT_CHECK(num_attention_heads % num_key_value_heads == 0, source, ": num_attention_heads ",
           num_attention_heads, " is not a multiple of num_key_value_heads ", num_key_value_heads);
  VT_CHECK(head_dim % 2 == 0, source, ": head_dim ", head_dim, " must be even for rotate_half RoPE");
  if (mrope_section) {
    const auto& s = *mrope_section;
    VT_CHECK(s[0] + s[1] + s[2] == head_dim / 2, source, ": mrope_section [", s[0], ", ", s[1], ", ", s[2],
             "] must sum to head_dim / 2 = ", head_dim / 2);
  }
}

void Qwen2Config::check_checkpoint(io::CheckpointReader& reader, const std::string& source) const {
  const auto expect = [&](const std::string& name, std::vector<int64_t> want, const char* fields) {
    if (!reader.contains(name)) return;  // a missing tensor is the loader's to report, with all others
    const std::vector<int64_t>& got = reader.entry(name).shape;
    VT_CHECK(got == want, source, ": ", fields, " give ", dims_str(want), " for ", name, ", but ", reader.path(),
             " holds ", dims_str(got), " (the config.json does not belong to these weights)");
  };
  expect("model.embed_tokens.weight", {vocab_size, hidden_size}, "vocab_size and hidden_size");
  if (!tie_word_embeddings) expect("lm_head.weight", {vocab_size, hidden_size}, "vocab_size and hidden_size");
  expect("model.layers.0.self_attn.q_proj.weight", {q_size(), hidden_size},
         "num_attention_heads, head_dim and hidden_size");
  expect("model.layers.0.mlp.gate_proj.weight", {intermediate_size, hidden_size}, "intermediate_size and hidden_size");
  int64_t layers = 0;  // 1 + the largest N of model.layers.N.*
  const std::string prefix = "model.layers.";
  for (const std::string& name : reader.names()) {
    if (name.rfind(prefix, 0) != 0) continue;
    const int64_t n = std::strtoll(name.c_str() + prefix.size(), nullptr, 10);
    layers = std::max(layers, n + 1);
  }
  VT_CHECK(layers == 0 || layers == num_hidden_layers, source, ": num_hidden_layers is ", num_hidden_layers, ", but ",
           reader.path(), " holds ", layers, " layers (model.layers.0 to ", layers - 1, ")");
}

void Qwen2Config::check_checkpoint(const std::string& dir) const {
  io::CheckpointReader reader(dir);
  check_checkpoint(reader, std::filesystem::is_directory(dir) ? dir + "/config.json" : dir);
}

}  // namespace vt::qwen2
