// map.cuh: out = f(in...) over broadcast views, the one launcher behind copy/cast, fill, unary,
// binary and where.
//
// Two kernels per (f, types):
//   dense    every operand is one unit-stride run, or a broadcast scalar (stride 0); 128-bit loads
//            and stores (Vec<T, V>, V elements per 16 bytes of the widest type), a scalar tail;
//   strided  any strides (0 for broadcast dims): per-element offsets by 32-bit div/mod over the
//            coalesced dims; spaces too large for 32 bits are split into pieces that fit.
// Both are grid-stride loops with 256 threads per block on the device's one stream, so any size
// runs with a bounded grid. f takes compute values (compute_t<In>) and returns either the output's
// storage type (stored as is) or a compute value (rounded once by to_storage).
#pragma once
#include <utility>

#include "loop.cuh"

namespace vt::cuda {

inline constexpr int kMapThreads = 256;

template <class T>
struct DenseIn {
  const T* p;
  bool scalar;     // broadcast: every element reads p[0]
  int64_t period;  // > 0: a row broadcast over the rows of out, element i reads p[i % period]
  __device__ __forceinline__ int64_t offset(int64_t i) const { return scalar ? 0 : (period > 0 ? i % period : i); }
};

template <class C, int V>
struct Arr {
  C v[V];
};

template <int V, class T>
__device__ __forceinline__ Arr<compute_t<T>, V> load_vec(const DenseIn<T>& in, int64_t base) {
  Arr<compute_t<T>, V> r;
  if (in.scalar) {
    const compute_t<T> s = load(in.p);
#pragma unroll
    for (int j = 0; j < V; ++j) r.v[j] = s;
  } else {
    const Vec<T, V> x = *reinterpret_cast<const Vec<T, V>*>(in.p + in.offset(base));
#pragma unroll
    for (int j = 0; j < V; ++j) r.v[j] = load(&x.v[j]);
  }
  return r;
}

template <class Out, class R>
__device__ __forceinline__ Out store_value(const R& r) {
  if constexpr (std::is_same_v<R, Out>) return r;
  else return to_storage<Out>(r);
}

template <int V, class Out, class F, class... A>
__device__ __forceinline__ void apply_vec(Out* o, const F& f, const A&... a) {
  Vec<Out, V> r;
#pragma unroll
  for (int j = 0; j < V; ++j) r.v[j] = store_value<Out>(f(a.v[j]...));
  *reinterpret_cast<Vec<Out, V>*>(o) = r;
}

template <int V, class Out, class F, class... In>
__global__ void __launch_bounds__(kMapThreads) map_dense_kernel(int64_t n, Out* __restrict__ out, F f,
                                                                 DenseIn<In>... in) {
  const int64_t start = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t nvec = n / V;
  for (int64_t v = start; v < nvec; v += step) apply_vec<V>(out + v * V, f, load_vec<V>(in, v * V)...);
  for (int64_t i = nvec * V + start; i < n; i += step)
    out[i] = store_value<Out>(f(load(in.p + in.offset(i))...));
}

template <class IndexT, int N, class Out, class F, class... In, size_t... Is>
__device__ __forceinline__ void strided_one(Out* out, const F& f, const IndexT (&off)[N], std::index_sequence<Is...>,
                                            const In*... in) {
  out[off[0]] = store_value<Out>(f(load(in + off[Is + 1])...));
}

template <class IndexT, class Out, class F, class... In>
__global__ void __launch_bounds__(kMapThreads) map_strided_kernel(StridedPlan<1 + sizeof...(In)> p, IndexT n,
                                                                   Out* __restrict__ out, F f, const In*... in) {
  constexpr int N = 1 + sizeof...(In);
  const IndexT step = static_cast<IndexT>(gridDim.x) * blockDim.x;
  for (IndexT i = static_cast<IndexT>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    IndexT off[N];
    plan_offsets<N, IndexT>(p, i, off);
    strided_one<IndexT, N>(out, f, off, std::make_index_sequence<sizeof...(In)>{}, in...);
  }
}

// Calls fn(piece, pointers) for pieces of `p` small enough for 32-bit indexing: the dim with the
// largest extent is halved (pointers of the upper half advanced) until every piece fits, so the
// strided kernel needs only a 32-bit instantiation (PyTorch's TensorIterator splits the same way).
template <int N, class Fn>
void split_32bit(const StridedPlan<N>& p, std::array<char*, N> ptr, const std::array<int64_t, N>& es, Fn&& fn) {
  if (fits_32bit(p)) return fn(p, ptr);
  int best = -1;
  int64_t best_extent = 0;
  for (int d = 0; d < p.ndim; ++d) {
    int64_t widest = 0;
    for (int k = 0; k < N; ++k) {
      VT_CHECK(p.strides[k][d] >= 0, "cuda elementwise: negative strides are not supported");
      widest = std::max(widest, p.strides[k][d]);
    }
    const int64_t extent = p.shape[d] * std::max<int64_t>(widest, 1);
    if (p.shape[d] > 1 && extent > best_extent) best = d, best_extent = extent;
  }
  VT_CHECK(best >= 0, "cuda elementwise: cannot split the iteration space for 32-bit indexing");
  const int64_t half = p.shape[best] / 2;
  StridedPlan<N> lo = p, hi = p;
  lo.shape[best] = half;
  hi.shape[best] = p.shape[best] - half;
  std::array<char*, N> hi_ptr = ptr;
  for (int k = 0; k < N; ++k) hi_ptr[k] += half * p.strides[k][best] * es[k];
  split_32bit<N>(lo, ptr, es, fn);
  split_32bit<N>(hi, hi_ptr, es, fn);
}

// out = f(in...) elementwise; `in` are views broadcast to out's shape, of the C++ types In.
template <class Out, class... In, class F>
void launch_map(const Tensor& out, F f, const std::array<const Tensor*, sizeof...(In)>& in) {
  constexpr int N = 1 + sizeof...(In);
  const int64_t n = out.numel();
  if (n == 0) return;
  std::array<const Tensor*, N> ops;
  ops[0] = &out;
  if constexpr (sizeof...(In) > 0)
    for (size_t k = 0; k < sizeof...(In); ++k) ops[k + 1] = in[k];
  const StridedPlan<N> plan = make_plan<N>(out.shape(), ops);
  DeviceContext& ctx = context(out.device().index);
  Out* o = static_cast<Out*>(out.raw_data());
  std::array<char*, N> ptr;
  std::array<int64_t, N> es;
  for (int k = 0; k < N; ++k) {
    ptr[k] = static_cast<char*>(ops[k]->raw_data());
    es[k] = static_cast<int64_t>(ops[k]->element_size());
  }
  return [&]<size_t... Is>(std::index_sequence<Is...>) {
    if (plan_dense(plan)) {
      constexpr int V = vec_width<Out, In...>();
      bool aligned = (reinterpret_cast<uintptr_t>(o) % (sizeof(Out) * V)) == 0;
      ((aligned = aligned && (plan.strides[Is + 1][0] == 0 ||
                              reinterpret_cast<uintptr_t>(ptr[Is + 1]) % (sizeof(In) * V) == 0)),
       ...);
      if (aligned) {
        const unsigned grid = grid_for((n + V - 1) / V, kMapThreads, ctx);
        map_dense_kernel<V, Out, F, In...><<<grid, kMapThreads, 0, ctx.stream()>>>(
            n, o, f, DenseIn<In>{reinterpret_cast<const In*>(ptr[Is + 1]), plan.strides[Is + 1][0] == 0, 0}...);
        VT_CUDA_CHECK_LAUNCH();
        return;
      }
    }
    // (R, C) with every input dense, a (C) row broadcast over the rows (a bias), or a scalar: the
    // dense kernel with row inputs read at i % C. Vectors never cross a row when C % V == 0.
    if (plan.ndim == 2 && plan.strides[0][0] == plan.shape[1] && plan.strides[0][1] == 1) {
      constexpr int V = vec_width<Out, In...>();
      const int64_t C = plan.shape[1];
      bool ok = C % V == 0 && reinterpret_cast<uintptr_t>(o) % (sizeof(Out) * V) == 0;
      ((ok = ok && ((plan.strides[Is + 1][0] == C && plan.strides[Is + 1][1] == 1) ||
                    (plan.strides[Is + 1][0] == 0 && plan.strides[Is + 1][1] == 1) ||
                    (plan.strides[Is + 1][0] == 0 && plan.strides[Is + 1][1] == 0)) &&
                   (plan.strides[Is + 1][1] == 0 || reinterpret_cast<uintptr_t>(ptr[Is + 1]) % (sizeof(In) * V) == 0)),
       ...);
      if (ok) {
        const unsigned grid = grid_for((n + V - 1) / V, kMapThreads, ctx);
        map_dense_kernel<V, Out, F, In...><<<grid, kMapThreads, 0, ctx.stream()>>>(
            n, o, f,
            DenseIn<In>{reinterpret_cast<const In*>(ptr[Is + 1]), plan.strides[Is + 1][1] == 0,
                        plan.strides[Is + 1][0] == 0 && plan.strides[Is + 1][1] == 1 ? C : 0}...);
        VT_CUDA_CHECK_LAUNCH();
        return;
      }
    }
    split_32bit<N>(plan, ptr, es, [&](const StridedPlan<N>& piece, const std::array<char*, N>& pp) {
      int64_t count = 1;
      for (int d = 0; d < piece.ndim; ++d) count *= piece.shape[d];
      if (count == 0) return;
      map_strided_kernel<uint32_t, Out, F, In...><<<grid_for(count, kMapThreads, ctx), kMapThreads, 0, ctx.stream()>>>(
          piece, static_cast<uint32_t>(count), reinterpret_cast<Out*>(pp[0]), f,
          reinterpret_cast<const In*>(pp[Is + 1])...);
      VT_CUDA_CHECK_LAUNCH();
    });
  }(std::make_index_sequence<sizeof...(In)>{});
}

// The unsigned integer type of a size, for byte-pattern copies and fills.
template <size_t S> struct uint_of_size;
template <> struct uint_of_size<1> { using type = uint8_t; };
template <> struct uint_of_size<2> { using type = uint16_t; };
template <> struct uint_of_size<4> { using type = uint32_t; };
template <> struct uint_of_size<8> { using type = uint64_t; };

}  // namespace vt::cuda
