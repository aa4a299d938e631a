// index.cu: index_select, gather and scatter_add of the CUDA backend.
//
// Every kernel validates each index against the size of the indexed dim before using it. A bad
// index is never dereferenced: the thread records its position in the index tensor (row-major)
// with an atomicMin into the device's error slot, so the smallest bad position wins whatever the
// schedule, and skips the element. After the kernel the host reads the slot back (one small
// synchronising copy) and raises the same message as the CPU backend, naming the op, the index
// value and its position.
//
// scatter_add is deterministic without atomics: one thread owns a line (all coordinates of the
// index except `dim`) and adds its L elements in order; different lines touch different outputs, so
// colliding indices always add in the same order, as on the CPU. Values accumulate in the compute
// type and round on each store (bf16 += bf16 rounds per add, like the CPU).
#include <cstring>
#include <mutex>

#include "backend.h"
#include "loop.cuh"

namespace vt::cuda {

namespace {

constexpr int kThreads = 256;
constexpr unsigned char kNoErrorByte = 0x7F;  // slot bytes before any error: 0x7F7F... (huge)
constexpr int64_t kNoError = 0x7F7F7F7F7F7F7F7FLL;

struct IndexPlan {
  int nd = 0;
  int dim = 0;
  int64_t dim_size = 0;  // size of the indexed dim of the tensor the index points into
  int64_t shape[kMaxDims];
  int64_t xs[kMaxDims], os[kMaxDims], is[kMaxDims];  // strides (elements) of x/src, out, index
};

__device__ __forceinline__ void report_bad(int64_t* slot, int64_t position) {
  atomicMin(reinterpret_cast<long long*>(slot), static_cast<long long>(position));
}

template <class I>
__device__ __forceinline__ int64_t read_index(const I* p) { return static_cast<int64_t>(*p); }

// out(c) = x(c with c[dim] -> index[c[dim]]); c runs over out's shape.
template <class E, class I>
__global__ void __launch_bounds__(kThreads) index_select_kernel(const E* __restrict__ x, E* __restrict__ out,
                                                                const I* __restrict__ index, int64_t index_stride,
                                                                IndexPlan p, int64_t n, int64_t* slot) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    int64_t rem = i, xo = 0, oo = 0, j = 0;
    for (int d = p.nd - 1; d >= 0; --d) {
      const int64_t c = rem % p.shape[d];
      rem /= p.shape[d];
      oo += c * p.os[d];
      if (d == p.dim) j = c;
      else xo += c * p.xs[d];
    }
    const int64_t k = read_index(index + j * index_stride);
    if (k < 0 || k >= p.dim_size) {
      report_bad(slot, j);
      continue;
    }
    out[oo] = x[xo + k * p.xs[p.dim]];
  }
}

// out(c) = x(c with c[dim] -> index(c)); c runs over index's shape (= out's).
template <class E, class I>
__global__ void __launch_bounds__(kThreads) gather_kernel(const E* __restrict__ x, E* __restrict__ out,
                                                          const I* __restrict__ index, IndexPlan p, int64_t n,
                                                          int64_t* slot) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    int64_t rem = i, xo = 0, oo = 0, io = 0;
    for (int d = p.nd - 1; d >= 0; --d) {
      const int64_t c = rem % p.shape[d];
      rem /= p.shape[d];
      oo += c * p.os[d];
      io += c * p.is[d];
      if (d != p.dim) xo += c * p.xs[d];
    }
    const int64_t k = read_index(index + io);
    if (k < 0 || k >= p.dim_size) {
      report_bad(slot, i);
      continue;
    }
    out[oo] = x[xo + k * p.xs[p.dim]];
  }
}

// For each line (index coordinates except dim), in order j = 0..L-1:
//   out(c, dim = index(c, j)) += src(c, dim = j).   xs holds src's strides here.
template <class T, class I>
__global__ void __launch_bounds__(kThreads) scatter_add_kernel(T* __restrict__ out, const T* __restrict__ src,
                                                               const I* __restrict__ index, IndexPlan p, int64_t lines,
                                                               int64_t* slot) {
  const int64_t L = p.shape[p.dim];
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t line = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; line < lines; line += step) {
    int64_t rem = line, so = 0, oo = 0, io = 0, flat = 0, w = 1;  // flat: row-major position in index
    for (int d = p.nd - 1; d >= 0; --d) {
      if (d == p.dim) {
        w *= p.shape[d];
        continue;
      }
      const int64_t c = rem % p.shape[d];
      rem /= p.shape[d];
      so += c * p.xs[d];
      oo += c * p.os[d];
      io += c * p.is[d];
      flat += c * w;
      w *= p.shape[d];
    }
    int64_t inner = 1;  // row-major stride of dim within index's shape
    for (int d = p.dim + 1; d < p.nd; ++d) inner *= p.shape[d];
    for (int64_t j = 0; j < L; ++j) {
      const int64_t k = read_index(index + io + j * p.is[p.dim]);
      if (k < 0 || k >= p.dim_size) {
        report_bad(slot, flat + j * inner);
        continue;
      }
      T* o = out + oo + k * p.os[p.dim];
      *o = to_storage<T>(load(o) + load(src + so + j * p.xs[p.dim]));
    }
  }
}

IndexPlan make_index_plan(const Shape& shape, int dim, int64_t dim_size, const Tensor& x, const Tensor& out,
                          const Tensor* index) {
  IndexPlan p;
  p.nd = shape.size();
  p.dim = dim;
  p.dim_size = dim_size;
  for (int d = 0; d < p.nd; ++d) {
    p.shape[d] = shape[d];
    p.xs[d] = x.strides()[d];
    p.os[d] = out.strides()[d];
    p.is[d] = index ? index->strides()[d] : 0;
  }
  return p;
}

// Clears the slot for one checked kernel; the returned lock keeps other host threads (and their
// streams) off the slot until check_slot has read it back.
std::unique_lock<std::mutex> reset_slot(DeviceContext& ctx) {
  std::unique_lock<std::mutex> lock(ctx.error_mu);
  VT_CUDA_CHECK(cudaMemsetAsync(ctx.error_slot, kNoErrorByte, sizeof(int64_t), ctx.stream()));
  return lock;
}

// Reads the slot back; raises naming the first bad index (read from the index tensor).
void check_slot(DeviceContext& ctx, const Tensor& index_flat_src, int64_t dim_size, const char* op) {
  VT_CUDA_CHECK(cudaMemcpyAsync(ctx.error_host, ctx.error_slot, sizeof(int64_t), cudaMemcpyDeviceToHost, ctx.stream()));
  VT_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
  const int64_t pos = ctx.error_host[0];
  if (pos == kNoError) return;
  Tensor idx = index_flat_src.to(Device::cpu()).contiguous();
  const int64_t value = idx.dtype() == DType::I64 ? idx.data<int64_t>()[pos] : idx.data<int32_t>()[pos];
  VT_FAIL(op, ": index ", value, " at position ", pos, " is out of bounds for a dim of size ", dim_size);
}

template <class F>
void visit_index(const Tensor& index, const char* op, F&& f) {
  if (index.dtype() == DType::I64) return f(type_tag<int64_t>{});
  if (index.dtype() == DType::I32) return f(type_tag<int32_t>{});
  VT_FAIL(op, ": index must be int64 or int32, got ", dtype_name(index.dtype()));
}

template <class F>
void visit_bits(size_t es, F&& f) {
  switch (es) {
    case 1: return f(type_tag<uint8_t>{});
    case 2: return f(type_tag<uint16_t>{});
    case 4: return f(type_tag<uint32_t>{});
    case 8: return f(type_tag<uint64_t>{});
  }
  VT_FAIL("cuda index: element size ", es);
}

}  // namespace

void CudaBackend::index_select(const Tensor& x, int dim, const Tensor& index, const Tensor& out) {
  check_cuda(x, "index_select");
  check_cuda(index, "index_select");
  check_cuda(out, "index_select");
  VT_CHECK(index.dim() <= 1, "cuda index_select: index must be 0-d or 1-d, got ", index.shape().str());
  const int64_t n = out.numel();
  if (n == 0) return;
  DeviceGuard g(out.device());
  DeviceContext& ctx = context(out.device().index);
  const IndexPlan p = make_index_plan(out.shape(), dim, x.shape()[dim], x, out, nullptr);
  const int64_t istride = index.dim() ? index.strides()[0] : 0;
  const auto slot = reset_slot(ctx);
  visit_bits(x.element_size(), [&](auto e) {
    using E = typename decltype(e)::type;
    visit_index(index, "index_select", [&](auto i) {
      using I = typename decltype(i)::type;
      index_select_kernel<E, I><<<grid_for(n, kThreads, ctx), kThreads, 0, ctx.stream()>>>(
          static_cast<const E*>(x.raw_data()), static_cast<E*>(out.raw_data()),
          static_cast<const I*>(index.raw_data()), istride, p, n, ctx.error_slot);
      VT_CUDA_CHECK_LAUNCH();
    });
  });
  check_slot(ctx, index.reshape({-1}), x.shape()[dim], "index_select");
}

void CudaBackend::gather(const Tensor& x, int dim, const Tensor& index, const Tensor& out) {
  check_cuda(x, "gather");
  check_cuda(index, "gather");
  check_cuda(out, "gather");
  const int64_t n = index.numel();
  if (n == 0) return;
  DeviceGuard g(out.device());
  DeviceContext& ctx = context(out.device().index);
  const IndexPlan p = make_index_plan(index.shape(), dim, x.shape()[dim], x, out, &index);
  const auto slot = reset_slot(ctx);
  visit_bits(x.element_size(), [&](auto e) {
    using E = typename decltype(e)::type;
    visit_index(index, "gather", [&](auto i) {
      using I = typename decltype(i)::type;
      gather_kernel<E, I><<<grid_for(n, kThreads, ctx), kThreads, 0, ctx.stream()>>>(
          static_cast<const E*>(x.raw_data()), static_cast<E*>(out.raw_data()),
          static_cast<const I*>(index.raw_data()), p, n, ctx.error_slot);
      VT_CUDA_CHECK_LAUNCH();
    });
  });
  check_slot(ctx, index, x.shape()[dim], "gather");
}

void CudaBackend::scatter_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src) {
  check_cuda(out, "scatter_add");
  check_cuda(index, "scatter_add");
  check_cuda(src, "scatter_add");
  const int64_t n = index.numel();
  if (n == 0) return;
  DeviceGuard g(out.device());
  DeviceContext& ctx = context(out.device().index);
  const int64_t L = index.shape()[dim], lines = n / L;
  const IndexPlan p = make_index_plan(index.shape(), dim, out.shape()[dim], src, out, &index);
  const auto slot = reset_slot(ctx);
  visit_dtype(out.dtype(), [&](auto t) {
    using T = typename decltype(t)::type;
    visit_index(index, "scatter_add", [&](auto i) {
      using I = typename decltype(i)::type;
      scatter_add_kernel<T, I><<<grid_for(lines, kThreads, ctx), kThreads, 0, ctx.stream()>>>(
          static_cast<T*>(out.raw_data()), static_cast<const T*>(src.raw_data()),
          static_cast<const I*>(index.raw_data()), p, lines, ctx.error_slot);
      VT_CUDA_CHECK_LAUNCH();
    });
  });
  check_slot(ctx, index, out.shape()[dim], "scatter_add");
}

}  // namespace vt::cuda
