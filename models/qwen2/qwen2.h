// qwen2/qwen2.h: the Qwen2 decoder-only LLM (qwen2_vl.md §2-§7), the language half of Qwen2-VL and
// of VARGPT-v1.1, with the Hugging Face hub tensor names.
//
//   ids (B, T) --embed--> h (B, T, C)            [a multimodal wrapper overwrites rows of h here]
//   per layer:  h += o_proj(attn(rope(q), rope(k), v))      q, k, v = proj(rms_norm(h)), GQA
//               h += down(silu(gate(x)) * up(x)),  x = rms_norm(h)
//   h = norm(h);  logits = h lm_head^T                      (lm_head = embed_tokens when tied)
//
// The pieces are separate calls so that Qwen2-VL and VARGPT reuse them unchanged:
//   embed(ids)                         -> (B, T, C)
//   rope(positions)                    (B, T) 1-D or (3, B, T) M-RoPE positions -> cos, sin (B, T, D)
//   decoder.forward(embeds, rope, key_mask, caches) -> final normed hidden states (B, T, C)
//   logits(hidden, last_only)          -> (B, T, V) or (B, 1, V)
// The caller chooses the positions (sequential, cumsum of the padding mask as HF generate does,
// get_rope_index for images) and owns the KV caches (one nn::KVCache per layer).
//
// Precision follows HF eager in the weights' dtype: every linear, the residual adds and the SwiGLU
// product are rounded to bf16 for bf16 weights; RMSNorm normalises in f32 and rounds before the
// weight multiply (nn::rms_norm); RoPE tables are cast to the activation dtype. The one deviation:
// attention accumulates scores, softmax and p·v in f32 and rounds once (as torch's SDPA CPU/flash
// kernels, the default attn_implementation), where eager rounds q·kᵀ and p to bf16.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "qwen2/config.h"
#include "vt/nn/attention.h"
#include "vt/nn/layers.h"
#include "vt/nn/module.h"
#include "vt/nn/rope.h"

namespace vt::qwen2 {

// torch.nn.Linear and Qwen2RMSNorm (include/vt/nn/layers.h).
using nn::Linear;
using nn::RMSNorm;

class Attention : public nn::Module {
 public:
  Attention(const Qwen2Config& cfg, DType dtype);
  // x: (B, T, C); rope.cos, rope.sin: (B, T, D); cache: this layer's, appended to when given.
  Tensor forward(const Tensor& x, const nn::RopeCosSin& rope, const nn::AttentionMask& mask,
                 nn::KVCache* cache) const;
  std::shared_ptr<Linear> q_proj, k_proj, v_proj, o_proj;  // q/k/v with bias, o without

 private:
  int64_t heads_, kv_heads_, head_dim_;
};

class MLP : public nn::Module {
 public:
  MLP(const Qwen2Config& cfg, DType dtype);
  Tensor forward(const Tensor& x) const;  // (B, T, C) -> (B, T, C)
  std::shared_ptr<Linear> gate_proj, up_proj, down_proj;  // (F, C), (F, C), (C, F), no bias
};

class DecoderLayer : public nn::Module {
 public:
  DecoderLayer(const Qwen2Config& cfg, DType dtype);
  // HF's Qwen2DecoderLayer on h = in.residual + in.delta (each (B, T, C)): returns {h + attention,
  // mlp(...)}, whose sum is the layer's output; the adds run fused with the norms after them.
  nn::ResidualStream forward(const nn::ResidualStream& in, const nn::RopeCosSin& rope, const nn::AttentionMask& mask,
                         nn::KVCache* cache) const;
  std::shared_ptr<Attention> self_attn;
  std::shared_ptr<MLP> mlp;
  std::shared_ptr<RMSNorm> input_layernorm, post_attention_layernorm;
};

// Qwen2Model: embed_tokens, layers.N, norm (the "model." subtree of a checkpoint).
class Qwen2Model : public nn::Module {
 public:
  Qwen2Model(const Qwen2Config& cfg, DType dtype);

  Tensor embed(const Tensor& ids) const;  // (B, T) int -> (B, T, C) in the weights' dtype
  // inputs_embeds: (B, T, C); rope: cos, sin (B, T, D) for these T tokens.
  // key_mask: undefined (no padding) or (B, past + T), nonzero = a real token (HF's attention_mask).
  // caches: undefined, or one per layer; past = caches[0].length keys are attended before these.
  // Returns the final normed hidden states (B, T, C).
  // mask: replaces the causal mask (and key_mask, which must then be folded into it), e.g. VARGPT's
  // block-causal image chunks (vargpt.md Q11 fix).
  Tensor forward(const Tensor& inputs_embeds, const nn::RopeCosSin& rope, const Tensor& key_mask = Tensor(),
                 std::vector<nn::KVCache>* caches = nullptr, const nn::AttentionMask* mask = nullptr) const;

  Tensor embed_tokens;  // (V, C)
  std::shared_ptr<nn::ModuleList> layers;
  std::shared_ptr<RMSNorm> norm;
  // HF's gradient_checkpointing: with grad on and no caches, each layer keeps only its input and
  // is recomputed in backward (nn::checkpoint_layer); gradients are unchanged.
  bool gradient_checkpointing = false;

 private:
  Qwen2Config cfg_;
};

// Qwen2ForCausalLM: "model.*" plus "lm_head.weight" (absent when tie_word_embeddings).
class Qwen2ForCausalLM : public nn::Module {
 public:
  // Parameters are created zeroed in `dtype`; load() fills them.
  explicit Qwen2ForCausalLM(const Qwen2Config& cfg, DType dtype = DType::F32);
  // Reads dir/config.json and the checkpoint (model.safetensors or a sharded index) into a model
  // of `dtype` (the config's torch_dtype when not given). Missing, unexpected and mis-shaped tensors
  // are reported by name and shape (nn::Module::load).
  static std::shared_ptr<Qwen2ForCausalLM> from_pretrained(const std::string& dir,
                                                           std::optional<DType> dtype = std::nullopt);

  const Qwen2Config& config() const { return cfg_; }
  DType dtype() const { return model->embed_tokens.dtype(); }
  Tensor lm_head_weight() const { return lm_head ? lm_head->weight : model->embed_tokens; }  // (V, C)

  // positions (B, T) -> 1-D RoPE; (3, B, T) -> M-RoPE with the config's mrope_section (the t = h = w
  // case of M-RoPE equals 1-D RoPE, so a Qwen2-VL text step may pass either). Tables in dtype().
  nn::RopeCosSin rope(const Tensor& positions) const;
  // hidden: (B, T, C) -> logits (B, T, V), or (B, 1, V) of the last position when last_only.
  Tensor logits(const Tensor& hidden, bool last_only = false) const;
  // Text convenience: ids (B, T), positions (B, T) or (3, B, T), key_mask and caches as in
  // Qwen2Model::forward -> logits.
  Tensor forward(const Tensor& ids, const Tensor& positions, const Tensor& key_mask = Tensor(),
                 std::vector<nn::KVCache>* caches = nullptr, bool last_only = false) const;
  std::vector<nn::KVCache> make_caches() const { return std::vector<nn::KVCache>(cfg_.num_hidden_layers); }

  std::shared_ptr<Qwen2Model> model;
  std::shared_ptr<Linear> lm_head;  // null when tied

 private:
  Qwen2Config cfg_;
};

// ---- positions ---------------------------------------------------------------------------------
// HF generate's text positions for a (left-)padded batch: cumsum(mask) - 1, and 1 where mask == 0.
// attention_mask: (B, L) -> (B, L) int64.
Tensor positions_from_mask(const Tensor& attention_mask);
// past + arange(T) for every row: (B, T) int64.
Tensor sequential_positions(int64_t batch, int64_t length, int64_t past = 0);

}  // namespace vt::qwen2
