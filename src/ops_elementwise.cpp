// ops_elementwise.cpp: broadcasting, dtype promotion and autograd for the elementwise ops; the
// arithmetic itself is the backend's (cpu_elementwise.cpp, cuda/).
#include <cmath>
#include <limits>

#include "vt/backend.h"
#include "vt/ops.h"

namespace vt {

using kernels::BinaryOp;
using kernels::UnaryOp;

// ---- dtype promotion (PyTorch's lattice and category rules) ------------------------------------
static DType promote(DType a, DType b) {
  if (a == b) return a;
  if (a == DType::Bool) return b;
  if (b == DType::Bool) return a;
  bool fa = is_floating(a), fb = is_floating(b);
  if (fa && fb) {
    if (a == DType::F64 || b == DType::F64) return DType::F64;
    return DType::F32;  // f32 with bf16/f16, and bf16 with f16
  }
  if (fa) return a;
  if (fb) return b;
  return dtype_size(a) >= dtype_size(b) ? a : b;  // u8 < i32 < i64
}

static int category(DType t) { return t == DType::Bool ? 0 : is_floating(t) ? 2 : 1; }

// Tensors with dims decide; 0-d tensors only when of a higher category (as in PyTorch).
DType result_type(const Tensor& a, const Tensor& b) {
  bool za = a.dim() == 0, zb = b.dim() == 0;
  if (za == zb) return promote(a.dtype(), b.dtype());
  const Tensor& dimmed = za ? b : a;
  const Tensor& zero = za ? a : b;
  if (category(zero.dtype()) > category(dimmed.dtype())) return promote(dimmed.dtype(), zero.dtype());
  return dimmed.dtype();
}

// A C++ scalar is a "wrapped number": it decides the dtype only when of a higher category; then a
// float scalar gives float32 (the default dtype) and an integral one int64.
static DType scalar_result_type(const Tensor& t, double s) {
  bool s_float = !std::isfinite(s) || s != std::floor(s);
  if (s_float && !is_floating(t.dtype())) return DType::F32;
  if (t.dtype() == DType::Bool && !(s == 0 || s == 1)) return s_float ? DType::F32 : DType::I64;
  return t.dtype();
}

static void check_same_device(const Tensor& a, const Tensor& b, const char* op) {
  VT_CHECK(a.device() == b.device(), op, ": operands on different devices (", a.device().str(), " and ",
           b.device().str(), ")");
}

// A view of t read as `shape` (stride 0 on broadcast dims), outside autograd.
static Tensor broadcast_view(const Tensor& t, const Shape& shape) {
  if (t.shape() == shape) return t;
  return make_tensor(t.storage(), Layout(shape, broadcast_strides(t.layout(), shape), t.offset()), t.dtype());
}

static Tensor cast_raw(const Tensor& x, DType t) {
  if (x.dtype() == t) return x;
  Tensor out = empty(x.shape(), {t, x.device()});
  kernels::backend(x.device()).copy(x, out);
  return out;
}

// Elementwise binary kernel call without autograd: promotion to `compute`, output of `out_dtype`.
static Tensor binary_raw(BinaryOp op, const Tensor& a, const Tensor& b, DType compute, DType out_dtype,
                         double alpha, const char* name) {
  check_same_device(a, b, name);
  Shape s = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = empty(s, {out_dtype, a.device()});
  kernels::backend(a.device())
      .binary(op, broadcast_view(cast_raw(a, compute), s), broadcast_view(cast_raw(b, compute), s), out, alpha);
  return out;
}

static Tensor unary_raw(UnaryOp op, const Tensor& x, DType out_dtype, double p0 = 0, double p1 = 0) {
  Tensor out = empty(x.shape(), {out_dtype, x.device()});
  kernels::backend(x.device()).unary(op, x, out, p0, p1);
  return out;
}

Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  Shape dims;
  int lead = g.dim() - shape.size();
  VT_CHECK(lead >= 0, "sum_to: cannot reduce ", g.shape().str(), " to ", shape.str());
  for (int i = 0; i < g.dim(); ++i)
    if (i < lead || (shape[i - lead] == 1 && g.shape()[i] != 1)) dims.push_back(i);
  Tensor r = dims.empty() ? g : sum(g, dims, true);
  return lead ? r.reshape(shape) : r.view(shape);
}

// ---- binary arithmetic -------------------------------------------------------------------------
static Tensor arith(BinaryOp op, const Tensor& a, const Tensor& b, double alpha, const char* name) {
  DType t = result_type(a, b);
  if (op == BinaryOp::Div && !is_floating(t)) t = DType::F32;  // true division
  VT_CHECK(op != BinaryOp::Sub || t != DType::Bool, name, ": subtraction of bool tensors is not supported");
  Tensor out = binary_raw(op, a, b, t, t, alpha, name);
  if (!autograd::needs_grad(a, b)) return out;
  Shape sa = a.shape(), sb = b.shape();
  // Each rule computes a gradient only for an input that requires one (the engine drops the rest).
  const bool ra = a.requires_grad(), rb = b.requires_grad();
  switch (op) {
    case BinaryOp::Add:
      autograd::record(name, out, {a, b}, [sa, sb, alpha, ra, rb](const Tensor& g) {
        return grads{ra ? sum_to(g, sa) : Tensor(), rb ? sum_to(alpha == 1 ? g : mul(g, alpha), sb) : Tensor()};
      });
      break;
    case BinaryOp::Sub:
      autograd::record(name, out, {a, b}, [sa, sb, alpha, ra, rb](const Tensor& g) {
        return grads{ra ? sum_to(g, sa) : Tensor(), rb ? sum_to(mul(g, -alpha), sb) : Tensor()};
      });
      break;
    case BinaryOp::Mul:
      autograd::record(name, out, {a, b}, [a, b, sa, sb](const Tensor& g) {
        return grads{a.requires_grad() ? sum_to(mul(g, b), sa) : Tensor(),
                     b.requires_grad() ? sum_to(mul(g, a), sb) : Tensor()};
      });
      break;
    case BinaryOp::Div:
      autograd::record(name, out, {a, b}, [a, b, sa, sb](const Tensor& g) {
        Tensor ga = div(g, b);
        return grads{a.requires_grad() ? sum_to(ga, sa) : Tensor(),
                     b.requires_grad() ? sum_to(neg(mul(ga, div(a, b))), sb) : Tensor()};
      });
      break;
    case BinaryOp::Pow:
      autograd::record(name, out, {a, b}, [a, b, out = out.detach(), sa, sb](const Tensor& g) {
        Tensor ga, gb;
        if (a.requires_grad())  // b * a^(b-1), defined as 0 where b == 0
          ga = sum_to(where(eq(b, 0.0), zeros_like(g), mul(g, mul(b, pow(a, sub(b, 1.0))))), sa);
        if (b.requires_grad())  // out * log(a), defined as 0 where a == 0 and b >= 0
          gb = sum_to(where(logical_and(eq(a, 0.0), ge(b, 0.0)), zeros_like(g), mul(g, mul(out, log(a)))), sb);
        return grads{ga, gb};
      });
      break;
    case BinaryOp::Max:
    case BinaryOp::Min:
      autograd::record(name, out, {a, b}, [a, b, sa, sb, op](const Tensor& g) {
        // Ties split the gradient evenly, as PyTorch's maximum/minimum do.
        Tensor wins = op == BinaryOp::Max ? gt(a, b) : lt(a, b);
        Tensor tie = eq(a, b);
        Tensor half = mul(g, 0.5);
        Tensor ga = where(wins, g, where(tie, half, zeros_like(g)));
        Tensor gb = where(wins, zeros_like(g), where(tie, half, g));
        return grads{sum_to(ga, sa), sum_to(gb, sb)};
      });
      break;
    default: break;
  }
  return out;
}

Tensor add(const Tensor& a, const Tensor& b, double alpha) { return arith(BinaryOp::Add, a, b, alpha, "add"); }
Tensor sub(const Tensor& a, const Tensor& b, double alpha) { return arith(BinaryOp::Sub, a, b, alpha, "sub"); }
Tensor mul(const Tensor& a, const Tensor& b) { return arith(BinaryOp::Mul, a, b, 1, "mul"); }
Tensor div(const Tensor& a, const Tensor& b) { return arith(BinaryOp::Div, a, b, 1, "div"); }
Tensor pow(const Tensor& a, const Tensor& b) { return arith(BinaryOp::Pow, a, b, 1, "pow"); }
Tensor maximum(const Tensor& a, const Tensor& b) { return arith(BinaryOp::Max, a, b, 1, "maximum"); }
Tensor minimum(const Tensor& a, const Tensor& b) { return arith(BinaryOp::Min, a, b, 1, "minimum"); }

static Tensor scalar_like(const Tensor& t, double s) {
  return scalar_tensor(s, {scalar_result_type(t, s), t.device()});
}
// PyTorch keeps a scalar operand of a bf16/f16 op in float ("opmath") rather than rounding it to
// the tensor's dtype: compute in f32 and round the result once.
static bool half_scalar_op(const Tensor& a, double s) {
  return (a.dtype() == DType::BF16 || a.dtype() == DType::F16) && scalar_result_type(a, s) == a.dtype();
}
Tensor add(const Tensor& a, double b) {
  if (half_scalar_op(a, b)) return cast(add(cast(a, DType::F32), b), a.dtype());
  return add(a, scalar_like(a, b));
}
Tensor sub(const Tensor& a, double b) {
  if (half_scalar_op(a, b)) return cast(sub(cast(a, DType::F32), b), a.dtype());
  return sub(a, scalar_like(a, b));
}
Tensor mul(const Tensor& a, double b) {
  if (half_scalar_op(a, b)) return cast(mul(cast(a, DType::F32), b), a.dtype());
  return mul(a, scalar_like(a, b));
}
Tensor div(const Tensor& a, double b) {
  if (half_scalar_op(a, b)) return cast(div(cast(a, DType::F32), b), a.dtype());
  return div(a, scalar_like(a, b));
}

// ---- comparisons and logic ---------------------------------------------------------------------
static Tensor compare(BinaryOp op, const Tensor& a, const Tensor& b, const char* name) {
  return binary_raw(op, a, b, result_type(a, b), DType::Bool, 1, name);
}
Tensor eq(const Tensor& a, const Tensor& b) { return compare(BinaryOp::Eq, a, b, "eq"); }
Tensor ne(const Tensor& a, const Tensor& b) { return compare(BinaryOp::Ne, a, b, "ne"); }
Tensor lt(const Tensor& a, const Tensor& b) { return compare(BinaryOp::Lt, a, b, "lt"); }
Tensor le(const Tensor& a, const Tensor& b) { return compare(BinaryOp::Le, a, b, "le"); }
Tensor gt(const Tensor& a, const Tensor& b) { return compare(BinaryOp::Gt, a, b, "gt"); }
Tensor ge(const Tensor& a, const Tensor& b) { return compare(BinaryOp::Ge, a, b, "ge"); }
Tensor eq(const Tensor& a, double b) { return eq(a, scalar_like(a, b)); }
Tensor ne(const Tensor& a, double b) { return ne(a, scalar_like(a, b)); }
Tensor lt(const Tensor& a, double b) { return lt(a, scalar_like(a, b)); }
Tensor le(const Tensor& a, double b) { return le(a, scalar_like(a, b)); }
Tensor gt(const Tensor& a, double b) { return gt(a, scalar_like(a, b)); }
Tensor ge(const Tensor& a, double b) { return ge(a, scalar_like(a, b)); }
Tensor logical_and(const Tensor& a, const Tensor& b) { return compare(BinaryOp::And, a, b, "logical_and"); }
Tensor logical_or(const Tensor& a, const Tensor& b) { return compare(BinaryOp::Or, a, b, "logical_or"); }
Tensor logical_not(const Tensor& a) { return unary_raw(UnaryOp::LogicalNot, a, DType::Bool); }
Tensor isnan(const Tensor& x) { return unary_raw(UnaryOp::IsNan, x, DType::Bool); }
Tensor isinf(const Tensor& x) { return unary_raw(UnaryOp::IsInf, x, DType::Bool); }

// ---- unary -------------------------------------------------------------------------------------
// Math functions of integer tensors compute in float32, as PyTorch's do.
static Tensor unary(UnaryOp op, const Tensor& x, bool int_to_float, double p0 = 0, double p1 = 0) {
  DType t = int_to_float && !is_floating(x.dtype()) ? DType::F32 : x.dtype();
  return unary_raw(op, cast_raw(x, t), t, p0, p1);
}

Tensor neg(const Tensor& x) {
  VT_CHECK(x.dtype() != DType::Bool, "neg: negation of a bool tensor is not supported");
  Tensor out = unary(UnaryOp::Neg, x, false);
  autograd::record("neg", out, {x}, [](const Tensor& g) { return grads{neg(g)}; });
  return out;
}
Tensor abs(const Tensor& x) {
  Tensor out = unary(UnaryOp::Abs, x, false);
  autograd::record("abs", out, {x}, [x](const Tensor& g) { return grads{mul(g, sign(x))}; });
  return out;
}
Tensor sign(const Tensor& x) {
  Tensor out = unary(UnaryOp::Sign, x, false);
  autograd::record("sign", out, {x}, [](const Tensor& g) { return grads{zeros_like(g)}; });
  return out;
}
Tensor exp(const Tensor& x) {
  Tensor out = unary(UnaryOp::Exp, x, true);
  autograd::record("exp", out, {x}, [o = out.detach()](const Tensor& g) { return grads{mul(g, o)}; });
  return out;
}
Tensor log(const Tensor& x) {
  Tensor out = unary(UnaryOp::Log, x, true);
  autograd::record("log", out, {x}, [x](const Tensor& g) { return grads{div(g, x)}; });
  return out;
}
Tensor sqrt(const Tensor& x) {
  Tensor out = unary(UnaryOp::Sqrt, x, true);
  autograd::record("sqrt", out, {x}, [o = out.detach()](const Tensor& g) { return grads{div(g, mul(o, 2.0))}; });
  return out;
}
Tensor rsqrt(const Tensor& x) {
  Tensor out = unary(UnaryOp::Rsqrt, x, true);
  autograd::record("rsqrt", out, {x}, [o = out.detach()](const Tensor& g) {
    return grads{mul(g, mul(pow(o, 3.0), -0.5))};
  });
  return out;
}
Tensor sin(const Tensor& x) {
  Tensor out = unary(UnaryOp::Sin, x, true);
  autograd::record("sin", out, {x}, [x](const Tensor& g) { return grads{mul(g, cos(x))}; });
  return out;
}
Tensor cos(const Tensor& x) {
  Tensor out = unary(UnaryOp::Cos, x, true);
  autograd::record("cos", out, {x}, [x](const Tensor& g) { return grads{neg(mul(g, sin(x)))}; });
  return out;
}
Tensor tanh(const Tensor& x) {
  Tensor out = unary(UnaryOp::Tanh, x, true);
  autograd::record("tanh", out, {x}, [o = out.detach()](const Tensor& g) {
    return grads{mul(g, sub(ones_like(o), mul(o, o)))};
  });
  return out;
}
Tensor sigmoid(const Tensor& x) {
  Tensor out = unary(UnaryOp::Sigmoid, x, true);
  autograd::record("sigmoid", out, {x}, [o = out.detach()](const Tensor& g) {
    return grads{mul(g, mul(o, sub(ones_like(o), o)))};
  });
  return out;
}
Tensor relu(const Tensor& x) {
  Tensor out = unary(UnaryOp::Relu, x, false);
  autograd::record("relu", out, {x}, [o = out.detach()](const Tensor& g) {
    return grads{where(gt(o, 0.0), g, zeros_like(g))};
  });
  return out;
}
Tensor square(const Tensor& x) {
  Tensor out = unary(UnaryOp::Square, x, false);
  autograd::record("square", out, {x}, [x](const Tensor& g) { return grads{mul(g, mul(x, 2.0))}; });
  return out;
}
Tensor reciprocal(const Tensor& x) {
  Tensor out = unary(UnaryOp::Reciprocal, x, true);
  autograd::record("reciprocal", out, {x}, [o = out.detach()](const Tensor& g) {
    return grads{neg(mul(g, mul(o, o)))};
  });
  return out;
}
Tensor pow(const Tensor& x, double e) {
  bool int_ok = !is_floating(x.dtype()) && e >= 0 && e == std::floor(e);
  Tensor out = unary(UnaryOp::PowScalar, x, !int_ok, e);
  autograd::record("pow", out, {x}, [x, e](const Tensor& g) {
    if (e == 0) return grads{zeros_like(g)};
    return grads{mul(g, mul(pow(x, e - 1), e))};
  });
  return out;
}
Tensor clamp(const Tensor& x, std::optional<double> lo, std::optional<double> hi) {
  double l = lo.value_or(-INFINITY), h = hi.value_or(INFINITY);
  bool need_float = (lo && *lo != std::floor(*lo)) || (hi && *hi != std::floor(*hi));
  Tensor out = unary(UnaryOp::Clamp, x, need_float, l, h);
  autograd::record("clamp", out, {x}, [x, l, h](const Tensor& g) {
    return grads{where(logical_and(ge(x, l), le(x, h)), g, zeros_like(g))};
  });
  return out;
}

// ---- selection ---------------------------------------------------------------------------------
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  VT_CHECK(cond.dtype() == DType::Bool, "where: condition must be bool, got ", dtype_name(cond.dtype()));
  check_same_device(a, b, "where");
  check_same_device(cond, a, "where");
  Shape s = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  DType t = result_type(a, b);
  Tensor out = empty(s, {t, a.device()});
  kernels::backend(a.device())
      .where(broadcast_view(cond, s), broadcast_view(cast_raw(a, t), s), broadcast_view(cast_raw(b, t), s), out);
  if (autograd::needs_grad(a, b)) {
    Shape sa = a.shape(), sb = b.shape();
    autograd::record("where", out, {a, b}, [cond, sa, sb](const Tensor& g) {
      Tensor z = zeros({}, {g.dtype(), g.device()});
      return grads{sum_to(where(cond, g, z), sa), sum_to(where(cond, z, g), sb)};
    });
  }
  return out;
}
Tensor where(const Tensor& cond, const Tensor& a, double b) { return where(cond, a, scalar_like(a, b)); }

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  VT_CHECK(mask.dtype() == DType::Bool, "masked_fill: mask must be bool, got ", dtype_name(mask.dtype()));
  Shape s = broadcast_shapes(x.shape(), mask.shape(), "masked_fill");
  VT_CHECK(s == x.shape(), "masked_fill: mask of shape ", mask.shape().str(), " does not broadcast to input ",
           x.shape().str());
  Tensor v = scalar_tensor(value, {x.dtype(), x.device()});
  Tensor out = empty(s, {x.dtype(), x.device()});
  kernels::backend(x.device()).where(broadcast_view(mask, s), broadcast_view(v, s), x, out);
  autograd::record("masked_fill", out, {x}, [mask](const Tensor& g) {
    return grads{where(mask, zeros({}, {g.dtype(), g.device()}), g)};
  });
  return out;
}

// ---- casts and copies --------------------------------------------------------------------------
Tensor cast(const Tensor& x, DType t) {
  if (x.dtype() == t) return x;
  Tensor out = cast_raw(x, t);
  if (is_floating(t)) autograd::record("cast", out, {x}, [](const Tensor& g) { return grads{g}; });
  return out;
}

void copy_(Tensor& dst, const Tensor& src) {
  VT_CHECK(!dst.requires_grad() || !grad_enabled(), "copy_: destination requires grad (in-place ops on it "
           "would break autograd); use no_grad or an out-of-place op");
  Shape s = broadcast_shapes(dst.shape(), src.shape(), "copy_");
  VT_CHECK(s == dst.shape(), "copy_: source of shape ", src.shape().str(), " does not broadcast to ",
           dst.shape().str());
  if (src.device() == dst.device()) {
    kernels::backend(dst.device()).copy(broadcast_view(src, s), dst);
  } else {
    Tensor moved = src.to(dst.device());
    kernels::backend(dst.device()).copy(broadcast_view(moved, s), dst);
  }
}

void fill_(Tensor& dst, double value) {
  VT_CHECK(!dst.requires_grad() || !grad_enabled(), "fill_: destination requires grad");
  kernels::backend(dst.device()).fill(dst, value);
}

}  // namespace vt
