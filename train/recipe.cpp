// recipe.cpp: reading, overriding and checking recipes; see recipe.h.
#include "recipe.h"

#include <fstream>
#include <functional>
#include <type_traits>

#include "vt/error.h"

namespace vt::train {

namespace {

using json = nlohmann::json;

// One table of every scalar key: how to read it into a Recipe and how to write it out.
struct Field {
  std::function<void(Recipe&, const json&)> read;
  std::function<json(const Recipe&)> write;
  bool unsigned_value = false;  // a negative number is refused (nlohmann would wrap it around)
};

template <class T>
Field field(T Recipe::*member) {
  return {[member](Recipe& r, const json& v) { r.*member = v.get<T>(); },
          [member](const Recipe& r) { return json(r.*member); }, std::is_unsigned_v<T>};
}

const std::map<std::string, Field>& fields() {
  static const std::map<std::string, Field> f = {
      {"name", field(&Recipe::name)},
      {"kind", field(&Recipe::kind)},
      {"freeze", field(&Recipe::freeze)},
      {"gen_size", field(&Recipe::gen_size)},
      {"global_batch", field(&Recipe::global_batch)},
      {"micro_batch", field(&Recipe::micro_batch)},
      {"lr", field(&Recipe::lr)},
      {"schedule", field(&Recipe::schedule)},
      {"warmup_ratio", field(&Recipe::warmup_ratio)},
      {"weight_decay", field(&Recipe::weight_decay)},
      {"adam.beta1", field(&Recipe::beta1)},
      {"adam.beta2", field(&Recipe::beta2)},
      {"adam.eps", field(&Recipe::eps)},
      {"max_grad_norm", field(&Recipe::max_grad_norm)},
      {"activation_checkpointing", field(&Recipe::activation_checkpointing)},
      {"steps", field(&Recipe::steps)},
      {"zero_stage", field(&Recipe::zero_stage)},
      {"dtype", field(&Recipe::dtype)},
      {"cutoff_len", field(&Recipe::cutoff_len)},
      {"seed", field(&Recipe::seed)},
      {"cond_drop", field(&Recipe::cond_drop)},
      {"bsc.layers", field(&Recipe::bsc_layers)},
      {"bsc.strength", field(&Recipe::bsc_strength)},
      {"quirks.mask_prompt_loss", field(&Recipe::mask_prompt_loss)},
      {"quirks.reweight_by_scale", field(&Recipe::reweight_by_scale)},
      {"quirks.mrope_consistent", field(&Recipe::mrope_consistent)},
      {"quirks.cfg_drop_ca", field(&Recipe::cfg_drop_ca)},
      {"quirks.llm_block_causal", field(&Recipe::llm_block_causal)},
      {"quirks.sos_single_row", field(&Recipe::sos_single_row)},
      {"dpo.beta", field(&Recipe::dpo_beta)},
      {"dpo.label_smoothing", field(&Recipe::dpo_label_smoothing)},
      {"dpo.ftx", field(&Recipe::dpo_ftx)},
      {"vae.l1_weight", field(&Recipe::vae_l1)},
      {"vae.l2_weight", field(&Recipe::vae_l2)},
      {"vae.commit_weight", field(&Recipe::vae_commit)},
      {"vae.entropy_weight", field(&Recipe::vae_entropy)},
      {"vae.inv_temperature", field(&Recipe::vae_inv_temperature)},
      {"vae.gradient_weight", field(&Recipe::vae_gradient)},
      {"vae.saturation_weight", field(&Recipe::vae_saturation)},
      {"init", field(&Recipe::init)},
      {"reference", field(&Recipe::reference)},
      {"save_every", field(&Recipe::save_every)},
      {"keep_last", field(&Recipe::keep_last)},
      {"log_every", field(&Recipe::log_every)},
      {"sample_every", field(&Recipe::sample_every)},
      {"sample_prompts", field(&Recipe::sample_prompts)},
      {"sample_seed", field(&Recipe::sample_seed)},
      {"workers", field(&Recipe::workers)},
      {"strict", field(&Recipe::strict)},
  };
  return f;
}

std::string known_keys() {
  std::string s;
  for (const auto& [k, f] : fields()) s += (s.empty() ? "" : ", ") + k;
  return s + ", data";
}

// {"dpo": {"beta": 0.1}} -> "dpo.beta": 0.1 (arrays and "data" stay whole).
void flatten(const json& j, const std::string& prefix, std::map<std::string, json>& out) {
  for (const auto& [k, v] : j.items()) {
    const std::string key = prefix.empty() ? k : prefix + "." + k;
    if (v.is_object() && key != "data") {
      flatten(v, key, out);
    } else {
      out[key] = v;
    }
  }
}

void read_field(Recipe& r, const std::string& key, const json& value, const std::string& source) {
  auto it = fields().find(key);
  VT_CHECK(it != fields().end(), source, ": unknown recipe key '", key, "' (known: ", known_keys(), ")");
  VT_CHECK(!(it->second.unsigned_value && value.is_number() && value.get<double>() < 0), source, ": recipe key '", key,
           "' must not be negative, got ", value.dump());
  try {
    it->second.read(r, value);
  } catch (const json::exception& e) {
    VT_FAIL(source, ": recipe key '", key, "' has value ", value.dump(), " of the wrong type (", e.what(), ")");
  }
}

std::vector<RecipeData> read_data(const json& v, const std::string& source) {
  VT_CHECK(v.is_array(), source, ": \"data\" must be a list of {\"file\", \"kind\", \"fraction\", \"root\"}");
  std::vector<RecipeData> out;
  for (const json& e : v) {
    VT_CHECK(e.is_object() && e.contains("file") && e.contains("kind"), source,
             ": each \"data\" entry needs \"file\" and \"kind\", got ", e.dump());
    RecipeData d;
    for (const auto& [k, x] : e.items()) {
      const bool text = k == "file" || k == "kind" || k == "root";
      VT_CHECK(!text || x.is_string(), source, ": \"data\" entry key '", k, "' must be a string, got ", x.dump());
      VT_CHECK(k != "fraction" || x.is_number(), source, ": \"data\" entry key 'fraction' must be a number, got ",
               x.dump());
      if (k == "file") d.file = x.get<std::string>();
      else if (k == "kind") d.kind = x.get<std::string>();
      else if (k == "fraction") d.fraction = x.get<double>();
      else if (k == "root") d.root = x.get<std::string>();
      else VT_FAIL(source, ": unknown key '", k, "' in a \"data\" entry (known: file, kind, fraction, root)");
    }
    out.push_back(d);
  }
  return out;
}

}  // namespace

Recipe Recipe::from_json(const json& j, const std::string& source) {
  VT_CHECK(j.is_object(), source, ": a recipe is a JSON object");
  Recipe r;
  std::map<std::string, json> flat;
  flatten(j, "", flat);
  for (const auto& [k, v] : flat) {
    if (k == "data") r.data = read_data(v, source);
    else if (k == "comment" || k.rfind("comment.", 0) == 0) continue;  // free text for readers
    else read_field(r, k, v, source);
  }
  r.validate(source);
  return r;
}

Recipe Recipe::load(const std::string& path) {
  std::ifstream in(path);
  VT_CHECK(in.good(), "recipe: cannot open '", path, "'");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    VT_FAIL("recipe ", path, ": malformed JSON: ", e.what());
  }
  Recipe r = from_json(j, path);
  if (r.name.empty()) r.name = path.substr(path.find_last_of('/') + 1, path.rfind(".json") - path.find_last_of('/') - 1);
  return r;
}

void Recipe::set(const std::string& assignment) {
  const size_t eq = assignment.find('=');
  VT_CHECK(eq != std::string::npos && eq > 0, "--set expects key=value, got '", assignment, "'");
  const std::string key = assignment.substr(0, eq), text = assignment.substr(eq + 1);
  auto it = fields().find(key);
  VT_CHECK(it != fields().end(), "--set: unknown recipe key '", key, "' (known: ", known_keys(), ")");
  // Numbers and booleans parse as JSON; anything else is a string.
  json value;
  const json current = it->second.write(*this);
  if (current.is_string()) {
    value = text;
  } else {
    try {
      value = json::parse(text);
    } catch (const json::exception&) {
      VT_FAIL("--set ", key, ": '", text, "' is not a ", current.type_name());
    }
  }
  Recipe next = *this;  // a refused value leaves the recipe as it was
  read_field(next, key, value, "--set");
  next.validate("--set " + assignment);
  *this = std::move(next);
}

json Recipe::to_json() const {
  json j = json::object();
  for (const auto& [k, f] : fields()) j[k] = f.write(*this);
  json d = json::array();
  for (const RecipeData& s : data) d.push_back({{"file", s.file}, {"kind", s.kind}, {"fraction", s.fraction}, {"root", s.root}});
  j["data"] = d;
  return j;
}

int64_t Recipe::accumulation(int64_t world_size) const {
  VT_CHECK(global_batch % (micro_batch * world_size) == 0, "recipe ", name, ": global_batch ", global_batch,
           " is not a multiple of micro_batch ", micro_batch, " x world size ", world_size);
  return global_batch / (micro_batch * world_size);
}

void Recipe::validate(const std::string& source) const {
  VT_CHECK(kind == "sft" || kind == "dpo" || kind == "vae", source, ": kind '", kind, "' (sft, dpo or vae)");
  VT_CHECK(schedule == "cosine" || schedule == "linear" || schedule == "constant", source, ": schedule '", schedule,
           "' (cosine, linear or constant)");
  VT_CHECK(dtype == "f32" || dtype == "bf16", source, ": dtype '", dtype, "' (f32 or bf16)");
  VT_CHECK(global_batch >= 1 && micro_batch >= 1 && steps >= 1 && lr > 0, source,
           ": global_batch, micro_batch, steps and lr must be positive");
  VT_CHECK(warmup_ratio >= 0 && warmup_ratio < 1 && weight_decay >= 0 && cond_drop >= 0 && cond_drop <= 1, source,
           ": warmup_ratio in [0, 1), weight_decay >= 0, cond_drop in [0, 1]");
  VT_CHECK(zero_stage >= 0 && zero_stage <= 3, source, ": zero_stage ", zero_stage, " (0-3)");
  VT_CHECK(keep_last >= 1, source, ": keep_last must be at least 1");
  VT_CHECK(sample_every >= 0, source, ": sample_every ", sample_every, " is negative (0: no sample grids)");
  VT_CHECK(sample_prompts >= 1, source, ": sample_prompts ", sample_prompts, " must be at least 1");
  VT_CHECK(sample_every == 0 || kind != "vae", source, ": sample_every ", sample_every,
           " asks for sample grids, which sft and dpo recipes draw; this one is of kind vae");
  VT_CHECK(kind != "dpo" || !reference.empty(), source, ": a dpo recipe needs \"reference\"");
}

}  // namespace vt::train
