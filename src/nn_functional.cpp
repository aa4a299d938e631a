// nn_functional.cpp: linear, softmax / log_softmax, dropout / drop_path and the activations, each
// op next to its backward, with the CPU kernels they call through the kernel registry.
//
// Softmax kernel: x is seen as contiguous (outer, C, inner). With inner == 1 (softmax over the last
// dim) each thread takes whole rows: one pass for the max, one for sum(exp(x - max)) writing the
// exponentials to an f32 scratch row, one to scale and store; every value is held in f32 (f64 for
// f64 input) and rounded once into the output dtype. With inner > 1 the same three passes run over
// (C, 64-wide inner strip) blocks with the 64 running maxima and sums held in registers, so the
// reduction dim is never transposed. The backward uses only the saved output.
// Activation kernels are one elementwise pass; the gradient kernels recompute from the saved input
// (x, or gate and up) instead of saving intermediate products.
#include "vt/nn/functional.h"

#include <omp.h>

#include <cmath>
#include <vector>

#include "cpu_loop.h"
#include "nn_cpu_math.h"
#include "vt/random.h"

namespace vt::nn {

using cpu::acc_t;
using cpu::ld;
using cpu::st;

// ---- linear --------------------------------------------------------------------------------------
// ---- linear: the fused (bias-epilogue) path of devices that register "linear_bias_forward" -----
static bool fused_linear_ok(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  const DType t = x.dtype();
  return !x.device().is_cpu() && (t == DType::F32 || t == DType::BF16 || t == DType::F16) && weight.dtype() == t &&
         bias.dtype() == t && weight.device() == x.device() && bias.device() == x.device() && x.numel() > 0 &&
         kernels::supports("linear_bias_forward", x.device());
}

// x (..., K), weight (N, K), bias (N) -> (..., N). The backward is three plain ops on the saved
// inputs: dx = dy W, dW = dy^T x, db = sum of dy over rows (the GELU variant is inference-only).
static Tensor linear_fused(const Tensor& x, const Tensor& weight, const Tensor& bias, bool gelu_tanh) {
  const int64_t K = weight.size(1), N = weight.size(0), M = x.numel() / K;
  const Tensor x2 = x.reshape({M, K}).contiguous(), w = weight.contiguous(), b = bias.contiguous();
  Tensor y2 = empty({M, N}, {x.dtype(), x.device()});
  static const kernels::Kernel<kernels::LinearBiasForwardFn> k_linear_bias_forward("linear_bias_forward");
  k_linear_bias_forward(x.device())(x2, w, b, gelu_tanh, y2);
  Shape out_shape = x.shape();
  out_shape[out_shape.size() - 1] = N;
  Tensor y = y2.view(out_shape);
  if (gelu_tanh) return y;
  const bool want_x = x.requires_grad(), want_w = weight.requires_grad(), want_b = bias.requires_grad();
  autograd::record("linear", y, {x, weight, bias}, [x2, w, want_x, want_w, want_b, M, N, xs = x.shape()](const Tensor& g) {
    const Tensor dy = g.reshape({M, N});
    Tensor dx = want_x ? matmul(dy, w).view(xs) : Tensor();
    Tensor dw = want_w ? matmul(dy.t(), x2) : Tensor();
    Tensor db = want_b ? sum(dy.to(DType::F32), {0}).to(dy.dtype()) : Tensor();
    return grads{dx, dw, db};
  });
  return y;
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  VT_CHECK(weight.dim() == 2, "linear: weight must be 2-D (out_features, in_features), got ", weight.shape().str());
  VT_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), "linear: input ", x.shape().str(), " has ",
           x.dim() ? x.size(-1) : 0, " features, weight ", weight.shape().str(), " expects ", weight.size(1));
  VT_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == weight.size(0)), "linear: bias ",
           bias.defined() ? bias.shape().str() : "", " does not match weight ", weight.shape().str(), " (needs (",
           weight.size(0), "))");
  if (bias.defined() && fused_linear_ok(x, weight, bias)) return linear_fused(x, weight, bias, false);
  Tensor y = matmul(x, weight.t());  // (..., in) @ (in, out): weight.t() is a view
  return bias.defined() ? add(y, bias) : y;
}

Tensor linear_gelu_tanh(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  VT_CHECK(bias.defined(), "linear_gelu_tanh: needs a bias");
  if (!autograd::needs_grad({&x, &weight, &bias}) && fused_linear_ok(x, weight, bias) && weight.dim() == 2 &&
      x.dim() >= 1 && x.size(-1) == weight.size(1) && bias.dim() == 1 && bias.size(0) == weight.size(0))
    return linear_fused(x, weight, bias, true);
  return gelu(linear(x, weight, bias), /*approximate_tanh=*/true);
}

// ---- softmax: CPU kernels ------------------------------------------------------------------------
static constexpr int64_t kStrip = 64;  // inner-dim lanes per block when softmax is not over the last dim

// x, y: (outer, C) rows; scratch: C values per thread.
template <class T>
static void softmax_rows(const T* x, T* y, int64_t rows, int64_t C, bool log) {
  using A = acc_t<T>;
  int threads = rows * C >= cpu::kParallelGrain ? omp_get_max_threads() : 1;
#pragma omp parallel num_threads(threads)
  {
    std::vector<A> e(C);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = x + r * C;
      T* yr = y + r * C;
      A m = -INFINITY;
#pragma omp simd reduction(max : m)
      for (int64_t c = 0; c < C; ++c) m = std::max(m, ld(xr[c]));
      A s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t c = 0; c < C; ++c) {
        A v = ld(xr[c]) - m;
        e[c] = log ? v : cpu::exp_acc(v);
        s += log ? cpu::exp_acc(v) : e[c];
      }
      if (log) {
        A ls = std::log(s);
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) yr[c] = st<T>(e[c] - ls);
      } else {
        A inv = A(1) / s;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) yr[c] = st<T>(e[c] * inv);
      }
    }
  }
}

// x, y: (outer, C, inner); each block is (C, up to kStrip lanes of inner).
template <class T>
static void softmax_strided(const T* x, T* y, int64_t outer, int64_t C, int64_t inner, bool log) {
  using A = acc_t<T>;
  int64_t strips = (inner + kStrip - 1) / kStrip, units = outer * strips;
  int threads = outer * C * inner >= cpu::kParallelGrain ? omp_get_max_threads() : 1;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t u = 0; u < units; ++u) {
    int64_t o = u / strips, i0 = u % strips * kStrip, n = std::min(kStrip, inner - i0);
    const T* xb = x + o * C * inner + i0;
    T* yb = y + o * C * inner + i0;
    A m[kStrip], s[kStrip];
    for (int64_t i = 0; i < n; ++i) m[i] = -INFINITY, s[i] = 0;
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < n; ++i) m[i] = std::max(m[i], ld(xb[c * inner + i]));
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < n; ++i) s[i] += cpu::exp_acc(ld(xb[c * inner + i]) - m[i]);
    for (int64_t i = 0; i < n; ++i) s[i] = log ? m[i] + std::log(s[i]) : A(1) / s[i];
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < n; ++i) {
        A v = ld(xb[c * inner + i]);
        yb[c * inner + i] = st<T>(log ? v - s[i] : cpu::exp_acc(v - m[i]) * s[i]);
      }
  }
}

static void softmax_forward_cpu(const Tensor& x, const Tensor& y, int64_t outer, int64_t C, int64_t inner,
                                bool log) {
  cpu::dispatch_float(x.dtype(), "softmax", [&](auto tag) {
    using T = decltype(tag);
    if (inner == 1) softmax_rows(x.data<T>(), y.data<T>(), outer, C, log);
    else softmax_strided(x.data<T>(), y.data<T>(), outer, C, inner, log);
  });
}

// softmax:      dx = y * (dy - sum_c dy * y)
// log_softmax:  dx = dy - exp(y) * sum_c dy
template <class T>
static void softmax_backward_typed(const T* y, const T* dy, T* dx, int64_t outer, int64_t C, int64_t inner,
                                   bool log) {
  using A = acc_t<T>;
  int64_t strips = (inner + kStrip - 1) / kStrip, units = outer * strips;
  int threads = outer * C * inner >= cpu::kParallelGrain ? omp_get_max_threads() : 1;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t u = 0; u < units; ++u) {
    int64_t o = u / strips, i0 = u % strips * kStrip, n = std::min(kStrip, inner - i0);
    int64_t base = o * C * inner + i0;
    const T *yb = y + base, *gb = dy + base;
    T* xb = dx + base;
    if (inner == 1) {  // contiguous row: vectorised over C
      A s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t c = 0; c < C; ++c) s += log ? ld(gb[c]) : ld(gb[c]) * ld(yb[c]);
#pragma omp simd
      for (int64_t c = 0; c < C; ++c)
        xb[c] = st<T>(log ? ld(gb[c]) - cpu::exp_acc(ld(yb[c])) * s : ld(yb[c]) * (ld(gb[c]) - s));
      continue;
    }
    A s[kStrip];
    for (int64_t i = 0; i < n; ++i) s[i] = 0;
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < n; ++i) {
        A g = ld(gb[c * inner + i]);
        s[i] += log ? g : g * ld(yb[c * inner + i]);
      }
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < n; ++i) {
        A g = ld(gb[c * inner + i]), v = ld(yb[c * inner + i]);
        xb[c * inner + i] = st<T>(log ? g - cpu::exp_acc(v) * s[i] : v * (g - s[i]));
      }
  }
}

static void softmax_backward_cpu(const Tensor& y, const Tensor& dy, const Tensor& dx, int64_t outer, int64_t C,
                                 int64_t inner, bool log) {
  cpu::dispatch_float(y.dtype(), "softmax_backward", [&](auto tag) {
    using T = decltype(tag);
    softmax_backward_typed(y.data<T>(), dy.data<T>(), dx.data<T>(), outer, C, inner, log);
  });
}

static kernels::Registrar reg_softmax_fwd("softmax_forward", DeviceType::CPU, &softmax_forward_cpu);
static kernels::Registrar reg_softmax_bwd("softmax_backward", DeviceType::CPU, &softmax_backward_cpu);

// ---- softmax: op and backward --------------------------------------------------------------------
static Tensor softmax_impl(const Tensor& x_in, int64_t dim_, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  VT_CHECK(is_floating(x_in.dtype()), name, ": needs a floating-point tensor, got ", dtype_name(x_in.dtype()));
  int d = wrap_dim(dim_, x_in.dim(), name);
  Tensor x = x_in.contiguous();
  // x: (outer, C, inner) around dim d
  int64_t outer = 1, C = x.dim() ? x.size(d) : 1, inner = 1;
  for (int i = 0; i < d; ++i) outer *= x.size(i);
  for (int i = d + 1; i < x.dim(); ++i) inner *= x.size(i);
  Tensor y = empty(x.shape(), {x.dtype(), x.device()});
  if (y.numel() == 0) return y;
  static const kernels::Kernel<SoftmaxForwardFn> k_softmax_forward("softmax_forward");
  k_softmax_forward(x.device())(x, y, outer, C, inner, log);
  autograd::record(name, y, {x_in}, [y = y.detach(), outer, C, inner, log](const Tensor& g) {
    Tensor dy = cast(g, y.dtype()).contiguous();
    Tensor dx = empty(y.shape(), {y.dtype(), y.device()});
    static const kernels::Kernel<SoftmaxBackwardFn> k_softmax_backward("softmax_backward");
    k_softmax_backward(y.device())(y, dy, dx, outer, C, inner, log);
    return grads{dx};
  });
  return y;
}

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, true); }

// ---- dropout and drop_path -----------------------------------------------------------------------
// The mask is built in x's dtype (so 1 / (1 - p) is rounded to bf16 for bf16 x, as PyTorch's
// `noise.bernoulli_(1 - p).div_(1 - p)` is); mul records the backward dx = dy * mask.
static Tensor keep_mask(const Shape& shape, double p, const Tensor& x, Generator* gen) {
  Tensor u = rand(shape, {DType::F32, x.device()}, gen);
  return mul(cast(lt(u, 1.0 - p), x.dtype()), 1.0 / (1.0 - p));
}

Tensor dropout(const Tensor& x, double p, bool train, Generator* gen) {
  VT_CHECK(p >= 0 && p <= 1, "dropout: probability must be in [0, 1], got ", p);
  VT_CHECK(is_floating(x.dtype()), "dropout: needs a floating-point tensor, got ", dtype_name(x.dtype()));
  if (!train || p == 0) return x;
  if (p == 1) return mul(x, 0.0);
  return mul(x, keep_mask(x.shape(), p, x, gen));
}

Tensor drop_path(const Tensor& x, double p, bool train, Generator* gen) {
  VT_CHECK(p >= 0 && p <= 1, "drop_path: probability must be in [0, 1], got ", p);
  VT_CHECK(x.dim() >= 1, "drop_path: needs a batch dim, got a 0-d tensor");
  if (!train || p == 0) return x;
  if (p == 1) return mul(x, 0.0);
  Shape s;  // (B, 1, ..., 1): one draw per sample
  s.resize(x.dim(), 1);
  s[0] = x.size(0);
  return mul(x, keep_mask(s, p, x, gen));
}

// ---- activations: CPU kernels --------------------------------------------------------------------
static constexpr double kSqrt1_2 = 0.70710678118654752440, kInvSqrt2Pi = 0.39894228040143267794;
static constexpr double kSqrt2OverPi = 0.79788456080286535588, kGeluCubic = 0.044715, kQuickGelu = 1.702;

template <class A>
static inline A sigmoid_acc(A x) { return A(1) / (A(1) + cpu::exp_acc(-x)); }
// tanh(u) = 1 - 2 / (exp(2u) + 1): exact at +-inf, vectorisable through exp_f32.
template <class A>
static inline A tanh_acc(A u) {
  if constexpr (std::is_same_v<A, double>) return std::tanh(u);
  else return A(1) - A(2) / (cpu::exp_acc(A(2) * u) + A(1));
}

template <class A>
static inline A act_forward(Activation k, A x) {
  switch (k) {
    case Activation::Silu: return x * sigmoid_acc(x);
    case Activation::GeluErf: return A(0.5) * x * (A(1) + std::erf(x * A(kSqrt1_2)));
    case Activation::GeluTanh:
      return A(0.5) * x * (A(1) + tanh_acc(A(kSqrt2OverPi) * (x + A(kGeluCubic) * x * x * x)));
    case Activation::QuickGelu: return x * sigmoid_acc(A(kQuickGelu) * x);
  }
  return x;
}

template <class A>
static inline A act_derivative(Activation k, A x) {
  switch (k) {
    case Activation::Silu: {
      A s = sigmoid_acc(x);
      return s * (A(1) + x * (A(1) - s));
    }
    case Activation::GeluErf:
      return A(0.5) * (A(1) + std::erf(x * A(kSqrt1_2))) + x * A(kInvSqrt2Pi) * std::exp(A(-0.5) * x * x);
    case Activation::GeluTanh: {
      A x2 = x * x, t = tanh_acc(A(kSqrt2OverPi) * (x + A(kGeluCubic) * x2 * x));
      return A(0.5) * (A(1) + t) + A(0.5) * x * (A(1) - t * t) * A(kSqrt2OverPi) * (A(1) + A(3 * kGeluCubic) * x2);
    }
    case Activation::QuickGelu: {
      A s = sigmoid_acc(A(kQuickGelu) * x);
      return s + A(kQuickGelu) * x * s * (A(1) - s);
    }
  }
  return A(1);
}

// Splits [0, n) into chunks across threads; f(begin, end) runs a vectorisable loop.
template <class F>
static void parallel_range(int64_t n, F f) {
  constexpr int64_t kChunk = 16384;
  int threads = n >= cpu::kParallelGrain ? omp_get_max_threads() : 1;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t b = 0; b < n; b += kChunk) f(b, std::min(n, b + kChunk));
}

// The kind is a template parameter so that each inner loop is branch-free and vectorises.
template <class T, Activation K>
static void act_forward_typed(const T* x, T* y, int64_t n) {
  parallel_range(n, [&](int64_t b, int64_t e) {
#pragma omp simd
    for (int64_t i = b; i < e; ++i) y[i] = st<T>(act_forward(K, ld(x[i])));
  });
}
template <class T, Activation K>
static void act_backward_typed(const T* x, const T* dy, T* dx, int64_t n) {
  parallel_range(n, [&](int64_t b, int64_t e) {
#pragma omp simd
    for (int64_t i = b; i < e; ++i) dx[i] = st<T>(ld(dy[i]) * act_derivative(K, ld(x[i])));
  });
}

template <class F>
static void dispatch_activation(Activation k, F&& f) {
  switch (k) {
    case Activation::Silu: return f(std::integral_constant<Activation, Activation::Silu>{});
    case Activation::GeluErf: return f(std::integral_constant<Activation, Activation::GeluErf>{});
    case Activation::GeluTanh: return f(std::integral_constant<Activation, Activation::GeluTanh>{});
    case Activation::QuickGelu: return f(std::integral_constant<Activation, Activation::QuickGelu>{});
  }
}

static void activation_forward_cpu(Activation kind, const Tensor& x, const Tensor& y) {
  cpu::dispatch_float(x.dtype(), "activation", [&](auto tag) {
    using T = decltype(tag);
    dispatch_activation(kind, [&](auto k) { act_forward_typed<T, decltype(k)::value>(x.data<T>(), y.data<T>(), x.numel()); });
  });
}
static void activation_backward_cpu(Activation kind, const Tensor& x, const Tensor& dy, const Tensor& dx) {
  cpu::dispatch_float(x.dtype(), "activation_backward", [&](auto tag) {
    using T = decltype(tag);
    dispatch_activation(kind, [&](auto k) {
      act_backward_typed<T, decltype(k)::value>(x.data<T>(), dy.data<T>(), dx.data<T>(), x.numel());
    });
  });
}

// y = silu(gate) * up; dgate = dy * up * silu'(gate); dup = dy * silu(gate)
static void swiglu_forward_cpu(const Tensor& gate, const Tensor& up, const Tensor& y) {
  cpu::dispatch_float(gate.dtype(), "swiglu", [&](auto tag) {
    using T = decltype(tag);
    const T *g = gate.data<T>(), *u = up.data<T>();
    T* o = y.data<T>();
    parallel_range(gate.numel(), [&](int64_t b, int64_t e) {
#pragma omp simd
      for (int64_t i = b; i < e; ++i) o[i] = st<T>(act_forward(Activation::Silu, ld(g[i])) * ld(u[i]));
    });
  });
}
static void swiglu_backward_cpu(const Tensor& gate, const Tensor& up, const Tensor& dy, const Tensor& dgate,
                                const Tensor& dup) {
  cpu::dispatch_float(gate.dtype(), "swiglu_backward", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T *g = gate.data<T>(), *u = up.data<T>(), *d = dy.data<T>();
    T *dg = dgate.data<T>(), *du = dup.data<T>();
    parallel_range(gate.numel(), [&](int64_t b, int64_t e) {
#pragma omp simd
      for (int64_t i = b; i < e; ++i) {
        A x = ld(g[i]), s = sigmoid_acc(x), gy = ld(d[i]);
        dg[i] = st<T>(gy * ld(u[i]) * s * (A(1) + x * (A(1) - s)));
        du[i] = st<T>(gy * x * s);
      }
    });
  });
}

static kernels::Registrar reg_act_fwd("activation_forward", DeviceType::CPU, &activation_forward_cpu);
static kernels::Registrar reg_act_bwd("activation_backward", DeviceType::CPU, &activation_backward_cpu);
static kernels::Registrar reg_swiglu_fwd("swiglu_forward", DeviceType::CPU, &swiglu_forward_cpu);
static kernels::Registrar reg_swiglu_bwd("swiglu_backward", DeviceType::CPU, &swiglu_backward_cpu);

// ---- activations: ops and backward ---------------------------------------------------------------
static Tensor activation(Activation kind, const Tensor& x_in, const char* name) {
  VT_CHECK(is_floating(x_in.dtype()), name, ": needs a floating-point tensor, got ", dtype_name(x_in.dtype()));
  Tensor x = x_in.contiguous().detach();
  Tensor y = empty(x.shape(), {x.dtype(), x.device()});
  static const kernels::Kernel<ActivationForwardFn> k_activation_forward("activation_forward");
  k_activation_forward(x.device())(kind, x, y);
  autograd::record(name, y, {x_in}, [kind, x](const Tensor& g) {
    Tensor dy = cast(g, x.dtype()).contiguous();
    Tensor dx = empty(x.shape(), {x.dtype(), x.device()});
    static const kernels::Kernel<ActivationBackwardFn> k_activation_backward("activation_backward");
    k_activation_backward(x.device())(kind, x, dy, dx);
    return grads{dx};
  });
  return y;
}

Tensor silu(const Tensor& x) { return activation(Activation::Silu, x, "silu"); }
Tensor gelu(const Tensor& x, bool approximate_tanh) {
  return activation(approximate_tanh ? Activation::GeluTanh : Activation::GeluErf, x, "gelu");
}
Tensor quick_gelu(const Tensor& x) { return activation(Activation::QuickGelu, x, "quick_gelu"); }

Tensor swiglu(const Tensor& gate_in, const Tensor& up_in) {
  VT_CHECK(gate_in.shape() == up_in.shape(), "swiglu: gate ", gate_in.shape().str(), " and up ",
           up_in.shape().str(), " must have the same shape");
  VT_CHECK(gate_in.dtype() == up_in.dtype() && is_floating(gate_in.dtype()), "swiglu: gate (",
           dtype_name(gate_in.dtype()), ") and up (", dtype_name(up_in.dtype()), ") need one floating dtype");
  VT_CHECK(gate_in.device() == up_in.device(), "swiglu: gate on ", gate_in.device().str(), ", up on ",
           up_in.device().str());
  Tensor gate = gate_in.contiguous().detach(), up = up_in.contiguous().detach();
  Tensor y = empty(gate.shape(), {gate.dtype(), gate.device()});
  static const kernels::Kernel<SwigluForwardFn> k_swiglu_forward("swiglu_forward");
  k_swiglu_forward(gate.device())(gate, up, y);
  autograd::record("swiglu", y, {gate_in, up_in}, [gate, up](const Tensor& g) {
    Tensor dy = cast(g, gate.dtype()).contiguous();
    Tensor dgate = empty(gate.shape(), {gate.dtype(), gate.device()});
    Tensor dup = empty(up.shape(), {up.dtype(), up.device()});
    static const kernels::Kernel<SwigluBackwardFn> k_swiglu_backward("swiglu_backward");
    k_swiglu_backward(gate.device())(gate, up, dy, dgate, dup);
    return grads{dgate, dup};
  });
  return y;
}

}  // namespace vt::nn
