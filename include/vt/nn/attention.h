// nn/attention.h: scaled dot-product attention (PyTorch's F.scaled_dot_product_attention) with the
// masks VARGPT needs, a KV cache for incremental decoding, and Infinity's cosine attention.
//
//   out = softmax(scale * q k^T + bias) v           per (batch, query head)
//
// Shapes: q (B, Hq, Tq, D), k (B, Hkv, Tk, D), v (B, Hkv, Tk, Dv)  ->  out (B, Hq, Tq, Dv).
// GQA: Hq must be a multiple of Hkv; query head h reads KV head h / (Hq / Hkv) (qwen2_vl.md §4.2.5).
// A 3-D (H, T, D) call is read as B = 1. q, k, v share one float dtype; the rows of each may have
// any strides (a (B, T, H, D) tensor transposed to (B, H, T, D) is read in place) as long as the
// last dim is contiguous, otherwise it is copied once.
//
// Precision: scores, the softmax statistics and every accumulation are f32 for f32/bf16/f16 inputs
// (f64 for f64); the output is rounded once to the input dtype. A query row that sees no key gives
// 0 (and a zero gradient), as PyTorch >= 2.5 does.
//
// The CPU kernel (src/nn_attention_kernel.cpp) never materialises a (Tq, Tk) matrix: it is tiled
// flash-attention style and saves only the per-row logsumexp (B, Hq, Tq) for the backward. Tiles
// that the mask hides entirely are skipped, so causal and block-causal cost about half of full.
#pragma once
#include <optional>
#include <utility>
#include <vector>

#include "vt/backend.h"
#include "vt/ops.h"

namespace vt::nn {

// ---- masks -----------------------------------------------------------------------------------------
// A structural mask (none, causal, block-causal, varlen) plus an optional explicit tensor mask; the
// two combine (a key is visible when both allow it), e.g. causal plus key padding.
struct AttentionMask {
  enum class Kind : uint8_t {
    None,           // every query sees every key (cross-attention, Infinity decoding per scale)
    Causal,         // torch's is_causal=True: TOP-LEFT aligned, query i sees keys j <= i
    CausalFromEnd,  // KV-cache decoding: BOTTOM-RIGHT aligned, query i sees j <= i + Tk - Tq
    BlockCausal,    // by scale: a token sees every token of its own and of earlier scales
    Varlen,         // block-diagonal: a token sees only tokens of its own segment
  };
  Kind kind = Kind::None;
  // BlockCausal: the scale lengths (e.g. 1, 4, 16, ...) of the key sequence. Queries are the last
  // Tq keys (so Tq < Tk is the KV-cache case). Rows past the sum are padding (infinity_bsq.md §7):
  // they see key 0 only, and real rows never see them.
  // Varlen: cu_seqlens of the queries (0, n0, n0 + n1, ..., Tq).
  std::vector<int64_t> lengths;
  std::vector<int64_t> cu_seqlens_k;  // Varlen: of the keys; empty = the same as the queries
  // Bool (true = attend) or float (added to the scores), broadcastable to (B, Hq, Tq, Tk). No
  // gradient flows into it.
  Tensor tensor;

  static AttentionMask none() { return {}; }
  static AttentionMask causal() { return of(Kind::Causal); }
  static AttentionMask causal_from_end() { return of(Kind::CausalFromEnd); }
  static AttentionMask block_causal(std::vector<int64_t> scale_lengths) {
    return of(Kind::BlockCausal, std::move(scale_lengths));
  }
  static AttentionMask varlen(std::vector<int64_t> cu_seqlens) { return of(Kind::Varlen, std::move(cu_seqlens)); }
  static AttentionMask varlen(std::vector<int64_t> cu_seqlens_q, std::vector<int64_t> cu_seqlens_k) {
    return of(Kind::Varlen, std::move(cu_seqlens_q), std::move(cu_seqlens_k));
  }
  static AttentionMask from_tensor(Tensor m) { return AttentionMask{}.with_tensor(std::move(m)); }
  AttentionMask with_tensor(Tensor m) const {
    AttentionMask r = *this;
    r.tensor = std::move(m);
    return r;
  }
  static AttentionMask of(Kind kind, std::vector<int64_t> lengths = {}, std::vector<int64_t> cu_k = {}) {
    AttentionMask m;
    m.kind = kind, m.lengths = std::move(lengths), m.cu_seqlens_k = std::move(cu_k);
    return m;
  }
  // The structural part as a Bool (Tq, Tk) matrix (true = visible); for tests and small problems.
  Tensor visible(int64_t Tq, int64_t Tk) const;
};

// ---- scaled dot-product attention ------------------------------------------------------------------
// scale defaults to 1 / sqrt(D).
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const AttentionMask& mask = {}, std::optional<double> scale = std::nullopt);

// The same function written with vt ops (materialises the (Tq, Tk) scores; autograd from the ops).
// Only for tests of the tiled kernel and for tiny problems.
Tensor scaled_dot_product_attention_reference(const Tensor& q, const Tensor& k, const Tensor& v,
                                              const AttentionMask& mask = {},
                                              std::optional<double> scale = std::nullopt);

// ---- KV cache ----------------------------------------------------------------------------------------
// One per attention layer. Holds k (B, Hkv, length, D) and v (B, Hkv, length, Dv) inside buffers
// of `capacity` rows that double when full, so appending n tokens copies only those n rows (plus an
// occasional regrowth). k() and v() are views; rows are never rewritten, so a view taken earlier
// stays valid. The cache stores detached copies: no gradient flows into earlier tokens. k and v
// keep the dtype of their first append (Infinity caches K in f32 and V in bf16).
struct KVCache {
  Tensor k_buffer, v_buffer;  // (B, Hkv, capacity, D), (B, Hkv, capacity, Dv)
  int64_t length = 0;

  void append(const Tensor& k_new, const Tensor& v_new);  // (B, Hkv, n, D), (B, Hkv, n, Dv)
  void reserve(int64_t rows);                             // capacity >= rows
  void clear() { length = 0; }
  int64_t capacity() const { return k_buffer.defined() ? k_buffer.size(2) : 0; }
  Tensor k() const;
  Tensor v() const;
};

// Appends k_new, v_new to the cache, then attends q (B, Hq, n, D) over the whole cache. The default
// mask lets new token i (at position length_before + i) see every cached key and new keys <= i,
// which is what a causal LLM needs token by token or chunk by chunk. Infinity's per-scale decoding
// passes AttentionMask::none() (a scale sees itself and all earlier scales); block_causal(lengths)
// with the lengths of all scales so far gives the same result.
Tensor attention_with_cache(KVCache& cache, const Tensor& q, const Tensor& k_new, const Tensor& v_new,
                            const AttentionMask& mask = AttentionMask::causal_from_end(),
                            std::optional<double> scale = std::nullopt);

// ---- cosine attention (Infinity, infinity_bsq.md §6.4; VAR's attn_l2_norm) --------------------------
// q <- normalize(q) * exp(min(scale_mul, ln 100)),  k <- normalize(k),  L2 over D in f32 (f64 stays
// f64), with F.normalize's eps 1e-12. scale_mul is the per-head parameter `scale_mul_1H11` of any
// shape with H elements ([1, H, 1, 1], or [1, 1, H, 1] as saved by the custom flash kernel).
// Returns f32 q and k (so that RoPE can be applied between this and the attention, as upstream does).
std::pair<Tensor, Tensor> cosine_qk(const Tensor& q, const Tensor& k, const Tensor& scale_mul);
// cosine_qk, then scaled_dot_product_attention with softmax scale 1; q and k are cast to v's dtype
// (upstream runs the attention kernel in bf16 with f32 normalisation).
Tensor cosine_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& scale_mul,
                        const AttentionMask& mask = {});
// F.normalize(x, dim=-1): x / max(||x||, eps), computed as x * rsqrt(max(sum x^2, eps^2)) so that
// the gradient at x = 0 is 0 rather than NaN.
Tensor l2_normalize(const Tensor& x, double eps = 1e-12);

// ---- kernels -------------------------------------------------------------------------------------
// What a kernel sees of a mask. Row i of the queries may see keys [key_begin[i], key_end[i]) (both
// empty: every key), further restricted by `dense`: undefined, or a (B, Hq, Tq, Tk) view (0 strides
// on broadcast dims) of Bool (true = attend) or of the compute type (f32, or f64 for f64; added).
struct AttentionRows {
  std::vector<int64_t> key_begin, key_end;  // (Tq) each
  Tensor dense;
};

// q, k, v as above (last dim contiguous); out (B, Hq, Tq, Dv) contiguous, q's dtype;
// lse (B, Hq, Tq) contiguous, f32 (f64 for f64): logsumexp of each row's scaled, masked scores
// (-inf for a row that sees nothing).
using AttentionForwardFn = void(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionRows& rows,
                                double scale, const Tensor& out, const Tensor& lse);
// dout like out (last dim contiguous); dq, dk, dv contiguous, shaped and typed like q, k, v, and
// overwritten. Deterministic: every gradient element is summed in a fixed order, whatever the
// thread count (one opt-in exception: VT_ATTENTION_CUDNN=1 on CUDA, whose cuDNN engine adds dQ
// up with atomics; =deterministic keeps the guarantee).
using AttentionBackwardFn = void(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                 const Tensor& lse, const Tensor& dout, const AttentionRows& rows, double scale,
                                 const Tensor& dq, const Tensor& dk, const Tensor& dv);

}  // namespace vt::nn
