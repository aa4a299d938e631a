// nn_norm.cpp: rms_norm, layer_norm and group_norm, each op next to its backward, with the CPU
// kernels they reach through the kernel registry.
//
// CPU kernels. Rows (RMS/LayerNorm) or (sample, group) blocks (GroupNorm) are independent: threads
// take whole rows. Forward: one pass over a row for the statistics (two for LayerNorm's mean and
// then squared deviations, for accuracy; the row is in L1 by then), one pass to write the output.
// Everything is held in f32 (f64 for f64 input) and rounded once into the output dtype; the stats
// (mean, rstd) are saved in f32. Backward: one pass computes the row's two dot products and, in
// the same loop, adds the row's share of dweight / dbias; a second pass writes dx.
// Parameter gradients: rows are cut into a fixed number of chunks (kChunks, independent of the
// thread count), each chunk sums into its own f32 partial, and the partials are added in chunk
// order, so the result is bitwise the same on 1 or 16 threads. Parameter gradients are written
// (=); the autograd engine adds them to .grad.
#include "vt/nn/norm.h"

#include <omp.h>

#include <cmath>
#include <vector>

#include "cpu_loop.h"
#include "nn_cpu_math.h"

namespace vt::nn {

using cpu::acc_t;
using cpu::ld;
using cpu::st;

static constexpr int64_t kChunks = 64;

// body(chunk, row_begin, row_end) over min(rows, kChunks) fixed chunks of rows.
template <class F>
static void for_row_chunks(int64_t rows, int64_t work, F body) {
  int64_t chunks = std::min(rows, kChunks);
  int threads = work >= cpu::kParallelGrain ? omp_get_max_threads() : 1;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t c = 0; c < chunks; ++c) body(c, rows * c / chunks, rows * (c + 1) / chunks);
}

// A (D) parameter of any float dtype as accumulator values; empty when undefined.
template <class A>
static std::vector<A> load_param(const Tensor& p) {
  std::vector<A> v;
  if (!p.defined()) return v;
  v.resize(p.numel());
  cpu::dispatch_float(p.dtype(), "norm parameter", [&](auto tag) {
    const auto* d = p.data<decltype(tag)>();
    for (int64_t i = 0; i < p.numel(); ++i) v[i] = static_cast<A>(ld(d[i]));
  });
  return v;
}

// Sums `parts` (chunks, D) over chunks in order into p (D); no-op when p is undefined.
template <class A>
static void store_param_grad(const std::vector<A>& parts, int64_t chunks, int64_t D, const Tensor& p) {
  if (!p.defined()) return;
  cpu::dispatch_float(p.dtype(), "norm parameter grad", [&](auto tag) {
    using W = decltype(tag);
    W* d = p.data<W>();
    for (int64_t j = 0; j < D; ++j) {
      A s = 0;
      for (int64_t c = 0; c < chunks; ++c) s += parts[c * D + j];
      d[j] = st<W>(static_cast<acc_t<W>>(s));
    }
  });
}

static DType stats_dtype(DType x) { return x == DType::F64 ? DType::F64 : DType::F32; }

// ==== RMSNorm =====================================================================================
// Row r of x (rows, D) as a norm reads it: x itself, or with `res` (add_rms_norm, add_layer_norm)
// x + res rounded to T into the same row of `sum`.
template <class T>
static const T* norm_input_row(const T* x, const T* res, T* sum, int64_t r, int64_t D) {
  const T* xr = x + r * D;
  if (!res) return xr;
  const T* rr = res + r * D;
  T* sr = sum + r * D;
#pragma omp simd
  for (int64_t j = 0; j < D; ++j) sr[j] = st<T>(ld(xr[j]) + ld(rr[j]));
  return sr;
}

// One row: x (D) of T -> y (D) of Y, its rstd.
// n = x * rstd (f32); n_c = round_to_T(n); y = w * n_c in Y (the Qwen2 cast rule)
template <class T, class Y>
static void rms_norm_row(const T* xr, const acc_t<T>* wp, double eps, Y* yr, acc_t<T>* rstd, int64_t D) {
  using A = acc_t<T>;
  using AY = acc_t<Y>;
  A ss = 0;
#pragma omp simd reduction(+ : ss)
  for (int64_t j = 0; j < D; ++j) ss += ld(xr[j]) * ld(xr[j]);
  A rs = A(1) / std::sqrt(ss / A(D) + A(eps));
  *rstd = rs;
  if (wp) {
#pragma omp simd
    for (int64_t j = 0; j < D; ++j) yr[j] = st<Y>(AY(wp[j]) * AY(cpu::round_to<T>(ld(xr[j]) * rs)));
  } else {
#pragma omp simd
    for (int64_t j = 0; j < D; ++j) yr[j] = st<Y>(AY(cpu::round_to<T>(ld(xr[j]) * rs)));
  }
}

// x: (rows, D) of T; y: (rows, D) of Y; rstd: (rows). With `res`, x + res is first rounded into
// sum (rows, D) of T, and that is what is normalised (add_rms_norm).
template <class T, class Y>
static void rms_norm_forward_typed(const T* x, const T* res, T* sum, const std::vector<acc_t<T>>& w, double eps,
                                   Y* y, acc_t<T>* rstd, int64_t rows, int64_t D) {
  const acc_t<T>* wp = w.empty() ? nullptr : w.data();
  for_row_chunks(rows, rows * D, [&](int64_t, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = norm_input_row(x, res, sum, r, D);
      rms_norm_row<T, Y>(xr, wp, eps, y + r * D, rstd + r, D);
    }
  });
}

// dn = dy * w;  dx = rstd * dn - x * rstd^3 * sum(dn * x) / D;  dw = sum_rows dy * n_c
template <class T, class Y>
static void rms_norm_backward_typed(const Y* dy, const T* x, const std::vector<acc_t<T>>& w, const acc_t<T>* rstd,
                                    T* dx, const Tensor& dweight, int64_t rows, int64_t D) {
  using A = acc_t<T>;
  const A* wp = w.empty() ? nullptr : w.data();
  bool want_dw = dweight.defined();
  int64_t chunks = std::min(rows, kChunks);
  std::vector<A> parts(want_dw ? chunks * D : 0, A(0));
  for_row_chunks(rows, rows * D, [&](int64_t c, int64_t r0, int64_t r1) {
    A* pw = want_dw ? parts.data() + c * D : nullptr;
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * D;
      const Y* gr = dy + r * D;
      A rs = rstd[r], dot = 0;
      if (pw) {
#pragma omp simd reduction(+ : dot)
        for (int64_t j = 0; j < D; ++j) {
          A g = A(ld(gr[j])), xv = ld(xr[j]);
          dot += g * (wp ? wp[j] : A(1)) * xv;
          pw[j] += g * cpu::round_to<T>(xv * rs);
        }
      } else {
#pragma omp simd reduction(+ : dot)
        for (int64_t j = 0; j < D; ++j) dot += A(ld(gr[j])) * (wp ? wp[j] : A(1)) * ld(xr[j]);
      }
      A k = dot * rs * rs * rs / A(D);
      T* dxr = dx + r * D;
#pragma omp simd
      for (int64_t j = 0; j < D; ++j) dxr[j] = st<T>(rs * A(ld(gr[j])) * (wp ? wp[j] : A(1)) - k * ld(xr[j]));
    }
  });
  store_param_grad(parts, chunks, D, dweight);
}

// rms_norm's forward, or add_rms_norm's when `residual` is defined (then `sum` receives x + residual).
static void rms_forward_cpu(const Tensor& x, const Tensor& residual, const Tensor& sum, const Tensor& weight,
                            double eps, const Tensor& y, const Tensor& rstd) {
  int64_t D = x.size(-1), rows = x.numel() / D;
  cpu::dispatch_float(x.dtype(), "rms_norm", [&](auto tx) {
    using T = decltype(tx);
    auto w = load_param<acc_t<T>>(weight);
    const T* rp = residual.defined() ? residual.data<T>() : nullptr;
    T* sp = residual.defined() ? sum.data<T>() : nullptr;
    cpu::dispatch_float(y.dtype(), "rms_norm", [&](auto ty) {
      using Y = decltype(ty);
      rms_norm_forward_typed<T, Y>(x.data<T>(), rp, sp, w, eps, y.data<Y>(), rstd.data<acc_t<T>>(), rows, D);
    });
  });
}

static void rms_norm_forward_cpu(const Tensor& x, const Tensor& weight, double eps, const Tensor& y,
                                 const Tensor& rstd) {
  rms_forward_cpu(x, Tensor(), Tensor(), weight, eps, y, rstd);
}

static void add_rms_norm_forward_cpu(const Tensor& x, const Tensor& residual, const Tensor& weight, double eps,
                                     const Tensor& sum, const Tensor& y, const Tensor& rstd) {
  rms_forward_cpu(x, residual, sum, weight, eps, y, rstd);
}

static void rms_norm_backward_cpu(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& rstd,
                                  const Tensor& dx, const Tensor& dweight) {
  int64_t D = x.size(-1), rows = x.numel() / D;
  cpu::dispatch_float(x.dtype(), "rms_norm_backward", [&](auto tx) {
    using T = decltype(tx);
    auto w = load_param<acc_t<T>>(weight);
    cpu::dispatch_float(dy.dtype(), "rms_norm_backward", [&](auto ty) {
      using Y = decltype(ty);
      rms_norm_backward_typed<T, Y>(dy.data<Y>(), x.data<T>(), w, rstd.data<acc_t<T>>(), dx.data<T>(), dweight,
                                    rows, D);
    });
  });
}

static kernels::Registrar reg_rms_fwd("rms_norm_forward", DeviceType::CPU, &rms_norm_forward_cpu);
static kernels::Registrar reg_rms_bwd("rms_norm_backward", DeviceType::CPU, &rms_norm_backward_cpu);
static kernels::Registrar reg_add_rms_fwd("add_rms_norm_forward", DeviceType::CPU, &add_rms_norm_forward_cpu);

static void check_param(const Tensor& p, const Shape& want, const Tensor& x, const char* op, const char* what) {
  if (!p.defined()) return;
  VT_CHECK(p.shape() == want, op, ": ", what, " ", p.shape().str(), " does not match ", want.str(), " for input ",
           x.shape().str());
  VT_CHECK(is_floating(p.dtype()), op, ": ", what, " must be floating-point, got ", dtype_name(p.dtype()));
  VT_CHECK(p.device() == x.device(), op, ": ", what, " on ", p.device().str(), ", input on ", x.device().str());
}

// The residual operand of add_rms_norm / add_layer_norm: x's shape, dtype and device.
static void check_residual(const Tensor& x, const Tensor& residual, const char* op) {
  VT_CHECK(residual.defined() && residual.shape() == x.shape(), op, ": residual ",
           residual.defined() ? residual.shape().str() : std::string("(undefined)"), " does not match input ",
           x.shape().str());
  VT_CHECK(residual.dtype() == x.dtype(), op, ": residual is ", dtype_name(residual.dtype()), ", input is ",
           dtype_name(x.dtype()), " (cast one first)");
  VT_CHECK(residual.device() == x.device(), op, ": residual on ", residual.device().str(), ", input on ",
           x.device().str());
}

// sum = x + residual as an autograd node (the gradient passes to both unchanged).
static void record_residual_sum(Tensor& sum, const Tensor& x_in, const Tensor& residual) {
  autograd::record("add", sum, {x_in, residual}, [](const Tensor& g) { return grads{g, g}; });
}

// Attaches rms_norm's backward to y = rms_norm(x_in, weight) given what the forward saved: x (x_in
// contiguous and detached), w (weight, likewise) and rstd.
static void record_rms_norm(Tensor& y, const Tensor& x_in, const Tensor& weight, const Tensor& x, const Tensor& w,
                            const Tensor& rstd) {
  bool want_dw = weight.defined() && weight.requires_grad();
  DType yt = y.dtype();
  autograd::record("rms_norm", y, {x_in, weight}, [x, w, rstd, want_dw, yt](const Tensor& g) {
    Tensor dy = cast(g, yt).contiguous();
    Tensor dx = empty(x.shape(), {x.dtype(), x.device()});
    Tensor dw = want_dw ? empty(w.shape(), {w.dtype(), w.device()}) : Tensor();
    static const kernels::Kernel<RmsNormBackwardFn> k_rms_norm_backward("rms_norm_backward");
    k_rms_norm_backward(x.device())(dy, x, w, rstd, dx, dw);
    return grads{dx, dw};
  });
}

static void check_rms_input(const Tensor& x, const char* op) {
  VT_CHECK(x.dim() >= 1, op, ": input must have at least 1 dim, got a 0-d tensor");
  VT_CHECK(is_floating(x.dtype()), op, ": needs a floating-point input, got ", dtype_name(x.dtype()));
}

Tensor rms_norm(const Tensor& x_in, const Tensor& weight, double eps) {
  check_rms_input(x_in, "rms_norm");
  int64_t D = x_in.size(-1), rows = D ? x_in.numel() / D : 0;
  check_param(weight, Shape{D}, x_in, "rms_norm", "weight");
  Tensor x = x_in.contiguous().detach(), w = weight.defined() ? weight.contiguous().detach() : Tensor();
  DType yt = weight.defined() ? result_type(x_in, weight) : x.dtype();
  Tensor y = empty(x.shape(), {yt, x.device()});
  Tensor rstd = empty({rows}, {stats_dtype(x.dtype()), x.device()});
  if (x.numel() == 0) return y;
  static const kernels::Kernel<RmsNormForwardFn> k_rms_norm_forward("rms_norm_forward");
  k_rms_norm_forward(x.device())(x, w, eps, y, rstd);
  record_rms_norm(y, x_in, weight, x, w, rstd);
  return y;
}

AddNorm add_rms_norm(const Tensor& x_in, const Tensor& residual, const Tensor& weight, double eps) {
  check_rms_input(x_in, "add_rms_norm");
  check_residual(x_in, residual, "add_rms_norm");
  int64_t D = x_in.size(-1), rows = D ? x_in.numel() / D : 0;
  check_param(weight, Shape{D}, x_in, "add_rms_norm", "weight");
  Tensor x = x_in.contiguous().detach(), r = residual.contiguous().detach();
  Tensor w = weight.defined() ? weight.contiguous().detach() : Tensor();
  DType yt = weight.defined() ? result_type(x_in, weight) : x.dtype();
  Tensor sum = empty(x.shape(), {x.dtype(), x.device()});
  Tensor y = empty(x.shape(), {yt, x.device()});
  Tensor rstd = empty({rows}, {stats_dtype(x.dtype()), x.device()});
  static const kernels::Kernel<AddRmsNormForwardFn> k_add_rms_norm_forward("add_rms_norm_forward");
  if (x.numel() > 0)
    k_add_rms_norm_forward(x.device())(x, r, w, eps, sum, y, rstd);
  record_residual_sum(sum, x_in, residual);
  if (x.numel() > 0) record_rms_norm(y, sum, weight, sum.detach(), w, rstd);
  return {y, sum};
}

// ==== LayerNorm ===================================================================================
// x, y: (rows, D); mean, rstd: (rows).  y = (x - mean) * rstd * w + b. With `res`, x + res is first
// rounded into sum (rows, D), and that is what is normalised (add_layer_norm).
template <class T>
static void layer_norm_forward_typed(const T* x, const T* res, T* sum, const std::vector<acc_t<T>>& w,
                                     const std::vector<acc_t<T>>& b, double eps, T* y, acc_t<T>* mean,
                                     acc_t<T>* rstd, int64_t rows, int64_t D) {
  using A = acc_t<T>;
  const A* wp = w.empty() ? nullptr : w.data();
  const A* bp = b.empty() ? nullptr : b.data();
  for_row_chunks(rows, rows * D, [&](int64_t, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = norm_input_row(x, res, sum, r, D);
      T* yr = y + r * D;
      A s = 0, ss = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t j = 0; j < D; ++j) s += ld(xr[j]);
      A m = s / A(D);
#pragma omp simd reduction(+ : ss)
      for (int64_t j = 0; j < D; ++j) ss += (ld(xr[j]) - m) * (ld(xr[j]) - m);
      A rs = A(1) / std::sqrt(ss / A(D) + A(eps));
      mean[r] = m;
      rstd[r] = rs;
#pragma omp simd
      for (int64_t j = 0; j < D; ++j)
        yr[j] = st<T>((ld(xr[j]) - m) * rs * (wp ? wp[j] : A(1)) + (bp ? bp[j] : A(0)));
    }
  });
}

// xhat = (x - mean) * rstd;  g = dy * w
// dx = rstd * (g - mean(g) - xhat * mean(g * xhat));  dw = sum_rows dy * xhat;  db = sum_rows dy
template <class T>
static void layer_norm_backward_typed(const T* dy, const T* x, const std::vector<acc_t<T>>& w, const acc_t<T>* mean,
                                      const acc_t<T>* rstd, T* dx, const Tensor& dweight, const Tensor& dbias,
                                      int64_t rows, int64_t D) {
  using A = acc_t<T>;
  const A* wp = w.empty() ? nullptr : w.data();
  bool want_p = dweight.defined() || dbias.defined();
  int64_t chunks = std::min(rows, kChunks);
  std::vector<A> pw(want_p ? chunks * D : 0, A(0)), pb(want_p ? chunks * D : 0, A(0));
  for_row_chunks(rows, rows * D, [&](int64_t c, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T *xr = x + r * D, *gr = dy + r * D;
      A m = mean[r], rs = rstd[r], sg = 0, sgx = 0;
      if (want_p) {
        A *cw = pw.data() + c * D, *cb = pb.data() + c * D;
#pragma omp simd reduction(+ : sg, sgx)
        for (int64_t j = 0; j < D; ++j) {
          A gy = ld(gr[j]), xh = (ld(xr[j]) - m) * rs, g = gy * (wp ? wp[j] : A(1));
          sg += g;
          sgx += g * xh;
          cw[j] += gy * xh;
          cb[j] += gy;
        }
      } else {
#pragma omp simd reduction(+ : sg, sgx)
        for (int64_t j = 0; j < D; ++j) {
          A g = ld(gr[j]) * (wp ? wp[j] : A(1));
          sg += g;
          sgx += g * (ld(xr[j]) - m) * rs;
        }
      }
      sg /= A(D);
      sgx /= A(D);
      T* dxr = dx + r * D;
#pragma omp simd
      for (int64_t j = 0; j < D; ++j) {
        A xh = (ld(xr[j]) - m) * rs;
        dxr[j] = st<T>(rs * (ld(gr[j]) * (wp ? wp[j] : A(1)) - sg - xh * sgx));
      }
    }
  });
  store_param_grad(pw, chunks, D, dweight);
  store_param_grad(pb, chunks, D, dbias);
}

// layer_norm's forward, or add_layer_norm's when `residual` is defined (then `sum` receives x + residual).
static void ln_forward_cpu(const Tensor& x, const Tensor& residual, const Tensor& sum, const Tensor& weight,
                           const Tensor& bias, double eps, const Tensor& y, const Tensor& mean, const Tensor& rstd) {
  int64_t rows = mean.numel(), D = x.numel() / rows;
  cpu::dispatch_float(x.dtype(), "layer_norm", [&](auto tx) {
    using T = decltype(tx);
    using A = acc_t<T>;
    const T* rp = residual.defined() ? residual.data<T>() : nullptr;
    T* sp = residual.defined() ? sum.data<T>() : nullptr;
    layer_norm_forward_typed<T>(x.data<T>(), rp, sp, load_param<A>(weight), load_param<A>(bias), eps, y.data<T>(),
                                mean.data<A>(), rstd.data<A>(), rows, D);
  });
}

static void layer_norm_forward_cpu(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                                   const Tensor& y, const Tensor& mean, const Tensor& rstd) {
  ln_forward_cpu(x, Tensor(), Tensor(), weight, bias, eps, y, mean, rstd);
}

static void add_layer_norm_forward_cpu(const Tensor& x, const Tensor& residual, const Tensor& weight,
                                       const Tensor& bias, double eps, const Tensor& sum, const Tensor& y,
                                       const Tensor& mean, const Tensor& rstd) {
  ln_forward_cpu(x, residual, sum, weight, bias, eps, y, mean, rstd);
}

static void layer_norm_backward_cpu(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& mean,
                                    const Tensor& rstd, const Tensor& dx, const Tensor& dweight, const Tensor& dbias) {
  int64_t rows = mean.numel(), D = x.numel() / rows;
  cpu::dispatch_float(x.dtype(), "layer_norm_backward", [&](auto tx) {
    using T = decltype(tx);
    using A = acc_t<T>;
    layer_norm_backward_typed<T>(dy.data<T>(), x.data<T>(), load_param<A>(weight), mean.data<A>(), rstd.data<A>(),
                                 dx.data<T>(), dweight, dbias, rows, D);
  });
}

static kernels::Registrar reg_ln_fwd("layer_norm_forward", DeviceType::CPU, &layer_norm_forward_cpu);
static kernels::Registrar reg_ln_bwd("layer_norm_backward", DeviceType::CPU, &layer_norm_backward_cpu);
static kernels::Registrar reg_add_ln_fwd("add_layer_norm_forward", DeviceType::CPU, &add_layer_norm_forward_cpu);

// Rows of a layer_norm over normalized_shape, after checking x_in and the parameters.
static int64_t layer_norm_rows(const Tensor& x_in, const Shape& normalized_shape, const Tensor& weight,
                               const Tensor& bias, const char* op) {
  VT_CHECK(is_floating(x_in.dtype()), op, ": needs a floating-point input, got ", dtype_name(x_in.dtype()));
  int k = normalized_shape.size();
  bool ends_with = k >= 1 && x_in.dim() >= k;
  for (int i = 0; ends_with && i < k; ++i) ends_with = x_in.size(x_in.dim() - k + i) == normalized_shape[i];
  VT_CHECK(ends_with, op, ": input ", x_in.shape().str(), " does not end with normalized_shape ",
           normalized_shape.str());
  check_param(weight, normalized_shape, x_in, op, "weight");
  check_param(bias, normalized_shape, x_in, op, "bias");
  int64_t D = normalized_shape.numel();
  return D ? x_in.numel() / D : 0;
}

// Attaches layer_norm's backward to y = layer_norm(x_in, ..., weight, bias) given what the forward
// saved: x (x_in contiguous and detached), w, b (likewise), mean and rstd.
static void record_layer_norm(Tensor& y, const Tensor& x_in, const Tensor& weight, const Tensor& bias,
                              const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& mean,
                              const Tensor& rstd) {
  bool want_dw = weight.defined() && weight.requires_grad(), want_db = bias.defined() && bias.requires_grad();
  autograd::record("layer_norm", y, {x_in, weight, bias}, [x, w, b, mean, rstd, want_dw, want_db](const Tensor& g) {
    Tensor dy = cast(g, x.dtype()).contiguous();
    Tensor dx = empty(x.shape(), {x.dtype(), x.device()});
    Tensor dw = want_dw ? empty(w.shape(), {w.dtype(), w.device()}) : Tensor();
    Tensor db = want_db ? empty(b.shape(), {b.dtype(), b.device()}) : Tensor();
    static const kernels::Kernel<LayerNormBackwardFn> k_layer_norm_backward("layer_norm_backward");
    k_layer_norm_backward(x.device())(dy, x, w, mean, rstd, dx, dw, db);
    return grads{dx, dw, db};
  });
}

Tensor layer_norm(const Tensor& x_in, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias,
                  double eps) {
  int64_t rows = layer_norm_rows(x_in, normalized_shape, weight, bias, "layer_norm");
  Tensor x = x_in.contiguous().detach();
  Tensor w = weight.defined() ? weight.contiguous().detach() : Tensor();
  Tensor b = bias.defined() ? bias.contiguous().detach() : Tensor();
  Tensor y = empty(x.shape(), {x.dtype(), x.device()});
  Tensor mean = empty({rows}, {stats_dtype(x.dtype()), x.device()}), rstd = empty_like(mean);
  if (x.numel() == 0) return y;
  static const kernels::Kernel<LayerNormForwardFn> k_layer_norm_forward("layer_norm_forward");
  k_layer_norm_forward(x.device())(x, w, b, eps, y, mean, rstd);
  record_layer_norm(y, x_in, weight, bias, x, w, b, mean, rstd);
  return y;
}

AddNorm add_layer_norm(const Tensor& x_in, const Tensor& residual, const Shape& normalized_shape,
                       const Tensor& weight, const Tensor& bias, double eps) {
  int64_t rows = layer_norm_rows(x_in, normalized_shape, weight, bias, "add_layer_norm");
  check_residual(x_in, residual, "add_layer_norm");
  Tensor x = x_in.contiguous().detach(), r = residual.contiguous().detach();
  Tensor w = weight.defined() ? weight.contiguous().detach() : Tensor();
  Tensor b = bias.defined() ? bias.contiguous().detach() : Tensor();
  Tensor sum = empty(x.shape(), {x.dtype(), x.device()}), y = empty(x.shape(), {x.dtype(), x.device()});
  Tensor mean = empty({rows}, {stats_dtype(x.dtype()), x.device()}), rstd = empty_like(mean);
  static const kernels::Kernel<AddLayerNormForwardFn> k_add_layer_norm_forward("add_layer_norm_forward");
  if (x.numel() > 0)
    k_add_layer_norm_forward(x.device())(x, r, w, b, eps, sum, y, mean, rstd);
  record_residual_sum(sum, x_in, residual);
  if (x.numel() > 0) record_layer_norm(y, sum, weight, bias, sum.detach(), w, b, mean, rstd);
  return {y, sum};
}

// ==== GroupNorm ===================================================================================
// x, y: (N, C, HW); group u = (n, g) is the contiguous block x[n, g*Cg:(g+1)*Cg, :] of M = Cg*HW
// values; mean, rstd: (N, G).  y = (x - mean) * rstd * w[c] + b[c]
template <class T>
static void group_norm_forward_typed(const T* x, const std::vector<acc_t<T>>& w, const std::vector<acc_t<T>>& b,
                                     double eps, T* y, acc_t<T>* mean, acc_t<T>* rstd, int64_t N, int64_t C,
                                     int64_t HW, int64_t G) {
  using A = acc_t<T>;
  int64_t Cg = C / G, M = Cg * HW;
  int threads = N * C * HW >= cpu::kParallelGrain ? omp_get_max_threads() : 1;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t u = 0; u < N * G; ++u) {
    const T* xb = x + u * M;
    T* yb = y + u * M;
    A s = 0, ss = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < M; ++i) s += ld(xb[i]);
    A m = s / A(M);
#pragma omp simd reduction(+ : ss)
    for (int64_t i = 0; i < M; ++i) ss += (ld(xb[i]) - m) * (ld(xb[i]) - m);
    A rs = A(1) / std::sqrt(ss / A(M) + A(eps));
    mean[u] = m;
    rstd[u] = rs;
    for (int64_t cl = 0; cl < Cg; ++cl) {
      int64_t c = u % G * Cg + cl;
      A scale = rs * (w.empty() ? A(1) : w[c]), shift = (b.empty() ? A(0) : b[c]) - m * scale;
#pragma omp simd
      for (int64_t i = cl * HW; i < (cl + 1) * HW; ++i) yb[i] = st<T>(ld(xb[i]) * scale + shift);
    }
  }
}

// Per group: g = dy * w[c]; dx = rstd * (g - mean(g) - xhat * mean(g * xhat)).
// dw[c] = sum_{n, hw} dy * xhat, db[c] = sum_{n, hw} dy: per-(n, c) partials, then summed over n.
template <class T>
static void group_norm_backward_typed(const T* dy, const T* x, const std::vector<acc_t<T>>& w, const acc_t<T>* mean,
                                      const acc_t<T>* rstd, T* dx, const Tensor& dweight, const Tensor& dbias,
                                      int64_t N, int64_t C, int64_t HW, int64_t G) {
  using A = acc_t<T>;
  int64_t Cg = C / G, M = Cg * HW;
  std::vector<A> pw(N * C), pb(N * C);  // (N, C) partials
  int threads = N * C * HW >= cpu::kParallelGrain ? omp_get_max_threads() : 1;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t u = 0; u < N * G; ++u) {
    const T *xb = x + u * M, *gb = dy + u * M;
    T* dxb = dx + u * M;
    A m = mean[u], rs = rstd[u], sg = 0, sgx = 0;
    int64_t c0 = u % G * Cg, n = u / G;
    for (int64_t cl = 0; cl < Cg; ++cl) {
      A wc = w.empty() ? A(1) : w[c0 + cl], sw = 0, sb = 0;
#pragma omp simd reduction(+ : sw, sb)
      for (int64_t i = cl * HW; i < (cl + 1) * HW; ++i) {
        A gy = ld(gb[i]), xh = (ld(xb[i]) - m) * rs;
        sw += gy * xh;
        sb += gy;
      }
      pw[n * C + c0 + cl] = sw;
      pb[n * C + c0 + cl] = sb;
      sg += sb * wc;
      sgx += sw * wc;
    }
    sg /= A(M);
    sgx /= A(M);
    for (int64_t cl = 0; cl < Cg; ++cl) {
      A wc = w.empty() ? A(1) : w[c0 + cl];
#pragma omp simd
      for (int64_t i = cl * HW; i < (cl + 1) * HW; ++i) {
        A xh = (ld(xb[i]) - m) * rs;
        dxb[i] = st<T>(rs * (ld(gb[i]) * wc - sg - xh * sgx));
      }
    }
  }
  store_param_grad(pw, N, C, dweight);
  store_param_grad(pb, N, C, dbias);
}

static void group_norm_forward_cpu(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t groups,
                                   double eps, const Tensor& y, const Tensor& mean, const Tensor& rstd) {
  int64_t N = x.size(0), C = x.size(1), HW = x.size(2);
  cpu::dispatch_float(x.dtype(), "group_norm", [&](auto tx) {
    using T = decltype(tx);
    using A = acc_t<T>;
    group_norm_forward_typed<T>(x.data<T>(), load_param<A>(weight), load_param<A>(bias), eps, y.data<T>(),
                                mean.data<A>(), rstd.data<A>(), N, C, HW, groups);
  });
}

static void group_norm_backward_cpu(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& mean,
                                    const Tensor& rstd, int64_t groups, const Tensor& dx, const Tensor& dweight,
                                    const Tensor& dbias) {
  int64_t N = x.size(0), C = x.size(1), HW = x.size(2);
  cpu::dispatch_float(x.dtype(), "group_norm_backward", [&](auto tx) {
    using T = decltype(tx);
    using A = acc_t<T>;
    group_norm_backward_typed<T>(dy.data<T>(), x.data<T>(), load_param<A>(weight), mean.data<A>(), rstd.data<A>(),
                                 dx.data<T>(), dweight, dbias, N, C, HW, groups);
  });
}

static kernels::Registrar reg_gn_fwd("group_norm_forward", DeviceType::CPU, &group_norm_forward_cpu);
static kernels::Registrar reg_gn_bwd("group_norm_backward", DeviceType::CPU, &group_norm_backward_cpu);

Tensor group_norm(const Tensor& x_in, int64_t num_groups, const Tensor& weight, const Tensor& bias, double eps) {
  VT_CHECK(x_in.dim() >= 2, "group_norm: input must be (N, C, *), got ", x_in.shape().str());
  VT_CHECK(is_floating(x_in.dtype()), "group_norm: needs a floating-point input, got ", dtype_name(x_in.dtype()));
  int64_t N = x_in.size(0), C = x_in.size(1), HW = C ? x_in.numel() / std::max<int64_t>(N * C, 1) : 0;
  VT_CHECK(num_groups > 0 && C % num_groups == 0, "group_norm: num_groups ", num_groups, " does not divide the ", C,
           " channels of input ", x_in.shape().str());
  check_param(weight, Shape{C}, x_in, "group_norm", "weight");
  check_param(bias, Shape{C}, x_in, "group_norm", "bias");
  Tensor x = x_in.contiguous().detach();
  Tensor w = weight.defined() ? weight.contiguous().detach() : Tensor();
  Tensor b = bias.defined() ? bias.contiguous().detach() : Tensor();
  Tensor y = empty(x.shape(), {x.dtype(), x.device()});
  Tensor mean = empty({N, num_groups}, {stats_dtype(x.dtype()), x.device()}), rstd = empty_like(mean);
  if (x.numel() == 0) return y;
  Tensor x3 = x.view({N, C, HW}), y3 = y.view({N, C, HW});
  static const kernels::Kernel<GroupNormForwardFn> k_group_norm_forward("group_norm_forward");
  k_group_norm_forward(x.device())(x3, w, b, num_groups, eps, y3, mean, rstd);
  bool want_dw = weight.defined() && weight.requires_grad(), want_db = bias.defined() && bias.requires_grad();
  autograd::record("group_norm", y, {x_in, weight, bias},
                   [x3, w, b, mean, rstd, num_groups, want_dw, want_db, shape = x.shape()](const Tensor& g) {
                     Tensor dy = cast(g, x3.dtype()).contiguous().view(x3.shape());
                     Tensor dx = empty(x3.shape(), {x3.dtype(), x3.device()});
                     Tensor dw = want_dw ? empty(w.shape(), {w.dtype(), w.device()}) : Tensor();
                     Tensor db = want_db ? empty(b.shape(), {b.dtype(), b.device()}) : Tensor();
                     static const kernels::Kernel<GroupNormBackwardFn> k_group_norm_backward("group_norm_backward");
                     k_group_norm_backward(x3.device())(dy, x3, w, mean, rstd, num_groups, dx, dw, db);
                     return grads{dx.view(shape), dw, db};
                   });
  return y;
}

}  // namespace vt::nn
