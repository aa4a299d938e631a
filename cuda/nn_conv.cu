// nn_conv.cu: conv2d forward and backward on CUDA, registered under the CPU kernels' names
// (src/nn_conv.cpp holds the op, the contract and the CPU version). Two paths:
//   cuDNN (nn_conv_cudnn.cu, when vt is built with it): f32, bf16 and f16, the 16-bit types on
//     tensor cores with f32 accumulation. Then the kernels are also registered as
//     "conv2d_{forward,backward}_16bit", which tells the op layer to hand bf16/f16 operands over
//     as they are instead of widening them to f32.
//   im2col + cuBLAS (below): f64, whatever cuDNN declines (it reports back, this path runs), and
//     everything when VT_CONV_IM2COL=1 is set (to compare). 16-bit operands reaching it are widened
//     to f32 here and the results rounded once, which is what the op layer does without cuDNN.
// The bias (out += b) and its gradient are computed here for both paths.
//
// Images run in chunks of nb (as many as fit a 256 MiB column buffer, at least 1); per chunk
// (K = C*kh*kw, P = Ho*Wo):
//   forward   col (nb, K, P) = im2col(x[chunk]);   out[chunk] (nb, O, P) = w (O, K) @ col[n]
//             then out += bias, one pass over the whole output
//   backward  dcol (nb, K, P) = w^T (K, O) @ g[n];  dx[chunk] = col2im(dcol)
//             dw_img (nb, O, K) = g[n] (O, P) @ col[n]^T;  dw = ((dw_0 + dw_1) + dw_2) + ...
//             db (O) = per channel, images then positions in order, in double
// The GEMMs are the backend's bmm (cuBLAS, one strided-batched call per chunk; w is a batch-stride-0
// broadcast, w^T and col^T are read in place as transposed operands). A 1x1 stride-1 unpadded conv
// skips im2col/col2im: x[n] viewed as (C, H*W) is already col, and dcol is dx.
// col2im is a gather: one thread per input pixel adds its taps (i, j) in order, as the CPU's col2im
// does, so dx has no float atomics and is the same run to run. dw and db are summed in a fixed order
// too. Precision: f32 or f64 on this path; everything is in that type, GEMMs accumulate in it
// (CUBLAS_COMPUTE_32F without TF32, or 64F); db is summed in double for every dtype.
#include <array>
#include <atomic>

#include "math.cuh"
#include "nn_kernels.h"
#include "vt/autograd.h"
#include "vt/nn/conv.h"
#include "nn_conv_cudnn.h"

namespace vt::cuda {
namespace {

using nnk::block_sum;

constexpr int kThreads = 256;
constexpr int64_t kColBudgetBytes = int64_t(256) << 20;  // per-chunk scratch (col, dcol, dw_img each)

struct ConvGeom {
  int64_t N, C, H, W, O, kh, kw, Ho, Wo;
  int64_t sh, sw, top, left;
  __host__ __device__ int64_t K() const { return C * kh * kw; }
  __host__ __device__ int64_t P() const { return Ho * Wo; }
};

ConvGeom geometry(const Tensor& x, const Tensor& w, const nn::Conv2dOptions& o) {
  ConvGeom g{x.size(0), x.size(1), x.size(2), x.size(3), w.size(0), w.size(2), w.size(3), 0, 0,
             o.stride_h, o.stride_w, o.pad.top, o.pad.left};
  g.Ho = (g.H + o.pad.top + o.pad.bottom - g.kh) / o.stride_h + 1;
  g.Wo = (g.W + o.pad.left + o.pad.right - g.kw) / o.stride_w + 1;
  return g;
}

bool is_pointwise(const ConvGeom& g, const nn::Conv2dOptions& o) {
  return g.kh == 1 && g.kw == 1 && o.stride_h == 1 && o.stride_w == 1 && o.pad.left == 0 && o.pad.right == 0 &&
         o.pad.top == 0 && o.pad.bottom == 0;
}

// Images per chunk: the (nb, per_image) scratch stays within the budget, at least one image.
int64_t chunk_images(const ConvGeom& g, int64_t per_image, size_t elem) {
  const int64_t bytes = std::max<int64_t>(per_image * int64_t(elem), 1);
  return std::max<int64_t>(1, std::min<int64_t>(g.N, kColBudgetBytes / bytes));
}

// ---- kernels -------------------------------------------------------------------------------------
// x: (nb, C, H, W) -> col: (nb, K, P), col[n, (c*kh + i)*kw + j, oh*Wo + ow] = x[n, c, ih, iw] with
// ih = oh*sh - top + i, iw = ow*sw - left + j; taps in the padding read 0. One thread per col
// element: consecutive threads write consecutive output positions (coalesced stores).
template <class T>
__global__ void im2col_kernel(const T* __restrict__ x, ConvGeom g, int64_t nb, T* __restrict__ col) {
  const int64_t P = g.P(), K = g.K(), total = nb * K * P;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t p = e % P, nk = e / P, k = nk % K, n = nk / K;
    const int64_t ow = p % g.Wo, oh = p / g.Wo;
    const int64_t j = k % g.kw, i = (k / g.kw) % g.kh, c = k / (g.kw * g.kh);
    const int64_t ih = oh * g.sh - g.top + i, iw = ow * g.sw - g.left + j;
    col[e] = (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W) ? x[((n * g.C + c) * g.H + ih) * g.W + iw] : T(0);
  }
}

// The transpose of im2col as a gather: dx (nb, C, H, W), each pixel the sum of the dcol (nb, K, P)
// entries that read it, taps (i, j) in order from 0 (the CPU col2im's order for every pixel).
template <class T>
__global__ void col2im_kernel(const T* __restrict__ dcol, ConvGeom g, int64_t nb, T* __restrict__ dx) {
  const int64_t P = g.P(), K = g.K(), total = nb * g.C * g.H * g.W;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t iw = e % g.W, ih = (e / g.W) % g.H, c = (e / (g.W * g.H)) % g.C, n = e / (g.W * g.H * g.C);
    const T* dn = dcol + n * K * P;
    T s = T(0);
    for (int64_t i = 0; i < g.kh; ++i) {
      const int64_t th = ih + g.top - i;  // = oh * sh when tap i of output row oh reads row ih
      if (th < 0 || th % g.sh != 0) continue;
      const int64_t oh = th / g.sh;
      if (oh >= g.Ho) continue;
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t tw = iw + g.left - j;
        if (tw < 0 || tw % g.sw != 0) continue;
        const int64_t ow = tw / g.sw;
        if (ow >= g.Wo) continue;
        s += dn[((c * g.kh + i) * g.kw + j) * P + oh * g.Wo + ow];
      }
    }
    dx[e] = s;
  }
}

// out (N, O, P) += bias[o], in compute precision, rounded once to T.
template <class T>
__global__ void add_bias_kernel(T* __restrict__ out, const T* __restrict__ b, int64_t O, int64_t P, int64_t total) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x)
    out[e] = to_storage<T>(load(out + e) + load(b + (e / P) % O));
}

// dw (E) = (first ? 0 : dw) + dw_img[0] + dw_img[1] + ... (nb, E), images in order: with chunks
// called in order, dw is ((dw_0 + dw_1) + dw_2) + ..., the CPU's order.
template <class T>
__global__ void sum_images_kernel(const T* __restrict__ parts, int64_t nb, int64_t E, bool first, T* __restrict__ dw) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < E; e += int64_t(gridDim.x) * blockDim.x) {
    T s = first ? parts[e] : dw[e] + parts[e];
    for (int64_t n = 1; n < nb; ++n) s += parts[n * E + e];
    dw[e] = s;
  }
}

// db[o] = sum over n, p of g[n, o, p] in double; one block per channel. Each thread sums a fixed
// strided subset, then a fixed-shape block reduction: the same result run to run.
template <class T>
__global__ void bias_grad_kernel(const T* __restrict__ gout, int64_t N, int64_t O, int64_t P, T* __restrict__ db) {
  __shared__ double scratch[32];
  const int64_t oc = blockIdx.x, NP = N * P;
  double s = 0;
  for (int64_t e = threadIdx.x; e < NP; e += blockDim.x) s += double(load(gout + ((e / P) * O + oc) * P + e % P));
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) db[oc] = to_storage<T>(s);
}

unsigned grid(int64_t work, const DeviceContext& ctx) {
  return grid_for(work, kThreads, ctx);
}

// ---- forward and backward ------------------------------------------------------------------------
template <class T>
void forward(const Tensor& x, const Tensor& w, const nn::Conv2dOptions& o, const Tensor& out) {
  const ConvGeom g = geometry(x, w, o);
  const int64_t K = g.K(), P = g.P();
  const Device dev = x.device();
  DeviceContext& ctx = context(dev.index);
  kernels::Backend& be = kernels::backend(dev);
  const bool pointwise = is_pointwise(g, o);
  const int64_t nb_max = chunk_images(g, K * P, sizeof(T));
  Tensor col = pointwise || g.N == 0 ? Tensor() : empty({nb_max, K, P}, {x.dtype(), dev});  // (nb, K, P)
  const Tensor w3 = w.view({1, g.O, K});                                                      // w: (O, K)
  for (int64_t n0 = 0; n0 < g.N; n0 += nb_max) {
    const int64_t nb = std::min(nb_max, g.N - n0);
    const Tensor xn = x.narrow(0, n0, nb);  // (nb, C, H, W)
    Tensor cn;
    if (pointwise) {
      cn = xn.view({nb, g.C, P});
    } else {
      cn = col.narrow(0, 0, nb);
      im2col_kernel<T><<<grid(nb * K * P, ctx), kThreads, 0, ctx.stream()>>>(xn.data<T>(), g, nb, cn.data<T>());
      VT_CUDA_CHECK_LAUNCH();
    }
    be.bmm(w3.expand({nb, g.O, K}), cn, out.narrow(0, n0, nb).view({nb, g.O, P}));
  }
}

template <class T>
void backward(const Tensor& x, const Tensor& w, const Tensor& gout, const nn::Conv2dOptions& o, const Tensor& dx,
              const Tensor& dw) {
  const ConvGeom g = geometry(x, w, o);
  const int64_t K = g.K(), P = g.P(), OK = g.O * K;
  const Device dev = x.device();
  DeviceContext& ctx = context(dev.index);
  kernels::Backend& be = kernels::backend(dev);
  const bool pointwise = is_pointwise(g, o), want_dx = dx.defined(), want_dw = dw.defined();
  // Scratch per image: col (K, P) for dw, dcol (K, P) for dx, dw_img (O, K) for dw.
  const int64_t per_image = std::max({want_dw && !pointwise ? K * P : 0, want_dx && !pointwise ? K * P : 0,
                                      want_dw ? OK : 0});
  const int64_t nb_max = chunk_images(g, per_image, sizeof(T));
  const TensorOptions opt{x.dtype(), dev};
  Tensor col, dcol, dw_img;
  if (g.N > 0) {
    if (want_dw && !pointwise) col = empty({nb_max, K, P}, opt);
    if (want_dx && !pointwise) dcol = empty({nb_max, K, P}, opt);
    if (want_dw) dw_img = empty({nb_max, g.O, K}, opt);
  }
  const Tensor wT = w.view({1, g.O, K}).transpose(1, 2);  // w^T: (1, K, O), read in place
  for (int64_t n0 = 0; n0 < g.N; n0 += nb_max) {
    const int64_t nb = std::min(nb_max, g.N - n0);
    const Tensor xn = x.narrow(0, n0, nb);                          // (nb, C, H, W)
    const Tensor gn = gout.narrow(0, n0, nb).view({nb, g.O, P});   // (nb, O, P)
    if (want_dw) {  // dw_img (nb, O, K) = g[n] (O, P) @ col[n]^T (P, K)
      Tensor cn;
      if (pointwise) {
        cn = xn.view({nb, g.C, P});
      } else {
        cn = col.narrow(0, 0, nb);
        im2col_kernel<T><<<grid(nb * K * P, ctx), kThreads, 0, ctx.stream()>>>(xn.data<T>(), g, nb, cn.data<T>());
        VT_CUDA_CHECK_LAUNCH();
      }
      const Tensor parts = dw_img.narrow(0, 0, nb);
      be.bmm(gn, cn.transpose(1, 2), parts);
      sum_images_kernel<T><<<grid(OK, ctx), kThreads, 0, ctx.stream()>>>(parts.data<T>(), nb, OK, n0 == 0,
                                                                           dw.data<T>());
      VT_CUDA_CHECK_LAUNCH();
    }
    if (want_dx) {  // dcol (nb, K, P) = w^T (K, O) @ g[n] (O, P); dx[n] = col2im(dcol)
      const Tensor dxn = dx.narrow(0, n0, nb);
      if (pointwise) {
        be.bmm(wT.expand({nb, K, g.O}), gn, dxn.view({nb, g.C, P}));
      } else {
        const Tensor dn = dcol.narrow(0, 0, nb);
        be.bmm(wT.expand({nb, K, g.O}), gn, dn);
        col2im_kernel<T><<<grid(nb * g.C * g.H * g.W, ctx), kThreads, 0, ctx.stream()>>>(dn.data<T>(), g, nb,
                                                                                           dxn.data<T>());
        VT_CUDA_CHECK_LAUNCH();
      }
    }
  }
  if (want_dw && g.N == 0) be.fill(dw, 0);
}

// ---- bias, dispatch ------------------------------------------------------------------------------
template <class T>
void add_bias(const Tensor& out, const Tensor& b) {  // out (N, O, Ho, Wo) += b (O)
  const int64_t O = out.size(1), P = out.size(2) * out.size(3), total = out.numel();
  if (total == 0) return;
  DeviceContext& ctx = context(out.device().index);
  add_bias_kernel<T><<<grid(total, ctx), kThreads, 0, ctx.stream()>>>(out.data<T>(), b.data<T>(), O, P, total);
  VT_CUDA_CHECK_LAUNCH();
}

template <class T>
void bias_grad(const Tensor& gout, const Tensor& db) {  // db (O) = sum of gout (N, O, Ho, Wo) over N, Ho, Wo
  const int64_t N = gout.size(0), O = gout.size(1), P = gout.size(2) * gout.size(3);
  if (O == 0) return;
  DeviceContext& ctx = context(gout.device().index);
  bias_grad_kernel<T><<<static_cast<unsigned>(O), kThreads, 0, ctx.stream()>>>(gout.data<T>(), N, O, P, db.data<T>());
  VT_CUDA_CHECK_LAUNCH();
}

bool is_16bit(DType t) { return t == DType::BF16 || t == DType::F16; }

// A copy of a 16-bit operand in f32 (undefined stays undefined).
Tensor widen(const Tensor& t) {
  if (!t.defined()) return t;
  Tensor w = empty(t.shape(), {DType::F32, t.device()});
  kernels::backend(t.device()).copy(t, w);
  return w;
}

#ifdef VT_WITH_CUDNN
// cuDNN takes f32, bf16 and f16 unless VT_CONV_IM2COL is on (read at each call: device.h).
bool use_cudnn(DType t) { return !env_on("VT_CONV_IM2COL") && t != DType::F64; }
#endif

std::atomic<int64_t> g_forward_runs[2];  // conv2d forward calls that ran on cuDNN, on im2col

// out = conv(x, w) + b on the im2col path; 16-bit operands compute in f32 and round once at the end.
void im2col_forward(const Tensor& x, const Tensor& w, const Tensor& b, const nn::Conv2dOptions& o, const Tensor& out) {
  if (x.dtype() == DType::F64) {
    forward<double>(x, w, o, out);
    if (b.defined()) add_bias<double>(out, b);
  } else if (x.dtype() == DType::F32) {
    forward<float>(x, w, o, out);
    if (b.defined()) add_bias<float>(out, b);
  } else {
    const Tensor out32 = empty(out.shape(), {DType::F32, out.device()});
    forward<float>(widen(x), widen(w), o, out32);
    if (b.defined()) add_bias<float>(out32, widen(b));
    kernels::backend(out.device()).copy(out32, out);
  }
}

// dx, dw (each when defined) on the im2col path; 16-bit as in im2col_forward.
void im2col_backward(const Tensor& x, const Tensor& w, const Tensor& gout, const nn::Conv2dOptions& o,
                     const Tensor& dx, const Tensor& dw) {
  if (x.dtype() == DType::F64) return backward<double>(x, w, gout, o, dx, dw);
  if (x.dtype() == DType::F32) return backward<float>(x, w, gout, o, dx, dw);
  const TensorOptions f32{DType::F32, x.device()};
  const Tensor dx32 = dx.defined() ? empty(dx.shape(), f32) : Tensor();
  const Tensor dw32 = dw.defined() ? empty(dw.shape(), f32) : Tensor();
  backward<float>(widen(x), widen(w), widen(gout), o, dx32, dw32);
  kernels::Backend& be = kernels::backend(x.device());
  if (dx.defined()) be.copy(dx32, dx);
  if (dw.defined()) be.copy(dw32, dw);
}

void check_operands(const char* op, std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts) {
    if (!t->defined()) continue;
    check_cuda(*t, op);
    VT_CHECK(t->is_contiguous(), "cuda ", op, ": operands must be contiguous, got shape ", t->shape().str());
    VT_CHECK(t->dtype() == ts.begin()[0]->dtype(), "cuda ", op, ": operand dtype ", dtype_name(t->dtype()),
             " differs from the input's ", dtype_name(ts.begin()[0]->dtype()));
  }
  const DType t = ts.begin()[0]->dtype();
  VT_CHECK(t == DType::F32 || t == DType::F64 || is_16bit(t), "cuda ", op, ": expects floating-point operands, got ",
           dtype_name(t));
}

void conv2d_forward_cuda(const Tensor& x, const Tensor& w, const Tensor& b, const nn::Conv2dOptions& o,
                         const Tensor& out) {
  check_operands("conv2d_forward", {&x, &w, &b, &out});
  DeviceGuard guard(x.device());
  NoGradGuard ng;
  bool done = false;
#ifdef VT_WITH_CUDNN
  done = use_cudnn(x.dtype()) && conv2d_forward_cudnn(x, w, o, out);
#endif
  ++g_forward_runs[done ? 0 : 1];
  if (!done) return im2col_forward(x, w, b, o, out);
  if (b.defined())
    nnk::visit_float(x.dtype(), "conv2d_forward", [&](auto tag) { add_bias<typename decltype(tag)::type>(out, b); });
}

void conv2d_backward_cuda(const Tensor& x, const Tensor& w, const Tensor& gout, const nn::Conv2dOptions& o,
                          const Tensor& dx, const Tensor& dw, const Tensor& db) {
  check_operands("conv2d_backward", {&x, &w, &gout, &dx, &dw, &db});
  DeviceGuard guard(x.device());
  NoGradGuard ng;
  Tensor dx_left = dx, dw_left = dw;  // what cuDNN leaves to im2col
#ifdef VT_WITH_CUDNN
  if (use_cudnn(x.dtype())) conv2d_backward_cudnn(x, w, gout, o, dx_left, dw_left);
#endif
  if (dx_left.defined() || dw_left.defined()) im2col_backward(x, w, gout, o, dx_left, dw_left);
  if (db.defined())
    nnk::visit_float(x.dtype(), "conv2d_backward", [&](auto tag) { bias_grad<typename decltype(tag)::type>(gout, db); });
}

}  // namespace

std::array<int64_t, 2> conv2d_forward_runs() { return {g_forward_runs[0].load(), g_forward_runs[1].load()}; }

void register_nn_conv_kernels() {
  kernels::register_kernel("conv2d_forward", DeviceType::CUDA,
                           static_cast<kernels::Conv2dForward*>(&conv2d_forward_cuda));
  kernels::register_kernel("conv2d_backward", DeviceType::CUDA,
                           static_cast<kernels::Conv2dBackward*>(&conv2d_backward_cuda));
#ifdef VT_WITH_CUDNN  // the same kernels, taking bf16/f16 operands as they are (see the top of the file)
  kernels::register_kernel("conv2d_forward_16bit", DeviceType::CUDA,
                           static_cast<kernels::Conv2dForward*>(&conv2d_forward_cuda));
  kernels::register_kernel("conv2d_backward_16bit", DeviceType::CUDA,
                           static_cast<kernels::Conv2dBackward*>(&conv2d_backward_cuda));
#endif
}

}  // namespace vt::cuda
