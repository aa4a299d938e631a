// ops_reduce.cpp: reductions, cumsum, sort and topk with their backward rules.
//
// Kernels reduce into a keepdim-shaped output; keepdim=false is a view that drops those dims.
// mean, var and logsumexp are compositions of kernels, so their gradients come from the
// composition (var is two-pass: mean first, then squared deviations, for accuracy).
#include <cmath>

#include "vt/backend.h"
#include "vt/ops.h"

namespace vt {

using kernels::ReduceOp;

// Bit mask of the reduced dims (all dims when `dims` is empty).
static uint32_t dim_mask(const Tensor& x, const Shape& dims, const char* op) {
  if (dims.empty()) return x.dim() ? (1u << x.dim()) - 1 : 0;
  uint32_t m = 0;
  for (int64_t d : dims) {
    int w = wrap_dim(d, x.dim(), op);
    VT_CHECK(!(m >> w & 1), op, ": dim ", w, " appears twice in ", dims.str());
    m |= 1u << w;
  }
  return m;
}

static Shape keep_shape(const Tensor& x, uint32_t mask) {
  Shape s = x.shape();
  for (int d = 0; d < s.size(); ++d)
    if (mask >> d & 1) s[d] = 1;
  return s;
}

static Tensor drop_dims(const Tensor& t, uint32_t mask, bool keepdim) {
  if (keepdim || mask == 0) return t;
  Shape s;
  for (int d = 0; d < t.dim(); ++d)
    if (!(mask >> d & 1)) s.push_back(t.shape()[d]);
  return t.view(s);
}

static Tensor reduce_raw(ReduceOp op, const Tensor& x, uint32_t mask, DType out_dtype) {
  Tensor out = empty(keep_shape(x, mask), {out_dtype, x.device()});
  kernels::backend(x.device()).reduce(op, x, mask, out);
  return out;
}

Tensor sum(const Tensor& x, const Shape& dims, bool keepdim) {
  uint32_t mask = dim_mask(x, dims, "sum");
  DType t = is_floating(x.dtype()) ? x.dtype() : DType::I64;
  Tensor out = reduce_raw(ReduceOp::Sum, x, mask, t);
  Shape xs = x.shape();
  autograd::record("sum", out, {x}, [xs](const Tensor& g) { return grads{g.expand(xs)}; });
  return drop_dims(out, mask, keepdim);
}

Tensor mean(const Tensor& x, const Shape& dims, bool keepdim) {
  VT_CHECK(is_floating(x.dtype()), "mean: needs a floating-point tensor, got ", dtype_name(x.dtype()));
  uint32_t mask = dim_mask(x, dims, "mean");
  int64_t n = 1;
  for (int d = 0; d < x.dim(); ++d)
    if (mask >> d & 1) n *= x.shape()[d];
  return div(sum(x, dims, keepdim), static_cast<double>(n));
}

Tensor var(const Tensor& x, const Shape& dims, double correction, bool keepdim) {
  uint32_t mask = dim_mask(x, dims, "var");
  int64_t n = 1;
  for (int d = 0; d < x.dim(); ++d)
    if (mask >> d & 1) n *= x.shape()[d];
  Tensor d = sub(x, mean(x, dims, true));
  return div(sum(mul(d, d), dims, keepdim), std::max(0.0, static_cast<double>(n) - correction));
}

// amax/amin: the gradient is shared evenly among the elements equal to the extreme (PyTorch).
static Tensor extreme(ReduceOp op, const Tensor& x, const Shape& dims, bool keepdim, const char* name) {
  uint32_t mask = dim_mask(x, dims, name);
  for (int d = 0; d < x.dim(); ++d)
    VT_CHECK(!(mask >> d & 1) || x.shape()[d] > 0, name, ": reduction over an empty dim ", d, " of ",
             x.shape().str());
  Tensor out = reduce_raw(op, x, mask, x.dtype());
  Shape xs = x.shape();
  autograd::record(name, out, {x}, [x, out = out.detach(), xs, dims](const Tensor& g) {
    Tensor hit = cast(eq(x, out), g.dtype());
    Tensor count = sum(hit, dims, true);
    return grads{mul(div(g, count).expand(xs), hit)};
  });
  return drop_dims(out, mask, keepdim);
}
Tensor amax(const Tensor& x, const Shape& dims, bool keepdim) { return extreme(ReduceOp::Max, x, dims, keepdim, "amax"); }
Tensor amin(const Tensor& x, const Shape& dims, bool keepdim) { return extreme(ReduceOp::Min, x, dims, keepdim, "amin"); }

Tensor argmax(const Tensor& x, std::optional<int64_t> dim, bool keepdim) {
  if (!dim) return reduce_raw(ReduceOp::ArgMax, x.reshape({-1}), 1, DType::I64).view({});
  uint32_t mask = dim_mask(x, {*dim}, "argmax");
  return drop_dims(reduce_raw(ReduceOp::ArgMax, x, mask, DType::I64), mask, keepdim);
}
Tensor argmin(const Tensor& x, std::optional<int64_t> dim, bool keepdim) {
  if (!dim) return reduce_raw(ReduceOp::ArgMin, x.reshape({-1}), 1, DType::I64).view({});
  uint32_t mask = dim_mask(x, {*dim}, "argmin");
  return drop_dims(reduce_raw(ReduceOp::ArgMin, x, mask, DType::I64), mask, keepdim);
}

// max(x, dim): values and the index of the first extreme; the gradient goes to that index only.
static std::pair<Tensor, Tensor> extreme_dim(bool is_max, const Tensor& x, int64_t dim, bool keepdim) {
  const char* name = is_max ? "max" : "min";
  uint32_t mask = dim_mask(x, {dim}, name);
  int d = wrap_dim(dim, x.dim(), name);
  VT_CHECK(x.dim() == 0 || x.shape()[d] > 0, name, ": reduction over an empty dim ", d);
  Tensor idx = reduce_raw(is_max ? ReduceOp::ArgMax : ReduceOp::ArgMin, x, mask, DType::I64);
  Tensor val = x.dim() == 0 ? x : gather(x, d, idx);
  return {drop_dims(val, mask, keepdim), drop_dims(idx, mask, keepdim)};
}
std::pair<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim) { return extreme_dim(true, x, dim, keepdim); }
std::pair<Tensor, Tensor> min(const Tensor& x, int64_t dim, bool keepdim) { return extreme_dim(false, x, dim, keepdim); }

// log(sum(exp(x - m))) + m with m the (detached) max, and m = 0 where it is infinite.
Tensor logsumexp(const Tensor& x, const Shape& dims, bool keepdim) {
  VT_CHECK(is_floating(x.dtype()), "logsumexp: needs a floating-point tensor");
  Tensor m;
  {
    NoGradGuard ng;
    m = amax(x, dims, true);
    m = masked_fill(m, isinf(m), 0);
  }
  Tensor r = add(log(sum(exp(sub(x, m)), dims, true)), m);
  if (keepdim) return r;
  uint32_t mask = dim_mask(x, dims, "logsumexp");
  return drop_dims(r, mask, false);
}

Tensor cumsum(const Tensor& x, int64_t dim_) {
  int d = wrap_dim(dim_, x.dim(), "cumsum");
  DType t = is_floating(x.dtype()) ? x.dtype() : DType::I64;
  Tensor out = empty(x.shape(), {t, x.device()});
  kernels::backend(x.device()).cumsum(x, d, out);
  autograd::record("cumsum", out, {x}, [d](const Tensor& g) {
    // reverse cumulative sum: total - cumsum + g
    Tensor c = cumsum(g, d);
    Tensor total = sum(g, {d}, true);
    return grads{add(sub(total, c), g)};
  });
  return out;
}

std::pair<Tensor, Tensor> sort(const Tensor& x, int64_t dim_, bool descending) {
  int d = wrap_dim(dim_, x.dim(), "sort");
  int last = std::max(x.dim() - 1, 0);
  Tensor xt = x.dim() ? x.transpose(d, last) : x;
  Tensor vals = empty(xt.shape(), {x.dtype(), x.device()});
  Tensor idx = empty(xt.shape(), {DType::I64, x.device()});
  kernels::backend(x.device()).sort_rows(xt.detach(), descending, vals, idx);
  if (x.dim()) {
    vals = vals.transpose(d, last);
    idx = idx.transpose(d, last);
  }
  Tensor v = x.dim() ? gather(x, d, idx) : x;  // differentiable values (same as `vals`)
  return {x.requires_grad() ? v : vals, idx};
}

std::pair<Tensor, Tensor> topk(const Tensor& x, int64_t k, int64_t dim_, bool largest, bool sorted) {
  int d = wrap_dim(dim_, x.dim(), "topk");
  int64_t n = x.dim() ? x.shape()[d] : 1;
  VT_CHECK(k >= 0 && k <= n, "topk: k = ", k, " out of range for a dim of size ", n);
  auto [vals, idx] = sort(x, d, largest);
  if (!x.dim()) return {vals, idx};
  Tensor i = idx.narrow(d, 0, k).contiguous();
  return {gather(x, d, i), i};
}

}  // namespace vt
