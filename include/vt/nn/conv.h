// nn/conv.h: conv2d (F.conv2d, with F.pad's asymmetric padding folded in) and the Conv3d patch
// embedding of the Qwen2-VL vision encoder.
//
// conv2d covers what VARGPT's VAEs use: any stride, zero padding that may differ on each side
// (Infinity's `Down` is F.pad(x, (0, 1, 0, 1)) then a stride-2 3x3 conv with padding 0), dilation 1,
// groups 1, optional bias. f32 and f64 compute in their own type; bf16 and f16 inputs are widened to
// f32, accumulate in f32, and the result is rounded once to the input dtype (as PyTorch's CPU conv).
// Backward gives dx, dw and db.
#pragma once
#include <cstdint>

#include "vt/tensor.h"

namespace vt::nn {

// Zero padding per side, in F.pad's order for the last two dims: (left, right, top, bottom).
struct Padding2d {
  int64_t left = 0, right = 0, top = 0, bottom = 0;
  static Padding2d same(int64_t p) { return {p, p, p, p}; }  // conv2d(padding=p)
};

struct Conv2dOptions {
  int64_t stride_h = 1, stride_w = 1;
  Padding2d pad;
};

// x: (N, C, H, W), w: (O, C, kh, kw), bias: (O) or undefined -> (N, O, Ho, Wo) with
// Ho = (H + top + bottom - kh) / stride_h + 1, Wo likewise.
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dOptions& opt);
// F.conv2d(x, w, bias, stride, padding) with symmetric padding.
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias = Tensor(), int64_t stride = 1,
              int64_t padding = 0);

// Conv3d with kernel == stride and no padding (Qwen2-VL `PatchEmbed`, bias=False): every patch is
// a dot product of its flattened (C, kt, kh, kw) voxels with each filter, so the conv is a matmul.
// x: (S, C*kt*kh*kw) pre-flattened patches (the processor's pixel_values) or (S, C, kt, kh, kw);
// w: (O, C, kt, kh, kw) -> (S, O). x is cast to w's dtype first, as the HF module does.
Tensor conv3d_patch_embed(const Tensor& x, const Tensor& w);

}  // namespace vt::nn

namespace vt::kernels {
// Registered per device as "conv2d_forward" / "conv2d_backward". Operands are contiguous and of
// one dtype, f32 or f64 (the op layer widens 16-bit floats), except under the names
// "conv2d_forward_16bit" / "conv2d_backward_16bit", which a device registers when it takes bf16
// and f16 operands as they are (accumulating in f32). Undefined tensors are skipped:
// bias in the forward; dx, dw, db in the backward (each is overwritten when defined).
using Conv2dForward = void(const Tensor& x, const Tensor& w, const Tensor& bias, const nn::Conv2dOptions& opt,
                           const Tensor& out);
using Conv2dBackward = void(const Tensor& x, const Tensor& w, const Tensor& grad_out, const nn::Conv2dOptions& opt,
                            const Tensor& dx, const Tensor& dw, const Tensor& db);
}  // namespace vt::kernels
