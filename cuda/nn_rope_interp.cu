// nn_rope_interp.cu: the rotary-embedding apply kernel ("rope_apply") and F.interpolate's forward
// and backward ("interpolate_forward", "interpolate_backward") on CUDA. The ops, the table builders
// and the CPU kernels are in src/nn_rope.cpp and src/nn_interpolate.cpp; the kernel signatures and
// the tap-table struct are declared in include/vt/nn/rope.h and interpolate.h, shared with the CPU.
//
// rope_apply: one thread per rotated pair. x and out are dense (R, D) f32/f64; cos/sin are (R, Dc)
// views with any strides (broadcast rows have stride 0), so each thread turns its row index into the
// tables' offsets by div/mod over the leading dims. Math in x's precision; the 16-bit rounding of
// every product and sum (HF's bf16 `q*cos + rotate_half(q)*sin`) is reproduced when asked.
// interpolate: the host's separable tap tables (weights in the op-math type: f32, or f64 for f64)
// are copied to the device once per call. Forward: one thread per output element evaluates
// sum_d wd * (sum_h wh * (sum_w ww * x)), nesting the axes as the CPU (and ATen) do. Backward is a
// gather, not a scatter: the host inverts each axis's table (for every input index, the outputs
// that read it and their weights), and one thread per input element sums its contributions in a
// fixed order, so there are no atomics and the result is the same run to run.
#include <vector>

#include "backend.h"
#include "loop.cuh"
#include "nn_kernels.h"
#include "vt/nn/interpolate.h"
#include "vt/nn/rope.h"
#include "vt/ops.h"


namespace vt::cuda {
namespace {

using nn::InterpAxis;
using nn::InterpPlan;
using nn::RopeLayout;

constexpr int kThreads = 256;

// A grid-stride loop's first index (this thread's) and step (all threads of the grid).
__device__ __forceinline__ int64_t grid_first() { return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ __forceinline__ int64_t grid_step() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

// ==== rope_apply ===================================================================================
// Row r of the (R, Dc) tables sits at sum_d idx_d(r) * stride_d over the leading dims.
struct TableRows {
  int nd = 0;
  int64_t size[kMaxDims];
  int64_t cos_stride[kMaxDims], sin_stride[kMaxDims];
  int64_t cos_last = 1, sin_last = 1;  // stride of the table dim
};

// 0: no rounding; 1: to bf16; 2: to f16 (each product and sum, as torch's 16-bit ops)
template <class A>
__device__ __forceinline__ A round16(A v, int rt) {
  if (rt == 1) return A(bf16_bits_to_float(float_to_bf16_bits(float(v))));
  if (rt == 2) return A(f16_bits_to_float(float_to_f16_bits(float(v))));
  return v;
}

// x, out: (R, D); pair p of row r: (ia, ib) with angles from table slots (ka, kb).
template <class A>
__global__ void __launch_bounds__(kThreads) rope_apply_kernel(const A* __restrict__ x, const A* __restrict__ cs,
                                                               const A* __restrict__ sn, TableRows t, bool half_layout,
                                                               bool transpose, int rt, A* __restrict__ out, int64_t R,
                                                               int64_t D) {
  const int64_t half = D / 2, n = R * half;
  for (int64_t i = grid_first(), step = grid_step(); i < n; i += step) {
    const int64_t r = i / half, p = i % half;
    int64_t oc = 0, os = 0, q = r;
    for (int d = t.nd - 1; d >= 0; --d) {
      const int64_t c = q % t.size[d];
      q /= t.size[d];
      oc += c * t.cos_stride[d];
      os += c * t.sin_stride[d];
    }
    const int64_t ia = half_layout ? p : 2 * p, ib = half_layout ? p + half : 2 * p + 1;
    const int64_t ka = p, kb = half_layout ? p + half : p;
    const A* xr = x + r * D;
    A* yr = out + r * D;
    const A a = xr[ia], b = xr[ib];
    const A c1 = cs[oc + ka * t.cos_last], s1 = sn[os + ka * t.sin_last];
    const A c2 = cs[oc + kb * t.cos_last], s2 = sn[os + kb * t.sin_last];
    if (transpose) {
      yr[ia] = a * c1 + b * s2;
      yr[ib] = b * c2 - a * s1;
    } else if (rt != 0) {
      yr[ia] = round16(round16(a * c1, rt) - round16(b * s1, rt), rt);
      yr[ib] = round16(round16(b * c2, rt) + round16(a * s2, rt), rt);
    } else {
      yr[ia] = a * c1 - b * s1;
      yr[ib] = b * c2 + a * s2;
    }
  }
}

void rope_apply_cuda(const Tensor& x, const Tensor& cos, const Tensor& sin, RopeLayout layout, bool transpose,
                     DType round_to, const Tensor& out) {
  check_cuda(x, "rope_apply");
  VT_CHECK(cos.dim() == x.dim() && sin.dim() == x.dim() && cos.dim() <= kMaxDims, "rope_apply: tables ",
           cos.shape().str(), " do not have the rows of x ", x.shape().str());
  DeviceGuard g(x.device());
  DeviceContext& ctx = context(x.device().index);
  const int64_t D = x.size(-1), R = x.numel() / std::max<int64_t>(D, 1);
  if (R * (D / 2) == 0) return;
  TableRows t;
  t.nd = x.dim() - 1;
  for (int d = 0; d < t.nd; ++d) {
    t.size[d] = cos.size(d);
    t.cos_stride[d] = cos.stride(d);
    t.sin_stride[d] = sin.stride(d);
  }
  t.cos_last = cos.stride(-1);
  t.sin_last = sin.stride(-1);
  const int rt = round_to == DType::BF16 ? 1 : round_to == DType::F16 ? 2 : 0;
  const bool half_layout = layout == RopeLayout::Half;
  const int64_t n = R * (D / 2);
  auto run = [&](auto tag) {
    using A = decltype(tag);
    rope_apply_kernel<A><<<grid_for(n, kThreads, ctx), kThreads, 0, ctx.stream()>>>(
        static_cast<const A*>(x.raw_data()), static_cast<const A*>(cos.raw_data()),
        static_cast<const A*>(sin.raw_data()), t, half_layout, transpose, rt, static_cast<A*>(out.raw_data()), R, D);
    VT_CUDA_CHECK_LAUNCH();
  };
  if (x.dtype() == DType::F64) run(double{});
  else if (x.dtype() == DType::F32) run(float{});
  else VT_FAIL("rope_apply: x must be f32 or f64 here, got ", dtype_name(x.dtype()));
}

// ==== interpolate ==================================================================================
// Per axis a: offsets into one int64 table and one weight table on the device.
//   forward  (start[out + 1], idx[taps])   with weights wt[taps]
//   backward (start[in + 1], out_index[taps]) with weights wt[taps]: the transposed taps
struct AxisTables {
  int64_t in[3], out[3];
  int64_t start[3], idx[3], wt[3];  // offsets into the int64 and weight buffers
};

// The three axes' tables (forward or transposed) packed into two device buffers.
template <class A>
struct DeviceTables {
  AxisTables ax;
  Tensor ints, weights;
};

template <class A>
DeviceTables<A> upload_tables(const InterpPlan& p, bool transposed, Device dev) {
  std::vector<int64_t> ints;
  std::vector<A> wts;
  DeviceTables<A> dt;
  for (int a = 0; a < 3; ++a) {
    const InterpAxis& ax = p.axis[a];
    dt.ax.in[a] = ax.in;
    dt.ax.out[a] = ax.out;
    std::vector<int64_t> start = ax.start, idx = ax.idx;
    std::vector<double> wt = ax.wt;
    if (transposed) {  // for each input i: the outputs o (and taps) that read it, o ascending
      std::vector<int64_t> count(static_cast<size_t>(ax.in) + 1, 0);
      for (int64_t tp = 0; tp < ax.start[ax.out]; ++tp) ++count[static_cast<size_t>(ax.idx[tp]) + 1];
      for (int64_t i = 0; i < ax.in; ++i) count[i + 1] += count[i];
      start = count;
      idx.assign(static_cast<size_t>(ax.start[ax.out]), 0);
      wt.assign(idx.size(), 0.0);
      std::vector<int64_t> fill(count.begin(), count.end() - 1);
      for (int64_t o = 0; o < ax.out; ++o)
        for (int64_t tp = ax.start[o]; tp < ax.start[o + 1]; ++tp) {
          const int64_t k = fill[ax.idx[tp]]++;
          idx[k] = o;
          wt[k] = ax.wt[tp];
        }
    }
    dt.ax.start[a] = static_cast<int64_t>(ints.size());
    ints.insert(ints.end(), start.begin(), start.end());
    dt.ax.idx[a] = static_cast<int64_t>(ints.size());
    ints.insert(ints.end(), idx.begin(), idx.end());
    dt.ax.wt[a] = static_cast<int64_t>(wts.size());
    for (double w : wt) wts.push_back(static_cast<A>(w));  // the op-math values, exact in double
  }
  dt.ints = from_blob(ints.data(), {static_cast<int64_t>(ints.size())}, DType::I64, dev);
  dt.weights = from_blob(wts.data(), {static_cast<int64_t>(wts.size())}, dtype_of<A>(), dev);
  return dt;
}

// One axis's taps as the kernels read them: index c of the axis has taps [start[c], start[c + 1]),
// tap t reading index idx[t] of the other tensor with weight wt[t].
template <class A>
struct Taps {
  const int64_t *start, *idx;
  const A* wt;
};
template <class A>
__device__ __forceinline__ Taps<A> taps_of(const AxisTables& t, int a, const int64_t* ints, const A* wts) {
  return {ints + t.start[a], ints + t.idx[a], wts + t.wt[a]};
}

// Flat index i of a (planes, size[0], size[1], size[2]) tensor -> (c0, c1, c2, plane).
struct Voxel {
  int64_t c0, c1, c2, plane;
};
__device__ __forceinline__ Voxel unflatten(int64_t i, const int64_t (&size)[3]) {
  int64_t q = i;
  const int64_t c2 = q % size[2];
  q /= size[2];
  const int64_t c1 = q % size[1];
  q /= size[1];
  return {q % size[0], c1, c2, q / size[0]};
}

// x: (planes, Din, Hin, Win) -> out: (planes, Dout, Hout, Wout); one thread per output element.
template <class A>
__global__ void __launch_bounds__(kThreads) interpolate_forward_kernel(const A* __restrict__ x, AxisTables t,
                                                                        const int64_t* __restrict__ ints,
                                                                        const A* __restrict__ wts, A* __restrict__ out,
                                                                        int64_t n) {
  const Taps<A> d = taps_of(t, 0, ints, wts), h = taps_of(t, 1, ints, wts), w = taps_of(t, 2, ints, wts);
  const int64_t in_plane = t.in[0] * t.in[1] * t.in[2];
  for (int64_t i = grid_first(), step = grid_step(); i < n; i += step) {
    const auto [od, oh, ow, pl] = unflatten(i, t.out);
    const A* xp = x + pl * in_plane;
    A acc_d = 0;
    for (int64_t td = d.start[od]; td < d.start[od + 1]; ++td) {
      A acc_h = 0;
      for (int64_t th = h.start[oh]; th < h.start[oh + 1]; ++th) {
        const A* row = xp + (d.idx[td] * t.in[1] + h.idx[th]) * t.in[2];
        A acc_w = 0;
        for (int64_t tw = w.start[ow]; tw < w.start[ow + 1]; ++tw) acc_w += w.wt[tw] * row[w.idx[tw]];
        acc_h += h.wt[th] * acc_w;
      }
      acc_d += d.wt[td] * acc_h;
    }
    out[i] = acc_d;
  }
}

// g: (planes, Dout, Hout, Wout) -> gin: (planes, Din, Hin, Win); one thread per input element sums
// ww * (wd * wh * g) over the transposed taps of its three axes.
template <class A>
__global__ void __launch_bounds__(kThreads) interpolate_backward_kernel(const A* __restrict__ g, AxisTables t,
                                                                         const int64_t* __restrict__ ints,
                                                                         const A* __restrict__ wts,
                                                                         A* __restrict__ gin, int64_t n) {
  const Taps<A> d = taps_of(t, 0, ints, wts), h = taps_of(t, 1, ints, wts), w = taps_of(t, 2, ints, wts);
  const int64_t out_plane = t.out[0] * t.out[1] * t.out[2];
  for (int64_t i = grid_first(), step = grid_step(); i < n; i += step) {
    const auto [id, ih, iw, pl] = unflatten(i, t.in);
    const A* gp = g + pl * out_plane;
    A acc = 0;
    for (int64_t td = d.start[id]; td < d.start[id + 1]; ++td)
      for (int64_t th = h.start[ih]; th < h.start[ih + 1]; ++th) {
        const A* row = gp + (d.idx[td] * t.out[1] + h.idx[th]) * t.out[2];
        const A wdh = d.wt[td] * h.wt[th];
        for (int64_t tw = w.start[iw]; tw < w.start[iw + 1]; ++tw) acc += w.wt[tw] * (wdh * row[w.idx[tw]]);
      }
    gin[i] = acc;
  }
}

template <class A>
void interpolate_run(const Tensor& src, const InterpPlan& p, const Tensor& dst, bool backward) {
  DeviceGuard guard(src.device());
  DeviceContext& ctx = context(src.device().index);
  const int64_t n = dst.numel();
  if (n == 0) return;
  const DeviceTables<A> dt = upload_tables<A>(p, backward, src.device());
  const A* s = static_cast<const A*>(src.raw_data());
  A* d = static_cast<A*>(dst.raw_data());
  const int64_t* ints = static_cast<const int64_t*>(dt.ints.raw_data());
  const A* wts = static_cast<const A*>(dt.weights.raw_data());
  if (backward)
    interpolate_backward_kernel<A><<<grid_for(n, kThreads, ctx), kThreads, 0, ctx.stream()>>>(s, dt.ax, ints, wts, d, n);
  else
    interpolate_forward_kernel<A><<<grid_for(n, kThreads, ctx), kThreads, 0, ctx.stream()>>>(s, dt.ax, ints, wts, d, n);
  VT_CUDA_CHECK_LAUNCH();
}

void interpolate_forward_cuda(const Tensor& x, const InterpPlan& p, const Tensor& out) {
  check_cuda(x, "interpolate");
  if (x.dtype() == DType::F64) interpolate_run<double>(x, p, out, false);
  else if (x.dtype() == DType::F32) interpolate_run<float>(x, p, out, false);
  else VT_FAIL("interpolate: x must be f32 or f64 here, got ", dtype_name(x.dtype()));
}

void interpolate_backward_cuda(const Tensor& g, const InterpPlan& p, const Tensor& gin) {
  check_cuda(g, "interpolate_backward");
  if (g.dtype() == DType::F64) interpolate_run<double>(g, p, gin, true);
  else if (g.dtype() == DType::F32) interpolate_run<float>(g, p, gin, true);
  else VT_FAIL("interpolate_backward: grad must be f32 or f64 here, got ", dtype_name(g.dtype()));
}

}  // namespace

void register_nn_rope_interp_kernels() {
  kernels::register_kernel("rope_apply", DeviceType::CUDA,
                           static_cast<kernels::RopeApply*>(&rope_apply_cuda));
  kernels::register_kernel("interpolate_forward", DeviceType::CUDA,
                           static_cast<kernels::InterpolateForward*>(&interpolate_forward_cuda));
  kernels::register_kernel(
      "interpolate_backward", DeviceType::CUDA,
      static_cast<kernels::InterpolateBackward*>(&interpolate_backward_cuda));
}

}  // namespace vt::cuda
