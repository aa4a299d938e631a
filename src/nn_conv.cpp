// nn_conv.cpp: conv2d's op (forward and backward recorded beside it), its CPU kernels' dispatch and
// their im2col path, and the Conv3d patch embedding as a matmul.
//
// f32 runs on the phase-plane path of nn_conv_planes.cpp (grad-input of a strided conv excepted).
// The im2col path below computes f64, strided f32 grad-input, and every f32 pass when
// VT_CONV_IM2COL=1 (read at each call, as on CUDA, so a test can compare the two). Per image n
// (K = C*kh*kw, P = Ho*Wo):
//   forward   col (K, P) = im2col(x[n]);   out[n] (O, P) = w (O, K) @ col + bias
//   backward  dw (O, K) += g[n] (O, P) @ col^T        (col recomputed: storing it costs K*P per image)
//             dcol (K, P) = w^T (K, O) @ g[n];  dx[n] = col2im(dcol)
//             db (O)     = sum over n, p of g[n]
// With at least as many images as threads, images run in parallel, one per thread, each with its own
// scratch and single-threaded GEMMs: one OpenMP region per call instead of several per image, which
// matters when threads wait at barriers (a shared machine). Otherwise images run one after another
// and each GEMM, im2col (K rows) and col2im (C planes) uses all threads. The GEMM splits C, never K,
// so an element is summed in the same order on either path: results are bitwise reproducible with
// any thread count.
// A 1x1 conv with stride 1 and no padding skips im2col: x[n] viewed as (C, H*W) is already col.
// The arithmetic is in T (f32 or f64); the op layer widens bf16/f16 to f32 and rounds the output
// once, which is PyTorch's CPU behaviour for 16-bit convs (f32 accumulation). A device that
// registers "conv2d_{forward,backward}_16bit" (CUDA with cuDNN: tensor cores, f32 accumulation)
// gets bf16/f16 operands as they are.
#include "vt/nn/conv.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <type_traits>

#include "nn_conv_cpu.h"
#include "vt/backend.h"
#include "vt/cpu/gemm.h"
#include "vt/ops.h"

namespace vt::nn {
namespace {

// Below this many elements a copy loop runs on one thread.
constexpr int64_t kGrain = 1 << 15;
// Forward im2col works on blocks of output rows of about this many col elements (2 MB of f32).
constexpr int64_t kColChunk = 1 << 19;

using detail::by_image;
using detail::ConvGeom;

// VT_CONV_IM2COL=1 (anything but "" or "0") sends f32 through the im2col path; read at each call.
bool im2col_forced() {
  const char* e = std::getenv("VT_CONV_IM2COL");
  return e != nullptr && *e != '\0' && std::strcmp(e, "0") != 0;
}

ConvGeom geometry(const Tensor& x, const Tensor& w, const Conv2dOptions& o) {
  ConvGeom g{x.size(0), x.size(1), x.size(2), x.size(3), w.size(0), w.size(2), w.size(3), 0, 0};
  g.Ho = (g.H + o.pad.top + o.pad.bottom - g.kh) / o.stride_h + 1;
  g.Wo = (g.W + o.pad.left + o.pad.right - g.kw) / o.stride_w + 1;
  return g;
}

bool is_pointwise(const ConvGeom& g, const Conv2dOptions& o) {
  return g.kh == 1 && g.kw == 1 && o.stride_h == 1 && o.stride_w == 1 && o.pad.left == 0 && o.pad.right == 0 &&
         o.pad.top == 0 && o.pad.bottom == 0;
}

void gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t rsA, int64_t csA, const float* B, int64_t rsB,
          int64_t csB, float beta, float* C, int64_t rsC) {
  cpu::gemm_f32(M, N, K, 1.0f, A, rsA, csA, B, rsB, csB, beta, C, rsC, 1);
}
void gemm(int64_t M, int64_t N, int64_t K, const double* A, int64_t rsA, int64_t csA, const double* B, int64_t rsB,
          int64_t csB, double beta, double* C, int64_t rsC) {
  cpu::gemm_f64(M, N, K, 1.0, A, rsA, csA, B, rsB, csB, beta, C, rsC, 1);
}

// Input column of output column ow for kernel tap j: iw = ow*stride - left + j. Returns the range
// [lo, hi) of ow whose iw falls inside [0, W).
inline void valid_range(int64_t j, int64_t stride, int64_t pad, int64_t W, int64_t Wo, int64_t& lo, int64_t& hi) {
  // smallest ow with ow*stride >= pad - j, and smallest ow with ow*stride >= W + pad - j
  auto ceil_div = [](int64_t a, int64_t b) { return a <= 0 ? 0 : (a + b - 1) / b; };
  lo = std::min(Wo, ceil_div(pad - j, stride));
  hi = std::min(Wo, ceil_div(W + pad - j, stride));
  hi = std::max(hi, lo);
}

// x: (C, H, W) -> col: (C*kh*kw, P') for the output rows [oh0, oh1), P' = (oh1 - oh0) * Wo (all
// rows by default); padded taps read as 0.
template <class T>
void im2col(const T* x, const ConvGeom& g, const Conv2dOptions& o, T* col, int64_t oh0 = 0, int64_t oh1 = -1) {
  if (oh1 < 0) oh1 = g.Ho;
  const int64_t K = g.K(), P = (oh1 - oh0) * g.Wo;
#pragma omp parallel for schedule(static) if (K * P > kGrain)
  for (int64_t k = 0; k < K; ++k) {
    const int64_t c = k / (g.kh * g.kw), i = (k / g.kw) % g.kh, j = k % g.kw;
    int64_t lo, hi;
    valid_range(j, o.stride_w, o.pad.left, g.W, g.Wo, lo, hi);
    const T* xc = x + c * g.H * g.W;
    T* row = col + k * P;
    for (int64_t oh = oh0; oh < oh1; ++oh) {
      T* r = row + (oh - oh0) * g.Wo;
      const int64_t ih = oh * o.stride_h - o.pad.top + i;
      if (ih < 0 || ih >= g.H) {
        std::fill(r, r + g.Wo, T(0));
        continue;
      }
      const T* xr = xc + ih * g.W - o.pad.left + j;  // xr[ow*stride] is x[c, ih, iw]
      std::fill(r, r + lo, T(0));
      if (o.stride_w == 1) std::memcpy(r + lo, xr + lo, sizeof(T) * (hi - lo));
      else for (int64_t ow = lo; ow < hi; ++ow) r[ow] = xr[ow * o.stride_w];
      std::fill(r + hi, r + g.Wo, T(0));
    }
  }
}

// The transpose of im2col: dx (C, H, W) = sum of dcol's taps. One thread per channel plane, taps in
// a fixed order, so the sum does not depend on the thread count.
template <class T>
void col2im(const T* dcol, const ConvGeom& g, const Conv2dOptions& o, T* dx) {
  const int64_t P = g.P();
#pragma omp parallel for schedule(static) if (g.K() * P > kGrain)
  for (int64_t c = 0; c < g.C; ++c) {
    T* dxc = dx + c * g.H * g.W;
    std::fill(dxc, dxc + g.H * g.W, T(0));
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        const T* row = dcol + ((c * g.kh + i) * g.kw + j) * P;
        int64_t lo, hi;
        valid_range(j, o.stride_w, o.pad.left, g.W, g.Wo, lo, hi);
        for (int64_t oh = 0; oh < g.Ho; ++oh) {
          const int64_t ih = oh * o.stride_h - o.pad.top + i;
          if (ih < 0 || ih >= g.H) continue;
          T* xr = dxc + ih * g.W - o.pad.left + j;
          const T* r = row + oh * g.Wo;
          for (int64_t ow = lo; ow < hi; ++ow) xr[ow * o.stride_w] += r[ow];
        }
      }
  }
}

// ---- CPU kernels (registered below) ------------------------------------------------------------
template <class T>
using Buffer = std::unique_ptr<T[]>;  // uninitialised scratch (a std::vector would zero 19 MB)

// out (N, O, P) = conv(x, w) through im2col, without bias.
template <class T>
void im2col_forward(const T* x, const T* w, const ConvGeom& g, const Conv2dOptions& o, T* out) {
  const int64_t K = g.K(), P = g.P();
  const bool pointwise = is_pointwise(g, o);
  // The columns of a block of output rows at a time, so that col (K, rows * Wo) stays about
  // kColChunk elements (cache-sized and reused) instead of one (K, P) buffer per call: at 256x256
  // with 128 channels a whole-image col is 300 MB that is written, read once and freed.
  const int64_t rows_per = std::clamp<int64_t>(kColChunk / std::max<int64_t>(K * g.Wo, 1), 1, g.Ho);
  auto image = [&](int64_t n, T* col) {  // col: (K, rows_per * Wo) scratch
    const T* xn = x + n * g.C * g.H * g.W;
    T* outn = out + n * g.O * P;  // (O, P)
    if (pointwise) return gemm(g.O, P, K, w, K, 1, xn, P, 1, T(0), outn, P);
    for (int64_t oh0 = 0; oh0 < g.Ho; oh0 += rows_per) {
      const int64_t oh1 = std::min(g.Ho, oh0 + rows_per), Pc = (oh1 - oh0) * g.Wo;
      im2col(xn, g, o, col, oh0, oh1);
      gemm(g.O, Pc, K, w, K, 1, col, Pc, 1, T(0), outn + oh0 * g.Wo, P);  // columns [oh0 Wo, oh1 Wo) of out
    }
  };
  const size_t col_size = pointwise ? 0 : size_t(K * rows_per * g.Wo);
  if (by_image(g.N)) {
#pragma omp parallel
    {
      Buffer<T> col(col_size ? new T[col_size] : nullptr);
#pragma omp for schedule(static)
      for (int64_t n = 0; n < g.N; ++n) image(n, col.get());
    }
  } else {
    Buffer<T> col(col_size ? new T[col_size] : nullptr);
    for (int64_t n = 0; n < g.N; ++n) image(n, col.get());
  }
}

// dx (N, C, H, W) and dw (O, K) through im2col and col2im; a null pointer is not computed.
// dw is summed over images as ((dw_0 + dw_1) + dw_2) + ... on both paths, each dw_n one GEMM, so
// the result does not depend on the path, hence not on the thread count.
template <class T>
void im2col_backward(const T* x, const T* w, const T* gout, const ConvGeom& g, const Conv2dOptions& o, T* dx, T* dw) {
  const int64_t K = g.K(), P = g.P(), OK = g.O * K;
  const bool pointwise = is_pointwise(g, o), want_dx = dx != nullptr, want_dw = dw != nullptr;
  // col, dcol: (K, P) scratch; dwn: (O, K) this image's weight gradient
  auto image = [&](int64_t n, T* col, T* dcol, T* dwn) {
    const T* xn = x + n * g.C * g.H * g.W;
    const T* gn = gout + n * g.O * P;
    if (want_dw) {  // dw_n (O, K) = g[n] (O, P) @ col^T (P, K); col^T read in place
      if (!pointwise) im2col(xn, g, o, col);
      gemm(g.O, K, P, gn, P, 1, pointwise ? xn : col, 1, P, T(0), dwn, K);
    }
    if (want_dx) {  // dcol (K, P) = w^T (K, O) @ g[n] (O, P); w^T read in place
      T* dxn = dx + n * g.C * g.H * g.W;
      gemm(K, P, g.O, w, 1, K, gn, P, 1, T(0), pointwise ? dxn : dcol, P);
      if (!pointwise) col2im(dcol, g, o, dxn);
    }
  };
  auto scratch = [&](bool need) { return Buffer<T>(need && !pointwise ? new T[size_t(K * P)] : nullptr); };
  if (by_image(g.N)) {
    Buffer<T> dw_img(want_dw ? new T[size_t(g.N * OK)] : nullptr);  // (N, O, K)
#pragma omp parallel
    {
      Buffer<T> col = scratch(want_dw), dcol = scratch(want_dx);
#pragma omp for schedule(static)
      for (int64_t n = 0; n < g.N; ++n) image(n, col.get(), dcol.get(), want_dw ? dw_img.get() + n * OK : nullptr);
    }
    if (want_dw) {
#pragma omp parallel for schedule(static) if (g.N * OK > kGrain)
      for (int64_t e = 0; e < OK; ++e) {
        T s = dw_img[size_t(e)];
        for (int64_t n = 1; n < g.N; ++n) s += dw_img[size_t(n * OK + e)];
        dw[e] = s;
      }
    }
  } else {
    Buffer<T> col = scratch(want_dw), dcol = scratch(want_dx), tmp(want_dw && g.N > 1 ? new T[size_t(OK)] : nullptr);
    for (int64_t n = 0; n < g.N; ++n) {
      image(n, col.get(), dcol.get(), n == 0 ? dw : tmp.get());
      if (want_dw && n > 0) {
#pragma omp parallel for schedule(static) if (OK > kGrain)
        for (int64_t e = 0; e < OK; ++e) dw[e] += tmp[size_t(e)];
      }
    }
    if (g.N == 0 && want_dw) std::fill(dw, dw + OK, T(0));
  }
}

// The f32 phase-plane path (nn_conv_planes.cpp) takes every conv but the 1x1 ones im2col skips.
bool use_planes(DType t, const ConvGeom& g, const Conv2dOptions& o) {
  return t == DType::F32 && !is_pointwise(g, o) && !im2col_forced();
}

template <class T>
void forward_cpu(const Tensor& x_, const Tensor& w_, const Tensor& b_, const Conv2dOptions& o, const Tensor& out_) {
  const ConvGeom g = geometry(x_, w_, o);
  const int64_t P = g.P();
  const T* x = x_.data<T>();  // x: (N, C, H, W)
  const T* w = w_.data<T>();  // w: (O, K)
  T* out = out_.data<T>();    // out: (N, O, P)
  if constexpr (std::is_same_v<T, float>) {
    if (use_planes(x_.dtype(), g, o)) detail::conv2d_planes_forward(x, w, g, o, out);
    else im2col_forward(x, w, g, o, out);
  } else {
    im2col_forward(x, w, g, o, out);
  }
  if (b_.defined()) {
    const T* b = b_.data<T>();
#pragma omp parallel for schedule(static) if (g.N * g.O * P > kGrain)
    for (int64_t row = 0; row < g.N * g.O; ++row)
      for (int64_t p = 0; p < P; ++p) out[row * P + p] += b[row % g.O];
  }
}

template <class T>
void backward_cpu(const Tensor& x_, const Tensor& w_, const Tensor& g_, const Conv2dOptions& o, const Tensor& dx_,
                  const Tensor& dw_, const Tensor& db_) {
  const ConvGeom g = geometry(x_, w_, o);
  const int64_t P = g.P();
  const T* x = x_.data<T>();     // x: (N, C, H, W), saved input
  const T* w = w_.data<T>();     // w: (O, K), saved weight
  const T* gout = g_.data<T>();  // grad_out: (N, O, P)
  T* dx = dx_.defined() ? dx_.data<T>() : nullptr;
  T* dw = dw_.defined() ? dw_.data<T>() : nullptr;
  bool dx_done = false, dw_done = false;
  if constexpr (std::is_same_v<T, float>) {
    if (use_planes(x_.dtype(), g, o)) {
      if (dw) detail::conv2d_planes_grad_weight(x, gout, g, o, dw), dw_done = true;
      if (dx && o.stride_h == 1 && o.stride_w == 1) detail::conv2d_planes_grad_input(w, gout, g, o, dx), dx_done = true;
    }
  }
  if ((dx && !dx_done) || (dw && !dw_done))
    im2col_backward(x, w, gout, g, o, dx_done ? nullptr : dx, dw_done ? nullptr : dw);
  if (db_.defined()) {  // db (O): per channel in double, 8 partial sums over positions (one chain
    T* db = db_.data<T>();  // of dependent adds was 5% of grad-weight at 32 channels), images in order
#pragma omp parallel for schedule(static) if (g.N * g.O * P > kGrain)
    for (int64_t oc = 0; oc < g.O; ++oc) {
      double part[8] = {};
      for (int64_t n = 0; n < g.N; ++n) {
        const T* gp = gout + (n * g.O + oc) * P;
        int64_t p = 0;
        for (; p + 8 <= P; p += 8)
          for (int l = 0; l < 8; ++l) part[l] += double(gp[p + l]);
        for (int l = 0; p < P; ++p, ++l) part[l] += double(gp[p]);
      }
      db[oc] = T(((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7])));
    }
  }
}

void conv2d_forward_cpu(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dOptions& o, const Tensor& out) {
  if (x.dtype() == DType::F64) forward_cpu<double>(x, w, b, o, out);
  else forward_cpu<float>(x, w, b, o, out);
}
void conv2d_backward_cpu(const Tensor& x, const Tensor& w, const Tensor& g, const Conv2dOptions& o, const Tensor& dx,
                         const Tensor& dw, const Tensor& db) {
  if (x.dtype() == DType::F64) backward_cpu<double>(x, w, g, o, dx, dw, db);
  else backward_cpu<float>(x, w, g, o, dx, dw, db);
}
kernels::Registrar reg_fwd("conv2d_forward", DeviceType::CPU, &conv2d_forward_cpu);
kernels::Registrar reg_bwd("conv2d_backward", DeviceType::CPU, &conv2d_backward_cpu);

// The dtype the kernels compute in: f64 stays; bf16/f16 stay on a device with 16-bit conv kernels;
// every other float widens to f32.
DType compute_dtype(DType t, Device d) {
  if (t == DType::F64) return t;
  if ((t == DType::BF16 || t == DType::F16) && kernels::supports("conv2d_forward_16bit", d)) return t;
  return DType::F32;
}
Tensor as_compute(const Tensor& t, DType ct) {
  if (!t.defined()) return t;
  NoGradGuard ng;
  return cast(t.detach(), ct).contiguous();
}
bool is_16bit(DType t) { return t == DType::BF16 || t == DType::F16; }

void check_inputs(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dOptions& o) {
  VT_CHECK(x.dim() == 4, "conv2d: input must be (N, C, H, W), got shape ", x.shape().str());
  VT_CHECK(w.dim() == 4, "conv2d: weight must be (O, C, kh, kw), got shape ", w.shape().str());
  VT_CHECK(is_floating(x.dtype()), "conv2d: input must be floating point, got ", dtype_name(x.dtype()));
  VT_CHECK(w.dtype() == x.dtype(), "conv2d: input dtype ", dtype_name(x.dtype()), " differs from weight dtype ",
           dtype_name(w.dtype()));
  VT_CHECK(x.device() == w.device(), "conv2d: input on ", x.device().str(), ", weight on ", w.device().str());
  VT_CHECK(x.size(1) == w.size(1), "conv2d: input ", x.shape().str(), " has ", x.size(1),
           " channels, weight ", w.shape().str(), " expects ", w.size(1));
  if (b.defined()) {
    VT_CHECK(b.dim() == 1 && b.size(0) == w.size(0), "conv2d: bias shape ", b.shape().str(), " does not match ",
             w.size(0), " output channels");
    VT_CHECK(b.dtype() == x.dtype() && b.device() == x.device(), "conv2d: bias is ", dtype_name(b.dtype()), " on ",
             b.device().str(), ", input is ", dtype_name(x.dtype()), " on ", x.device().str());
  }
  VT_CHECK(o.stride_h > 0 && o.stride_w > 0, "conv2d: stride must be positive, got (", o.stride_h, ", ", o.stride_w,
           ")");
  VT_CHECK(o.pad.left >= 0 && o.pad.right >= 0 && o.pad.top >= 0 && o.pad.bottom >= 0,
           "conv2d: padding must be non-negative, got (left ", o.pad.left, ", right ", o.pad.right, ", top ",
           o.pad.top, ", bottom ", o.pad.bottom, ")");
  const int64_t hp = x.size(2) + o.pad.top + o.pad.bottom, wp = x.size(3) + o.pad.left + o.pad.right;
  VT_CHECK(w.size(2) >= 1 && w.size(3) >= 1 && hp >= w.size(2) && wp >= w.size(3), "conv2d: kernel (", w.size(2),
           ", ", w.size(3), ") is larger than the padded input (", hp, ", ", wp, ") of input ", x.shape().str());
}

}  // namespace

// ---- conv2d: forward, and its backward recorded beside it --------------------------------------
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dOptions& opt) {
  check_inputs(x, w, bias, opt);
  const ConvGeom g = geometry(x, w, opt);
  const DType ct = compute_dtype(x.dtype(), x.device());
  Tensor xc = as_compute(x, ct), wc = as_compute(w, ct), bc = as_compute(bias, ct);
  Tensor out = empty({g.N, g.O, g.Ho, g.Wo}, {ct, x.device()});
  static const kernels::Kernel<kernels::Conv2dForward> k_forward("conv2d_forward"), k_forward_16bit("conv2d_forward_16bit");
  (is_16bit(ct) ? k_forward_16bit : k_forward)(x.device())(xc, wc, bc, opt, out);
  if (x.dtype() != ct) {
    NoGradGuard ng;
    out = cast(out, x.dtype());
  }
  // Saved for backward: the (widened, contiguous) input and weight; the bias is not needed.
  autograd::record("conv2d", out, {x, w, bias}, [xc, wc, opt, ct, x, w, bias](const Tensor& gout) {
    Tensor gc = as_compute(gout, ct);
    const Device d = gc.device();
    Tensor dx = x.requires_grad() ? empty(xc.shape(), {ct, d}) : Tensor();
    Tensor dw = w.requires_grad() ? empty(wc.shape(), {ct, d}) : Tensor();
    Tensor db = bias.defined() && bias.requires_grad() ? empty(bias.shape(), {ct, d}) : Tensor();
    static const kernels::Kernel<kernels::Conv2dBackward> k_backward("conv2d_backward"),
        k_backward_16bit("conv2d_backward_16bit");
    (is_16bit(ct) ? k_backward_16bit : k_backward)(d)(xc, wc, gc, opt, dx, dw, db);
    return grads{dx, dw, db};  // the engine casts each to its input's dtype
  });
  return out;
}

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, int64_t stride, int64_t padding) {
  return conv2d(x, w, bias, Conv2dOptions{stride, stride, Padding2d::same(padding)});
}

// ---- Conv3d patch embedding (kernel == stride) ---------------------------------------------------
Tensor conv3d_patch_embed(const Tensor& x, const Tensor& w) {
  VT_CHECK(w.dim() == 5, "conv3d_patch_embed: weight must be (O, C, kt, kh, kw), got shape ", w.shape().str());
  const int64_t O = w.size(0), K = w.numel() / std::max<int64_t>(O, 1);
  if (x.dim() == 5)
    for (int d = 1; d < 5; ++d)
      VT_CHECK(x.size(d) == w.size(d), "conv3d_patch_embed: patch ", x.shape().str(), " does not match weight ",
               w.shape().str(), " at dim ", d);
  VT_CHECK(x.dim() == 5 || (x.dim() == 2 && x.size(1) == K), "conv3d_patch_embed: input ", x.shape().str(),
           " is neither (S, ", K, ") flattened patches nor (S, C, kt, kh, kw) for weight ", w.shape().str());
  // (S, K) @ (K, O): a flattened patch's column order (C, kt, kh, kw) is the weight's own order.
  Tensor patches = cast(x.reshape({x.size(0), K}), w.dtype());
  return matmul(patches, w.reshape({O, K}).t());
}

}  // namespace vt::nn
