// nn/rope.h: rotary position embeddings, the four kinds VARGPT-v1.1 uses.
//
// A rotary embedding rotates pairs of a head's dims by position-dependent angles. Two pair layouts:
//   rotate_half  (Qwen2, Qwen2-VL LLM and ViT; llama.cpp "NEOX"): dim j pairs with j + D/2, and
//                cos/sin have D entries (the D/2 angles, twice): x' = x*cos + rotate_half(x)*sin
//   interleaved  (Infinity): dim 2p pairs with 2p+1, cos/sin have D/2 entries:
//                (a, b) -> (a cos - b sin, a sin + b cos)
// The tables come from four builders, each mirroring its upstream function:
//   (1) rope_cos_sin          Qwen2RotaryEmbedding: positions (B, T)
//   (2) mrope_cos_sin         Qwen2VLRotaryEmbedding + apply_multimodal_rotary_pos_emb: (3, B, T)
//   (3) vision_rope_cos_sin   Qwen2-VL VisionRotaryEmbedding / rot_pos_emb: (hpos, wpos) per patch
//   (4) infinity_rope_cos_sin Infinity basic.py precompute_rope2d_freqs_grid, normalized_by_hw=2
// All angles are f32 products pos * inv_freq and cos/sin are taken of those f32 angles, as upstream.
// The apply functions differentiate with respect to x (the tables are constants).
#pragma once
#include <array>
#include <vector>

#include "vt/tensor.h"

namespace vt::nn {

// inv_freq[i] = 1 / theta^(2i/dim), i < dim/2, in f32 (exponent 2i/dim divided in f32 as HF does;
// the power is rounded correctly, which matches torch's vectorised pow to within one ulp).
std::vector<float> rope_inv_freq(int64_t dim, double theta);

struct RopeCosSin {
  Tensor cos, sin;
};

// (1) positions (B, T) integer -> cos, sin (B, T, head_dim) = cat(freqs, freqs), computed in f32
// and cast to `dtype` (HF casts them to the activation dtype).
RopeCosSin rope_cos_sin(const Tensor& positions, int64_t head_dim, double theta, DType dtype = DType::F32);

// (2) M-RoPE: positions (3, B, T) (temporal, height, width) -> cos, sin (B, T, head_dim).
// Frequency i takes its angle from axis t for i < s0, h for s0 <= i < s0+s1, w otherwise (and the
// same for dim i + head_dim/2). sections must sum to head_dim/2: [16, 24, 24] for head_dim 128.
RopeCosSin mrope_cos_sin(const Tensor& positions, int64_t head_dim, double theta, std::array<int64_t, 3> sections,
                         DType dtype = DType::F32);

// (3) Qwen2-VL ViT: pos_hw (S, 2) = (row, column) of each patch -> cos, sin (S, head_dim) f32,
// laid out [h (D/4), w (D/4), h, w] (dims j and j + D/2 share an angle). head_dim 80, theta 1e4.
RopeCosSin vision_rope_cos_sin(const Tensor& pos_hw, int64_t head_dim, double theta = 1e4);
// The (row, column) of every patch of a (t, h, w) grid in the processor's merge-window-major
// order (merge x merge windows in raster order, then the patches of a window in raster order),
// repeated for each of the t frames -> (t*h*w, 2) int64.
Tensor vision_rope_positions(int64_t t, int64_t h, int64_t w, int64_t merge = 2);

// (4) Infinity: token (r, c) of scale (h, w) sits at (round(r * uh/h), round(c * uw/w)) on the
// (uh, uw) grid of the schedule's last 1M scale (64x64 for 1:1), products in f32 and rounding half
// to even, as torch's .round(). Scales in order, raster order within each -> (L, 2) int64.
Tensor infinity_rope_positions(const std::vector<std::array<int64_t, 2>>& scales, int64_t uh, int64_t uw);
// pos (L, 2) -> cos, sin (L_pad, head_dim/2) f32: pair p < D/4 turns by row * inv_freq[p], pair
// p >= D/4 by column * inv_freq[p - D/4], inv_freq = rope_inv_freq(head_dim/2, theta). L_pad is L
// rounded up to a multiple of pad_to; pad rows have cos = sin = 0 (Infinity's zero padding).
RopeCosSin infinity_rope_cos_sin(const Tensor& pos, int64_t head_dim, double theta = 1e4, int64_t pad_to = 1);

// x (..., D); cos, sin broadcastable to (..., D) (e.g. (B, 1, T, D) for x (B, H, T, D): unsqueeze
// the head dim as HF's unsqueeze_dim does). Output has x's dtype. When the tables have x's 16-bit
// dtype, each product and the sum are rounded to it, exactly as HF's bf16 `q*cos + rotate_half(q)*sin`;
// with f32 tables the math is f32 and the result is rounded once (the ViT's `.float()` path).
Tensor apply_rope_half(const Tensor& x, const Tensor& cos, const Tensor& sin);
// x (..., D); cos, sin broadcastable to (..., D/2). Same dtype rule as apply_rope_half.
Tensor apply_rope_interleaved(const Tensor& x, const Tensor& cos, const Tensor& sin);

}  // namespace vt::nn

// ---- the "rope_apply" kernel each backend registers (src/nn_rope.cpp, cuda/nn_rope_interp.cu) ----
namespace vt::nn {
enum class RopeLayout : uint8_t { Half, Interleaved };
}

namespace vt::kernels {
// x, out: (R, D) contiguous, f32 or f64; cos, sin: (R, Dc) views (any strides, broadcast rows
// have stride 0) of x's dtype, Dc = D (Half) or D/2 (Interleaved). `transpose` applies the
// backward rotation. Products and sums are rounded to `round_to` when it is a 16-bit dtype.
using RopeApply = void(const Tensor& x, const Tensor& cos, const Tensor& sin, nn::RopeLayout layout, bool transpose,
                       DType round_to, const Tensor& out);
}  // namespace vt::kernels
