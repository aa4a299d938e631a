// nn_conv_cudnn.cu: conv2d forward and backward on cuDNN's convolution API (cudnnConvolutionForward,
// BackwardData, BackwardFilter), the path nn_conv.cu takes for f32, bf16 and f16 when vt is built
// with cuDNN. Bias, its gradient and everything cuDNN declines stay in nn_conv.cu.
//
// Precision: bf16 and f16 data with f32 compute (CUDNN_DATA_FLOAT in the convolution descriptor) on
// tensor cores (the math type the heuristics rank with each algorithm), one rounding to the 16-bit
// output, as PyTorch's cuDNN conv; f32 in full f32 (CUDNN_FMA_MATH: no TF32, PyTorch's default
// `allow_tf32=False` for matmul, which vt follows for conv too). FFT-based algorithms are never
// taken (their error grows with the image, and they want large workspaces), and the backward passes
// take only deterministic algorithms, so dx and dw are the same run to run (as on the im2col path).
//
// Algorithms come from cuDNN's heuristics (cudnnGet*Algorithm_v7, PyTorch's choice when
// cudnn.benchmark is off), asked once per shape and kept with the shape's descriptors in a plan
// cache. An algorithm whose workspace exceeds kWorkspaceLimit is skipped; the workspace comes from
// the caching allocator on the device's stream. A conv for which no algorithm qualifies, or whose
// call answers CUDNN_STATUS_NOT_SUPPORTED, is reported back and runs on im2col instead.
//
// Padding: cuDNN pads symmetrically. Padding that differs per side (Infinity's `Down`: F.pad
// (0, 1, 0, 1) then a stride-2 conv) is split into its symmetric part, which cuDNN applies, and the
// rest, applied by copying the input into a zeroed (N, C, H + extra rows, W + extra cols) buffer;
// dx is then computed for that buffer and its interior copied out.
//
// cuDNN's classic API counts elements in int: images run in chunks of nb so that every operand of
// one call stays under 2^31 elements; dw sums over chunks with beta = 1 (in the data type).
#ifdef VT_WITH_CUDNN
#include <algorithm>
#include <array>
#include <climits>
#include <map>
#include <mutex>
#include <vector>

#include "allocator.h"
#include "backend.h"
#include "check.h"
#include "cudnn_graph.h"
#include "device.h"
#include "nn_conv_cudnn.h"

namespace vt::cuda {
namespace {

constexpr size_t kWorkspaceLimit = size_t(1) << 30;

cudnnDataType_t data_type(DType t) {
  switch (t) {
    case DType::F32: return CUDNN_DATA_FLOAT;
    case DType::BF16: return CUDNN_DATA_BFLOAT16;
    case DType::F16: return CUDNN_DATA_HALF;
    default: VT_FAIL("cudnn conv2d: unsupported dtype ", dtype_name(t));
  }
}

// The conv as cuDNN runs it: symmetric padding (ph, pw) and an input already padded by the
// asymmetric remainder to (Hp, Wp); nb images per call.
struct Geometry {
  int64_t N, C, H, W, O, kh, kw, Ho, Wo, sh, sw;
  int64_t ph, pw;                      // symmetric padding, applied by cuDNN
  int64_t top, left, Hp, Wp;           // explicit padding: x sits at rows [top, top+H) of (Hp, Wp)
  int64_t nb;                          // images per call
  bool explicit_pad() const { return Hp != H || Wp != W; }
};

// False when cuDNN is not worth asking: an empty operand, or one image beyond int32 counts.
bool make_geometry(const Tensor& x, const Tensor& w, const nn::Conv2dOptions& o, Geometry& g) {
  const nn::Padding2d& p = o.pad;
  g.N = x.size(0), g.C = x.size(1), g.H = x.size(2), g.W = x.size(3);
  g.O = w.size(0), g.kh = w.size(2), g.kw = w.size(3), g.sh = o.stride_h, g.sw = o.stride_w;
  g.Ho = (g.H + p.top + p.bottom - g.kh) / g.sh + 1;
  g.Wo = (g.W + p.left + p.right - g.kw) / g.sw + 1;
  g.ph = std::min(p.top, p.bottom), g.pw = std::min(p.left, p.right);
  g.top = p.top - g.ph, g.left = p.left - g.pw;
  g.Hp = g.H + p.top + p.bottom - 2 * g.ph, g.Wp = g.W + p.left + p.right - 2 * g.pw;
  if (x.numel() == 0 || w.numel() == 0 || g.Ho <= 0 || g.Wo <= 0) return false;
  const int64_t per_image = std::max(g.C * g.Hp * g.Wp, g.O * g.Ho * g.Wo);
  if (w.numel() > INT_MAX || per_image > INT_MAX || std::max({g.ph, g.pw, g.sh, g.sw}) > INT_MAX) return false;
  g.nb = std::min<int64_t>(g.N, INT_MAX / per_image);
  return true;
}

// An algorithm for one direction of one plan: picked once (algo -1: none qualified).
struct Algo {
  bool picked = false;
  int algo = -1;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  size_t workspace = 0;
};

// Descriptors of one (device, dtype, shape, nb) and its three algorithms. Leaked with the cache.
struct Plan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;  // x: (nb, C, Hp, Wp), y: (nb, O, Ho, Wo)
  cudnnFilterDescriptor_t w = nullptr;               // w: (O, C, kh, kw)
  cudnnConvolutionDescriptor_t conv = nullptr;
  bool f32 = false;
  Algo fwd, bwd_data, bwd_filter;
};

Plan& plan_for(int device, DType t, const Geometry& g, int64_t nb) {
  using Key = std::array<int64_t, 13>;
  static std::map<Key, Plan> cache;
  const Key key{device, int64_t(t), nb, g.C, g.Hp, g.Wp, g.O, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw};
  auto [it, fresh] = cache.try_emplace(key);
  Plan& p = it->second;
  if (!fresh) return p;
  const cudnnDataType_t dt = data_type(t);
  p.f32 = t == DType::F32;
  VT_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p.x));
  VT_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p.y));
  VT_CUDNN_CHECK(cudnnCreateFilterDescriptor(&p.w));
  VT_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&p.conv));
  VT_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p.x, CUDNN_TENSOR_NCHW, dt, int(nb), int(g.C), int(g.Hp), int(g.Wp)));
  VT_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p.y, CUDNN_TENSOR_NCHW, dt, int(nb), int(g.O), int(g.Ho), int(g.Wo)));
  VT_CUDNN_CHECK(cudnnSetFilter4dDescriptor(p.w, dt, CUDNN_TENSOR_NCHW, int(g.O), int(g.C), int(g.kh), int(g.kw)));
  VT_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(p.conv, int(g.ph), int(g.pw), int(g.sh), int(g.sw), 1, 1,
                                                 CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  return p;
}

// The algorithm of one pass of plan p (slot: p.fwd, p.bwd_data or p.bwd_filter), picked on first
// use. The heuristics' ranking, best first, is taken in order: the first algorithm that is not
// excluded (FFT), is deterministic, and whose workspace (asked for again with its math type: the
// ranking's figure is an estimate) fits the limit. f32 always runs with CUDNN_FMA_MATH (no TF32).
// query and workspace_size are the pass's cudnnGetConvolution*Algorithm_v7 and *WorkspaceSize, d1,
// d2, d3 its descriptors in their argument order (the convolution descriptor sits between d2 and d3),
// kCount its number of algorithms. The slot is written only once the pick is complete.
template <int kCount, class D1, class D2, class D3, class Perf, class AlgoT>
Algo& pick(Algo& slot, Plan& p, cudnnHandle_t h, std::initializer_list<int> excluded,
           cudnnStatus_t (*query)(cudnnHandle_t, D1, D2, cudnnConvolutionDescriptor_t, D3, int, int*, Perf*),
           cudnnStatus_t (*workspace_size)(cudnnHandle_t, D1, D2, cudnnConvolutionDescriptor_t, D3, AlgoT, size_t*),
           D1 d1, D2 d2, D3 d3) {
  if (slot.picked) return slot;
  Algo a;
  a.picked = true;
  VT_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, p.f32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH));
  std::array<Perf, kCount> perf{};
  int n = 0;
  const cudnnStatus_t st = query(h, d1, d2, p.conv, d3, kCount, &n, perf.data());
  if (st == CUDNN_STATUS_NOT_SUPPORTED) return slot = a;
  if (st != CUDNN_STATUS_SUCCESS) detail::throw_cudnn_error(st, "cudnnGetConvolution*Algorithm_v7", __FILE__, __LINE__);
  for (int i = 0; i < n; ++i) {
    const Perf& r = perf[size_t(i)];
    if (r.status != CUDNN_STATUS_SUCCESS || r.determinism != CUDNN_DETERMINISTIC) continue;
    if (std::find(excluded.begin(), excluded.end(), int(r.algo)) != excluded.end()) continue;
    const cudnnMathType_t math = p.f32 ? CUDNN_FMA_MATH : r.mathType;
    if (math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) continue;  // would round f32 operands to f16
    VT_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, math));
    size_t bytes = 0;
    if (workspace_size(h, d1, d2, p.conv, d3, r.algo, &bytes) != CUDNN_STATUS_SUCCESS || bytes > kWorkspaceLimit)
      continue;
    a.algo = int(r.algo), a.math = math, a.workspace = bytes;
    return slot = a;
  }
  return slot = a;
}

// Runs call(workspace, bytes) under the algorithm's math type. False when cuDNN answers
// NOT_SUPPORTED (the algorithm is then dropped, so later calls of this shape go to im2col at once);
// any other failure raises.
template <class Call>
bool run(Plan& p, Algo& a, int device, const char* what, Call&& call) {
  VT_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, a.math));
  std::shared_ptr<void> ws = a.workspace > 0 ? allocate_workspace(a.workspace, device) : nullptr;
  const cudnnStatus_t st = call(ws.get(), a.workspace);
  if (st == CUDNN_STATUS_NOT_SUPPORTED) {
    a.algo = -1;
    return false;
  }
  if (st != CUDNN_STATUS_SUCCESS) detail::throw_cudnn_error(st, what, __FILE__, __LINE__);
  return true;
}

Algo& forward_algo(cudnnHandle_t h, Plan& p) {
  return pick<CUDNN_CONVOLUTION_FWD_ALGO_COUNT>(
      p.fwd, p, h, {CUDNN_CONVOLUTION_FWD_ALGO_FFT, CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING},
      cudnnGetConvolutionForwardAlgorithm_v7, cudnnGetConvolutionForwardWorkspaceSize, p.x, p.w, p.y);
}

Algo& backward_data_algo(cudnnHandle_t h, Plan& p) {
  return pick<CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT>(
      p.bwd_data, p, h, {CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT, CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING},
      cudnnGetConvolutionBackwardDataAlgorithm_v7, cudnnGetConvolutionBackwardDataWorkspaceSize, p.w, p.y, p.x);
}

Algo& backward_filter_algo(cudnnHandle_t h, Plan& p) {
  return pick<CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT>(
      p.bwd_filter, p, h, {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING},
      cudnnGetConvolutionBackwardFilterAlgorithm_v7, cudnnGetConvolutionBackwardFilterWorkspaceSize, p.x, p.y, p.w);
}

// xn (nb, C, H, W) -> (nb, C, Hp, Wp): zeros with xn at rows [top, top + H), cols [left, left + W).
Tensor pad_input(const Tensor& xn, const Geometry& g) {
  kernels::Backend& be = kernels::backend(xn.device());
  Tensor xp = empty({xn.size(0), g.C, g.Hp, g.Wp}, {xn.dtype(), xn.device()});
  be.fill(xp, 0);
  be.copy(xn, xp.narrow(2, g.top, g.H).narrow(3, g.left, g.W));
  return xp;
}

const float kOne = 1.0f, kZero = 0.0f;  // alpha and beta: float for f32, bf16 and f16 data

}  // namespace

bool conv2d_forward_cudnn(const Tensor& x, const Tensor& w, const nn::Conv2dOptions& opt, const Tensor& out) {
  Geometry g;
  if (!make_geometry(x, w, opt, g)) return false;
  std::lock_guard<std::mutex> lock(cudnn::mutex());
  const int dev = x.device().index;
  cudnnHandle_t h = cudnn::handle(dev);
  for (int64_t n0 = 0; n0 < g.N; n0 += g.nb) {
    const int64_t nb = std::min(g.nb, g.N - n0);
    Plan& p = plan_for(dev, x.dtype(), g, nb);
    Algo& a = forward_algo(h, p);
    if (a.algo < 0) return false;
    const Tensor xn = g.explicit_pad() ? pad_input(x.narrow(0, n0, nb), g) : x.narrow(0, n0, nb);  // (nb, C, Hp, Wp)
    const Tensor yn = out.narrow(0, n0, nb);                                                           // (nb, O, Ho, Wo)
    const bool ok = run(p, a, dev, "cudnnConvolutionForward", [&](void* ws, size_t bytes) {
      return cudnnConvolutionForward(h, &kOne, p.x, xn.raw_data(), p.w, w.raw_data(), p.conv,
                                     cudnnConvolutionFwdAlgo_t(a.algo), ws, bytes, &kZero, p.y, yn.raw_data());
    });
    if (!ok) return false;
  }
  return true;
}

void conv2d_backward_cudnn(const Tensor& x, const Tensor& w, const Tensor& gout, const nn::Conv2dOptions& opt,
                           Tensor& dx, Tensor& dw) {
  Geometry g;
  if (!make_geometry(x, w, opt, g)) return;
  std::lock_guard<std::mutex> lock(cudnn::mutex());
  const int dev = x.device().index;
  cudnnHandle_t h = cudnn::handle(dev);
  bool dx_ok = dx.defined(), dw_ok = dw.defined();
  for (int64_t n0 = 0; n0 < g.N && (dx_ok || dw_ok); n0 += g.nb) {
    const int64_t nb = std::min(g.nb, g.N - n0);
    Plan& p = plan_for(dev, x.dtype(), g, nb);
    const Tensor gn = gout.narrow(0, n0, nb);  // (nb, O, Ho, Wo)
    if (dw_ok) {  // dw (O, C, kh, kw) = sum over images of this chunk, + dw when not the first chunk
      Algo& a = backward_filter_algo(h, p);
      const Tensor xn = g.explicit_pad() ? pad_input(x.narrow(0, n0, nb), g) : x.narrow(0, n0, nb);
      const float* beta = n0 == 0 ? &kZero : &kOne;
      dw_ok = a.algo >= 0 && run(p, a, dev, "cudnnConvolutionBackwardFilter", [&](void* ws, size_t bytes) {
                return cudnnConvolutionBackwardFilter(h, &kOne, p.x, xn.raw_data(), p.y, gn.raw_data(), p.conv,
                                                      cudnnConvolutionBwdFilterAlgo_t(a.algo), ws, bytes, beta, p.w,
                                                      dw.raw_data());
              });
    }
    if (dx_ok) {  // dx (nb, C, Hp, Wp), cropped to (nb, C, H, W) when padded explicitly
      Algo& a = backward_data_algo(h, p);
      const Tensor dxn = dx.narrow(0, n0, nb);
      const Tensor dxp = g.explicit_pad() ? empty({nb, g.C, g.Hp, g.Wp}, {dx.dtype(), dx.device()}) : dxn;
      dx_ok = a.algo >= 0 && run(p, a, dev, "cudnnConvolutionBackwardData", [&](void* ws, size_t bytes) {
                return cudnnConvolutionBackwardData(h, &kOne, p.w, w.raw_data(), p.y, gn.raw_data(), p.conv,
                                                    cudnnConvolutionBwdDataAlgo_t(a.algo), ws, bytes, &kZero, p.x,
                                                    dxp.raw_data());
              });
      if (dx_ok && g.explicit_pad())
        kernels::backend(dx.device()).copy(dxp.narrow(2, g.top, g.H).narrow(3, g.left, g.W), dxn);
    }
  }
  if (dx_ok) dx = Tensor();
  if (dw_ok) dw = Tensor();
}

}  // namespace vt::cuda
#endif  // VT_WITH_CUDNN
