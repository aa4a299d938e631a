// infinity_block.cpp: Infinity's CrossAttnBlock and its attentions; see the header.
#include "infinity/infinity_block.h"

#include <cmath>

#include "vt/nn/adaln.h"
#include "vt/nn/functional.h"
#include "vt/nn/norm.h"
#include "vt/ops.h"

namespace vt::infinity {

// ---- config ----------------------------------------------------------------------------------------
int64_t InfinityConfig::ffn_hidden() const {
  return static_cast<int64_t>(std::llround(static_cast<double>(embed_dim) * mlp_ratio / 256.0)) * 256;
}

void InfinityConfig::validate() const {
  VT_CHECK(depth > 0 && embed_dim > 0 && num_heads > 0, "InfinityConfig: depth ", depth, ", embed_dim ", embed_dim,
           ", num_heads ", num_heads, " must be positive");
  VT_CHECK(embed_dim % num_heads == 0, "InfinityConfig: embed_dim ", embed_dim, " is not a multiple of num_heads ",
           num_heads);
  VT_CHECK(head_dim() % 4 == 0, "InfinityConfig: head_dim ", head_dim(),
           " must be a multiple of 4 (2-D RoPE rotates pairs, half by row and half by column)");
  VT_CHECK(block_chunks > 0 && depth % block_chunks == 0, "InfinityConfig: depth ", depth,
           " is not a multiple of block_chunks ", block_chunks);
  VT_CHECK(codebook_dim > 0 && text_channels > 0 && text_maxlen > 0 && num_levels > 0,
           "InfinityConfig: codebook_dim, text_channels, text_maxlen and num_levels must be positive");
}

InfinityConfig InfinityConfig::infinity_2b() { return {}; }

InfinityConfig InfinityConfig::tiny() {
  InfinityConfig c;
  c.depth = 2, c.embed_dim = 64, c.num_heads = 4, c.codebook_dim = 16, c.text_channels = 48, c.text_maxlen = 16;
  c.block_chunks = 1;
  return c;
}

InfinityConfig InfinityConfig::bench() {
  InfinityConfig c;
  c.depth = 4, c.embed_dim = 256, c.num_heads = 4, c.codebook_dim = 32, c.text_channels = 256, c.text_maxlen = 64;
  c.block_chunks = 1;
  return c;
}

// ---- Linear ----------------------------------------------------------------------------------------
// Init: trunc-normal-ish std sqrt(1 / (3 in)) (upstream's init_std); checkpoints overwrite it.
Linear::Linear(int64_t in, int64_t out, bool with_bias)
    : nn::Linear(in, out, with_bias, DType::F32, std::sqrt(1.0 / (3.0 * in))) {}

// ---- self-attention ----------------------------------------------------------------------------------
SelfAttention::SelfAttention(const InfinityConfig& cfg) : num_heads(cfg.num_heads) {
  const int64_t C = cfg.embed_dim;
  mat_qkv = register_module("mat_qkv", std::make_shared<Linear>(C, 3 * C, /*bias=*/false));
  q_bias = register_parameter("q_bias", zeros({C}));
  v_bias = register_parameter("v_bias", zeros({C}));
  zero_k_bias = register_buffer("zero_k_bias", zeros({C}));
  scale_mul_1H11 = register_parameter("scale_mul_1H11", full({1, num_heads, 1, 1}, std::log(4.0)));
  proj = register_module("proj", std::make_shared<Linear>(C, C));
}

Tensor SelfAttention::forward(const Tensor& x, const SelfAttentionInputs& in) const {
  const int64_t B = x.size(0), L = x.size(1), C = x.size(2), H = num_heads, D = C / H;
  // qkv: (B, L, 3C) -> (3, B, H, L, D)
  Tensor qkv = nn::linear(x, mat_qkv->weight, cat({q_bias, zero_k_bias, v_bias}, 0));
  qkv = qkv.view({B, L, 3, H, D}).permute({2, 0, 3, 1, 4});
  auto [q, k] = nn::cosine_qk(qkv.select(0, 0), qkv.select(0, 1), scale_mul_1H11);  // f32 (B, H, L, D)
  Tensor v = qkv.select(0, 2);
  VT_CHECK(in.rope.cos.dim() == 2 && in.rope.cos.size(0) == L && in.rope.cos.size(1) == D / 2,
           "infinity self-attention: RoPE tables have shape ", in.rope.cos.shape().str(), ", expected (", L, ", ",
           D / 2, ") for ", L, " tokens of head_dim ", D);
  q = nn::apply_rope_interleaved(q, in.rope.cos, in.rope.sin);
  k = nn::apply_rope_interleaved(k, in.rope.cos, in.rope.sin);
  q = cast(q, v.dtype()), k = cast(k, v.dtype());
  // o: (B, H, L, D); the cached K is post-RoPE (§6.4).
  Tensor o = in.cache ? nn::attention_with_cache(*in.cache, q, k, v, in.mask, 1.0)
                      : nn::scaled_dot_product_attention(q, k, v, in.mask, 1.0);
  return proj->forward(o.transpose(1, 2).reshape({B, L, C}));
}

// ---- cross-attention ---------------------------------------------------------------------------------
CrossAttention::CrossAttention(const InfinityConfig& cfg) : num_heads(cfg.num_heads) {
  const int64_t C = cfg.embed_dim;
  mat_q = register_module("mat_q", std::make_shared<Linear>(C, C));
  mat_kv = register_module("mat_kv", std::make_shared<Linear>(C, 2 * C, /*bias=*/false));
  v_bias = register_parameter("v_bias", zeros({C}));
  zero_k_bias = register_buffer("zero_k_bias", zeros({C}));
  proj = register_module("proj", std::make_shared<Linear>(C, C));
}

CrossKV CrossAttention::keys_values(const Tensor& memory, const std::vector<int64_t>& cu_seqlens) const {
  const int64_t C = mat_q->weight.size(0), H = num_heads, D = C / H;
  VT_CHECK(memory.dim() == 2 && memory.size(1) == mat_kv->weight.size(1), "infinity cross-attention: memory has ",
           "shape ", memory.shape().str(), ", expected packed rows (ΣM, ", mat_kv->weight.size(1), ")");
  VT_CHECK(cu_seqlens.size() >= 2 && cu_seqlens.front() == 0 && cu_seqlens.back() == memory.size(0),
           "infinity cross-attention: cu_seqlens must run from 0 to the ", memory.size(0), " memory rows");
  const int64_t M = memory.size(0);
  // kv: (ΣM, 2C) -> (2, 1, H, ΣM, D)
  Tensor kv = nn::linear(memory, mat_kv->weight, cat({zero_k_bias, v_bias}, 0));
  kv = kv.view({M, 2, H, D}).permute({1, 2, 0, 3}).unsqueeze(1);
  return {kv.select(0, 0), kv.select(0, 1), cu_seqlens};
}

Tensor CrossAttention::forward(const Tensor& x, const CrossKV& kv) const {
  const int64_t B = x.size(0), L = x.size(1), C = x.size(2), H = num_heads, D = C / H;
  VT_CHECK(static_cast<int64_t>(kv.cu_seqlens.size()) == B + 1, "infinity cross-attention: ",
           kv.cu_seqlens.size() - 1, " memories for a batch of ", B);
  // q: (B, L, C) -> (1, H, B L, D): the batch is packed so that one varlen call serves all samples.
  Tensor q = mat_q->forward(x).view({B * L, H, D}).transpose(0, 1).unsqueeze(0);
  std::vector<int64_t> cu_q(B + 1);
  for (int64_t b = 0; b <= B; ++b) cu_q[b] = b * L;
  Tensor o = nn::scaled_dot_product_attention(q, kv.k, kv.v, nn::AttentionMask::varlen(cu_q, kv.cu_seqlens));
  return proj->forward(o.squeeze(0).transpose(0, 1).reshape({B, L, C}));
}

// ---- block -------------------------------------------------------------------------------------------
Block::Block(const InfinityConfig& cfg, double drop_path_rate) : eps(cfg.norm_eps), drop_path(drop_path_rate) {
  const int64_t C = cfg.embed_dim;
  // A small random init (upstream scales its gamma slots by 5e-6 and scale/shift slots by 1e-3);
  // checkpoints overwrite it.
  ada_gss = register_parameter("ada_gss", normal({1, 1, 6, C}, 0.0, 1e-3));
  sa = register_module("sa", std::make_shared<SelfAttention>(cfg));
  ca = register_module("ca", std::make_shared<CrossAttention>(cfg));
  ca_norm = register_module("ca_norm", std::make_shared<nn::Module>());
  ca_norm_weight = ca_norm->register_parameter("weight", ones({C}));
  ca_norm_bias = ca_norm->register_parameter("bias", zeros({C}));
  auto ffn = register_module("ffn", std::make_shared<nn::Module>());
  fc1 = ffn->register_module("fc1", std::make_shared<Linear>(C, cfg.ffn_hidden()));
  fc2 = ffn->register_module("fc2", std::make_shared<Linear>(cfg.ffn_hidden(), C));
}

Tensor Block::forward(const Tensor& x, const Tensor& cond6, const SelfAttentionInputs& sa_in,
                      const CrossKV& ca_kv) const {
  const int64_t C = x.size(2);
  VT_CHECK(cond6.dim() == 4 && cond6.size(0) == x.size(0) && cond6.size(2) == 6 && cond6.size(3) == C,
           "infinity block: AdaLN condition has shape ", cond6.shape().str(), ", expected (", x.size(0), ", 1, 6, ", C,
           ")");
  // (γ1, γ2, s1, s2, b1, b2): each (B, 1, C), in upstream's unbind order.
  std::vector<Tensor> m = split(ada_gss + cond6, 1, 2);
  for (Tensor& t : m) t = t.squeeze(2);
  const bool train = is_training() && drop_path > 0;
  Tensor h = sa->forward(nn::modulate(nn::layer_norm(x, {C}, {}, {}, eps), m[4], m[2]), sa_in);
  Tensor out = nn::gated_residual(x, m[0], train ? nn::drop_path(h, drop_path) : h);
  out = out + ca->forward(nn::layer_norm(out, {C}, ca_norm_weight, ca_norm_bias, eps), ca_kv);
  h = fc2->forward(nn::gelu(fc1->forward(nn::modulate(nn::layer_norm(out, {C}, {}, {}, eps), m[5], m[3])), true));
  return nn::gated_residual(out, m[1], train ? nn::drop_path(h, drop_path) : h);
}

}  // namespace vt::infinity
