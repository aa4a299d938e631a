// nn_rms_norm.cu: RMSNorm forward and backward on CUDA (Qwen2's rule: the normalised value is
// rounded to x's dtype before the weight multiply), and add_rms_norm's forward (the residual add
// fused in front: sum = round(x + res) is written and normalised in the same pass), registered under
// the CPU kernels' names (src/nn_norm.cpp holds the ops, the math and the CPU versions; norm.cuh
// the shared helpers).
//
// Two layouts of the same math:
//   block rows (default) for 128-bit rows up to 1024 vectors (8192 bf16 / 4096 f32 elements) whose
//                        output dtype is x's: a row is spread over a 256-thread block and held in
//                        registers (each thread owns vectors t, t + 256, ...), the next row's
//                        loads are in flight while this one is reduced, and one barrier per row
//                        sums it. The grid is one wave of blocks, each owning a fixed run of rows;
//                        the backward keeps each thread's dweight columns in registers over its
//                        rows and writes one (D) partial per block, summed in block order by
//                        norm::sum_chunks_kernel: x and dy are read once, dweight stays
//                        deterministic (the run length depends on the row count and the device's
//                        SM count and occupancy, so the bits are repeatable on one kind of GPU).
//                        H100, (16384, 4096) bf16: forward + backward at 0.74 of copy bandwidth
//                        (2188 GB/s, 1.45x torch), the forward at 0.84 (bench_cuda_nn).
//   warp rows            every other row, and all rows under VT_RMS_NORM_BLOCK=0: one warp per
//                        row, 8 rows per 256-thread block, the row streamed twice (statistics,
//                        then output; the second read hits L1/L2); dweight by the column kernels
//                        of norm.cuh, which read x and dy once more (0.42 of copy on the same run).
// Precision: values are held in f32 (f64 for f64 input) and rounded once into the output; the
// weight is first cast to that precision; rstd is saved in it. The layouts sum a row's squares in
// different orders, so their rstd may differ in the last bit.
#include <map>
#include <mutex>
#include <tuple>
#include <type_traits>

#include "norm.cuh"
#include "vt/nn/norm.h"

namespace vt::cuda {
namespace {

using namespace norm;

// ==== warp rows ======================================================================================
// x: (rows, D) of T; w: (D) in A or null; y: (rows, D) of Y; rstd: (rows) in A
// y = w * round_to_T(x * rstd),  rstd = 1 / sqrt(mean(x^2) + eps)
// kAdd: the row is sum = round_to_T(x + res), written to `sum` in the first pass and read back from
// there in the second, so it runs the plain kernel's arithmetic on the same values.
template <class T, class Y, int V, bool kAdd>
__global__ void __launch_bounds__(kRowThreads) rms_norm_forward_warp_kernel(
    const T* __restrict__ x, const T* __restrict__ res, T* __restrict__ sum, const acc<T>* __restrict__ w, double eps,
    Y* __restrict__ y, acc<T>* __restrict__ rstd, int64_t rows, int64_t D) {
  using A = acc<T>;
  using AY = acc<Y>;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (r >= rows) return;  // whole warps leave together
  const int lane = threadIdx.x & 31;
  const T* xr = x + r * D;
  const T* rr = kAdd ? res + r * D : nullptr;
  T* sr = kAdd ? sum + r * D : nullptr;
  Y* yr = y + r * D;
  A ss = 0;
  for (int64_t j = lane * V; j < D; j += 32 * V) {
    A v[V];
    load_row_v<kAdd, V>(xr + j, rr + j, sr + j, v);
#pragma unroll
    for (int k = 0; k < V; ++k) ss += v[k] * v[k];
  }
  ss = warp_sum(ss);
  const A rs = A(1) / m_sqrt(ss / A(D) + A(eps));
  if (lane == 0) rstd[r] = rs;
  const T* row = kAdd ? sr : xr;  // the second pass reads the row this lane wrote (L1/L2)
  for (int64_t j = lane * V; j < D; j += 32 * V) {
    A v[V];
    AY o[V];
    load_v<V>(row + j, v);
#pragma unroll
    for (int k = 0; k < V; ++k) o[k] = (w ? AY(w[j + k]) : AY(1)) * AY(round_to<T>(v[k] * rs));
    store_v<V>(yr + j, o);
  }
}

// dx = rstd * dy * w - x * rstd^3 * sum(dy * w * x) / D
template <class T, class Y, int V>
__global__ void __launch_bounds__(kRowThreads) rms_norm_backward_warp_kernel(const Y* __restrict__ dy,
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

// ==== block rows =====================================================================================
constexpr int kBlockThreads = 256;
constexpr int kBlockWarps = kBlockThreads / 32;
constexpr int kMaxSlots = 4;  // vectors per thread and row

// The C vectors of one row that thread t owns: vector indices t + c * kBlockThreads below nvec.
template <class T, int V, int C>
struct RowSlice {
  Vec<T, V> v[C];
  __device__ __forceinline__ void fetch(const T* __restrict__ row, int nvec) {
#pragma unroll
    for (int c = 0; c < C; ++c) {
      const int i = threadIdx.x + c * kBlockThreads;
      if (i < nvec) v[c] = reinterpret_cast<const Vec<T, V>*>(row)[i];
    }
  }
  __device__ __forceinline__ compute_t<T> at(int c, int k) const { return load(&v[c].v[k]); }
};

// The block's sum of v with a single barrier: consecutive rows alternate between the two halves of
// scratch (2 x kBlockWarps), so a warp that runs ahead into row r + 1 writes the other half, and
// it cannot reach row r + 2 before every warp has passed row r + 1's barrier, i.e. has read row r.
// Every thread adds the warp sums in warp order: the same bits in every thread and run.
template <class A>
__device__ __forceinline__ A block_sum_alternating(A v, A (*scratch)[kBlockWarps], int64_t r) {
  v = warp_sum(v);
  if ((threadIdx.x & 31) == 0) scratch[r & 1][threadIdx.x >> 5] = v;
  __syncthreads();
  A t = 0;
#pragma unroll
  for (int i = 0; i < kBlockWarps; ++i) t += scratch[r & 1][i];
  return t;
}

// x: (rows, D); rows [blockIdx.x * per, ...) of them. y = w * round_to_T(x * rstd); kAdd: the row is
// sum = round_to_T(x + res), also written out.
template <class T, class Y, int V, int C, bool kAdd>
__global__ void __launch_bounds__(kBlockThreads) rms_norm_forward_block_kernel(
    const T* __restrict__ x, const T* __restrict__ res, T* __restrict__ sum, const acc<T>* __restrict__ w, double eps,
    Y* __restrict__ y, acc<T>* __restrict__ rstd, int64_t rows, int64_t D, int64_t per) {
  using A = acc<T>;
  using AY = acc<Y>;
  __shared__ A scratch[2][kBlockWarps];
  const int nvec = static_cast<int>(D / V);
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * per, r1 = r0 + per < rows ? r0 + per : rows;
  AY wv[C][V];
#pragma unroll
  for (int c = 0; c < C; ++c)
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const int i = threadIdx.x + c * kBlockThreads;
      wv[c][k] = w && i < nvec ? AY(w[i * V + k]) : AY(1);
    }
  RowSlice<T, V, C> cur, nxt, rcur, rnxt;  // rcur, rnxt: res rows (kAdd)
  if (r0 < r1) {
    cur.fetch(x + r0 * D, nvec);
    if constexpr (kAdd) rcur.fetch(res + r0 * D, nvec);
  }
  for (int64_t r = r0; r < r1; ++r) {
    if (r + 1 < r1) {
      nxt.fetch(x + (r + 1) * D, nvec);
      if constexpr (kAdd) rnxt.fetch(res + (r + 1) * D, nvec);
    }
    if constexpr (kAdd) {  // cur becomes the rounded sum, which is also stored
#pragma unroll
      for (int c = 0; c < C; ++c) {
        const int i = threadIdx.x + c * kBlockThreads;
        if (i >= nvec) continue;
#pragma unroll
        for (int k = 0; k < V; ++k) cur.v[c].v[k] = to_storage<T>(cur.at(c, k) + rcur.at(c, k));
        reinterpret_cast<Vec<T, V>*>(sum + r * D)[i] = cur.v[c];
      }
      rcur = rnxt;
    }
    A ss = 0;
#pragma unroll
    for (int c = 0; c < C; ++c)
      if (threadIdx.x + c * kBlockThreads < nvec)
#pragma unroll
        for (int k = 0; k < V; ++k) ss += cur.at(c, k) * cur.at(c, k);
    const A rs = A(1) / m_sqrt(block_sum_alternating(ss, scratch, r) / A(D) + A(eps));
    if (threadIdx.x == 0) rstd[r] = rs;
#pragma unroll
    for (int c = 0; c < C; ++c) {
      const int i = threadIdx.x + c * kBlockThreads;
      if (i >= nvec) continue;
      AY o[V];
#pragma unroll
      for (int k = 0; k < V; ++k) o[k] = wv[c][k] * AY(round_to<T>(cur.at(c, k) * rs));
      store_v<V>(y + r * D + static_cast<int64_t>(i) * V, o);
    }
    cur = nxt;
  }
}

// dx = rstd * dy * w - x * rstd^3 * sum(dy * w * x) / D, and (when parts) the block's partial
// dweight[j] = sum over its rows of dy * round_to_T(x * rstd) into parts[blockIdx.x, j]. The weight
// waits in shared memory (D values of A when w is given: registers are short here).
template <class T, class Y, int V, int C>
__global__ void __launch_bounds__(kBlockThreads) rms_norm_backward_block_kernel(
    const Y* __restrict__ dy, const T* __restrict__ x, const acc<T>* __restrict__ w, const acc<T>* __restrict__ rstd,
    T* __restrict__ dx, acc<T>* __restrict__ parts, int64_t rows, int64_t D, int64_t per) {
  using A = acc<T>;
  __shared__ A scratch[2][kBlockWarps];
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* sw = reinterpret_cast<A*>(smem_raw);
  const int nvec = static_cast<int>(D / V);
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * per, r1 = r0 + per < rows ? r0 + per : rows;
  if (w) {
    for (int64_t j = threadIdx.x; j < D; j += kBlockThreads) sw[j] = w[j];
    __syncthreads();
  }
  auto weight = [&](int c, int k) { return w ? sw[(threadIdx.x + c * kBlockThreads) * V + k] : A(1); };
  A dw[C][V];
#pragma unroll
  for (int c = 0; c < C; ++c)
#pragma unroll
    for (int k = 0; k < V; ++k) dw[c][k] = 0;
  RowSlice<T, V, C> xc, xn;
  RowSlice<Y, V, C> gc, gn;
  A rs_c = 0, rs_n = 0;
  if (r0 < r1) xc.fetch(x + r0 * D, nvec), gc.fetch(dy + r0 * D, nvec), rs_c = rstd[r0];
  for (int64_t r = r0; r < r1; ++r) {
    if (r + 1 < r1) xn.fetch(x + (r + 1) * D, nvec), gn.fetch(dy + (r + 1) * D, nvec), rs_n = rstd[r + 1];
    A dot = 0;
#pragma unroll
    for (int c = 0; c < C; ++c)
      if (threadIdx.x + c * kBlockThreads < nvec)
#pragma unroll
        for (int k = 0; k < V; ++k) dot += A(gc.at(c, k)) * weight(c, k) * xc.at(c, k);
    const A rs = rs_c, kx = block_sum_alternating(dot, scratch, r) * rs * rs * rs / A(D);
#pragma unroll
    for (int c = 0; c < C; ++c) {
      const int i = threadIdx.x + c * kBlockThreads;
      if (i >= nvec) continue;
      A o[V];
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const A g = A(gc.at(c, k)), xv = xc.at(c, k);
        o[k] = rs * g * weight(c, k) - kx * xv;
        dw[c][k] += g * round_to<T>(xv * rs);
      }
      store_v<V>(dx + r * D + static_cast<int64_t>(i) * V, o);
    }
    xc = xn, gc = gn, rs_c = rs_n;
  }
  if (!parts) return;
#pragma unroll
  for (int c = 0; c < C; ++c) {
    const int i = threadIdx.x + c * kBlockThreads;
    if (i >= nvec) continue;
#pragma unroll
    for (int k = 0; k < V; ++k) parts[static_cast<int64_t>(blockIdx.x) * D + i * V + k] = dw[c][k];
  }
}

// The block kernels exist for 16-byte vectors and an output of x's own dtype only.
template <class T, class Y, int V>
constexpr bool kBlockRows = std::is_same_v<T, Y> && V * sizeof(T) == 16;

// Slots per thread for rows of D / V vectors (1, 2 or 4), or 0 when the block layout is switched
// off (VT_RMS_NORM_BLOCK=0) or the rows are too long for it.
int block_slots(int V, int64_t D) {
  if (env_is("VT_RMS_NORM_BLOCK", "0")) return 0;
  const int64_t nvec = D / V;
  if (nvec > int64_t(kBlockThreads) * kMaxSlots) return 0;
  return nvec <= kBlockThreads ? 1 : nvec <= 2 * kBlockThreads ? 2 : 4;
}

template <class F>
void with_slots(int C, F&& f) {
  switch (C) {
    case 1: return f(std::integral_constant<int, 1>{});
    case 2: return f(std::integral_constant<int, 2>{});
    default: return f(std::integral_constant<int, 4>{});
  }
}

// Rows per block for a one-wave grid of `kernel` (with `smem` bytes of dynamic shared memory) over
// `rows` rows. The occupancy query is asked once per (kernel, shared memory, device).
template <class K>
int64_t rows_per_block(K* kernel, int64_t rows, const DeviceContext& ctx, size_t smem = 0) {
  static std::mutex mu;
  static std::map<std::tuple<const void*, size_t, int>, int> blocks_per_sm;
  int occupancy = 0;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto [it, fresh] = blocks_per_sm.try_emplace({reinterpret_cast<const void*>(kernel), smem, ctx.device}, 0);
    if (fresh)
      VT_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&it->second, kernel, kBlockThreads, smem));
    occupancy = it->second;
  }
  const int64_t wave = std::max<int64_t>(1, int64_t(ctx.sm_count) * std::max(occupancy, 1));
  return (rows + wave - 1) / wave;
}

// ==== dispatch =========================================================================================
// rms_norm forward, or with kAdd (res, sum given) add_rms_norm's.
template <bool kAdd>
void forward_cuda(const Tensor& x, const Tensor& res, const Tensor& sum, const Tensor& weight, double eps,
                  const Tensor& y, const Tensor& rstd) {
  check_cuda(x, kAdd ? "add_rms_norm" : "rms_norm");
  DeviceGuard g(x.device());
  DeviceContext& ctx = context(x.device().index);
  const int64_t D = x.size(-1), rows = x.numel() / D;
  if (rows == 0) return;
  const Tensor w = param_as(weight, stats_dtype(x.dtype()));
  visit_float(x.dtype(), "rms_norm", [&](auto tx) {
    using T = typename decltype(tx)::type;
    using A = acc<T>;
    visit_out<T>(y.dtype(), [&](auto ty) {
      using Y = typename decltype(ty)::type;
      const T* xp = static_cast<const T*>(x.raw_data());
      const T* rp = kAdd ? static_cast<const T*>(res.raw_data()) : nullptr;
      T* sp = kAdd ? static_cast<T*>(sum.raw_data()) : nullptr;
      Y* yp = static_cast<Y*>(y.raw_data());
      A* stp = static_cast<A*>(rstd.raw_data());
      with_vec(row_vec(D, std::max(sizeof(T), sizeof(Y)), {&x, &y, &res, &sum}), [&](auto v) {
        constexpr int V = decltype(v)::value;
        if constexpr (kBlockRows<T, Y, V>) {
          if (const int C = block_slots(V, D)) {
            with_slots(C, [&](auto c) {
              auto* kernel = rms_norm_forward_block_kernel<T, Y, V, decltype(c)::value, kAdd>;
              const int64_t per = rows_per_block(kernel, rows, ctx);
              kernel<<<blocks_for(rows, per), kBlockThreads, 0, ctx.stream()>>>(xp, rp, sp, ptr_or_null<A>(w), eps,
                                                                                 yp, stp, rows, D, per);
              VT_CUDA_CHECK_LAUNCH();
            });
            return;
          }
        }
        rms_norm_forward_warp_kernel<T, Y, V, kAdd><<<blocks_for(rows, kRowsPerBlock), kRowThreads, 0,
                                                      ctx.stream()>>>(xp, rp, sp, ptr_or_null<A>(w), eps, yp, stp,
                                                                      rows, D);
        VT_CUDA_CHECK_LAUNCH();
      });
    });
  });
}

void rms_norm_forward_cuda(const Tensor& x, const Tensor& weight, double eps, const Tensor& y, const Tensor& rstd) {
  forward_cuda<false>(x, Tensor(), Tensor(), weight, eps, y, rstd);
}

void add_rms_norm_forward_cuda(const Tensor& x, const Tensor& residual, const Tensor& weight, double eps,
                               const Tensor& sum, const Tensor& y, const Tensor& rstd) {
  forward_cuda<true>(x, residual, sum, weight, eps, y, rstd);
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
      T* dxp = static_cast<T*>(dx.raw_data());
      bool dweight_done = false;
      with_vec(row_vec(D, std::max(sizeof(T), sizeof(Y)), {&x, &dy, &dx}), [&](auto v) {
        constexpr int V = decltype(v)::value;
        if constexpr (kBlockRows<T, Y, V>) {
          if (const int C = rows > 0 ? block_slots(V, D) : 0) {
            with_slots(C, [&](auto c) {
              auto* kernel = rms_norm_backward_block_kernel<T, Y, V, decltype(c)::value>;
              const size_t smem = w.defined() ? D * sizeof(A) : 0;  // at most 32 KB (8192 f32, 4096 f64)
              const int64_t per = rows_per_block(kernel, rows, ctx, smem);
              const unsigned blocks = blocks_for(rows, per);
              Tensor parts;
              if (dweight.defined()) parts = empty({int64_t(blocks), D}, {stats_dtype(x.dtype()), x.device()});
              A* pp = parts.defined() ? static_cast<A*>(parts.raw_data()) : nullptr;
              kernel<<<blocks, kBlockThreads, smem, ctx.stream()>>>(gp, xp, ptr_or_null<A>(w), rp, dxp, pp, rows, D,
                                                                    per);
              VT_CUDA_CHECK_LAUNCH();
              store_param_grad<A>(parts, blocks, D, dweight, ctx);
            });
            dweight_done = true;
            return;
          }
        }
        rms_norm_backward_warp_kernel<T, Y, V><<<blocks_for(rows, kRowsPerBlock), kRowThreads, 0, ctx.stream()>>>(
            gp, xp, ptr_or_null<A>(w), rp, dxp, rows, D);
        VT_CUDA_CHECK_LAUNCH();
      });
      if (!dweight_done) column_grads<A>(RmsDweight<T, Y>{gp, xp, rp, D}, rows, D, dweight, Tensor(), x.device());
    });
  });
}

}  // namespace

void register_rms_norm_kernels() {
  using namespace vt::nn;
  kernels::register_kernel("rms_norm_forward", DeviceType::CUDA,
                           static_cast<RmsNormForwardFn*>(&rms_norm_forward_cuda));
  kernels::register_kernel("rms_norm_backward", DeviceType::CUDA,
                           static_cast<RmsNormBackwardFn*>(&rms_norm_backward_cuda));
  kernels::register_kernel("add_rms_norm_forward", DeviceType::CUDA,
                           static_cast<AddRmsNormForwardFn*>(&add_rms_norm_forward_cuda));
}

}  // namespace vt::cuda
