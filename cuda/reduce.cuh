// reduce.cuh: the reduction kernels (design notes in reduce.cu), included by the files that
// instantiate them per op: reduce.cu (sum), reduce_minmax.cu (max, min), reduce_arg.cu (argmax,
// argmin); split so the instantiations compile in parallel.
#pragma once
#include "allocator.h"
#include "backend.h"
#include "loop.cuh"

namespace vt::cuda::reduce_detail {

using kernels::ReduceOp;


constexpr int kMaxThreads = 256;
constexpr int kTargetBlocks = 1024;  // enough resident threads to saturate memory on H100/H200

template <class T, ReduceOp OP>
struct Acc {
  using C = compute_t<T>;
  static constexpr bool fp = std::is_floating_point_v<C>;
  static constexpr bool is_arg = OP == ReduceOp::ArgMax || OP == ReduceOp::ArgMin;
  static constexpr bool is_max() { return OP == ReduceOp::Max || OP == ReduceOp::ArgMax; }
  using V = std::conditional_t<OP == ReduceOp::Sum, std::conditional_t<fp, double, int64_t>, C>;
  V v;
  int64_t idx;

  __host__ __device__ static Acc identity() {
    Acc a;
    a.idx = -1;
    if constexpr (OP == ReduceOp::Sum) a.v = 0;
    else if constexpr (fp) a.v = is_max() ? -INFINITY : INFINITY;
    else a.v = is_max() ? INT64_MIN : INT64_MAX;
    return a;
  }
  __device__ static bool nan(V x) { return x != x; }
  // Combines two partial results; for arg ops the order of the operands does not matter.
  __device__ void merge(const Acc& o) {
    if constexpr (OP == ReduceOp::Sum) {
      v += o.v;
    } else if constexpr (!is_arg) {
      if (nan(v)) return;
      if (nan(o.v) || (is_max() ? o.v > v : o.v < v)) v = o.v;
    } else {
      if (o.idx < 0) return;
      bool take;
      if (idx < 0) take = true;
      else if (nan(v) || nan(o.v)) take = nan(o.v) && (!nan(v) || o.idx < idx);
      else take = (is_max() ? o.v > v : o.v < v) || (o.v == v && o.idx < idx);
      if (take) { v = o.v; idx = o.idx; }
    }
  }
  __device__ void push(C x, int64_t i) {
    if constexpr (OP == ReduceOp::Sum) {
      v += static_cast<V>(x);
    } else {
      Acc o;
      o.v = x;
      o.idx = i;
      merge(o);
    }
  }
  __device__ Acc shfl_down(int delta) const {
    Acc o;
    o.v = __shfl_down_sync(0xFFFFFFFFu, v, delta);
    if constexpr (is_arg) o.idx = __shfl_down_sync(0xFFFFFFFFu, static_cast<long long>(idx), delta);
    else o.idx = -1;
    return o;
  }
};

template <class T, ReduceOp OP>
__device__ __forceinline__ void store_acc(char* out, const Acc<T, OP>& a) {
  if constexpr (Acc<T, OP>::is_arg) *reinterpret_cast<int64_t*>(out) = a.idx < 0 ? 0 : a.idx;
  else if constexpr (OP == ReduceOp::Sum && !Acc<T, OP>::fp) *reinterpret_cast<int64_t*>(out) = a.v;
  else *reinterpret_cast<T*>(out) = to_storage<T>(a.v);
}

// Coalesced dims of one side; offsets in elements.
struct Space {
  int n = 0;
  int64_t shape[kMaxDims];
  int64_t stride[kMaxDims];
  __host__ __device__ int64_t numel() const {
    int64_t p = 1;
    for (int i = 0; i < n; ++i) p *= shape[i];
    return p;
  }
  __host__ __device__ int64_t offset(int64_t i) const {
    int64_t off = 0;
    for (int d = n - 1; d > 0; --d) {
      off += (i % shape[d]) * stride[d];
      i /= shape[d];
    }
    return n ? off + i * stride[0] : 0;
  }
};

struct ReducePlan {
  Space red;                // reduced dims of x
  Space kept_x, kept_o;     // kept dims: x strides, out strides (elements)
  int64_t M = 0, N = 0, S = 1, chunk = 0;  // outputs, elements per output, slices, elements per slice
};

// Block-wide combine of one Acc per thread; the result is valid in thread 0.
template <class T, ReduceOp OP>
__device__ Acc<T, OP> block_combine(Acc<T, OP> a) {
  __shared__ Acc<T, OP> warp_part[kMaxThreads / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) a.merge(a.shfl_down(d));
  if (lane == 0) warp_part[warp] = a;
  __syncthreads();
  if (warp == 0) {
    a = lane < nwarps ? warp_part[lane] : Acc<T, OP>::identity();
#pragma unroll
    for (int d = 16; d > 0; d >>= 1) a.merge(a.shfl_down(d));
  }
  __syncthreads();  // warp_part is reused by the next output of this block
  return a;
}

// Row kernel: block (m, slice). VEC: the reduced space is one unit-stride dim with every row start
// 16-byte aligned, read as Vec<T, V>.
template <class T, ReduceOp OP, bool VEC>
__global__ void __launch_bounds__(kMaxThreads) reduce_row_kernel(const T* __restrict__ x, char* __restrict__ out,
                                                                  size_t out_es, Acc<T, OP>* __restrict__ part,
                                                                  ReducePlan p) {
  constexpr int V = VEC ? 16 / sizeof(T) : 1;
  const int64_t s = blockIdx.y;
  const int64_t begin = s * p.chunk, end = min(p.N, begin + p.chunk);
  for (int64_t m = blockIdx.x; m < p.M; m += gridDim.x) {
    const T* row = x + p.kept_x.offset(m);
    Acc<T, OP> a = Acc<T, OP>::identity();
    if constexpr (VEC) {
      const int64_t nv = (end - begin) / V;  // begin is a multiple of V (chunk is)
      const Vec<T, V>* rv = reinterpret_cast<const Vec<T, V>*>(row + begin);
      for (int64_t j = threadIdx.x; j < nv; j += blockDim.x) {
        const Vec<T, V> w = rv[j];
#pragma unroll
        for (int k = 0; k < V; ++k) a.push(load(&w.v[k]), begin + j * V + k);
      }
      for (int64_t i = begin + nv * V + threadIdx.x; i < end; i += blockDim.x) a.push(load(row + i), i);
    } else {
      for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) a.push(load(row + p.red.offset(i)), i);
    }
    a = block_combine<T, OP>(a);
    if (threadIdx.x == 0) {
      if (p.S == 1) store_acc<T, OP>(out + p.kept_o.offset(m) * out_es, a);
      else part[m * p.S + s] = a;
    }
  }
}

// Column kernel: thread per output m, slice blockIdx.y, elements in order.
template <class T, ReduceOp OP>
__global__ void __launch_bounds__(kMaxThreads) reduce_col_kernel(const T* __restrict__ x, char* __restrict__ out,
                                                                  size_t out_es, Acc<T, OP>* __restrict__ part,
                                                                  ReducePlan p) {
  const int64_t s = blockIdx.y;
  const int64_t begin = s * p.chunk, end = min(p.N, begin + p.chunk);
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t m = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; m < p.M; m += step) {
    const T* base = x + p.kept_x.offset(m);
    Acc<T, OP> a = Acc<T, OP>::identity();
    for (int64_t i = begin; i < end; ++i) a.push(load(base + p.red.offset(i)), i);
    if (p.S == 1) store_acc<T, OP>(out + p.kept_o.offset(m) * out_es, a);
    else part[m * p.S + s] = a;
  }
}

// Combines the S slice partials of each output in slice order.
template <class T, ReduceOp OP>
__global__ void reduce_finish_kernel(const Acc<T, OP>* __restrict__ part, char* __restrict__ out, size_t out_es,
                                     ReducePlan p) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t m = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; m < p.M; m += step) {
    Acc<T, OP> a = part[m * p.S];
    for (int64_t s = 1; s < p.S; ++s) a.merge(part[m * p.S + s]);
    store_acc<T, OP>(out + p.kept_o.offset(m) * out_es, a);
  }
}

// Fills outputs of an empty reduction with the identity (sum 0; argmax 0).
template <class T, ReduceOp OP>
__global__ void reduce_empty_kernel(char* __restrict__ out, size_t out_es, ReducePlan p) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t m = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; m < p.M; m += step)
    store_acc<T, OP>(out + p.kept_o.offset(m) * out_es, Acc<T, OP>::identity());
}

inline void add_dim(Space& s, int64_t size, int64_t stride) {
  if (size == 1) return;
  if (s.n > 0 && s.stride[s.n - 1] == stride * size) {  // merges into the previous (outer) dim
    s.shape[s.n - 1] *= size;
    s.stride[s.n - 1] = stride;
    return;
  }
  s.shape[s.n] = size;
  s.stride[s.n] = stride;
  ++s.n;
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

template <class T, ReduceOp OP>
void reduce_typed(const Tensor& x, uint32_t mask, const Tensor& out) {
  ReducePlan p;
  for (int d = 0; d < x.dim(); ++d) {
    if (mask >> d & 1) {
      add_dim(p.red, x.shape()[d], x.strides()[d]);
    } else if (x.shape()[d] != 1) {  // kept dims walk x and out together (not merged)
      p.kept_x.shape[p.kept_x.n] = p.kept_o.shape[p.kept_o.n] = x.shape()[d];
      p.kept_x.stride[p.kept_x.n++] = x.strides()[d];
      p.kept_o.stride[p.kept_o.n++] = out.strides()[d];
    }
  }
  if (p.red.n == 0) p.red.n = 1, p.red.shape[0] = 1, p.red.stride[0] = 0;
  p.M = p.kept_x.numel();
  p.N = p.red.numel();
  if (p.M == 0) return;
  DeviceContext& ctx = context(out.device().index);
  const T* xp = static_cast<const T*>(x.raw_data());
  char* op = static_cast<char*>(out.raw_data());
  const size_t oes = out.element_size();
  if (p.N == 0) {
    reduce_empty_kernel<T, OP><<<grid_for(p.M, kMaxThreads, ctx), kMaxThreads, 0, ctx.stream()>>>(op, oes, p);
    VT_CUDA_CHECK_LAUNCH();
    return;
  }
  const bool row = p.red.stride[p.red.n - 1] == 1 && p.N > 1;
  constexpr int64_t V = 16 / sizeof(T);
  // Slices: only when the outputs alone leave the device idle, and never shorter than min_slice.
  int64_t units = row ? p.M : ceil_div(p.M, kMaxThreads);  // blocks without slicing
  int64_t S = 1;
  const int64_t min_slice = row ? 4096 : 256;  // a column thread walks its slice alone
  if (units < kTargetBlocks)
    S = std::max<int64_t>(1, std::min(ceil_div(kTargetBlocks, units), ceil_div(p.N, min_slice)));
  S = std::min<int64_t>(S, 65535);
  p.chunk = ceil_div(p.N, S);
  if (row) p.chunk = ceil_div(p.chunk, V) * V;  // slice starts stay vector-aligned
  p.S = ceil_div(p.N, p.chunk);
  std::shared_ptr<void> ws;
  Acc<T, OP>* part = nullptr;
  if (p.S > 1) {
    ws = allocate_workspace(sizeof(Acc<T, OP>) * p.M * p.S, out.device().index);
    part = static_cast<Acc<T, OP>*>(ws.get());
  }
  if (row) {
    bool vec = p.red.n == 1 && (reinterpret_cast<uintptr_t>(xp) % 16) == 0;
    for (int d = 0; d < p.kept_x.n && vec; ++d) vec = (p.kept_x.stride[d] * sizeof(T)) % 16 == 0;
    const int64_t per_block = ceil_div(p.chunk, vec ? V : 1);
    int threads = 32;
    while (threads < kMaxThreads && threads < per_block) threads *= 2;
    const dim3 grid(static_cast<unsigned>(std::min<int64_t>(p.M, 1 << 30)), static_cast<unsigned>(p.S));
    if (vec) reduce_row_kernel<T, OP, true><<<grid, threads, 0, ctx.stream()>>>(xp, op, oes, part, p);
    else reduce_row_kernel<T, OP, false><<<grid, threads, 0, ctx.stream()>>>(xp, op, oes, part, p);
  } else {
    const dim3 grid(static_cast<unsigned>(std::min<int64_t>(units, 1 << 30)), static_cast<unsigned>(p.S));
    reduce_col_kernel<T, OP><<<grid, kMaxThreads, 0, ctx.stream()>>>(xp, op, oes, part, p);
  }
  VT_CUDA_CHECK_LAUNCH();
  if (p.S > 1) {
    reduce_finish_kernel<T, OP><<<grid_for(p.M, kMaxThreads, ctx), kMaxThreads, 0, ctx.stream()>>>(part, op, oes, p);
    VT_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace vt::cuda::reduce_detail

namespace vt::cuda {
// Per-op entry points (one per instantiating file).
void reduce_sum(const Tensor& x, uint32_t mask, const Tensor& out);
void reduce_max(const Tensor& x, uint32_t mask, const Tensor& out);
void reduce_min(const Tensor& x, uint32_t mask, const Tensor& out);
void reduce_argmax(const Tensor& x, uint32_t mask, const Tensor& out);
void reduce_argmin(const Tensor& x, uint32_t mask, const Tensor& out);
}  // namespace vt::cuda
