// norm.cuh: what the CUDA normalisation files (nn_norm.cu: LayerNorm; nn_rms_norm.cu: RMSNorm;
// nn_group_norm.cu: GroupNorm) share: compute precision and rounding, 128-bit row access, the
// weight cast, the residual-add row load of the add_*_norm kernels, and the deterministic
// parameter-gradient reduction (fixed row chunks summed into a (chunks, D) partial
// buffer, then the chunks added in order, so dweight and dbias are bitwise the same run to run).
#pragma once
#include "math.cuh"
#include "nn_kernels.h"
#include "vt/ops.h"

namespace vt::cuda::norm {

using nnk::block_sum;
using nnk::blocks_for;
using nnk::visit_float;
using nnk::warp_sum;

constexpr int kRowThreads = 256;           // 8 warps: 8 rows per block
constexpr int kRowsPerBlock = kRowThreads / 32;

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
inline int row_vec(int64_t D, size_t widest, std::initializer_list<const Tensor*> ts) {
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
inline Tensor param_as(const Tensor& p, DType t) { return p.defined() ? cast(p.detach(), t).contiguous() : Tensor(); }

inline DType stats_dtype(DType x) { return x == DType::F64 ? DType::F64 : DType::F32; }

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
    sum_chunks_kernel<A, W><<<blocks_for(D, 256), 256, 0, ctx.stream()>>>(static_cast<const A*>(parts.raw_data()),
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
  column_partials_kernel<A><<<grid, block, 0, ctx.stream()>>>(f, rows, D, per, static_cast<A*>(p0.raw_data()),
                                                            static_cast<A*>(p1.raw_data()));
  VT_CUDA_CHECK_LAUNCH();
  store_param_grad<A>(p0, chunks, D, g0, ctx);
  store_param_grad<A>(p1, chunks, D, g1, ctx);
}

// V values of a row at x in compute precision; with kAdd, x + res rounded to T (the sum of
// add_rms_norm / add_layer_norm), which is also stored at `sum`.
template <bool kAdd, int V, class T>
__device__ __forceinline__ void load_row_v(const T* x, const T* res, T* sum, acc<T> (&v)[V]) {
  load_v<V>(x, v);
  if constexpr (kAdd) {
    acc<T> r[V];
    load_v<V>(res, r);
#pragma unroll
    for (int k = 0; k < V; ++k) v[k] = round_to<T>(v[k] + r[k]);
    store_v<V>(sum, v);
  }
}

}  // namespace vt::cuda::norm
