// nn_interpolate.cpp: F.interpolate (nearest, linear/bilinear/trilinear, bicubic, area) and its
// backward, as one separable tap table per spatial axis.
//
// Every mode is a weighted sum over a small set of input positions per axis ("taps"): 1 for
// nearest, 2 for linear, 4 for bicubic, a window for area. The tables are built on the host with
// ATen's index arithmetic (area_pixel_compute_scale / area_pixel_compute_source_index /
// guard_index_and_lambda / cubic convolution) in the op-math type A: f32 for f32 and 16-bit
// inputs, f64 for f64. The kernel then evaluates, per output element,
//   y = sum_d wd * (sum_h wh * (sum_w ww * x[d, h, w]))
// in A, nesting the axes as ATen's `Interpolate<n>` does. Missing leading axes (1-D and 2-D modes)
// are identity axes of size 1. 16-bit inputs are widened to f32 and the result rounded once; in
// bicubic mode the weights are first rounded to the input dtype, because ATen's generic CPU kernel
// stores that weight table in the input's scalar type (UpSampleKernel.cpp, HelperInterpCubic); its
// bf16 bilinear path keeps f32 weights. With these rules the bf16 nearest, bicubic and area
// fixtures match torch bitwise; bilinear can differ by one bf16 ulp where the f32 sums differ in
// their last bit (ATen's summation order) right at a rounding boundary.
// Backward scatters g * wd * wh * ww back through the same taps: one thread per (n, c) plane, a
// fixed order inside it, so gradients do not depend on the thread count.
#include "vt/nn/interpolate.h"

#include <cmath>
#include <string>

#include "vt/backend.h"
#include "vt/ops.h"


namespace vt::nn {
namespace {

enum class Mode { Nearest, Linear, Cubic, Area };

struct ModeInfo {
  Mode mode;
  int min_dims, max_dims;  // spatial dims accepted
};

ModeInfo parse_mode(std::string_view m) {
  if (m == "nearest") return {Mode::Nearest, 1, 3};
  if (m == "linear") return {Mode::Linear, 1, 1};
  if (m == "bilinear") return {Mode::Linear, 2, 2};
  if (m == "trilinear") return {Mode::Linear, 3, 3};
  if (m == "bicubic") return {Mode::Cubic, 2, 2};
  if (m == "area") return {Mode::Area, 1, 3};
  VT_FAIL("interpolate: unknown mode '", m, "' (nearest, linear, bilinear, trilinear, bicubic, area)");
}

// ---- tap tables (ATen's UpSample.h arithmetic, align_corners = false) ---------------------------
// area_pixel_compute_scale: 1/scale_factor when one was given, else In/Out, in A.
template <class A>
A pixel_scale(int64_t in, int64_t out, double scale_factor) {
  return scale_factor > 0 ? A(1.0 / scale_factor) : A(in) / A(out);
}

template <class A>
double round_weight(A w, DType dt) {
  if (dt == DType::BF16) return double(float(bf16(float(w))));
  if (dt == DType::F16) return double(float(f16(float(w))));
  return double(w);
}

template <class A>
InterpAxis build_axis(Mode mode, int64_t in, int64_t out, double scale_factor, DType dt) {
  InterpAxis ax;
  ax.in = in, ax.out = out;
  ax.start.assign(1, 0);
  ax.idx.clear(), ax.wt.clear();
  auto push = [&](int64_t i, double w) { ax.idx.push_back(i), ax.wt.push_back(w); };
  const A scale = pixel_scale<A>(in, out, scale_factor);
  for (int64_t o = 0; o < out; ++o) {
    switch (mode) {
      case Mode::Nearest: {  // src = floor(o * scale); ATen floors through floorf, also for f64
        int64_t i = int64_t(std::floor(float(scale * A(o))));
        push(std::min(i, in - 1), 1.0);
        break;
      }
      case Mode::Linear: {  // src clamped at 0; lambda clamped to [0, 1]; right tap clamped at In-1
        A src = scale * (A(o) + A(0.5)) - A(0.5);
        if (src < 0) src = 0;
        int64_t i0 = std::min(int64_t(std::floor(float(src))), in - 1);
        A lambda = std::min(std::max(src - A(i0), A(0)), A(1));
        push(i0, double(A(1) - lambda));
        push(i0 + (i0 < in - 1 ? 1 : 0), double(lambda));
        break;
      }
      case Mode::Cubic: {  // taps i-1..i+2 clamped to [0, In-1]; A = -0.75 cubic convolution
        const A a = A(-0.75);
        A src = scale * (A(o) + A(0.5)) - A(0.5);
        int64_t i = int64_t(std::floor(float(src)));
        A t = std::min(std::max(src - A(i), A(0)), A(1));
        auto near = [&](A x) { return ((a + 2) * x - (a + 3)) * x * x + 1; };             // |x| <= 1
        auto far = [&](A x) { return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a; };        // 1 < |x| < 2
        const A w[4] = {far(t + 1), near(t), near(1 - t), far(2 - t)};
        for (int k = 0; k < 4; ++k) push(std::min(std::max<int64_t>(i - 1 + k, 0), in - 1), round_weight<A>(w[k], dt));
        break;
      }
      case Mode::Area: {  // adaptive pooling window in exact integer arithmetic
        int64_t s = (o * in) / out, e = ((o + 1) * in + out - 1) / out;
        A w = A(1) / A(e - s);
        for (int64_t i = s; i < e; ++i) push(i, double(w));
        break;
      }
    }
    ax.start.push_back(int64_t(ax.idx.size()));
  }
  return ax;
}

// ---- CPU kernels -------------------------------------------------------------------------------
template <class A>
struct AxisView {  // the table with weights in A, for the inner loops
  const int64_t *start, *idx;
  std::vector<A> wt;
  explicit AxisView(const InterpAxis& a) : start(a.start.data()), idx(a.idx.data()), wt(a.wt.begin(), a.wt.end()) {}
};

template <class A>
void forward_cpu_t(const Tensor& x_, const InterpPlan& p, const Tensor& out_) {
  const InterpAxis &D = p.axis[0], &H = p.axis[1], &W = p.axis[2];
  const AxisView<A> vd(D), vh(H), vw(W);
  const int64_t planes = x_.size(0), in_plane = D.in * H.in * W.in, out_plane = D.out * H.out * W.out;
  const A* x = x_.data<A>();  // x: (planes, Din, Hin, Win)
  A* out = out_.data<A>();    // out: (planes, Dout, Hout, Wout)
#pragma omp parallel for schedule(static) if (planes * out_plane > (1 << 14))
  for (int64_t pl = 0; pl < planes; ++pl) {
    const A* xp = x + pl * in_plane;
    A* op = out + pl * out_plane;
    for (int64_t od = 0; od < D.out; ++od)
      for (int64_t oh = 0; oh < H.out; ++oh)
        for (int64_t ow = 0; ow < W.out; ++ow) {
          A acc_d = 0;
          for (int64_t td = vd.start[od]; td < vd.start[od + 1]; ++td) {
            A acc_h = 0;
            for (int64_t th = vh.start[oh]; th < vh.start[oh + 1]; ++th) {
              const A* row = xp + (vd.idx[td] * H.in + vh.idx[th]) * W.in;
              A acc_w = 0;
              for (int64_t tw = vw.start[ow]; tw < vw.start[ow + 1]; ++tw) acc_w += vw.wt[tw] * row[vw.idx[tw]];
              acc_h += vh.wt[th] * acc_w;
            }
            acc_d += vd.wt[td] * acc_h;
          }
          op[(od * H.out + oh) * W.out + ow] = acc_d;
        }
  }
}

template <class A>
void backward_cpu_t(const Tensor& g_, const InterpPlan& p, const Tensor& gin_) {
  const InterpAxis &D = p.axis[0], &H = p.axis[1], &W = p.axis[2];
  const AxisView<A> vd(D), vh(H), vw(W);
  const int64_t planes = g_.size(0), in_plane = D.in * H.in * W.in, out_plane = D.out * H.out * W.out;
  const A* g = g_.data<A>();  // grad_out: (planes, Dout, Hout, Wout)
  A* gin = gin_.data<A>();    // grad_in: (planes, Din, Hin, Win)
#pragma omp parallel for schedule(static) if (planes * out_plane > (1 << 14))
  for (int64_t pl = 0; pl < planes; ++pl) {
    const A* gp = g + pl * out_plane;
    A* ip = gin + pl * in_plane;
    std::fill(ip, ip + in_plane, A(0));
    for (int64_t od = 0; od < D.out; ++od)
      for (int64_t oh = 0; oh < H.out; ++oh)
        for (int64_t ow = 0; ow < W.out; ++ow) {
          const A go = gp[(od * H.out + oh) * W.out + ow];
          for (int64_t td = vd.start[od]; td < vd.start[od + 1]; ++td)
            for (int64_t th = vh.start[oh]; th < vh.start[oh + 1]; ++th) {
              A* row = ip + (vd.idx[td] * H.in + vh.idx[th]) * W.in;
              const A gdh = vd.wt[td] * vh.wt[th] * go;
              for (int64_t tw = vw.start[ow]; tw < vw.start[ow + 1]; ++tw) row[vw.idx[tw]] += vw.wt[tw] * gdh;
            }
        }
  }
}

void interpolate_forward_cpu(const Tensor& x, const InterpPlan& p, const Tensor& out) {
  if (x.dtype() == DType::F64) forward_cpu_t<double>(x, p, out);
  else forward_cpu_t<float>(x, p, out);
}
void interpolate_backward_cpu(const Tensor& g, const InterpPlan& p, const Tensor& gin) {
  if (g.dtype() == DType::F64) backward_cpu_t<double>(g, p, gin);
  else backward_cpu_t<float>(g, p, gin);
}
kernels::Registrar reg_fwd("interpolate_forward", DeviceType::CPU, &interpolate_forward_cpu);
kernels::Registrar reg_bwd("interpolate_backward", DeviceType::CPU, &interpolate_backward_cpu);

// ---- the op --------------------------------------------------------------------------------------
// `scale` holds the user's scale factors (0 = not given: the size ratio is used).
Tensor interpolate_impl(const Tensor& x, const Shape& size, const std::vector<double>& scale, std::string_view mode_name) {
  const ModeInfo mi = parse_mode(mode_name);
  const int sd = x.dim() - 2;
  VT_CHECK(x.dim() >= 3 && sd >= mi.min_dims && sd <= mi.max_dims, "interpolate: mode '", mode_name, "' expects ",
           mi.min_dims + 2, mi.max_dims > mi.min_dims ? "-" + std::to_string(mi.max_dims + 2) : std::string(),
           "-D input (N, C, spatial...), got shape ", x.shape().str());
  VT_CHECK(size.size() == sd, "interpolate: input ", x.shape().str(), " has ", sd, " spatial dims but size ",
           size.str(), " has ", size.size());
  VT_CHECK(is_floating(x.dtype()), "interpolate: input must be floating point, got ", dtype_name(x.dtype()));
  for (int i = 0; i < sd; ++i) {
    VT_CHECK(size[i] > 0, "interpolate: output size ", size.str(), " must be positive (input ", x.shape().str(), ")");
    VT_CHECK(x.size(i + 2) > 0, "interpolate: input ", x.shape().str(), " has an empty spatial dim");
  }
  InterpPlan plan;
  const bool f64 = x.dtype() == DType::F64;
  for (int i = 0; i < sd; ++i) {
    InterpAxis& ax = plan.axis[3 - sd + i];
    const double sf = mi.mode == Mode::Area ? 0.0 : scale[i];  // area only sees the output size
    ax = f64 ? build_axis<double>(mi.mode, x.size(i + 2), size[i], sf, x.dtype())
             : build_axis<float>(mi.mode, x.size(i + 2), size[i], sf, x.dtype());
  }
  const DType ct = f64 ? DType::F64 : DType::F32;
  const int64_t planes = x.size(0) * x.size(1);
  const Shape in3{planes, plan.axis[0].in, plan.axis[1].in, plan.axis[2].in};
  const Shape out3{planes, plan.axis[0].out, plan.axis[1].out, plan.axis[2].out};
  Shape out_shape{x.size(0), x.size(1)};
  for (int i = 0; i < sd; ++i) out_shape.push_back(size[i]);

  Tensor xc;
  {
    NoGradGuard ng;
    xc = cast(x.detach(), ct).contiguous().view(in3);
  }
  Tensor out = empty(out3, {ct, x.device()});
  static const kernels::Kernel<kernels::InterpolateForward> k_interpolate_forward("interpolate_forward");
  k_interpolate_forward(x.device())(xc, plan, out);
  {
    NoGradGuard ng;
    out = cast(out, x.dtype()).view(out_shape);
  }
  // Saved for backward: only the tap tables (the op is linear in x).
  autograd::record("interpolate", out, {x}, [plan, ct, in3, out3, xs = x.shape()](const Tensor& g) {
    Tensor gc = cast(g, ct).contiguous().view(out3);
    Tensor gin = empty(in3, {ct, g.device()});
    static const kernels::Kernel<kernels::InterpolateBackward> k_interpolate_backward("interpolate_backward");
    k_interpolate_backward(g.device())(gc, plan, gin);
    return grads{gin.view(xs)};
  });
  return out;
}

}  // namespace

Tensor interpolate(const Tensor& x, const Shape& size, std::string_view mode) {
  return interpolate_impl(x, size, std::vector<double>(size.size(), 0.0), mode);
}

Tensor interpolate_scale(const Tensor& x, const std::vector<double>& scale_factor, std::string_view mode) {
  const int sd = x.dim() - 2;
  VT_CHECK(sd >= 1, "interpolate: input must be (N, C, spatial...), got shape ", x.shape().str());
  VT_CHECK(scale_factor.size() == 1 || int(scale_factor.size()) == sd, "interpolate: ", scale_factor.size(),
           " scale factors for ", sd, " spatial dims of input ", x.shape().str());
  std::vector<double> s(sd);
  Shape size;
  for (int i = 0; i < sd; ++i) {
    s[i] = scale_factor.size() == 1 ? scale_factor[0] : scale_factor[i];
    VT_CHECK(s[i] > 0 && std::isfinite(s[i]), "interpolate: scale factor ", s[i], " must be positive");
    size.push_back(int64_t(std::floor(double(x.size(i + 2)) * s[i])));  // F.interpolate's output size
  }
  return interpolate_impl(x, size, s, mode);
}

}  // namespace vt::nn
