// infinity.h: Infinity's bitwise next-scale transformer (infinity_bsq.md §6-§8), by upstream
// tensor names (§12), with its own text-conditioning path so that it runs stand-alone.
//
// Data flow of one teacher-forced forward over a schedule of K scales (L tokens):
//   text (ΣT, Ctext) --text_norm--> --text_proj_for_sos (attentive pool)--> cond_BD (B, C)
//                                   --text_proj_for_ca (MLP)------------> memory (ΣT, C)
//   tokens  x = [cond_BD + pos_start ; word_embed(inputs of scales 1..K-1)]      (B, L, C)
//           x += lvl_embed[scale of token]                        (once, before block 0)
//   cond6 = shared_ada_lin(cond_BD) (B, 1, 6, C); depth x Block under the block-causal mask
//   logits = head(head_nm(x, cond_BD))                            (B, L, 2d): pair (2j, 2j+1) is
//                                                                 (bit_j = 0, bit_j = 1)
// Token i of scale k predicts the bits of token i of scale k (no shift): scale 0's single token is
// the start token, and the inputs of scale k >= 1 are the upsampled accumulation of scales < k.
//
// VARGPT (vargpt.md §4) reuses the pieces but brings its own conditioning: cond_BD from the LLM's
// sos hidden state, the memory from image_gen_projector_out, and its own per-scale inputs. Hence
// the pieces are public: condition(), embed_tokens(), add_level_embedding(), shared_condition(),
// cross_kv(), run_blocks(), head_logits().
#pragma once
#include <memory>
#include <vector>

#include "infinity/infinity_block.h"
#include "infinity/scale_schedule.h"

namespace vt::infinity {

// Variable-length condition rows of B samples, packed: sample b owns rows [cu[b], cu[b+1]).
struct PackedText {
  Tensor rows;                       // (ΣT, Ctext)
  std::vector<int64_t> cu_seqlens;  // (B + 1)
  int64_t batch() const { return static_cast<int64_t>(cu_seqlens.size()) - 1; }
  std::vector<int64_t> lengths() const;
};
// Packs per-sample sequences (T_b, Ctext) (error naming the sample whose width differs).
PackedText pack_text(const std::vector<Tensor>& sequences);

// What the decoder is conditioned on.
struct Condition {
  Tensor cond_BD;                    // (B, C): start token content, AdaLN and head condition
  Tensor memory;                     // (ΣM, C): cross-attention memory rows, packed
  std::vector<int64_t> cu_seqlens;  // (B + 1) over the memory rows
  int64_t batch() const { return cond_BD.size(0); }
};
// Rows [a; b] of two conditions (CFG batches: cond rows then uncond rows).
Condition concat_conditions(const Condition& a, const Condition& b);

// The (cos, sin) tables of 2-D RoPE for a whole schedule (§6.5): (L, head_dim / 2) each, positions
// normalised to the schedule's RoPE grid (the last grid of its 1M template). Row ranges of scale k
// start at schedule.offsets[k]. pad_to > 1 appends zero rows up to a multiple of it (upstream's
// training tables; pad rows are not rotated but zeroed, and only pad outputs see them).
nn::RopeCosSin schedule_rope(const ScaleSchedule& schedule, int64_t head_dim, double theta = 1e4,
                             int64_t pad_to = 1);

// ---- submodules, each named after the upstream module it mirrors (state-dict names in quotes) ----
// text_proj_for_sos "ca": TextAttentivePool, one learned query per head pooling a sample's rows.
struct TextAttentivePool : nn::Module {
  TextAttentivePool(int64_t Ct, int64_t C, int64_t H, double std_init);
  Tensor mat_q;                    // "mat_q" (1, H, C/H)
  std::shared_ptr<Linear> mat_kv;  // "mat_kv" Ct -> 2C, no bias
  Tensor v_bias;                   // "v_bias" (C)
  Tensor zero_k_bias;              // "zero_k_bias" (C), a buffer: the keys have no bias
  std::shared_ptr<Linear> proj;    // "proj" C -> C
};
struct TextProjForSos : nn::Module {
  TextProjForSos(int64_t Ct, int64_t C, int64_t H, double std_init);
  std::shared_ptr<TextAttentivePool> ca;  // "ca"
};
// text_proj_for_ca: Sequential(Linear "0", GELU(tanh), Linear "2") from text rows to memory rows.
struct TextProjForCa : nn::Module {
  TextProjForCa(int64_t Ct, int64_t C);
  Tensor forward(const Tensor& t) const;  // (ΣT, Ct) -> (ΣT, C)
  std::shared_ptr<Linear> fc0, fc2;       // "0", "2"
};
// shared_ada_lin and head_nm.ada_lin: Sequential(SiLU, Linear "1").
struct AdaLin : nn::Module {
  AdaLin(int64_t C, int64_t out);
  Tensor forward(const Tensor& cond_BD) const;  // lin(silu(cond_BD)): (B, C) -> (B, out)
  std::shared_ptr<Linear> lin;                  // "1"
};
// head_nm: AdaLNBeforeHead, whose (scale, shift) come from ada_lin.
struct HeadNorm : nn::Module {
  explicit HeadNorm(int64_t C);
  std::shared_ptr<AdaLin> ada_lin;  // "ada_lin" C -> 2C
};

class Infinity : public nn::Module {
 public:
  explicit Infinity(InfinityConfig cfg);
  const InfinityConfig& config() const { return cfg_; }

  // ---- conditioning (§6.2) -----------------------------------------------------------------------
  // text rows -> cond_BD (attentive pooling) and memory (text_proj_for_ca), both after text_norm.
  Condition condition(const PackedText& text) const;
  // cond_BD alone (text_norm, then text_proj_for_sos): (B, C). VARGPT conditions on one sos row
  // and brings its own memory, so it skips text_proj_for_ca (vargpt.md Q7).
  Tensor condition_vector(const PackedText& text) const;
  // The unconditional rows: cfg_uncond[:T_b] for each sample's length (error when a length exceeds
  // the table). Used for CFG at inference and for condition dropout in training.
  PackedText unconditional_text(const std::vector<int64_t>& lengths) const;
  // Training condition dropout: each sample's rows are replaced by cfg_uncond[:T_b] with prob p.
  PackedText drop_condition(const PackedText& text, double p, Generator* gen = nullptr) const;

  // ---- the pieces of a forward ------------------------------------------------------------------
  // inputs: (B, n, d) teacher inputs of the scales after the first (n = L - 1), or undefined for the
  // start token alone -> (B, 1 + n, C) = [cond_BD + pos_start ; word_embed(inputs)]
  Tensor embed_tokens(const Tensor& cond_BD, const Tensor& inputs) const;
  // word_embed alone: (B, n, d) -> (B, n, C)
  Tensor embed_inputs(const Tensor& inputs) const;
  // x (B, n, C) holding the tokens of scales [first, first + ...) of the schedule, in order; n must
  // end a scale, or run past the schedule's last token (padding rows, which get no embedding).
  Tensor add_level_embedding(const Tensor& x, const ScaleSchedule& schedule, int64_t first_scale = 0) const;
  // shared_ada_lin: SiLU -> Linear(C, 6C): cond_BD (B, C) -> (B, 1, 6, C)
  Tensor shared_condition(const Tensor& cond_BD) const;
  // The cross-attention K/V of every block for a packed memory (reused at every scale).
  std::vector<CrossKV> cross_kv(const Tensor& memory, const std::vector<int64_t>& cu_seqlens) const;
  // depth x Block. caches: one per block, or empty (no cache).
  Tensor run_blocks(const Tensor& x, const Tensor& cond6, const std::vector<CrossKV>& ca_kv,
                    const nn::RopeCosSin& rope, const nn::AttentionMask& mask,
                    std::vector<nn::KVCache>* caches = nullptr) const;
  // head_nm (AdaLN from the raw cond_BD) then head: x (B, n, C) -> logits (B, n, 2d)
  Tensor head_logits(const Tensor& x, const Tensor& cond_BD) const;

  // ---- whole forwards ---------------------------------------------------------------------------
  // Teacher-forced forward of all scales in one sequence under the block-causal mask:
  // inputs (B, L - 1, d) -> logits (B, L, 2d). pad_to > 1 runs the blocks on a sequence zero-padded
  // to a multiple of it, as upstream trains (128); real rows never see pad rows, so the logits are
  // the same up to rounding.
  Tensor forward(const Condition& cond, const Tensor& inputs, const ScaleSchedule& schedule,
                 int64_t pad_to = 1) const;

  // In the order of upstream's state dict (§12).
  Tensor cfg_uncond;                                  // "cfg_uncond" (text_maxlen, Ct)
  Tensor pos_start;                                   // "pos_start" (1, 1, C)
  std::shared_ptr<nn::Embedding> lvl_embed;           // "lvl_embed" (num_levels, C)
  std::shared_ptr<Linear> word_embed;                 // "word_embed" d -> C
  std::shared_ptr<nn::RMSNorm> text_norm;             // "text_norm" (Ct)
  std::shared_ptr<TextProjForSos> text_proj_for_sos;  // "text_proj_for_sos"
  std::shared_ptr<TextProjForCa> text_proj_for_ca;    // "text_proj_for_ca"
  std::shared_ptr<AdaLin> shared_ada_lin;             // "shared_ada_lin" C -> 6C
  std::shared_ptr<HeadNorm> head_nm;                  // "head_nm"
  std::shared_ptr<Linear> head;                       // "head" C -> 2d
  std::vector<std::shared_ptr<Block>> blocks;         // "block_chunks.{c}.module.{m}"
  // With grad on and no caches, each block keeps only its input and is recomputed in backward
  // (nn::checkpoint_layer); gradients are unchanged.
  bool gradient_checkpointing = false;

 private:
  void check_text(const PackedText& text) const;
  // text_proj_for_sos over rows already through text_norm: (ΣT, Ct) -> (B, C)
  Tensor pool(const Tensor& normed, const PackedText& text) const;
  InfinityConfig cfg_;
};

// The number of tokens of a schedule's scales and the scale of each token, as block-causal lengths.
std::vector<int64_t> scale_lengths(const ScaleSchedule& schedule);

}  // namespace vt::infinity
