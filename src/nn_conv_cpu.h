// nn_conv_cpu.h: what the two CPU conv2d files share (internal to libvt). nn_conv.cpp holds the op,
// the dispatch and the im2col path (f64, and f32 under VT_CONV_IM2COL=1); nn_conv_planes.cpp holds
// the f32 path over phase planes of the padded input.
#pragma once
#include <omp.h>

#include <cstdint>

#include "vt/nn/conv.h"

namespace vt::nn::detail {

struct ConvGeom {
  int64_t N, C, H, W, O, kh, kw, Ho, Wo;
  int64_t K() const { return C * kh * kw; }
  int64_t P() const { return Ho * Wo; }
};

// Images in parallel (one thread per image, single-threaded GEMMs: one OpenMP region per call)
// when there are at least as many images as threads; otherwise images in turn with threaded GEMMs.
inline bool by_image(int64_t N) { return !omp_in_parallel() && N >= omp_get_max_threads() && N > 1; }

// f32 kernels of nn_conv_planes.cpp; all arrays contiguous.
//   x: (N, C, H, W), w: (O, C, kh, kw), gout: (N, O, Ho, Wo)
// out (N, O, Ho, Wo) = conv(x, w), no bias.
void conv2d_planes_forward(const float* x, const float* w, const ConvGeom& g, const Conv2dOptions& o, float* out);
// dw (O, C, kh, kw) = sum over images of gout[n] @ col(x[n])^T (overwritten).
void conv2d_planes_grad_weight(const float* x, const float* gout, const ConvGeom& g, const Conv2dOptions& o,
                               float* dw);
// dx (N, C, H, W) for stride 1 only (overwritten).
void conv2d_planes_grad_input(const float* w, const float* gout, const ConvGeom& g, const Conv2dOptions& o,
                              float* dx);

}  // namespace vt::nn::detail
