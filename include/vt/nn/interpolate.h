// nn/interpolate.h: F.interpolate with PyTorch's exact index arithmetic (align_corners=False).
//
// Modes and the spatial dims they take (x is (N, C, *spatial)):
//   "nearest"    1-3 dims  legacy nearest: src = min(floor(dst * scale), In - 1)
//   "linear"     1 dim     src = max(0, (dst + 0.5) * scale - 0.5), two taps per axis
//   "bilinear"   2 dims    the same per axis
//   "trilinear"  3 dims    the same per axis (depth 1 -> 1 is exact: equals bilinear)
//   "bicubic"    2 dims    src = (dst + 0.5) * scale - 0.5, four taps (clamped to the border),
//                          cubic convolution with A = -0.75; values are not clamped
//   "area"       1-3 dims  adaptive average pooling: window [floor(i*In/Out), ceil((i+1)*In/Out))
// `scale` is In/Out when a size is given; when a scale factor s is given, Out = floor(In * s) and
// scale = 1/s, as torch passes the factor through (recompute_scale_factor=None). Index arithmetic
// runs in f32 for f32/bf16/f16 inputs and in f64 for f64 inputs, as in ATen. Downsampling is not
// antialiased. Each mode has a backward (the transpose of the same taps).
#pragma once
#include <string_view>
#include <vector>

#include "vt/tensor.h"

namespace vt::nn {

// F.interpolate(x, size=size, mode=mode); size has one entry per spatial dim.
Tensor interpolate(const Tensor& x, const Shape& size, std::string_view mode);
// F.interpolate(x, scale_factor=scale, mode=mode); one factor per spatial dim, or one for all.
Tensor interpolate_scale(const Tensor& x, const std::vector<double>& scale_factor, std::string_view mode);

}  // namespace vt::nn

// ---- the "interpolate_forward/backward" kernels each backend registers ----------------------------
namespace vt::nn {
// One axis: output index o reads inputs idx[start[o] .. start[o+1]) with weights wt (held in
// double; the values are those of the op-math type, which f64 represents exactly).
struct InterpAxis {
  int64_t in = 1, out = 1;
  std::vector<int64_t> start{0, 1}, idx{0};
  std::vector<double> wt{1.0};
};
struct InterpPlan {
  InterpAxis axis[3];  // (d, h, w); unused leading axes stay identity
};
}  // namespace vt::nn

namespace vt::kernels {
// x: (planes, Din, Hin, Win) contiguous f32/f64 -> out: (planes, Dout, Hout, Wout), same dtype.
using InterpolateForward = void(const Tensor& x, const nn::InterpPlan& plan, const Tensor& out);
// grad_out: (planes, Dout, Hout, Wout) -> grad_in: (planes, Din, Hin, Win), overwritten.
using InterpolateBackward = void(const Tensor& grad_out, const nn::InterpPlan& plan, const Tensor& grad_in);
}  // namespace vt::kernels
