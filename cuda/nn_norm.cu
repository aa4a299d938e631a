// nn_norm.cu: LayerNorm forward and backward (and add_layer_norm's forward: the residual add fused in
// front) on CUDA, registered under the CPU kernels' names
// (src/nn_norm.cpp holds the ops, the math and the CPU versions), and the registration of all the
// norms: RMSNorm is in nn_rms_norm.cu, GroupNorm in nn_group_norm.cu, shared helpers in norm.cuh.
//
// Rows (LayerNorm): one warp per row, 8 rows per 256-thread block; 128-bit loads when the row
// length and the pointers allow, else one element per lane (still coalesced). The row is read
// twice for the statistics (mean, then squared deviations, as on the CPU, for accuracy; the second
// read hits L1/L2) and once more to write.
// Precision: values are held in f32 (f64 for f64 input) and rounded once into the output; weight and
// bias are first cast to that precision (the CPU's load_param); stats (mean, rstd) are saved in it.
// Backward: dx per row as in the forward layout (dx overwrites). Parameter gradients (dweight,
// dbias) are written (=), never accumulated with atomics: column_grads (norm.cuh) sums fixed chunks
// of rows and then the chunks in order, so the result is bitwise the same run to run (the chunking
// depends only on the row count).
#include "norm.cuh"
#include "vt/nn/norm.h"

namespace vt::cuda {
namespace {

using namespace norm;

// ==== LayerNorm ====================================================================================
// x, y: (rows, D); w, b: (D) in A or null; mean, rstd: (rows).  y = (x - mean) * rstd * w + b
// kAdd (add_layer_norm): the row is sum = round_to_T(x + res), written to `sum` in the first pass and
// read back from there in the others, so they run the plain kernel's arithmetic on the same values.
template <class T, int V, bool kAdd>
__global__ void __launch_bounds__(kRowThreads) layer_norm_forward_kernel(
    const T* __restrict__ x, const T* __restrict__ res, T* __restrict__ sum, const acc<T>* __restrict__ w,
    const acc<T>* __restrict__ b, double eps, T* __restrict__ y, acc<T>* __restrict__ mean, acc<T>* __restrict__ rstd,
    int64_t rows, int64_t D) {
  using A = acc<T>;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (r >= rows) return;
  const int lane = threadIdx.x & 31;
  const T* xr = x + r * D;
  const T* rr = kAdd ? res + r * D : nullptr;
  T* sr = kAdd ? sum + r * D : nullptr;
  A s = 0;
  for (int64_t j = lane * V; j < D; j += 32 * V) {
    A v[V];
    load_row_v<kAdd, V>(xr + j, rr + j, sr + j, v);
#pragma unroll
    for (int k = 0; k < V; ++k) s += v[k];
  }
  const A m = warp_sum(s) / A(D);
  const T* row = kAdd ? sr : xr;  // the later passes read the row this lane wrote (L1/L2)
  A ss = 0;
  for (int64_t j = lane * V; j < D; j += 32 * V) {
    A v[V];
    load_v<V>(row + j, v);
#pragma unroll
    for (int k = 0; k < V; ++k) ss += (v[k] - m) * (v[k] - m);
  }
  const A rs = A(1) / m_sqrt(warp_sum(ss) / A(D) + A(eps));
  if (lane == 0) mean[r] = m, rstd[r] = rs;
  for (int64_t j = lane * V; j < D; j += 32 * V) {
    A v[V];
    load_v<V>(row + j, v);
#pragma unroll
    for (int k = 0; k < V; ++k) v[k] = (v[k] - m) * rs * (w ? w[j + k] : A(1)) + (b ? b[j + k] : A(0));
    store_v<V>(y + r * D + j, v);
  }
}

// xhat = (x - mean) * rstd; g = dy * w;  dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
template <class T, int V>
__global__ void __launch_bounds__(kRowThreads) layer_norm_backward_kernel(
    const T* __restrict__ dy, const T* __restrict__ x, const acc<T>* __restrict__ w, const acc<T>* __restrict__ mean,
    const acc<T>* __restrict__ rstd, T* __restrict__ dx, int64_t rows, int64_t D) {
  using A = acc<T>;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (r >= rows) return;
  const int lane = threadIdx.x & 31;
  const T *xr = x + r * D, *gr = dy + r * D;
  const A m = mean[r], rs = rstd[r];
  A sg = 0, sgx = 0;
  for (int64_t j = lane * V; j < D; j += 32 * V) {
    A xv[V], gv[V];
    load_v<V>(xr + j, xv);
    load_v<V>(gr + j, gv);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const A g = gv[k] * (w ? w[j + k] : A(1));
      sg += g;
      sgx += g * ((xv[k] - m) * rs);
    }
  }
  sg = warp_sum(sg) / A(D);
  sgx = warp_sum(sgx) / A(D);
  for (int64_t j = lane * V; j < D; j += 32 * V) {
    A xv[V], gv[V];
    load_v<V>(xr + j, xv);
    load_v<V>(gr + j, gv);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const A xh = (xv[k] - m) * rs;
      xv[k] = rs * (gv[k] * (w ? w[j + k] : A(1)) - sg - xh * sgx);
    }
    store_v<V>(dx + r * D + j, xv);
  }
}

// dweight[j] += dy * xhat, dbias[j] += dy
template <class T>
struct LayerNormDparams {
  const T *dy, *x;
  const acc<T>*mean, *rstd;
  int64_t D;
  __device__ __forceinline__ void operator()(int64_t r, int64_t j, acc<T>& s0, acc<T>& s1) const {
    const acc<T> gy = load(dy + r * D + j), xh = (load(x + r * D + j) - mean[r]) * rstd[r];
    s0 += gy * xh;
    s1 += gy;
  }
};

// layer_norm forward, or with kAdd (res, sum given) add_layer_norm's.
template <bool kAdd>
void layer_norm_forward_impl(const Tensor& x, const Tensor& res, const Tensor& sum, const Tensor& weight,
                             const Tensor& bias, double eps, const Tensor& y, const Tensor& mean, const Tensor& rstd) {
  check_cuda(x, kAdd ? "add_layer_norm" : "layer_norm");
  DeviceGuard g(x.device());
  DeviceContext& ctx = context(x.device().index);
  const int64_t rows = mean.numel(), D = x.numel() / rows;
  const DType st = stats_dtype(x.dtype());
  const Tensor w = param_as(weight, st), b = param_as(bias, st);
  visit_float(x.dtype(), "layer_norm", [&](auto tx) {
    using T = typename decltype(tx)::type;
    using A = acc<T>;
    with_vec(row_vec(D, sizeof(T), {&x, &y, &res, &sum}), [&](auto v) {
      layer_norm_forward_kernel<T, decltype(v)::value, kAdd><<<blocks_for(rows, kRowsPerBlock), kRowThreads, 0,
                                                               ctx.stream()>>>(
          static_cast<const T*>(x.raw_data()), kAdd ? static_cast<const T*>(res.raw_data()) : nullptr,
          kAdd ? static_cast<T*>(sum.raw_data()) : nullptr, ptr_or_null<A>(w), ptr_or_null<A>(b), eps,
          static_cast<T*>(y.raw_data()), static_cast<A*>(mean.raw_data()), static_cast<A*>(rstd.raw_data()), rows, D);
      VT_CUDA_CHECK_LAUNCH();
    });
  });
}

void layer_norm_forward_cuda(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, const Tensor& y,
                             const Tensor& mean, const Tensor& rstd) {
  layer_norm_forward_impl<false>(x, Tensor(), Tensor(), weight, bias, eps, y, mean, rstd);
}

void add_layer_norm_forward_cuda(const Tensor& x, const Tensor& residual, const Tensor& weight, const Tensor& bias,
                                 double eps, const Tensor& sum, const Tensor& y, const Tensor& mean,
                                 const Tensor& rstd) {
  layer_norm_forward_impl<true>(x, residual, sum, weight, bias, eps, y, mean, rstd);
}

void layer_norm_backward_cuda(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& mean,
                              const Tensor& rstd, const Tensor& dx, const Tensor& dweight, const Tensor& dbias) {
  check_cuda(x, "layer_norm_backward");
  DeviceGuard g(x.device());
  DeviceContext& ctx = context(x.device().index);
  const int64_t rows = mean.numel(), D = x.numel() / rows;
  const Tensor w = param_as(weight, stats_dtype(x.dtype()));
  visit_float(x.dtype(), "layer_norm_backward", [&](auto tx) {
    using T = typename decltype(tx)::type;
    using A = acc<T>;
    const T *gp = static_cast<const T*>(dy.raw_data()), *xp = static_cast<const T*>(x.raw_data());
    const A *mp = static_cast<const A*>(mean.raw_data()), *rp = static_cast<const A*>(rstd.raw_data());
    with_vec(row_vec(D, sizeof(T), {&x, &dy, &dx}), [&](auto v) {
      layer_norm_backward_kernel<T, decltype(v)::value><<<blocks_for(rows, kRowsPerBlock), kRowThreads, 0,
                                                          ctx.stream()>>>(gp, xp, ptr_or_null<A>(w), mp, rp,
                                                                        static_cast<T*>(dx.raw_data()), rows, D);
      VT_CUDA_CHECK_LAUNCH();
    });
    column_grads<A>(LayerNormDparams<T>{gp, xp, mp, rp, D}, rows, D, dweight, dbias, x.device());
  });
}

}  // namespace

void register_nn_norm_kernels() {
  using namespace vt::nn;
  register_rms_norm_kernels();
  register_group_norm_kernels();
  kernels::register_kernel("layer_norm_forward", DeviceType::CUDA,
                           static_cast<LayerNormForwardFn*>(&layer_norm_forward_cuda));
  kernels::register_kernel("add_layer_norm_forward", DeviceType::CUDA,
                           static_cast<AddLayerNormForwardFn*>(&add_layer_norm_forward_cuda));
  kernels::register_kernel("layer_norm_backward", DeviceType::CUDA,
                           static_cast<LayerNormBackwardFn*>(&layer_norm_backward_cuda));
}

}  // namespace vt::cuda
