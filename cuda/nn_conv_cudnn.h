// nn_conv_cudnn.h: conv2d on cuDNN (nn_conv_cudnn.cu), the fast path of nn_conv.cu when CMake found
// cuDNN (VT_WITH_CUDNN). Operands are contiguous CUDA tensors of one dtype: f32, bf16 or f16.
#pragma once
#include "vt/nn/conv.h"

namespace vt::cuda {

// out (N, O, Ho, Wo) = conv(x, w), without the bias. False when cuDNN cannot run this conv (the
// caller then takes im2col); out is then unspecified.
bool conv2d_forward_cudnn(const Tensor& x, const Tensor& w, const nn::Conv2dOptions& opt, const Tensor& out);

// Computes dx and dw (each when defined) and resets each one it computed to an undefined tensor, so
// what is left defined is for the caller's im2col path.
void conv2d_backward_cudnn(const Tensor& x, const Tensor& w, const Tensor& grad_out, const nn::Conv2dOptions& opt,
                           Tensor& dx, Tensor& dw);

}  // namespace vt::cuda
