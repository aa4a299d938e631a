// qwen2/qwen2.cpp: the Qwen2 decoder (see qwen2.h for the data flow and the precision rules).
#include "qwen2/qwen2.h"

#include "vt/nn/block.h"

#include "vt/nn/functional.h"
#include "vt/nn/norm.h"
#include "vt/ops.h"

namespace vt::qwen2 {

// ---- layers ------------------------------------------------------------------------------------

Attention::Attention(const Qwen2Config& cfg, DType dtype)
    : heads_(cfg.num_attention_heads), kv_heads_(cfg.num_key_value_heads), head_dim_(cfg.head_dim) {
  const int64_t C = cfg.hidden_size;
  q_proj = register_module("q_proj", std::make_shared<Linear>(C, cfg.q_size(), true, dtype));
  k_proj = register_module("k_proj", std::make_shared<Linear>(C, cfg.kv_size(), true, dtype));
  v_proj = register_module("v_proj", std::make_shared<Linear>(C, cfg.kv_size(), true, dtype));
  o_proj = register_module("o_proj", std::make_shared<Linear>(cfg.q_size(), C, false, dtype));
}

Tensor Attention::forward(const Tensor& x, const nn::RopeCosSin& rope, const nn::AttentionMask& mask,
                          nn::KVCache* cache) const {
  const int64_t B = x.size(0), T = x.size(1), D = head_dim_;
  // (B, T, heads * D) -> (B, heads, T, D), a transposed view (attention reads rows in place)
  Tensor q = q_proj->forward(x).view({B, T, heads_, D}).transpose(1, 2);
  Tensor k = k_proj->forward(x).view({B, T, kv_heads_, D}).transpose(1, 2);
  Tensor v = v_proj->forward(x).view({B, T, kv_heads_, D}).transpose(1, 2);
  const Tensor cos = rope.cos.unsqueeze(1), sin = rope.sin.unsqueeze(1);  // (B, 1, T, D)
  q = nn::apply_rope_half(q, cos, sin);
  k = nn::apply_rope_half(k, cos, sin);
  Tensor o = cache ? nn::attention_with_cache(*cache, q, k, v, mask)  // (B, heads, T, D)
                   : nn::scaled_dot_product_attention(q, k, v, mask);
  return o_proj->forward(o.transpose(1, 2).reshape({B, T, heads_ * D}));
}

MLP::MLP(const Qwen2Config& cfg, DType dtype) {
  const int64_t C = cfg.hidden_size, F = cfg.intermediate_size;
  gate_proj = register_module("gate_proj", std::make_shared<Linear>(C, F, false, dtype));
  up_proj = register_module("up_proj", std::make_shared<Linear>(C, F, false, dtype));
  down_proj = register_module("down_proj", std::make_shared<Linear>(F, C, false, dtype));
}

Tensor MLP::forward(const Tensor& x) const {
  // act_fn(gate) * up as two rounded ops, as HF (nn::swiglu would round once).
  return down_proj->forward(mul(nn::silu(gate_proj->forward(x)), up_proj->forward(x)));
}

DecoderLayer::DecoderLayer(const Qwen2Config& cfg, DType dtype) {
  self_attn = register_module("self_attn", std::make_shared<Attention>(cfg, dtype));
  mlp = register_module("mlp", std::make_shared<MLP>(cfg, dtype));
  input_layernorm = register_module("input_layernorm",
                                    std::make_shared<RMSNorm>(cfg.hidden_size, cfg.rms_norm_eps, dtype));
  post_attention_layernorm = register_module("post_attention_layernorm",
                                             std::make_shared<RMSNorm>(cfg.hidden_size, cfg.rms_norm_eps, dtype));
}

nn::ResidualStream DecoderLayer::forward(const nn::ResidualStream& in, const nn::RopeCosSin& rope,
                                         const nn::AttentionMask& mask, nn::KVCache* cache) const {
  // Each residual add runs in one pass with the norm after it (bitwise the two ops): h = residual
  // + the previous layer's MLP output with input_layernorm, r = h + attention with the second norm.
  const nn::AddNorm h = input_layernorm->forward(in);  // h = in.residual + in.delta: the pending add lands here
  const nn::AddNorm r = post_attention_layernorm->forward_add(h.sum, self_attn->forward(h.normed, rope, mask, cache));
  // h += mlp(x) is left pending: the next layer's input_layernorm (or the final norm) performs it.
  return {r.sum, mlp->forward(r.normed)};
}

// ---- the decoder -------------------------------------------------------------------------------

Qwen2Model::Qwen2Model(const Qwen2Config& cfg, DType dtype) : cfg_(cfg) {
  cfg_.validate();
  auto embed = register_module("embed_tokens", std::make_shared<nn::Module>());
  embed_tokens = embed->register_parameter("weight", zeros({cfg.vocab_size, cfg.hidden_size}, dtype));  // (V, C)
  layers = register_module("layers", std::make_shared<nn::ModuleList>());
  for (int64_t i = 0; i < cfg.num_hidden_layers; ++i) layers->push_back(std::make_shared<DecoderLayer>(cfg, dtype));
  norm = register_module("norm", std::make_shared<RMSNorm>(cfg.hidden_size, cfg.rms_norm_eps, dtype));
}

Tensor Qwen2Model::embed(const Tensor& ids) const {
  VT_CHECK(is_integral(ids.dtype()) && ids.dtype() != DType::Bool, "Qwen2Model::embed: ids must be integers, got ",
           dtype_name(ids.dtype()));
  return embedding(embed_tokens, ids);
}

Tensor Qwen2Model::forward(const Tensor& inputs_embeds, const nn::RopeCosSin& rope, const Tensor& key_mask,
                           std::vector<nn::KVCache>* caches, const nn::AttentionMask* mask_override) const {
  VT_CHECK(inputs_embeds.dim() == 3 && inputs_embeds.size(2) == cfg_.hidden_size,
           "Qwen2Model::forward: inputs_embeds must be (B, T, ", cfg_.hidden_size, "), got ",
           inputs_embeds.shape().str());
  const int64_t B = inputs_embeds.size(0), T = inputs_embeds.size(1);
  const int64_t D = cfg_.head_dim;
  VT_CHECK(rope.cos.dim() == 3 && rope.cos.size(0) == B && rope.cos.size(1) == T && rope.cos.size(2) == D &&
               rope.sin.shape() == rope.cos.shape(),
           "Qwen2Model::forward: rope cos/sin must be (", B, ", ", T, ", ", D, "), got ", rope.cos.shape().str(),
           " and ", rope.sin.shape().str());
  int64_t past = 0;
  if (caches) {
    VT_CHECK(static_cast<int64_t>(caches->size()) == cfg_.num_hidden_layers, "Qwen2Model::forward: ",
             caches->size(), " KV caches for ", cfg_.num_hidden_layers, " layers");
    past = (*caches)[0].length;
  }
  // Causal over the whole key sequence (top-left without a cache, bottom-right with one), and
  // key padding: key j is visible to row b when key_mask[b, j] != 0.
  nn::AttentionMask mask = caches ? nn::AttentionMask::causal_from_end() : nn::AttentionMask::causal();
  VT_CHECK(!mask_override || !key_mask.defined(), "Qwen2Model::forward: fold key_mask into the mask you pass");
  if (mask_override) mask = *mask_override;
  if (key_mask.defined()) {
    VT_CHECK(key_mask.dim() == 2 && key_mask.size(0) == B && key_mask.size(1) == past + T,
             "Qwen2Model::forward: key_mask must be (B, past + T) = (", B, ", ", past + T, "), got ",
             key_mask.shape().str());
    mask = mask.with_tensor(ne(key_mask, 0.0).view({B, 1, 1, past + T}));
  }
  nn::ResidualStream h{inputs_embeds, Tensor()};  // (B, T, C)
  for (size_t i = 0; i < layers->size(); ++i) {
    const DecoderLayer* layer = &layers->at<DecoderLayer>(i);
    nn::KVCache* cache = caches ? &(*caches)[i] : nullptr;
    h = nn::run_block(*layer, {gradient_checkpointing, cache != nullptr},
                      [layer, rope, mask, cache](const nn::ResidualStream& s, const std::vector<Tensor>&) {
                        return layer->forward(s, rope, mask, cache);
                      }, h);
  }
  return norm->forward(h).normed;
}

// ---- the causal LM -----------------------------------------------------------------------------

Qwen2ForCausalLM::Qwen2ForCausalLM(const Qwen2Config& cfg, DType dtype) : cfg_(cfg) {
  model = register_module("model", std::make_shared<Qwen2Model>(cfg, dtype));
  if (!cfg.tie_word_embeddings)
    lm_head = register_module("lm_head", std::make_shared<Linear>(cfg.hidden_size, cfg.vocab_size, false, dtype));
}

std::shared_ptr<Qwen2ForCausalLM> Qwen2ForCausalLM::from_pretrained(const std::string& dir,
                                                                    std::optional<DType> dtype) {
  const Qwen2Config cfg = Qwen2Config::load(dir);
  cfg.check_checkpoint(dir);
  auto m = std::make_shared<Qwen2ForCausalLM>(cfg, dtype.value_or(cfg.dtype));
  m->load(dir);
  m->eval();
  return m;
}

nn::RopeCosSin Qwen2ForCausalLM::rope(const Tensor& positions) const {
  if (positions.dim() == 2) return nn::rope_cos_sin(positions, cfg_.head_dim, cfg_.rope_theta, dtype());
  VT_CHECK(positions.dim() == 3 && positions.size(0) == 3, "Qwen2ForCausalLM::rope: positions must be (B, T) or ",
           "(3, B, T), got ", positions.shape().str());
  // A config without mrope_section (plain Qwen2) still accepts 3-D positions: one section per axis
  // is only meaningful for Qwen2-VL, so require it.
  VT_CHECK(cfg_.mrope_section.has_value(), "Qwen2ForCausalLM::rope: (3, B, T) positions need ",
           "rope_scaling.mrope_section in the config (model_type ", cfg_.model_type, ")");
  return nn::mrope_cos_sin(positions, cfg_.head_dim, cfg_.rope_theta, *cfg_.mrope_section, dtype());
}

Tensor Qwen2ForCausalLM::logits(const Tensor& hidden, bool last_only) const {
  const Tensor h = last_only ? hidden.narrow(1, hidden.size(1) - 1, 1) : hidden;  // (B, T or 1, C)
  return nn::linear(h, lm_head_weight());
}

Tensor Qwen2ForCausalLM::forward(const Tensor& ids, const Tensor& positions, const Tensor& key_mask,
                                 std::vector<nn::KVCache>* caches, bool last_only) const {
  const Tensor h = model->forward(model->embed(ids), rope(positions), key_mask, caches);
  return logits(h, last_only);
}

// ---- positions ---------------------------------------------------------------------------------

Tensor positions_from_mask(const Tensor& attention_mask) {
  VT_CHECK(attention_mask.dim() == 2, "positions_from_mask: attention_mask must be (B, L), got ",
           attention_mask.shape().str());
  const Tensor m = ne(attention_mask, 0.0).to(DType::I64);
  return masked_fill(sub(cumsum(m, 1), 1.0), eq(m, 0.0), 1);
}

Tensor sequential_positions(int64_t batch, int64_t length, int64_t past) {
  return arange(past, past + length).view({1, length}).expand({batch, length}).contiguous();
}

}  // namespace vt::qwen2
