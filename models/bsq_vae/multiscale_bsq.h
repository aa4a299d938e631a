// multiscale_bsq.h: the BSQ quantiser and Infinity's multi-scale residual quantisation
// (infinity_bsq.md §2, §3, §4).
//
// One scale (BSQ): each latent vector z in R^d is L2-normalised, u = z / max(||z||, 1e-12), and
// each channel becomes a sign code q_j = (u_j > 0 ? +1 : -1) / sqrt(d) (an exact 0 maps to -1);
// bit_j = (q_j > 0), in channel order. The codes are already unit vectors, so the L2 normalise
// upstream applies after bits -> codes is a no-op and is skipped.
//
// Multi-scale (encode): with R = f and F = 0, for each scale k of the schedule
//   r_k = area(R -> (h_k, w_k))            (skipped at the full grid)
//   q_k = BSQ(r_k)
//   Q_k = bilinear_up(q_k -> (H, W))      (align_corners=False; upstream's trilinear with T = 1,
//                                          which equals bilinear; skipped at the full grid)
//   R -= Q_k, F += Q_k
// and the decoder reads F. Decoding bits sums the same Q_k in the same order, so decode_bits of
// encode_bits reproduces F bit for bit. All of it runs in f32, as the reference encoder does.
//
// Shapes: f, F: (B, d, H, W); bits of scale k: (B, h_k, w_k, d) Bool (upstream's (B,1,h,w,d)
// without the time axis); codes: (B, d, h, w).
#pragma once
#include <vector>

#include "infinity/scale_schedule.h"
#include "vt/tensor.h"

namespace vt::bsq {

struct BsqOutput {
  Tensor codes;  // (B, d, h, w): +-1/sqrt(d)
  Tensor bits;   // (B, h, w, d) Bool
};

// r: (B, d, h, w) -> codes and bits of one scale.
BsqOutput bsq_quantize(const Tensor& r);

// bits: (B, h, w, d) (Bool or any 0/1 type) -> codes (B, d, h, w) f32 = (2 bit - 1) / sqrt(d).
Tensor bits_to_codes(const Tensor& bits);

struct MultiScaleOutput {
  std::vector<Tensor> bits;  // per scale: (B, h_k, w_k, d) Bool
  Tensor quantized;          // F: (B, d, H, W), the decoder input
};

// f: (B, d, H, W); the schedule's last scale must be (H, W).
MultiScaleOutput multiscale_quantize(const Tensor& f, const std::vector<infinity::ScaleHW>& scales);

// The decoder input from per-scale bits: sum_k bilinear_up(codes_k -> the last scale's grid).
// Each bits tensor must be (B, h_k, w_k, d) with one B and d throughout; the last is the full grid.
Tensor multiscale_bits_to_latent(const std::vector<Tensor>& bits);

}  // namespace vt::bsq
