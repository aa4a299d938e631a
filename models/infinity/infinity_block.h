// infinity_block.h: the pieces of Infinity's transformer block (infinity_bsq.md §6.3-§6.6): the
// configuration, a Linear layer with upstream names, cosine self-attention with 2-D RoPE and a KV
// cache, varlen cross-attention with precomputable K/V, and the AdaLN CrossAttnBlock.
//
// One block, with (γ1, γ2, s1, s2, b1, b2) = unbind(ada_gss + cond6, dim 2) in that order:
//   x = x + γ1 ⊙ SA( LN(x) ⊙ (1 + s1) + b1 )           LN without affine, eps 1e-6
//   x = x + CA( ca_norm(x), memory )                    ca_norm with weight and bias; gate fixed 1
//   x = x + γ2 ⊙ FFN( LN(x) ⊙ (1 + s2) + b2 )           fc1 -> GELU(tanh) -> fc2
// Everything runs in the parameters' dtype with f32 statistics (vt's norms and attention); the
// reference's bf16 autocast is not reproduced (the fixtures are f32).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "vt/nn/attention.h"
#include "vt/nn/layers.h"
#include "vt/nn/module.h"
#include "vt/nn/rope.h"

namespace vt::infinity {

struct InfinityConfig {
  int64_t depth = 32;
  int64_t embed_dim = 2048;     // C
  int64_t num_heads = 16;       // head_dim = C / num_heads (128 for every released model)
  double mlp_ratio = 4.0;       // FFN hidden = round(C * mlp_ratio / 256) * 256
  int64_t codebook_dim = 32;    // d: bits per token; the head has 2d outputs
  int64_t text_channels = 2048; // Ctext: width of the condition rows (flan-t5-xl, or VARGPT's 2048)
  int64_t text_maxlen = 512;    // rows of the cfg_uncond table: the longest allowed condition
  int64_t num_levels = 15;      // rows of lvl_embed (scales per schedule <= this)
  int64_t block_chunks = 8;     // naming only: block b is block_chunks.{b / per}.module.{b % per}
  double norm_eps = 1e-6;
  double rope_theta = 1e4;
  double drop_path_rate = 0.0;  // linear 0 -> rate over depth, training only (upstream trains at 0.1)

  int64_t head_dim() const { return embed_dim / num_heads; }
  int64_t ffn_hidden() const;
  int64_t blocks_per_chunk() const { return depth / block_chunks; }
  void validate() const;

  // Infinity-2B (VARGPT-v1.1's decoder): depth 32, C 2048, 16 heads, d 32, text width 2048.
  static InfinityConfig infinity_2b();
  // Test sizes: depth 2, C 64, 4 heads, d 16, text width 48, 16 cfg_uncond rows.
  static InfinityConfig tiny();
  // The benchmark decoder: depth 4, C 256, 4 heads, d 32, text width 256.
  static InfinityConfig bench();
};

// nn.Linear(in, out, bias) drawn as upstream initialises it (std sqrt(1 / (3 in))) before a
// checkpoint overwrites it; include/vt/nn/layers.h.
class Linear : public nn::Linear {
 public:
  Linear(int64_t in, int64_t out, bool bias = true);
};

// The keys and values of one block's cross-attention for a packed batch of memories: computed once
// per image and reused at every scale (§6.6).
struct CrossKV {
  Tensor k, v;                       // (1, H, ΣM, head_dim) each
  std::vector<int64_t> cu_seqlens;  // (B + 1): sample b owns memory rows [cu[b], cu[b+1])
};

// What the self-attention of one forward sees: the rotary tables of its tokens and the mask.
struct SelfAttentionInputs {
  nn::RopeCosSin rope;  // cos, sin: (L, head_dim / 2), rows of this forward's tokens
  nn::AttentionMask mask;
  nn::KVCache* cache = nullptr;  // inference: append this forward's K, V and attend over the cache
};

// Cosine self-attention (§6.4): qkv = x W^T + [q_bias, 0, v_bias]; q, k L2-normalised per head, q
// scaled by exp(min(scale_mul_h, ln 100)); interleaved 2-D RoPE on q and k; softmax scale 1.
class SelfAttention : public nn::Module {
 public:
  explicit SelfAttention(const InfinityConfig& cfg);
  Tensor forward(const Tensor& x, const SelfAttentionInputs& in) const;  // (B, L, C) -> (B, L, C)
  std::shared_ptr<Linear> mat_qkv, proj;  // (3C, C) without bias; (C, C)
  Tensor q_bias, v_bias, zero_k_bias;     // (C) each; zero_k_bias is a persistent zero buffer
  Tensor scale_mul_1H11;                  // (1, H, 1, 1), initialised to ln 4
  int64_t num_heads;
};

// Cross-attention to packed variable-length memories (§6.6): q = mat_q(x), [k, v] = mat_kv(memory)
// + [0, v_bias]; scale 1 / sqrt(head_dim); sample b's queries see only its own memory rows.
class CrossAttention : public nn::Module {
 public:
  explicit CrossAttention(const InfinityConfig& cfg);
  // memory: (ΣM, C) rows of all samples, cu_seqlens (B + 1) -> K, V for attend().
  CrossKV keys_values(const Tensor& memory, const std::vector<int64_t>& cu_seqlens) const;
  Tensor forward(const Tensor& x, const CrossKV& kv) const;  // (B, L, C) -> (B, L, C)
  std::shared_ptr<Linear> mat_q, mat_kv, proj;  // (C, C); (2C, C) without bias; (C, C)
  Tensor v_bias, zero_k_bias;                   // (C)
  int64_t num_heads;
};

class Block : public nn::Module {
 public:
  Block(const InfinityConfig& cfg, double drop_path);
  // x: (B, L, C); cond6: (B, 1, 6, C) = shared_ada_lin(cond_BD) -> (B, L, C)
  Tensor forward(const Tensor& x, const Tensor& cond6, const SelfAttentionInputs& sa_in, const CrossKV& ca_kv) const;
  Tensor ada_gss;  // (1, 1, 6, C): γ1, γ2, s1, s2, b1, b2
  std::shared_ptr<SelfAttention> sa;
  std::shared_ptr<CrossAttention> ca;
  std::shared_ptr<nn::Module> ca_norm;  // weight, bias: (C)
  std::shared_ptr<Linear> fc1, fc2;     // registered as ffn.fc1, ffn.fc2
  Tensor ca_norm_weight, ca_norm_bias;
  double eps, drop_path;
};

}  // namespace vt::infinity
