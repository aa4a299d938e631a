// nn/functional.h: the stateless layers of VARGPT's networks, with PyTorch's names and semantics
// (torch.nn.functional): linear, softmax / log_softmax, dropout / drop_path, and the activations
// silu, gelu (erf and tanh), quick_gelu and swiglu.
//
// Every function takes f32, bf16, f16 or f64 tensors, computes in f32 (f64 for f64) and rounds the
// result once to the input dtype, as PyTorch's CPU kernels do; each records its backward. Fused
// row and elementwise kernels are looked up by name in the kernel registry (backend.h), so a device
// backend provides them under the names below; the CPU kernels are in src/nn_functional.cpp.
#pragma once
#include <optional>

#include "vt/backend.h"
#include "vt/ops.h"

namespace vt {
class Generator;
}

namespace vt::nn {

// ---- linear --------------------------------------------------------------------------------------
// x: (..., in), weight: (out, in), bias: (out) or undefined  ->  (..., out) = x weight^T + bias.
// weight^T is a transposed view read by the GEMM; nothing is copied.
// On CUDA with a bias (f32, bf16, f16) the bias is added in the GEMM's epilogue (cuBLASLt, one
// rounding of x w^T + b, as torch's F.linear on CUDA); elsewhere it is matmul, then add.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());
// gelu(linear(x, weight, bias), approximate="tanh"), the FFN input layer of Infinity's blocks. On
// CUDA, when no gradient is needed, the GELU runs in the same cuBLASLt epilogue as the bias.
Tensor linear_gelu_tanh(const Tensor& x, const Tensor& weight, const Tensor& bias);

// ---- softmax -------------------------------------------------------------------------------------
// Over any dim. Rows are reduced in f32 (max, then sum of exp(x - max)); the backward uses only the
// saved output y: dx = y * (dy - sum(dy * y)) for softmax, dx = dy - exp(y) * sum(dy) for
// log_softmax. A row of all -inf gives NaN, as in PyTorch.
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

// Kernels see x as contiguous (outer, C, inner) with the softmax over C; y has x's shape and dtype.
//   softmax_forward(x, y, outer, C, inner, log)
//   softmax_backward(y, dy, dx, outer, C, inner, log)      dy, dx like y
using SoftmaxForwardFn = void(const Tensor& x, const Tensor& y, int64_t outer, int64_t C, int64_t inner, bool log);
using SoftmaxBackwardFn = void(const Tensor& y, const Tensor& dy, const Tensor& dx, int64_t outer, int64_t C,
                               int64_t inner, bool log);

// ---- dropout -------------------------------------------------------------------------------------
// dropout: each element is zeroed with probability p and the survivors are scaled by 1 / (1 - p).
// drop_path (stochastic depth, timm's scale_by_keep=True): whole samples along dim 0 are zeroed
// with probability p. Both are the identity when !train or p == 0. The keep masks come from vt's
// Philox stream (`gen`, or the default generator), so a seed reproduces them on any device.
Tensor dropout(const Tensor& x, double p, bool train = true, Generator* gen = nullptr);
Tensor drop_path(const Tensor& x, double p, bool train = true, Generator* gen = nullptr);

// ---- activations ---------------------------------------------------------------------------------
// silu(x) = x * sigmoid(x)
// gelu(x) = x * Phi(x) (approximate = false), or the tanh form
//           0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))      (approximate = true)
// quick_gelu(x) = x * sigmoid(1.702 x)                            (CLIP / Qwen2-VL vision MLP)
// swiglu(gate, up) = silu(gate) * up                              (Qwen2 MLP; same shapes)
Tensor silu(const Tensor& x);
Tensor gelu(const Tensor& x, bool approximate_tanh = false);
Tensor quick_gelu(const Tensor& x);
Tensor swiglu(const Tensor& gate, const Tensor& up);

enum class Activation : uint8_t { Silu, GeluErf, GeluTanh, QuickGelu };
// Elementwise over contiguous tensors of one shape and dtype.
//   activation_forward(kind, x, y)              y = act(x)
//   activation_backward(kind, x, dy, dx)        dx = dy * act'(x)
//   swiglu_forward(gate, up, y)
//   swiglu_backward(gate, up, dy, dgate, dup)
using ActivationForwardFn = void(Activation kind, const Tensor& x, const Tensor& y);
using ActivationBackwardFn = void(Activation kind, const Tensor& x, const Tensor& dy, const Tensor& dx);
using SwigluForwardFn = void(const Tensor& gate, const Tensor& up, const Tensor& y);
using SwigluBackwardFn = void(const Tensor& gate, const Tensor& up, const Tensor& dy, const Tensor& dgate,
                              const Tensor& dup);

}  // namespace vt::nn

namespace vt::kernels {
// "linear_bias_forward": out (M, N) = act(x (M, K) @ weight (N, K)^T + bias (N)), act = GELU (tanh)
// when gelu_tanh, else identity; all contiguous, one dtype. Registered by the CUDA backend only.
using LinearBiasForwardFn = void(const Tensor& x, const Tensor& weight, const Tensor& bias, bool gelu_tanh,
                                 const Tensor& out);
}  // namespace vt::kernels
