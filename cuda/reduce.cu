// reduce.cu: sum/max/min/argmax/argmin over any set of dims, and cumsum.
//
// Reduce: the input splits into kept dims (one output each, M outputs) and reduced dims (N elements
// per output), each coalesced like the CPU's. Two kernel shapes, chosen by layout:
//   row     the reduced space's innermost stride is 1: a block of threads per output; thread t
//           reads elements t, t + T, ... (16-byte vectors when the run is one aligned unit-stride
//           dim), then a fixed shuffle tree and a shared-memory pass combine the T partials;
//   column  otherwise (e.g. summing over rows of a row-major matrix): a thread per output, adjacent
//           threads reading adjacent outputs' elements (coalesced when the kept inner stride is 1).
// When there are too few outputs to fill the device, the reduced range is cut into S slices
// (grid.y); slice partials go to a workspace and a second kernel combines them in slice order.
// S and the block size depend only on (M, N), never on timing or the GPU model, so a result is the
// same bits on every run and every card; it is not the CPU's summation order (sums agree to
// rounding).
// Precision: float sums accumulate in f64 (as on the CPU), integer and bool sums in int64 (output
// int64). max/min propagate NaN; argmax/argmin return the first index of the extreme, a NaN counting
// as the extreme (the first NaN wins), via a merge that is commutative, so any combination order
// gives the CPU's answer.
//
// Cumsum: a thread per line walks the line in order, accumulating in f64 (floats) or int64.
#include "reduce.cuh"

namespace vt::cuda {

using kernels::ReduceOp;
using reduce_detail::Space;

namespace {

// ---- cumsum ----------------------------------------------------------------------------------------
template <class T, class O>
__global__ void cumsum_kernel(const T* __restrict__ x, O* __restrict__ out, Space lines_x, Space lines_o, int64_t L,
                              int64_t sx, int64_t so) {
  using Accum = scalar::sum_acc_t<compute_t<T>>;
  const int64_t M = lines_x.numel();
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t m = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; m < M; m += step) {
    const T* p = x + lines_x.offset(m);
    O* o = out + lines_o.offset(m);
    Accum acc = 0;
    for (int64_t i = 0; i < L; ++i) {
      acc += static_cast<Accum>(load(p + i * sx));
      o[i * so] = to_storage<O>(acc);
    }
  }
}

}  // namespace

void reduce_sum(const Tensor& x, uint32_t mask, const Tensor& out) {
  visit_dtype(x.dtype(), [&](auto tag) {
    reduce_detail::reduce_typed<typename decltype(tag)::type, ReduceOp::Sum>(x, mask, out);
  });
}

void CudaBackend::reduce(ReduceOp op, const Tensor& x, uint32_t mask, const Tensor& out) {
  check_cuda(x, "reduce");
  check_cuda(out, "reduce");
  DeviceGuard g(out.device());
  switch (op) {
    case ReduceOp::Sum: return reduce_sum(x, mask, out);
    case ReduceOp::Max: return reduce_max(x, mask, out);
    case ReduceOp::Min: return reduce_min(x, mask, out);
    case ReduceOp::ArgMax: return reduce_argmax(x, mask, out);
    case ReduceOp::ArgMin: return reduce_argmin(x, mask, out);
  }
}

void CudaBackend::cumsum(const Tensor& x, int dim, const Tensor& out) {
  check_cuda(x, "cumsum");
  check_cuda(out, "cumsum");
  if (x.numel() == 0) return;
  DeviceGuard g(out.device());
  DeviceContext& ctx = context(out.device().index);
  Space lx, lo;
  for (int d = 0; d < x.dim(); ++d) {
    if (d == dim || x.shape()[d] == 1) continue;
    lx.shape[lx.n] = lo.shape[lo.n] = x.shape()[d];
    lx.stride[lx.n++] = x.strides()[d];
    lo.stride[lo.n++] = out.strides()[d];
  }
  const int64_t L = x.dim() ? x.shape()[dim] : 1;
  const int64_t sx = x.dim() ? x.strides()[dim] : 0, so = out.dim() ? out.strides()[dim] : 0;
  const unsigned grid = grid_for(lx.numel(), 128, ctx);
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = static_cast<const T*>(x.raw_data());
    if (out.dtype() == DType::I64 && x.dtype() != DType::I64) {
      cumsum_kernel<T, int64_t><<<grid, 128, 0, ctx.stream()>>>(xp, static_cast<int64_t*>(out.raw_data()), lx, lo, L,
                                                              sx, so);
    } else {
      VT_CHECK(out.dtype() == x.dtype(), "cuda cumsum: output dtype ", dtype_name(out.dtype()), " for input ",
               dtype_name(x.dtype()));
      cumsum_kernel<T, T><<<grid, 128, 0, ctx.stream()>>>(xp, static_cast<T*>(out.raw_data()), lx, lo, L, sx, so);
    }
    VT_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace vt::cuda
