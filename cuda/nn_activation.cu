// nn_activation.cu: softmax / log_softmax, the activations (silu, gelu erf and tanh, quick_gelu) and
// swiglu on CUDA, registered under the CPU kernels' names (src/nn_functional.cpp holds the ops, the
// math and the CPU versions).
//
// Softmax sees x as contiguous (outer, C, inner). inner == 1: one warp per row (8 rows per block)
// when C <= 1024, else one 256-thread block per row; three passes over the row (max, sum of
// exp(x - max), write), the later ones from L1/L2, so a row of all -inf gives NaN exactly as on the
// CPU. inner > 1: one thread per (outer, inner) column walks C with stride inner (adjacent threads
// read adjacent addresses). The backward reads only the saved output y.
// Activations and swiglu's forward are one elementwise pass through launch_map (map.cuh: 128-bit
// loads and stores on dense tensors); swiglu's backward writes both gradients in one pass. The
// gradients recompute from the saved inputs, as on the CPU. tanh is evaluated as
// 1 - 2 / (exp(2u) + 1) in f32 (the CPU's form: exact at +-inf).
// Everything is held in f32 (f64 for f64 input) and rounded once into the output dtype.
#include "math.cuh"
#include "nn_kernels.h"
#include "vt/nn/functional.h"

namespace vt::cuda {
namespace {

using nnk::block_sum;
using nnk::blocks_for;
using nnk::visit_float;
using nnk::warp_max;
using nnk::warp_sum;
using vt::nn::Activation;

template <class T>
using acc = compute_t<T>;

constexpr int kThreads = 256;

// ---- reductions over a row handled by TPR threads (32: a warp, 256: the whole block) -------------
template <int TPR, class A>
__device__ __forceinline__ A group_sum(A v, A* scratch) {
  if constexpr (TPR == 32) return warp_sum(v);
  else return block_sum(v, scratch);
}
template <int TPR, class A>
__device__ __forceinline__ A group_max(A v, A* scratch) {
  if constexpr (TPR == 32) return warp_max(v);
  else return nnk::block_max(v, scratch);
}

// ==== softmax ======================================================================================
// x, y: (rows, C); TPR threads per row.
template <class T, int TPR>
__global__ void __launch_bounds__(kThreads) softmax_rows_kernel(const T* __restrict__ x, T* __restrict__ y,
                                                                 int64_t rows, int64_t C, bool log) {
  using A = acc<T>;
  __shared__ A scratch[32];
  constexpr int kRows = kThreads / TPR;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRows + threadIdx.x / TPR;
  if (r >= rows) return;  // TPR == 256: one row per block, never taken; TPR == 32: whole warps
  const int t = threadIdx.x % TPR;
  const T* xr = x + r * C;
  T* yr = y + r * C;
  A m = -INFINITY;
  for (int64_t c = t; c < C; c += TPR) {
    const A v = load(xr + c);
    m = (v > m || v != v) ? v : m;
  }
  m = group_max<TPR>(m, scratch);
  A s = 0;
  for (int64_t c = t; c < C; c += TPR) s += m_exp(load(xr + c) - m);
  s = group_sum<TPR>(s, scratch);
  if (log) {
    const A ls = m_log(s);
    for (int64_t c = t; c < C; c += TPR) yr[c] = to_storage<T>((load(xr + c) - m) - ls);
  } else {
    const A inv = A(1) / s;
    for (int64_t c = t; c < C; c += TPR) yr[c] = to_storage<T>(m_exp(load(xr + c) - m) * inv);
  }
}

// x, y: (outer, C, inner); one thread per (o, i) column.
template <class T>
__global__ void __launch_bounds__(kThreads) softmax_columns_kernel(const T* __restrict__ x, T* __restrict__ y,
                                                                    int64_t outer, int64_t C, int64_t inner, bool log) {
  using A = acc<T>;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (col >= outer * inner) return;
  const int64_t base = col / inner * C * inner + col % inner;
  A m = -INFINITY, s = 0;
  for (int64_t c = 0; c < C; ++c) {
    const A v = load(x + base + c * inner);
    m = (v > m || v != v) ? v : m;
  }
  for (int64_t c = 0; c < C; ++c) s += m_exp(load(x + base + c * inner) - m);
  s = log ? m + m_log(s) : A(1) / s;
  for (int64_t c = 0; c < C; ++c) {
    const A v = load(x + base + c * inner);
    y[base + c * inner] = to_storage<T>(log ? v - s : m_exp(v - m) * s);
  }
}

// softmax: dx = y * (dy - sum(dy * y));  log_softmax: dx = dy - exp(y) * sum(dy)
template <class T, int TPR>
__global__ void __launch_bounds__(kThreads) softmax_backward_rows_kernel(const T* __restrict__ y,
                                                                          const T* __restrict__ dy,
                                                                          T* __restrict__ dx, int64_t rows, int64_t C,
                                                                          bool log) {
  using A = acc<T>;
  __shared__ A scratch[32];
  constexpr int kRows = kThreads / TPR;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRows + threadIdx.x / TPR;
  if (r >= rows) return;
  const int t = threadIdx.x % TPR;
  const T *yr = y + r * C, *gr = dy + r * C;
  A s = 0;
  for (int64_t c = t; c < C; c += TPR) s += log ? load(gr + c) : load(gr + c) * load(yr + c);
  s = group_sum<TPR>(s, scratch);
  for (int64_t c = t; c < C; c += TPR) {
    const A g = load(gr + c), v = load(yr + c);
    dx[r * C + c] = to_storage<T>(log ? g - m_exp(v) * s : v * (g - s));
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads) softmax_backward_columns_kernel(const T* __restrict__ y,
                                                                             const T* __restrict__ dy,
                                                                             T* __restrict__ dx, int64_t outer,
                                                                             int64_t C, int64_t inner, bool log) {
  using A = acc<T>;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (col >= outer * inner) return;
  const int64_t base = col / inner * C * inner + col % inner;
  A s = 0;
  for (int64_t c = 0; c < C; ++c) {
    const A g = load(dy + base + c * inner);
    s += log ? g : g * load(y + base + c * inner);
  }
  for (int64_t c = 0; c < C; ++c) {
    const int64_t i = base + c * inner;
    const A g = load(dy + i), v = load(y + i);
    dx[i] = to_storage<T>(log ? g - m_exp(v) * s : v * (g - s));
  }
}

constexpr int64_t kWarpRowMax = 1024;  // softmax rows up to this length get a warp, longer a block

void softmax_forward_cuda(const Tensor& x, const Tensor& y, int64_t outer, int64_t C, int64_t inner, bool log) {
  check_cuda(x, "softmax");
  DeviceGuard g(x.device());
  DeviceContext& ctx = context(x.device().index);
  visit_float(x.dtype(), "softmax", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = static_cast<const T*>(x.raw_data());
    T* yp = static_cast<T*>(y.raw_data());
    if (inner != 1) {
      softmax_columns_kernel<T><<<blocks_for(outer * inner, kThreads), kThreads, 0, ctx.stream()>>>(xp, yp, outer, C,
                                                                                                  inner, log);
    } else if (C <= kWarpRowMax) {
      softmax_rows_kernel<T, 32><<<blocks_for(outer, kThreads / 32), kThreads, 0, ctx.stream()>>>(xp, yp, outer, C, log);
    } else {
      softmax_rows_kernel<T, kThreads><<<blocks_for(outer, 1), kThreads, 0, ctx.stream()>>>(xp, yp, outer, C, log);
    }
    VT_CUDA_CHECK_LAUNCH();
  });
}

void softmax_backward_cuda(const Tensor& y, const Tensor& dy, const Tensor& dx, int64_t outer, int64_t C,
                           int64_t inner, bool log) {
  check_cuda(y, "softmax_backward");
  DeviceGuard g(y.device());
  DeviceContext& ctx = context(y.device().index);
  visit_float(y.dtype(), "softmax_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T *yp = static_cast<const T*>(y.raw_data()), *gp = static_cast<const T*>(dy.raw_data());
    T* dp = static_cast<T*>(dx.raw_data());
    if (inner != 1) {
      softmax_backward_columns_kernel<T><<<blocks_for(outer * inner, kThreads), kThreads, 0, ctx.stream()>>>(
          yp, gp, dp, outer, C, inner, log);
    } else if (C <= kWarpRowMax) {
      softmax_backward_rows_kernel<T, 32><<<blocks_for(outer, kThreads / 32), kThreads, 0, ctx.stream()>>>(yp, gp, dp,
                                                                                                         outer, C, log);
    } else {
      softmax_backward_rows_kernel<T, kThreads><<<blocks_for(outer, 1), kThreads, 0, ctx.stream()>>>(yp, gp, dp, outer,
                                                                                                  C, log);
    }
    VT_CUDA_CHECK_LAUNCH();
  });
}

// ==== activations ==================================================================================
constexpr double kSqrt1_2 = 0.70710678118654752440, kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kSqrt2OverPi = 0.79788456080286535588, kGeluCubic = 0.044715, kQuickGelu = 1.702;

template <class A>
__device__ __forceinline__ A m_erf(A v) {
  if constexpr (std::is_same_v<A, float>) return erff(v);
  else return ::erf(v);
}
template <class A>
__device__ __forceinline__ A sigmoid(A x) { return A(1) / (A(1) + m_exp(-x)); }
template <class A>
__device__ __forceinline__ A tanh_act(A u) {
  if constexpr (std::is_same_v<A, double>) return m_tanh(u);
  else return A(1) - A(2) / (m_exp(A(2) * u) + A(1));
}

template <Activation K, class A>
__device__ __forceinline__ A act_forward(A x) {
  if constexpr (K == Activation::Silu) return x * sigmoid(x);
  else if constexpr (K == Activation::GeluErf) return A(0.5) * x * (A(1) + m_erf(x * A(kSqrt1_2)));
  else if constexpr (K == Activation::GeluTanh)
    return A(0.5) * x * (A(1) + tanh_act(A(kSqrt2OverPi) * (x + A(kGeluCubic) * x * x * x)));
  else return x * sigmoid(A(kQuickGelu) * x);
}

template <Activation K, class A>
__device__ __forceinline__ A act_derivative(A x) {
  if constexpr (K == Activation::Silu) {
    const A s = sigmoid(x);
    return s * (A(1) + x * (A(1) - s));
  } else if constexpr (K == Activation::GeluErf) {
    return A(0.5) * (A(1) + m_erf(x * A(kSqrt1_2))) + x * A(kInvSqrt2Pi) * m_exp(A(-0.5) * x * x);
  } else if constexpr (K == Activation::GeluTanh) {
    const A x2 = x * x, t = tanh_act(A(kSqrt2OverPi) * (x + A(kGeluCubic) * x2 * x));
    return A(0.5) * (A(1) + t) + A(0.5) * x * (A(1) - t * t) * A(kSqrt2OverPi) * (A(1) + A(3 * kGeluCubic) * x2);
  } else {
    const A s = sigmoid(A(kQuickGelu) * x);
    return s + A(kQuickGelu) * x * s * (A(1) - s);
  }
}

template <Activation K>
struct ActForwardF {
  template <class A>
  __device__ __forceinline__ A operator()(A x) const { return act_forward<K>(x); }
};
template <Activation K>
struct ActBackwardF {  // (x, dy) -> dy * act'(x)
  template <class A>
  __device__ __forceinline__ A operator()(A x, A dy) const { return dy * act_derivative<K>(x); }
};
struct SwigluF {  // (gate, up) -> silu(gate) * up
  template <class A>
  __device__ __forceinline__ A operator()(A g, A u) const { return act_forward<Activation::Silu>(g) * u; }
};

template <class F>
void visit_activation(Activation k, F&& f) {
  switch (k) {
    case Activation::Silu: return f(std::integral_constant<Activation, Activation::Silu>{});
    case Activation::GeluErf: return f(std::integral_constant<Activation, Activation::GeluErf>{});
    case Activation::GeluTanh: return f(std::integral_constant<Activation, Activation::GeluTanh>{});
    case Activation::QuickGelu: return f(std::integral_constant<Activation, Activation::QuickGelu>{});
  }
  VT_FAIL("cuda activation: unknown kind ", static_cast<int>(k));
}

void activation_forward_cuda(Activation kind, const Tensor& x, const Tensor& y) {
  check_cuda(x, "activation");
  DeviceGuard g(x.device());
  visit_float(x.dtype(), "activation", [&](auto tag) {
    using T = typename decltype(tag)::type;
    visit_activation(kind, [&](auto k) { launch_map<T, T>(y, ActForwardF<decltype(k)::value>{}, {&x}); });
  });
}

void activation_backward_cuda(Activation kind, const Tensor& x, const Tensor& dy, const Tensor& dx) {
  check_cuda(x, "activation_backward");
  DeviceGuard g(x.device());
  visit_float(x.dtype(), "activation_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    visit_activation(kind, [&](auto k) { launch_map<T, T, T>(dx, ActBackwardF<decltype(k)::value>{}, {&x, &dy}); });
  });
}

void swiglu_forward_cuda(const Tensor& gate, const Tensor& up, const Tensor& y) {
  check_cuda(gate, "swiglu");
  DeviceGuard g(gate.device());
  visit_float(gate.dtype(), "swiglu", [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch_map<T, T, T>(y, SwigluF{}, {&gate, &up});
  });
}

// dgate = dy * up * silu'(gate);  dup = dy * silu(gate). gate, up, dy, dgate, dup: (n) contiguous.
template <class T>
__global__ void __launch_bounds__(kThreads) swiglu_backward_kernel(const T* __restrict__ gate,
                                                                    const T* __restrict__ up,
                                                                    const T* __restrict__ dy, T* __restrict__ dgate,
                                                                    T* __restrict__ dup, int64_t n) {
  using A = acc<T>;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    const A x = load(gate + i), s = sigmoid(x), gy = load(dy + i);
    dgate[i] = to_storage<T>(gy * load(up + i) * s * (A(1) + x * (A(1) - s)));
    dup[i] = to_storage<T>(gy * x * s);
  }
}

void swiglu_backward_cuda(const Tensor& gate, const Tensor& up, const Tensor& dy, const Tensor& dgate,
                          const Tensor& dup) {
  check_cuda(gate, "swiglu_backward");
  DeviceGuard g(gate.device());
  DeviceContext& ctx = context(gate.device().index);
  const int64_t n = gate.numel();
  if (n == 0) return;
  visit_float(gate.dtype(), "swiglu_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    swiglu_backward_kernel<T><<<grid_for(n, kThreads, ctx), kThreads, 0, ctx.stream()>>>(
        static_cast<const T*>(gate.raw_data()), static_cast<const T*>(up.raw_data()),
        static_cast<const T*>(dy.raw_data()), static_cast<T*>(dgate.raw_data()), static_cast<T*>(dup.raw_data()), n);
    VT_CUDA_CHECK_LAUNCH();
  });
}

template <class Fn>
void reg(const char* name, Fn* fn) {
  kernels::register_kernel(name, DeviceType::CUDA, fn);
}

}  // namespace

void register_nn_activation_kernels() {
  using namespace vt::nn;
  reg<SoftmaxForwardFn>("softmax_forward", &softmax_forward_cuda);
  reg<SoftmaxBackwardFn>("softmax_backward", &softmax_backward_cuda);
  reg<ActivationForwardFn>("activation_forward", &activation_forward_cuda);
  reg<ActivationBackwardFn>("activation_backward", &activation_backward_cuda);
  reg<SwigluForwardFn>("swiglu_forward", &swiglu_forward_cuda);
  reg<SwigluBackwardFn>("swiglu_backward", &swiglu_backward_cuda);
}

}  // namespace vt::cuda
