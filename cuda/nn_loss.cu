// nn_loss.cu: the fused cross-entropy (token classes) and bitwise (Infinity's per-bit 2-way)
// cross-entropy kernels on CUDA, registered under the CPU kernels' names (src/nn_loss.cpp holds the
// ops, the reductions and the CPU versions).
//
// Cross-entropy: one 256-thread block per row of C logits: max, then sum(exp(z - max)) and sum(z),
// then the row's logsumexp and loss; nothing of size (rows, C) is allocated. The backward writes
// dz = g_row * (softmax - eps / C) with the target column fixed in the same pass (ignored rows are
// zero). Bitwise CE: one warp per token over its d bit pairs (forward), one thread per bit pair
// (backward). Targets and bits are validated on the device: the first bad position lands in a
// flag (atomicMin), read back after the kernel (one 8-byte copy, which waits for it), and the
// error names it as the CPU's does. Values are held in f32 (f64 for f64 logits); per-row results
// stay in that precision, gradients are rounded once into the logits' dtype.
#include "math.cuh"
#include "nn_kernels.h"
#include "vt/nn/loss.h"

namespace vt::cuda {
namespace {

using nnk::block_max;
using nnk::block_sum;
using nnk::blocks_for;
using nnk::visit_float;
using nnk::warp_sum;

template <class T>
using acc = compute_t<T>;

constexpr int kThreads = 256;

// ==== cross-entropy ================================================================================
// The first bad position (row or bit) goes to *flag by atomicMin; UINT64_MAX means none.
__device__ __forceinline__ void flag_bad(unsigned long long* flag, int64_t pos) {
  atomicMin(flag, static_cast<unsigned long long>(pos));
}

// Returns the first flagged position, or -1 (one 8-byte read back, which waits for the kernel).
int64_t read_flag(const Tensor& flag) {
  const uint64_t v = flag.to(Device::cpu()).data<int64_t>()[0];
  return v == ~uint64_t(0) ? -1 : static_cast<int64_t>(v);
}

// z: (N, C); y: (N); row_loss, lse: (N). One block per row.
template <class T>
__global__ void __launch_bounds__(kThreads) cross_entropy_forward_kernel(
    const T* __restrict__ z, const int64_t* __restrict__ y, int64_t C, int64_t ignore, acc<T> eps,
    acc<T>* __restrict__ row_loss, acc<T>* __restrict__ lse, unsigned long long* flag) {
  using A = acc<T>;
  __shared__ A scratch[32];
  const int64_t r = blockIdx.x;
  const T* zr = z + r * C;
  A m = -INFINITY;
  for (int64_t c = threadIdx.x; c < C; c += kThreads) {
    const A v = load(zr + c);
    m = (v > m || v != v) ? v : m;
  }
  m = block_max(m, scratch);
  A s = 0, sz = 0;
  for (int64_t c = threadIdx.x; c < C; c += kThreads) {
    const A v = load(zr + c);
    if (m != A(-INFINITY)) s += m_exp(v - m);  // all -inf: nothing to add (exp(-inf - -inf) is NaN)
    sz += v;
  }
  s = block_sum(s, scratch);
  sz = block_sum(sz, scratch);
  if (threadIdx.x != 0) return;
  const A l = m + m_log(s);
  lse[r] = l;
  const int64_t t = y[r];
  if (t == ignore) {
    row_loss[r] = 0;
    return;
  }
  if (t < 0 || t >= C) {
    flag_bad(flag, r);
    row_loss[r] = 0;
    return;
  }
  const A smooth = eps > A(0) ? eps / A(C) * sz : A(0);
  row_loss[r] = l - (A(1) - eps) * load(zr + t) - smooth;
}

// dz[r, c] = g[r] * (exp(z - lse) - eps / C - (1 - eps) [c == y]); 0 for ignored rows
template <class T>
__global__ void __launch_bounds__(kThreads) cross_entropy_backward_kernel(
    const T* __restrict__ z, const int64_t* __restrict__ y, const acc<T>* __restrict__ lse,
    const acc<T>* __restrict__ g, int64_t C, int64_t ignore, acc<T> eps, T* __restrict__ dz) {
  using A = acc<T>;
  const int64_t r = blockIdx.x, t = y[r];
  const T* zr = z + r * C;
  T* dr = dz + r * C;
  if (t == ignore) {
    for (int64_t c = threadIdx.x; c < C; c += kThreads) dr[c] = to_storage<T>(A(0));
    return;
  }
  const A gr = g[r], l = lse[r], off = gr * eps / A(C);
  for (int64_t c = threadIdx.x; c < C; c += kThreads) {
    const A e = m_exp(load(zr + c) - l);
    dr[c] = to_storage<T>(c == t ? gr * (e - eps / A(C) - (A(1) - eps)) : gr * e - off);
  }
}

void cross_entropy_forward_cuda(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                                double label_smoothing, const Tensor& row_loss, const Tensor& lse) {
  check_cuda(logits, "cross_entropy");
  DeviceGuard g(logits.device());
  DeviceContext& ctx = context(logits.device().index);
  const int64_t N = logits.size(0), C = logits.size(1);
  if (N == 0) return;
  Tensor flag = full({1}, -1.0, {DType::I64, logits.device()});  // all bits set: no bad row yet
  visit_float(logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc<T>;
    cross_entropy_forward_kernel<T><<<static_cast<unsigned>(N), kThreads, 0, ctx.stream()>>>(
        static_cast<const T*>(logits.raw_data()), static_cast<const int64_t*>(target.raw_data()), C, ignore_index,
        A(label_smoothing), static_cast<A*>(row_loss.raw_data()), static_cast<A*>(lse.raw_data()),
        static_cast<unsigned long long*>(flag.raw_data()));
    VT_CUDA_CHECK_LAUNCH();
  });
  const int64_t bad = read_flag(flag);
  if (bad >= 0) {
    const int64_t t = target.to(Device::cpu()).data<int64_t>()[bad];
    VT_FAIL("cross_entropy: target ", t, " at row ", bad, " is out of range for ", C, " classes (ignore_index ",
            ignore_index, ")");
  }
}

void cross_entropy_backward_cuda(const Tensor& logits, const Tensor& target, const Tensor& lse, const Tensor& row_grad,
                                 int64_t ignore_index, double label_smoothing, const Tensor& dlogits) {
  check_cuda(logits, "cross_entropy_backward");
  DeviceGuard g(logits.device());
  DeviceContext& ctx = context(logits.device().index);
  const int64_t N = logits.size(0), C = logits.size(1);
  if (N == 0) return;
  visit_float(logits.dtype(), "cross_entropy_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc<T>;
    cross_entropy_backward_kernel<T><<<static_cast<unsigned>(N), kThreads, 0, ctx.stream()>>>(
        static_cast<const T*>(logits.raw_data()), static_cast<const int64_t*>(target.raw_data()),
        static_cast<const A*>(lse.raw_data()), static_cast<const A*>(row_grad.raw_data()), C, ignore_index,
        A(label_smoothing), static_cast<T*>(dlogits.raw_data()));
    VT_CUDA_CHECK_LAUNCH();
  });
}

// ==== bitwise cross-entropy ========================================================================
template <class A>
__device__ __forceinline__ A m_log1p(A v) {
  if constexpr (std::is_same_v<A, float>) return log1pf(v);
  else return ::log1p(v);
}

// z: (T, d, 2); b: (T, d); token_loss: (T) = mean over d of
//   logsumexp(z0, z1) - (1 - eps) z_b - (eps / 2)(z0 + z1). One warp per token.
template <class T>
__global__ void __launch_bounds__(kThreads) bitwise_forward_kernel(const T* __restrict__ z,
                                                                    const int64_t* __restrict__ b, int64_t tokens,
                                                                    int64_t d, acc<T> eps,
                                                                    acc<T>* __restrict__ token_loss,
                                                                    unsigned long long* flag) {
  using A = acc<T>;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * (kThreads / 32) + (threadIdx.x >> 5);
  if (t >= tokens) return;
  A s = 0;
  for (int64_t j = threadIdx.x & 31; j < d; j += 32) {
    const int64_t k = t * d + j, bit = b[k];
    if (bit != 0 && bit != 1) flag_bad(flag, k);
    const A z0 = load(z + 2 * k), z1 = load(z + 2 * k + 1);
    const A l = (z0 > z1 ? z0 : z1) + m_log1p(m_exp(-::fabs(z1 - z0)));
    s += l - (A(1) - eps) * (bit ? z1 : z0) - eps / A(2) * (z0 + z1);
  }
  s = warp_sum(s);
  if ((threadIdx.x & 31) == 0) token_loss[t] = s / A(d);
}

// dz_c = token_grad / d * (p_c - (1 - eps)[c == b] - eps / 2); one thread per bit pair
template <class T>
__global__ void __launch_bounds__(kThreads) bitwise_backward_kernel(const T* __restrict__ z,
                                                                     const int64_t* __restrict__ b,
                                                                     const acc<T>* __restrict__ token_grad, int64_t n,
                                                                     int64_t d, acc<T> eps, T* __restrict__ dz) {
  using A = acc<T>;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n; k += step) {
    const A coef = token_grad[k / d] / A(d);
    const A delta = load(z + 2 * k + 1) - load(z + 2 * k);
    const A p1 = A(1) / (A(1) + m_exp(-delta)), p0 = A(1) / (A(1) + m_exp(delta));
    const A on = A(1) - eps, half = eps / A(2);
    const bool one = b[k] != 0;
    dz[2 * k] = to_storage<T>(coef * (p0 - (one ? A(0) : on) - half));
    dz[2 * k + 1] = to_storage<T>(coef * (p1 - (one ? on : A(0)) - half));
  }
}

void bitwise_forward_cuda(const Tensor& logits, const Tensor& bits, double label_smoothing, const Tensor& token_loss) {
  check_cuda(logits, "bitwise_cross_entropy");
  DeviceGuard g(logits.device());
  DeviceContext& ctx = context(logits.device().index);
  const int64_t tokens = logits.size(0), d = logits.size(1);
  if (tokens == 0) return;
  Tensor flag = full({1}, -1.0, {DType::I64, logits.device()});
  visit_float(logits.dtype(), "bitwise_cross_entropy", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc<T>;
    bitwise_forward_kernel<T><<<blocks_for(tokens, kThreads / 32), kThreads, 0, ctx.stream()>>>(
        static_cast<const T*>(logits.raw_data()), static_cast<const int64_t*>(bits.raw_data()), tokens, d,
        A(label_smoothing), static_cast<A*>(token_loss.raw_data()), static_cast<unsigned long long*>(flag.raw_data()));
    VT_CUDA_CHECK_LAUNCH();
  });
  const int64_t bad = read_flag(flag);
  if (bad >= 0) {
    const int64_t v = bits.to(Device::cpu()).contiguous().data<int64_t>()[bad];
    VT_FAIL("bitwise_cross_entropy: bit ", bad % d, " of token ", bad / d, " is ", v, " (bits must be 0 or 1)");
  }
}

void bitwise_backward_cuda(const Tensor& logits, const Tensor& bits, const Tensor& token_grad, double label_smoothing,
                           const Tensor& dlogits) {
  check_cuda(logits, "bitwise_cross_entropy_backward");
  DeviceGuard g(logits.device());
  DeviceContext& ctx = context(logits.device().index);
  const int64_t n = logits.size(0) * logits.size(1);
  if (n == 0) return;
  visit_float(logits.dtype(), "bitwise_cross_entropy_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc<T>;
    bitwise_backward_kernel<T><<<grid_for(n, kThreads, ctx), kThreads, 0, ctx.stream()>>>(
        static_cast<const T*>(logits.raw_data()), static_cast<const int64_t*>(bits.raw_data()),
        static_cast<const A*>(token_grad.raw_data()), n, logits.size(1), A(label_smoothing),
        static_cast<T*>(dlogits.raw_data()));
    VT_CUDA_CHECK_LAUNCH();
  });
}

template <class Fn>
void reg(const char* name, Fn* fn) {
  kernels::register_kernel(name, DeviceType::CUDA, fn);
}

}  // namespace

void register_nn_loss_kernels() {
  using namespace vt::nn;
  reg<CrossEntropyForwardFn>("cross_entropy_forward", &cross_entropy_forward_cuda);
  reg<CrossEntropyBackwardFn>("cross_entropy_backward", &cross_entropy_backward_cuda);
  reg<BitwiseCrossEntropyForwardFn>("bitwise_cross_entropy_forward", &bitwise_forward_cuda);
  reg<BitwiseCrossEntropyBackwardFn>("bitwise_cross_entropy_backward", &bitwise_backward_cuda);
}

}  // namespace vt::cuda
