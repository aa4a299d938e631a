// nn_activation.cu: softmax / log_softmax, the activations (silu, gelu erf and tanh, quick_gelu),
// swiglu, and the two cross-entropy losses on CUDA, registered under the CPU kernels' names
// (src/nn_functional.cpp, src/nn_loss.cpp hold the ops, the math and the CPU versions).
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
// Cross-entropy: one 256-thread block per row of C logits: max, then sum(exp(z - max)) and sum(z),
// then logsumexp and the row loss; the backward writes dz = g_row * (softmax - eps / C) with the
// target column fixed in the same pass. Bitwise CE: one warp per token over its d bit pairs
// (forward), one thread per bit pair (backward). Targets and bits are validated on the device: the
// first bad position lands in a flag (atomicMin), read back after the kernel (one 8-byte copy).
// Everything is held in f32 (f64 for f64 input) and rounded once into the output dtype.
#include "math.cuh"
#include "nn_kernels.h"
#include "vt/nn/functional.h"
#include "vt/nn/loss.h"

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
  v = warp_max(v);
  if constexpr (TPR == 32) {
    return v;
  } else {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    A t = lane < (TPR >> 5) ? scratch[lane] : A(-INFINITY);
    t = warp_max(t);
    __syncthreads();
    return t;
  }
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
      softmax_columns_kernel<T><<<blocks_for(outer * inner, kThreads), kThreads, 0, ctx.stream>>>(xp, yp, outer, C,
                                                                                                  inner, log);
    } else if (C <= kWarpRowMax) {
      softmax_rows_kernel<T, 32><<<blocks_for(outer, kThreads / 32), kThreads, 0, ctx.stream>>>(xp, yp, outer, C, log);
    } else {
      softmax_rows_kernel<T, kThreads><<<blocks_for(outer, 1), kThreads, 0, ctx.stream>>>(xp, yp, outer, C, log);
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
      softmax_backward_columns_kernel<T><<<blocks_for(outer * inner, kThreads), kThreads, 0, ctx.stream>>>(
          yp, gp, dp, outer, C, inner, log);
    } else if (C <= kWarpRowMax) {
      softmax_backward_rows_kernel<T, 32><<<blocks_for(outer, kThreads / 32), kThreads, 0, ctx.stream>>>(yp, gp, dp,
                                                                                                         outer, C, log);
    } else {
      softmax_backward_rows_kernel<T, kThreads><<<blocks_for(outer, 1), kThreads, 0, ctx.stream>>>(yp, gp, dp, outer,
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
    swiglu_backward_kernel<T><<<grid_for(n, kThreads, ctx), kThreads, 0, ctx.stream>>>(
        static_cast<const T*>(gate.raw_data()), static_cast<const T*>(up.raw_data()),
        static_cast<const T*>(dy.raw_data()), static_cast<T*>(dgate.raw_data()), static_cast<T*>(dup.raw_data()), n);
    VT_CUDA_CHECK_LAUNCH();
  });
}

// ==== cross-entropy ================================================================================
// The first bad position (row or bit) goes to *flag by atomicMin; UINT64_MAX means none.
__device__ __forceinline__ void flag_bad(unsigned long long* flag, int64_t pos) {
  atomicMin(flag, static_cast<unsigned long long>(pos));
}

// Returns the first flagged position, or -1 (one 8-byte read back, which waits for the kernel).
int64_t read_flag(const Tensor& flag) {
  const uint64_t v = flag.to(Device::cpu()).data<int64_t>()[0];
  return v == ~uint64_t(0) ? -1 : static_cast<int64_t>(v);
}

// z: (N, C); y: (N); row_loss, lse: (N). One block per row.
template <class T>
__global__ void __launch_bounds__(kThreads) cross_entropy_forward_kernel(
    const T* __restrict__ z, const int64_t* __restrict__ y, int64_t C, int64_t ignore, acc<T> eps,
    acc<T>* __restrict__ row_loss, acc<T>* __restrict__ lse, unsigned long long* flag) {
  using A = acc<T>;
  __shared__ A scratch[32];
  const int64_t r = blockIdx.x;
  const T* zr = z + r * C;
  A m = -INFINITY;
  for (int64_t c = threadIdx.x; c < C; c += kThreads) {
    const A v = load(zr + c);
    m = (v > m || v != v) ? v : m;
  }
  m = group_max<kThreads>(m, scratch);
  A s = 0, sz = 0;
  for (int64_t c = threadIdx.x; c < C; c += kThreads) {
    const A v = load(zr + c);
    if (m != A(-INFINITY)) s += m_exp(v - m);  // all -inf: nothing to add (exp(-inf - -inf) is NaN)
    sz += v;
  }
  s = block_sum(s, scratch);
  sz = block_sum(sz, scratch);
  if (threadIdx.x != 0) return;
  const A l = m + m_log(s);
  lse[r] = l;
  const int64_t t = y[r];
  if (t == ignore) {
    row_loss[r] = 0;
    return;
  }
  if (t < 0 || t >= C) {
    flag_bad(flag, r);
    row_loss[r] = 0;
    return;
  }
  const A smooth = eps > A(0) ? eps / A(C) * sz : A(0);
  row_loss[r] = l - (A(1) - eps) * load(zr + t) - smooth;
}

// dz[r, c] = g[r] * (exp(z - lse) - eps / C - (1 - eps) [c == y]); 0 for ignored rows
template <class T>
__global__ void __launch_bounds__(kThreads) cross_entropy_backward_kernel(
    const T* __restrict__ z, const int64_t* __restrict__ y, const acc<T>* __restrict__ lse,
    const acc<T>* __restrict__ g, int64_t C, int64_t ignore, acc<T> eps, T* __restrict__ dz) {
  using A = acc<T>;
  const int64_t r = blockIdx.x, t = y[r];
  const T* zr = z + r * C;
  T* dr = dz + r * C;
  if (t == ignore) {
    for (int64_t c = threadIdx.x; c < C; c += kThreads) dr[c] = to_storage<T>(A(0));
    return;
  }
  const A gr = g[r], l = lse[r], off = gr * eps / A(C);
  for (int64_t c = threadIdx.x; c < C; c += kThreads) {
    const A e = m_exp(load(zr + c) - l);
    dr[c] = to_storage<T>(c == t ? gr * (e - eps / A(C) - (A(1) - eps)) : gr * e - off);
  }
}

void cross_entropy_forward_cuda(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                                double label_smoothing, const Tensor& row_loss, const Tensor& lse) {
  check_cuda(logits, "cross_entropy");
  DeviceGuard g(logits.device());
  DeviceContext& ctx = context(logits.device().index);
  const int64_t N = logits.size(0), C = logits.size(1);
  if (N == 0) return;
  Tensor flag = full({1}, -1.0, {DType::I64, logits.device()});  // all bits set: no bad row yet
  visit_float(logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc<T>;
    cross_entropy_forward_kernel<T><<<static_cast<unsigned>(N), kThreads, 0, ctx.stream>>>(
        static_cast<const T*>(logits.raw_data()), static_cast<const int64_t*>(target.raw_data()), C, ignore_index,
        A(label_smoothing), static_cast<A*>(row_loss.raw_data()), static_cast<A*>(lse.raw_data()),
        static_cast<unsigned long long*>(flag.raw_data()));
    VT_CUDA_CHECK_LAUNCH();
  });
  const int64_t bad = read_flag(flag);
  if (bad >= 0) {
    const int64_t t = target.to(Device::cpu()).data<int64_t>()[bad];
    VT_FAIL("cross_entropy: target ", t, " at row ", bad, " is out of range for ", C, " classes (ignore_index ",
            ignore_index, ")");
  }
}

void cross_entropy_backward_cuda(const Tensor& logits, const Tensor& target, const Tensor& lse, const Tensor& row_grad,
                                 int64_t ignore_index, double label_smoothing, const Tensor& dlogits) {
  check_cuda(logits, "cross_entropy_backward");
  DeviceGuard g(logits.device());
  DeviceContext& ctx = context(logits.device().index);
  const int64_t N = logits.size(0), C = logits.size(1);
  if (N == 0) return;
  visit_float(logits.dtype(), "cross_entropy_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc<T>;
    cross_entropy_backward_kernel<T><<<static_cast<unsigned>(N), kThreads, 0, ctx.stream>>>(
        static_cast<const T*>(logits.raw_data()), static_cast<const int64_t*>(target.raw_data()),
        static_cast<const A*>(lse.raw_data()), static_cast<const A*>(row_grad.raw_data()), C, ignore_index,
        A(label_smoothing), static_cast<T*>(dlogits.raw_data()));
    VT_CUDA_CHECK_LAUNCH();
  });
}

// ==== bitwise cross-entropy ========================================================================
template <class A>
__device__ __forceinline__ A m_log1p(A v) {
  if constexpr (std::is_same_v<A, float>) return log1pf(v);
  else return ::log1p(v);
}

// z: (T, d, 2); b: (T, d); token_loss: (T) = mean over d of
//   logsumexp(z0, z1) - (1 - eps) z_b - (eps / 2)(z0 + z1). One warp per token.
template <class T>
__global__ void __launch_bounds__(kThreads) bitwise_forward_kernel(const T* __restrict__ z,
                                                                    const int64_t* __restrict__ b, int64_t tokens,
                                                                    int64_t d, acc<T> eps,
                                                                    acc<T>* __restrict__ token_loss,
                                                                    unsigned long long* flag) {
  using A = acc<T>;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * (kThreads / 32) + (threadIdx.x >> 5);
  if (t >= tokens) return;
  A s = 0;
  for (int64_t j = threadIdx.x & 31; j < d; j += 32) {
    const int64_t k = t * d + j, bit = b[k];
    if (bit != 0 && bit != 1) flag_bad(flag, k);
    const A z0 = load(z + 2 * k), z1 = load(z + 2 * k + 1);
    const A l = (z0 > z1 ? z0 : z1) + m_log1p(m_exp(-::fabs(z1 - z0)));
    s += l - (A(1) - eps) * (bit ? z1 : z0) - eps / A(2) * (z0 + z1);
  }
  s = warp_sum(s);
  if ((threadIdx.x & 31) == 0) token_loss[t] = s / A(d);
}

// dz_c = token_grad / d * (p_c - (1 - eps)[c == b] - eps / 2); one thread per bit pair
template <class T>
__global__ void __launch_bounds__(kThreads) bitwise_backward_kernel(const T* __restrict__ z,
                                                                     const int64_t* __restrict__ b,
                                                                     const acc<T>* __restrict__ token_grad, int64_t n,
                                                                     int64_t d, acc<T> eps, T* __restrict__ dz) {
  using A = acc<T>;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n; k += step) {
    const A coef = token_grad[k / d] / A(d);
    const A delta = load(z + 2 * k + 1) - load(z + 2 * k);
    const A p1 = A(1) / (A(1) + m_exp(-delta)), p0 = A(1) / (A(1) + m_exp(delta));
    const A on = A(1) - eps, half = eps / A(2);
    const bool one = b[k] != 0;
    dz[2 * k] = to_storage<T>(coef * (p0 - (one ? A(0) : on) - half));
    dz[2 * k + 1] = to_storage<T>(coef * (p1 - (one ? on : A(0)) - half));
  }
}

void bitwise_forward_cuda(const Tensor& logits, const Tensor& bits, double label_smoothing, const Tensor& token_loss) {
  check_cuda(logits, "bitwise_cross_entropy");
  DeviceGuard g(logits.device());
  DeviceContext& ctx = context(logits.device().index);
  const int64_t tokens = logits.size(0), d = logits.size(1);
  if (tokens == 0) return;
  Tensor flag = full({1}, -1.0, {DType::I64, logits.device()});
  visit_float(logits.dtype(), "bitwise_cross_entropy", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc<T>;
    bitwise_forward_kernel<T><<<blocks_for(tokens, kThreads / 32), kThreads, 0, ctx.stream>>>(
        static_cast<const T*>(logits.raw_data()), static_cast<const int64_t*>(bits.raw_data()), tokens, d,
        A(label_smoothing), static_cast<A*>(token_loss.raw_data()), static_cast<unsigned long long*>(flag.raw_data()));
    VT_CUDA_CHECK_LAUNCH();
  });
  const int64_t bad = read_flag(flag);
  if (bad >= 0) {
    const int64_t v = bits.to(Device::cpu()).contiguous().data<int64_t>()[bad];
    VT_FAIL("bitwise_cross_entropy: bit ", bad % d, " of token ", bad / d, " is ", v, " (bits must be 0 or 1)");
  }
}

void bitwise_backward_cuda(const Tensor& logits, const Tensor& bits, const Tensor& token_grad, double label_smoothing,
                           const Tensor& dlogits) {
  check_cuda(logits, "bitwise_cross_entropy_backward");
  DeviceGuard g(logits.device());
  DeviceContext& ctx = context(logits.device().index);
  const int64_t n = logits.size(0) * logits.size(1);
  if (n == 0) return;
  visit_float(logits.dtype(), "bitwise_cross_entropy_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc<T>;
    bitwise_backward_kernel<T><<<grid_for(n, kThreads, ctx), kThreads, 0, ctx.stream>>>(
        static_cast<const T*>(logits.raw_data()), static_cast<const int64_t*>(bits.raw_data()),
        static_cast<const A*>(token_grad.raw_data()), n, logits.size(1), A(label_smoothing),
        static_cast<T*>(dlogits.raw_data()));
    VT_CUDA_CHECK_LAUNCH();
  });
}

template <class Fn>
void reg(const char* name, Fn* fn) {
  kernels::register_kernel(name, DeviceType::CUDA, reinterpret_cast<void*>(fn));
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
  reg<CrossEntropyForwardFn>("cross_entropy_forward", &cross_entropy_forward_cuda);
  reg<CrossEntropyBackwardFn>("cross_entropy_backward", &cross_entropy_backward_cuda);
  reg<BitwiseCrossEntropyForwardFn>("bitwise_cross_entropy_forward", &bitwise_forward_cuda);
  reg<BitwiseCrossEntropyBackwardFn>("bitwise_cross_entropy_backward", &bitwise_backward_cuda);
}

}  // namespace vt::cuda
