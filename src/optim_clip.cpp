// optim_clip.cpp: gradient norms, clipping and scaling of optim/clip.h.
//
// The CPU norm reads each gradient once in its own dtype and accumulates |g|^p in double per chunk of
// kChunk elements; chunk partials are added in chunk order, so any thread count gives the same bits.
// Other devices go through the tensor ops (a cast to f64, pow, sum), which reduce deterministically too.
#include "vt/optim/clip.h"

#include <cmath>
#include <type_traits>

#include "vt/autograd.h"
#include "vt/ops.h"

namespace vt::optim {

static constexpr int64_t kChunk = 1 << 16;

static inline double as_double(float x) { return x; }
static inline double as_double(double x) { return x; }
static inline double as_double(bf16 x) { return static_cast<double>(x); }
static inline double as_double(f16 x) { return static_cast<double>(x); }

// sum |x|^p (p finite) or max |x| (p = inf) over n contiguous elements.
template <class T>
static double accumulate_cpu(const T* x, int64_t n, double p) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(chunks, 0.0);
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t lo = c * kChunk, hi = std::min(n, lo + kChunk);
    double acc = 0;
    for (int64_t i = lo; i < hi; ++i) {
      const double a = std::fabs(as_double(x[i]));
      if (std::isinf(p)) acc = (a > acc || std::isnan(a)) ? a : acc;
      else acc += p == 2.0 ? a * a : std::pow(a, p);
    }
    partial[c] = acc;
  }
  double total = 0;
  for (double v : partial) total = std::isinf(p) ? ((v > total || std::isnan(v)) ? v : total) : total + v;
  return total;
}

static double accumulate(const Tensor& g, double p) {
  if (g.device().is_cpu()) {
    Tensor c = g.contiguous();
    switch (c.dtype()) {
      case DType::F32: return accumulate_cpu(c.data<float>(), c.numel(), p);
      case DType::F64: return accumulate_cpu(c.data<double>(), c.numel(), p);
      case DType::BF16: return accumulate_cpu(c.data<bf16>(), c.numel(), p);
      case DType::F16: return accumulate_cpu(c.data<f16>(), c.numel(), p);
      default: VT_FAIL("grad_norm: gradient of dtype ", dtype_name(c.dtype()), " is not a float type");
    }
  }
  Tensor a = abs(cast(g, DType::F64));
  return std::isinf(p) ? amax(a).item() : sum(pow(a, p)).item();
}

double grad_norm(const std::vector<Tensor>& params, double norm_type) {
  VT_CHECK(norm_type > 0, "grad_norm: norm_type must be > 0, got ", norm_type);
  NoGradGuard no_grad;
  double total = 0;
  for (const Tensor& p : params) {
    Tensor g = p.defined() ? p.grad() : Tensor();
    if (!g.defined() || g.numel() == 0) continue;
    const double part = accumulate(g, norm_type);
    if (std::isinf(norm_type)) total = (part > total || std::isnan(part)) ? part : total;
    else total += part;
  }
  if (std::isinf(norm_type)) return total;
  return norm_type == 2.0 ? std::sqrt(total) : std::pow(total, 1.0 / norm_type);
}

void clip_grads_with_norm_(const std::vector<Tensor>& params, double max_norm, double total_norm) {
  // torch: clip_coef = max_norm / (total_norm + 1e-6) on an fp32 tensor, which Python evaluates as
  // total.add(1e-6).reciprocal() * max_norm; then clamp(max=1).
  const float denom = static_cast<float>(total_norm) + 1e-6f;
  float coef = (1.0f / denom) * static_cast<float>(max_norm);
  if (!(coef <= 1.0f) && !std::isnan(coef)) coef = 1.0f;
  scale_grads_(params, coef);
}

double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type,
                       bool error_if_nonfinite) {
  const double total = grad_norm(params, norm_type);
  VT_CHECK(!error_if_nonfinite || std::isfinite(total), "clip_grad_norm_: the total norm of order ", norm_type,
           " of the gradients is ", total, " (non-finite)");
  clip_grads_with_norm_(params, max_norm, total);
  return total;
}

// out = round(float(g) * factor) for 16-bit g, g * factor for f32/f64, with factor held in fp32 (f64 for
// f64 grads): torch's g.mul_(coef) keeps a scalar operand at full precision even for bf16 tensors,
// whereas vt::mul(Tensor, double) would first round the scalar to the tensor's dtype.
template <class T>
static void scale_cpu(const T* __restrict__ g, T* __restrict__ out, int64_t n, double factor) {
  using Acc = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const Acc f = static_cast<Acc>(factor);
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    if constexpr (std::is_same_v<T, bf16>) out[i] = bf16(static_cast<float>(g[i]) * f);
    else if constexpr (std::is_same_v<T, f16>) out[i] = f16(static_cast<float>(g[i]) * f);
    else out[i] = g[i] * f;
  }
}

static Tensor scaled(const Tensor& g, double factor) {
  if (!g.device().is_cpu()) {
    const DType acc = g.dtype() == DType::F64 ? DType::F64 : DType::F32;
    return cast(mul(cast(g, acc), scalar_tensor(factor, {acc, g.device()})), g.dtype());
  }
  Tensor c = g.contiguous();
  Tensor out = empty(c.shape(), c.dtype());
  switch (c.dtype()) {
    case DType::F32: scale_cpu(c.data<float>(), out.data<float>(), c.numel(), factor); break;
    case DType::F64: scale_cpu(c.data<double>(), out.data<double>(), c.numel(), factor); break;
    case DType::BF16: scale_cpu(c.data<bf16>(), out.data<bf16>(), c.numel(), factor); break;
    case DType::F16: scale_cpu(c.data<f16>(), out.data<f16>(), c.numel(), factor); break;
    default: VT_FAIL("scale_grads_: gradient of dtype ", dtype_name(c.dtype()), " is not a float type");
  }
  return out;
}

void scale_grads_(const std::vector<Tensor>& params, double factor) {
  NoGradGuard no_grad;
  for (const Tensor& p : params) {
    Tensor g = p.defined() ? p.grad() : Tensor();
    if (!g.defined()) continue;
    // A new tensor, never in place: one gradient tensor may be shared by several leaves.
    p.set_grad(scaled(g, factor));
  }
}

void average_grads_(const std::vector<Tensor>& params, int64_t num_micro_batches) {
  VT_CHECK(num_micro_batches >= 1, "average_grads_: ", num_micro_batches, " micro-batches");
  scale_grads_(params, 1.0 / static_cast<double>(num_micro_batches));
}

}  // namespace vt::optim
