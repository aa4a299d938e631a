// nn_norm.cu: RMSNorm, LayerNorm and GroupNorm forward and backward on CUDA, registered under the
// CPU kernels' names (src/nn_norm.cpp holds the ops, the math and the CPU versions).
//
// Rows (RMS/LayerNorm): one warp per row, 8 rows per 256-thread block; 128-bit loads when the row
// length and the pointers allow, else one element per lane (still coalesced). The row is read once
// for the statistics (twice for LayerNorm: mean, then squared deviations, as on the CPU, for
// accuracy; the second read hits L1/L2) and once more to write. GroupNorm: one block per
// (sample, group), whose Cg * HW values are one contiguous run.
// Precision: values are held in f32 (f64 for f64 input) and rounded once into the output; weight and
// bias are first cast to that precision (the CPU's load_param); stats (mean, rstd) are saved in it.
// RMSNorm keeps Qwen2's rule: the normalised value is rounded to x's dtype before the weight multiply.
// Backward: dx per row as in the forward layout (dx overwrites). Parameter gradients (dweight,
// dbias) are written (=), never accumulated with atomics: a column kernel sums fixed chunks of rows
// into a (chunks, D) f32/f64 partial buffer, and a second kernel adds the chunks in order, so the
// result is bitwise the same run to run (the chunking depends only on the row count). GroupNorm's
// per-(n, c) partials come out of its row kernel and are summed over n the same way.
#include "math.cuh"
#include "nn_kernels.h"
#include "vt/nn/norm.h"

namespace vt::cuda {
namespace {

using nnk::block_sum;
using nnk::blocks_for;
using nnk::visit_float;
using nnk::warp_sum;

constexpr int kRowThreads = 256;           // 8 warps: 8 rows per block
constexpr int kRowsPerBlock = kRowThreads / 32;
constexpr int kGroupThreads = 256;         // GroupNorm: one block per (n, g)

template <class T>
using acc = compute_t<T>;  // f32 for f32/bf16/f16, f64 for f64

template <class T>
__device__ __forceinline__ acc<T> round_to(acc<T> v) {  // through T's storage and back
  return from_storage(to_storage<T>(v));
}

// V consecutive elements starting at p (p aligned to V elements) in compute precision, and back.
template <int V, class T>
__device__ __forceinline__ void load_v(const T* p, acc<T> (&out)[V]) {
  const Vec<T, V> v = *reinterpret_cast<const Vec<T, V>*>(p);
#pragma unroll
  for (int k = 0; k < V; ++k) out[k] = load(&v.v[k]);
}
template <int V, class T, class A>
__device__ __forceinline__ void store_v(T* p, const A (&in)[V]) {
  Vec<T, V> v;
#pragma unroll
  for (int k = 0; k < V; ++k) v.v[k] = to_storage<T>(static_cast<acc<T>>(in[k]));
  *reinterpret_cast<Vec<T, V>*>(p) = v;
}

// Elements per 16-byte access for rows of length D over these tensors, or 1 when D or a pointer
// does not allow it.
int row_vec(int64_t D, size_t widest, std::initializer_list<const Tensor*> ts) {
  const int V = static_cast<int>(16 / widest);
  if (D % V != 0) return 1;
  for (const Tensor* t : ts)
    if (t->defined() && !aligned16(t->raw_data())) return 1;
  return V;
}

template <class F>
void with_vec(int V, F&& f) {
  switch (V) {
    case 2: return f(std::integral_constant<int, 2>{});
    case 4: return f(std::integral_constant<int, 4>{});
    case 8: return f(std::integral_constant<int, 8>{});
    default: return f(std::integral_constant<int, 1>{});
  }
}

// A (D) parameter cast to the stats precision (undefined stays undefined).
Tensor param_as(const Tensor& p, DType t) { return p.defined() ? cast(p.detach(), t).contiguous() : Tensor(); }

DType stats_dtype(DType x) { return x == DType::F64 ? DType::F64 : DType::F32; }

template <class A>
const A* ptr_or_null(const Tensor& t) {
  return t.defined() ? static_cast<const A*>(t.raw_data()) : nullptr;
}

// Calls f(type_tag<Y>) for y's dtype, which is x's (T), f32 or f64 (result_type of x and weight).
template <class T, class F>
void visit_out(DType y, F&& f) {
  if (y == dtype_of<T>()) return f(type_tag<T>{});
  if (y == DType::F32) return f(type_tag<float>{});
  if (y == DType::F64) return f(type_tag<double>{});
  VT_FAIL("cuda norm: output dtype ", dtype_name(y), " is not the input's, f32 or f64");
}

// ---- parameter gradients: fixed row chunks, then an ordered sum -----------------------------------
constexpr int kColX = 32, kColY = 8;

// p0[chunk, j] (and p1) = sum over the chunk's rows r of f(r, j) (f adds into s0, s1).
template <class A, class F>
__global__ void __launch_bounds__(kColX* kColY) column_partials_kernel(F f, int64_t rows, int64_t D,
                                                                        int64_t rows_per_chunk, A* __restrict__ p0,
                                                                        A* __restrict__ p1) {
  __shared__ A sh0[kColY][kColX + 1], sh1[kColY][kColX + 1];
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kColX + threadIdx.x;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
  A s0 = 0, s1 = 0;
  if (j < D)
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kColY) f(r, j, s0, s1);
  sh0[threadIdx.y][threadIdx.x] = s0;
  sh1[threadIdx.y][threadIdx.x] = s1;
  __syncthreads();
  if (threadIdx.y == 0 && j < D) {
    for (int k = 1; k < kColY; ++k) s0 += sh0[k][threadIdx.x], s1 += sh1[k][threadIdx.x];
    p0[blockIdx.y * D + j] = s0;
    if (p1) p1[blockIdx.y * D + j] = s1;
  }
}

// out[j] = sum over chunks c (in order) of parts[c, j], rounded once into W.
template <class A, class W>
__global__ void sum_chunks_kernel(const A* __restrict__ parts, int64_t chunks, int64_t D, W* __restrict__ out) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= D) return;
  A s = 0;
  for (int64_t c = 0; c < chunks; ++c) s += parts[c * D + j];
  out[j] = to_storage<W>(static_cast<acc<W>>(s));
}

// Sums (chunks, D) partials in chunk order into p (any float dtype); no-op when p is undefined.
template <class A>
void store_param_grad(const Tensor& parts, int64_t chunks, int64_t D, const Tensor& p, DeviceContext& ctx) {
  if (!p.defined()) return;
  visit_float(p.dtype(), "norm parameter grad", [&](auto tag) {
    using W = typename decltype(tag)::type;
    sum_chunks_kernel<A, W><<<blocks_for(D, 256), 256, 0, ctx.stream>>>(static_cast<const A*>(parts.raw_data()),
                                                                         chunks, D, static_cast<W*>(p.raw_data()));
    VT_CUDA_CHECK_LAUNCH();
  });
}

// Runs f over (rows, D) into one or two (D) parameter gradients.
template <class A, class F>
void column_grads(F f, int64_t rows, int64_t D, const Tensor& g0, const Tensor& g1, Device dev) {
  if (!g0.defined() && !g1.defined()) return;
  DeviceContext& ctx = context(dev.index);
  const int64_t per = std::max<int64_t>(32, (rows + 255) / 256);  // at most 256 chunks, by row count only
  const int64_t chunks = (rows + per - 1) / per;
  const DType at = std::is_same_v<A, double> ? DType::F64 : DType::F32;
  Tensor p0 = empty({chunks, D}, {at, dev}), p1 = empty({chunks, D}, {at, dev});
  const dim3 grid(blocks_for(D, kColX), static_cast<unsigned>(chunks)), block(kColX, kColY);
  column_partials_kernel<A><<<grid, block, 0, ctx.stream>>>(f, rows, D, per, static_cast<A*>(p0.raw_data()),
                                                            static_cast<A*>(p1.raw_data()));
  VT_CUDA_CHECK_LAUNCH();
  store_param_grad<A>(p0, chunks, D, g0, ctx);
  store_param_grad<A>(p1, chunks, D, g1, ctx);
}

// ==== RMSNorm ======================================================================================
// x: (rows, D) of T; w: (D) in A or null; y: (rows, D) of Y; rstd: (rows) in A
// y = w * round_to_T(x * rstd),  rstd = 1 / sqrt(mean(x^2) + eps)
template <class T, class Y, int V>
__global__ void __launch_bounds__(kRowThreads) rms_norm_forward_kernel(const T* __restrict__ x,
                                                                        const acc<T>* __restrict__ w, double eps,
                                                                        Y* __restrict__ y, acc<T>* __restrict__ rstd,
                                                                        int64_t rows, int64_t D) {
  using A = acc<T>;
  using AY = acc<Y>;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (r >= rows) return;  // whole warps leave together
  const int lane = threadIdx.x & 31;
  const T* xr = x + r * D;
  Y* yr = y + r * D;
  A ss = 0;
  for (int64_t j = lane * V; j < D; j += 32 * V) {
    A v[V];
    load_v<V>(xr + j, v);
#pragma unroll
    for (int k = 0; k < V; ++k) ss += v[k] * v[k];
  }
  ss = warp_sum(ss);
  const A rs = A(1) / m_sqrt(ss / A(D) + A(eps));
  if (lane == 0) rstd[r] = rs;
  for (int64_t j = lane * V; j < D; j += 32 * V) {
    A v[V];
    AY o[V];
    load_v<V>(xr + j, v);
#pragma unroll
    for (int k = 0; k < V; ++k) o[k] = (w ? AY(w[j + k]) : AY(1)) * AY(round_to<T>(v[k] * rs));
    store_v<V>(yr + j, o);
  }
}

// dx = rstd * dy * w - x * rstd^3 * sum(dy * w * x) / D
template <class T, class Y, int V>
__global__ void __launch_bounds__(kRowThreads) rms_norm_backward_kernel(const Y* __restrict__ dy,
                                                                         const T* __restrict__ x,
                                                                         const acc<T>* __restrict__ w,
                                                                         const acc<T>* __restrict__ rstd,
                                                                         T* __restrict__ dx, int64_t rows, int64_t D) {
  using A = acc<T>;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (r >= rows) return;
  const int lane = threadIdx.x & 31;
  const T* xr = x + r * D;
  const Y* gr = dy + r * D;
  const A rs = rstd[r];
  A dot = 0;
  for (int64_t j = lane * V; j < D; j += 32 * V) {
    A xv[V];
    acc<Y> gv[V];
    load_v<V>(xr + j, xv);
    load_v<V>(gr + j, gv);
#pragma unroll
    for (int k = 0; k < V; ++k) dot += A(gv[k]) * (w ? w[j + k] : A(1)) * xv[k];
  }
  dot = warp_sum(dot);
  const A kx = dot * rs * rs * rs / A(D);
  for (int64_t j = lane * V; j < D; j += 32 * V) {
    A xv[V], o[V];
    acc<Y> gv[V];
    load_v<V>(xr + j, xv);
    load_v<V>(gr + j, gv);
#pragma unroll
    for (int k = 0; k < V; ++k) o[k] = rs * A(gv[k]) * (w ? w[j + k] : A(1)) - kx * xv[k];
    store_v<V>(dx + r * D + j, o);
  }
}

// dweight[j] += dy[r, j] * round_to_T(x[r, j] * rstd[r])
template <class T, class Y>
struct RmsDweight {
  const Y* dy;
  const T* x;
  const acc<T>* rstd;
  int64_t D;
  __device__ __forceinline__ void operator()(int64_t r, int64_t j, acc<T>& s0, acc<T>&) const {
    using A = acc<T>;
    s0 += A(load(dy + r * D + j)) * round_to<T>(load(x + r * D + j) * rstd[r]);
  }
};

void rms_norm_forward_cuda(const Tensor& x, const Tensor& weight, double eps, const Tensor& y, const Tensor& rstd) {
  check_cuda(x, "rms_norm");
  DeviceGuard g(x.device());
  DeviceContext& ctx = context(x.device().index);
  const int64_t D = x.size(-1), rows = x.numel() / D;
  const Tensor w = param_as(weight, stats_dtype(x.dtype()));
  visit_float(x.dtype(), "rms_norm", [&](auto tx) {
    using T = typename decltype(tx)::type;
    using A = acc<T>;
    visit_out<T>(y.dtype(), [&](auto ty) {
      using Y = typename decltype(ty)::type;
      with_vec(row_vec(D, std::max(sizeof(T), sizeof(Y)), {&x, &y}), [&](auto v) {
        rms_norm_forward_kernel<T, Y, decltype(v)::value><<<blocks_for(rows, kRowsPerBlock), kRowThreads, 0,
                                                            ctx.stream>>>(
            static_cast<const T*>(x.raw_data()), ptr_or_null<A>(w), eps, static_cast<Y*>(y.raw_data()),
            static_cast<A*>(rstd.raw_data()), rows, D);
        VT_CUDA_CHECK_LAUNCH();
      });
    });
  });
}

void rms_norm_backward_cuda(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& rstd,
                            const Tensor& dx, const Tensor& dweight) {
  check_cuda(x, "rms_norm_backward");
  DeviceGuard g(x.device());
  DeviceContext& ctx = context(x.device().index);
  const int64_t D = x.size(-1), rows = x.numel() / D;
  const Tensor w = param_as(weight, stats_dtype(x.dtype()));
  visit_float(x.dtype(), "rms_norm_backward", [&](auto tx) {
    using T = typename decltype(tx)::type;
    using A = acc<T>;
    visit_out<T>(dy.dtype(), [&](auto ty) {
      using Y = typename decltype(ty)::type;
      const Y* gp = static_cast<const Y*>(dy.raw_data());
      const T* xp = static_cast<const T*>(x.raw_data());
      const A* rp = static_cast<const A*>(rstd.raw_data());
      with_vec(row_vec(D, std::max(sizeof(T), sizeof(Y)), {&x, &dy, &dx}), [&](auto v) {
        rms_norm_backward_kernel<T, Y, decltype(v)::value>
            <<<blocks_for(rows, kRowsPerBlock), kRowThreads, 0, ctx.stream>>>(gp, xp, ptr_or_null<A>(w), rp,
                                                                             static_cast<T*>(dx.raw_data()), rows, D);
        VT_CUDA_CHECK_LAUNCH();
      });
      column_grads<A>(RmsDweight<T, Y>{gp, xp, rp, D}, rows, D, dweight, Tensor(), x.device());
    });
  });
}

// ==== LayerNorm ====================================================================================
// x, y: (rows, D); w, b: (D) in A or null; mean, rstd: (rows).  y = (x - mean) * rstd * w + b
template <class T, int V>
__global__ void __launch_bounds__(kRowThreads) layer_norm_forward_kernel(
    const T* __restrict__ x, const acc<T>* __restrict__ w, const acc<T>* __restrict__ b, double eps,
    T* __restrict__ y, acc<T>* __restrict__ mean, acc<T>* __restrict__ rstd, int64_t rows, int64_t D) {
  using A = acc<T>;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (r >= rows) return;
  const int lane = threadIdx.x & 31;
  const T* xr = x + r * D;
  A s = 0;
  for (int64_t j = lane * V; j < D; j += 32 * V) {
    A v[V];
    load_v<V>(xr + j, v);
#pragma unroll
    for (int k = 0; k < V; ++k) s += v[k];
  }
  const A m = warp_sum(s) / A(D);
  A ss = 0;
  for (int64_t j = lane * V; j < D; j += 32 * V) {
    A v[V];
    load_v<V>(xr + j, v);
#pragma unroll
    for (int k = 0; k < V; ++k) ss += (v[k] - m) * (v[k] - m);
  }
  const A rs = A(1) / m_sqrt(warp_sum(ss) / A(D) + A(eps));
  if (lane == 0) mean[r] = m, rstd[r] = rs;
  for (int64_t j = lane * V; j < D; j += 32 * V) {
    A v[V];
    load_v<V>(xr + j, v);
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

void layer_norm_forward_cuda(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, const Tensor& y,
                             const Tensor& mean, const Tensor& rstd) {
  check_cuda(x, "layer_norm");
  DeviceGuard g(x.device());
  DeviceContext& ctx = context(x.device().index);
  const int64_t rows = mean.numel(), D = x.numel() / rows;
  const DType st = stats_dtype(x.dtype());
  const Tensor w = param_as(weight, st), b = param_as(bias, st);
  visit_float(x.dtype(), "layer_norm", [&](auto tx) {
    using T = typename decltype(tx)::type;
    using A = acc<T>;
    with_vec(row_vec(D, sizeof(T), {&x, &y}), [&](auto v) {
      layer_norm_forward_kernel<T, decltype(v)::value><<<blocks_for(rows, kRowsPerBlock), kRowThreads, 0,
                                                         ctx.stream>>>(
          static_cast<const T*>(x.raw_data()), ptr_or_null<A>(w), ptr_or_null<A>(b), eps,
          static_cast<T*>(y.raw_data()), static_cast<A*>(mean.raw_data()), static_cast<A*>(rstd.raw_data()), rows, D);
      VT_CUDA_CHECK_LAUNCH();
    });
  });
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
                                                          ctx.stream>>>(gp, xp, ptr_or_null<A>(w), mp, rp,
                                                                        static_cast<T*>(dx.raw_data()), rows, D);
      VT_CUDA_CHECK_LAUNCH();
    });
    column_grads<A>(LayerNormDparams<T>{gp, xp, mp, rp, D}, rows, D, dweight, dbias, x.device());
  });
}

// ==== GroupNorm ====================================================================================
// x, y: (N, C, HW); block u = (n, g) owns the contiguous M = Cg * HW values of its group.
template <class T>
__global__ void __launch_bounds__(kGroupThreads) group_norm_forward_kernel(
    const T* __restrict__ x, const acc<T>* __restrict__ w, const acc<T>* __restrict__ b, double eps,
    T* __restrict__ y, acc<T>* __restrict__ mean, acc<T>* __restrict__ rstd, int64_t C, int64_t HW, int64_t G) {
  using A = acc<T>;
  __shared__ A scratch[32];
  const int64_t u = blockIdx.x, Cg = C / G, M = Cg * HW;
  const T* xb = x + u * M;
  T* yb = y + u * M;
  A s = 0;
  for (int64_t i = threadIdx.x; i < M; i += blockDim.x) s += load(xb + i);
  const A m = block_sum(s, scratch) / A(M);
  A ss = 0;
  for (int64_t i = threadIdx.x; i < M; i += blockDim.x) {
    const A d = load(xb + i) - m;
    ss += d * d;
  }
  const A rs = A(1) / m_sqrt(block_sum(ss, scratch) / A(M) + A(eps));
  if (threadIdx.x == 0) mean[u] = m, rstd[u] = rs;
  const int64_t c0 = u % G * Cg;
  for (int64_t i = threadIdx.x; i < M; i += blockDim.x) {
    const int64_t c = c0 + i / HW;
    const A scale = rs * (w ? w[c] : A(1)), shift = (b ? b[c] : A(0)) - m * scale;
    yb[i] = to_storage<T>(load(xb + i) * scale + shift);
  }
}

// Per group: g = dy * w[c]; dx = rstd * (g - mean(g) - xhat * mean(g * xhat)). Also writes the
// per-(n, c) partials pw = sum_hw dy * xhat and pb = sum_hw dy, (N, C) each.
template <class T>
__global__ void __launch_bounds__(kGroupThreads) group_norm_backward_kernel(
    const T* __restrict__ dy, const T* __restrict__ x, const acc<T>* __restrict__ w, const acc<T>* __restrict__ mean,
    const acc<T>* __restrict__ rstd, T* __restrict__ dx, acc<T>* __restrict__ pw, acc<T>* __restrict__ pb, int64_t C,
    int64_t HW, int64_t G) {
  using A = acc<T>;
  __shared__ A scratch[32];
  const int64_t u = blockIdx.x, Cg = C / G, M = Cg * HW, c0 = u % G * Cg, n = u / G;
  const T *xb = x + u * M, *gb = dy + u * M;
  const A m = mean[u], rs = rstd[u];
  A sg = 0, sgx = 0;
  for (int64_t cl = 0; cl < Cg; ++cl) {
    A sw = 0, sb = 0;
    for (int64_t i = cl * HW + threadIdx.x; i < (cl + 1) * HW; i += blockDim.x) {
      const A gy = load(gb + i), xh = (load(xb + i) - m) * rs;
      sw += gy * xh;
      sb += gy;
    }
    sw = block_sum(sw, scratch);
    sb = block_sum(sb, scratch);
    if (threadIdx.x == 0) pw[n * C + c0 + cl] = sw, pb[n * C + c0 + cl] = sb;
    const A wc = w ? w[c0 + cl] : A(1);
    sg += sb * wc;
    sgx += sw * wc;
  }
  sg /= A(M);
  sgx /= A(M);
  for (int64_t i = threadIdx.x; i < M; i += blockDim.x) {
    const A wc = w ? w[c0 + i / HW] : A(1), xh = (load(xb + i) - m) * rs;
    dx[u * M + i] = to_storage<T>(rs * (load(gb + i) * wc - sg - xh * sgx));
  }
}

void group_norm_forward_cuda(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t groups, double eps,
                             const Tensor& y, const Tensor& mean, const Tensor& rstd) {
  check_cuda(x, "group_norm");
  DeviceGuard g(x.device());
  DeviceContext& ctx = context(x.device().index);
  const int64_t N = x.size(0), C = x.size(1), HW = x.size(2);
  const DType st = stats_dtype(x.dtype());
  const Tensor w = param_as(weight, st), b = param_as(bias, st);
  visit_float(x.dtype(), "group_norm", [&](auto tx) {
    using T = typename decltype(tx)::type;
    using A = acc<T>;
    group_norm_forward_kernel<T><<<static_cast<unsigned>(N * groups), kGroupThreads, 0, ctx.stream>>>(
        static_cast<const T*>(x.raw_data()), ptr_or_null<A>(w), ptr_or_null<A>(b), eps, static_cast<T*>(y.raw_data()),
        static_cast<A*>(mean.raw_data()), static_cast<A*>(rstd.raw_data()), C, HW, groups);
    VT_CUDA_CHECK_LAUNCH();
  });
}

void group_norm_backward_cuda(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& mean,
                              const Tensor& rstd, int64_t groups, const Tensor& dx, const Tensor& dweight,
                              const Tensor& dbias) {
  check_cuda(x, "group_norm_backward");
  DeviceGuard g(x.device());
  DeviceContext& ctx = context(x.device().index);
  const int64_t N = x.size(0), C = x.size(1), HW = x.size(2);
  const DType st = stats_dtype(x.dtype());
  const Tensor w = param_as(weight, st);
  Tensor pw = empty({N, C}, {st, x.device()}), pb = empty({N, C}, {st, x.device()});  // (N, C) partials
  visit_float(x.dtype(), "group_norm_backward", [&](auto tx) {
    using T = typename decltype(tx)::type;
    using A = acc<T>;
    group_norm_backward_kernel<T><<<static_cast<unsigned>(N * groups), kGroupThreads, 0, ctx.stream>>>(
        static_cast<const T*>(dy.raw_data()), static_cast<const T*>(x.raw_data()), ptr_or_null<A>(w),
        static_cast<const A*>(mean.raw_data()), static_cast<const A*>(rstd.raw_data()), static_cast<T*>(dx.raw_data()),
        static_cast<A*>(pw.raw_data()), static_cast<A*>(pb.raw_data()), C, HW, groups);
    VT_CUDA_CHECK_LAUNCH();
    store_param_grad<A>(pw, N, C, dweight, ctx);
    store_param_grad<A>(pb, N, C, dbias, ctx);
  });
}

}  // namespace

void register_nn_norm_kernels() {
  using namespace vt::nn;
  kernels::register_kernel("rms_norm_forward", DeviceType::CUDA,
                           reinterpret_cast<void*>(static_cast<RmsNormForwardFn*>(&rms_norm_forward_cuda)));
  kernels::register_kernel("rms_norm_backward", DeviceType::CUDA,
                           reinterpret_cast<void*>(static_cast<RmsNormBackwardFn*>(&rms_norm_backward_cuda)));
  kernels::register_kernel("layer_norm_forward", DeviceType::CUDA,
                           reinterpret_cast<void*>(static_cast<LayerNormForwardFn*>(&layer_norm_forward_cuda)));
  kernels::register_kernel("layer_norm_backward", DeviceType::CUDA,
                           reinterpret_cast<void*>(static_cast<LayerNormBackwardFn*>(&layer_norm_backward_cuda)));
  kernels::register_kernel("group_norm_forward", DeviceType::CUDA,
                           reinterpret_cast<void*>(static_cast<GroupNormForwardFn*>(&group_norm_forward_cuda)));
  kernels::register_kernel("group_norm_backward", DeviceType::CUDA,
                           reinterpret_cast<void*>(static_cast<GroupNormBackwardFn*>(&group_norm_backward_cuda)));
}

}  // namespace vt::cuda
