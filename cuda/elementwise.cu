// elementwise.cu: unary and binary kernels of the CUDA backend.
//
// Each op is a small functor over compute values (f32 for bf16/f16/f32, f64, int64 for integers
// and bool) run by launch_map (map.cuh): a dense path with 128-bit loads and stores when every
// operand is unit-stride or a broadcast scalar, a strided path for broadcast views and the rest.
// The arithmetic follows cpu_elementwise.cpp rule for rule (NaN handling of relu, clamp, max/min,
// sign; integer pow; alpha of add/sub), with CUDA's libdevice functions in place of libm, so
// results agree with the CPU to an ulp or two (exact for the non-transcendental ops).
#include "backend.h"
#include "map.cuh"

namespace vt::cuda {

using kernels::BinaryOp;
using kernels::UnaryOp;

// ---- math in the compute type -------------------------------------------------------------------
#define VT_MATH1(name, ffn, dfn)                                              \
  template <class C>                                                          \
  __device__ __forceinline__ C name(C v) {                                    \
    if constexpr (std::is_same_v<C, float>) return ffn(v);                    \
    else return dfn(v);                                                       \
  }
VT_MATH1(m_exp, expf, exp)
VT_MATH1(m_log, logf, log)
VT_MATH1(m_sqrt, sqrtf, sqrt)
VT_MATH1(m_sin, sinf, sin)
VT_MATH1(m_cos, cosf, cos)
VT_MATH1(m_tanh, tanhf, tanh)
#undef VT_MATH1
template <class C>
__device__ __forceinline__ C m_pow(C x, C y) {
  if constexpr (std::is_same_v<C, float>) return powf(x, y);
  else return pow(x, y);
}

// x^e for integers by squaring; negative exponents as integer division would give (cpu rule).
__device__ __forceinline__ int64_t int_pow(int64_t x, int64_t y) {
  if (y < 0) return x == 1 ? 1 : (x == -1 ? ((y & 1) ? -1 : 1) : 0);
  int64_t r = 1;
  for (int64_t k = y, base = x; k > 0; k >>= 1, base *= base)
    if (k & 1) r *= base;
  return r;
}

// ---- unary ---------------------------------------------------------------------------------------
template <UnaryOp OP, class C>
struct UnaryF {
  C p0, p1;
  __device__ __forceinline__ auto operator()(C v) const {
    if constexpr (OP == UnaryOp::Neg) return C(-v);
    else if constexpr (OP == UnaryOp::Abs) return v < C(0) ? C(-v) : (v == C(0) ? C(0) : v);
    else if constexpr (OP == UnaryOp::Sign) return C((C(0) < v) - (v < C(0)));
    else if constexpr (OP == UnaryOp::Square) return C(v * v);
    else if constexpr (OP == UnaryOp::Relu) return (v > C(0) || v != v) ? v : C(0);
    else if constexpr (OP == UnaryOp::Clamp) return v != v ? v : (v < p0 ? p0 : (v > p1 ? p1 : v));
    else if constexpr (OP == UnaryOp::IsNan) return int64_t(v != v);
    else if constexpr (OP == UnaryOp::IsInf) {
      if constexpr (std::is_floating_point_v<C>) return int64_t(isinf(v));
      else return int64_t(0);
    } else if constexpr (OP == UnaryOp::LogicalNot) return int64_t(v == C(0));
    else if constexpr (OP == UnaryOp::Exp) return m_exp(v);
    else if constexpr (OP == UnaryOp::Log) return m_log(v);
    else if constexpr (OP == UnaryOp::Sqrt) return m_sqrt(v);
    else if constexpr (OP == UnaryOp::Rsqrt) return C(1) / m_sqrt(v);
    else if constexpr (OP == UnaryOp::Sin) return m_sin(v);
    else if constexpr (OP == UnaryOp::Cos) return m_cos(v);
    else if constexpr (OP == UnaryOp::Tanh) return m_tanh(v);
    else if constexpr (OP == UnaryOp::Sigmoid) return C(1) / (C(1) + m_exp(-v));
    else if constexpr (OP == UnaryOp::Reciprocal) return C(1) / v;
    else if constexpr (OP == UnaryOp::PowScalar) {
      if constexpr (std::is_floating_point_v<C>) return p0 == C(2) ? v * v : (p0 == C(0.5) ? m_sqrt(v) : m_pow(v, p0));
      else return int_pow(v, p0);
    }
  }
};

// Converts a double parameter to the compute type, saturating for integers (no UB on +-inf).
template <class C>
static C param(double p) {
  if constexpr (std::is_floating_point_v<C>) {
    return static_cast<C>(p);
  } else {
    if (p != p) return 0;
    if (p <= -9223372036854775808.0) return INT64_MIN;
    if (p >= 9223372036854775808.0) return INT64_MAX;
    return static_cast<C>(p);
  }
}

template <class T, UnaryOp OP>
static void run_unary(const Tensor& x, const Tensor& out, double p0, double p1) {
  using C = compute_t<T>;
  constexpr bool pred = OP == UnaryOp::IsNan || OP == UnaryOp::IsInf || OP == UnaryOp::LogicalNot;
  UnaryF<OP, C> f{param<C>(p0), param<C>(p1)};
  if constexpr (pred) launch_map<bool, T>(out, f, {&x});
  else launch_map<T, T>(out, f, {&x});
}

template <class T>
static void unary_typed(UnaryOp op, const Tensor& x, const Tensor& out, double p0, double p1) {
  constexpr bool fp = std::is_floating_point_v<compute_t<T>>;
  switch (op) {
    case UnaryOp::Neg: return run_unary<T, UnaryOp::Neg>(x, out, p0, p1);
    case UnaryOp::Abs: return run_unary<T, UnaryOp::Abs>(x, out, p0, p1);
    case UnaryOp::Sign: return run_unary<T, UnaryOp::Sign>(x, out, p0, p1);
    case UnaryOp::Square: return run_unary<T, UnaryOp::Square>(x, out, p0, p1);
    case UnaryOp::Relu: return run_unary<T, UnaryOp::Relu>(x, out, p0, p1);
    case UnaryOp::Clamp: return run_unary<T, UnaryOp::Clamp>(x, out, p0, p1);
    case UnaryOp::IsNan: return run_unary<T, UnaryOp::IsNan>(x, out, p0, p1);
    case UnaryOp::IsInf: return run_unary<T, UnaryOp::IsInf>(x, out, p0, p1);
    case UnaryOp::LogicalNot: return run_unary<T, UnaryOp::LogicalNot>(x, out, p0, p1);
    case UnaryOp::PowScalar: return run_unary<T, UnaryOp::PowScalar>(x, out, p0, p1);
    default: break;
  }
  if constexpr (fp) {
    switch (op) {
      case UnaryOp::Exp: return run_unary<T, UnaryOp::Exp>(x, out, p0, p1);
      case UnaryOp::Log: return run_unary<T, UnaryOp::Log>(x, out, p0, p1);
      case UnaryOp::Sqrt: return run_unary<T, UnaryOp::Sqrt>(x, out, p0, p1);
      case UnaryOp::Rsqrt: return run_unary<T, UnaryOp::Rsqrt>(x, out, p0, p1);
      case UnaryOp::Sin: return run_unary<T, UnaryOp::Sin>(x, out, p0, p1);
      case UnaryOp::Cos: return run_unary<T, UnaryOp::Cos>(x, out, p0, p1);
      case UnaryOp::Tanh: return run_unary<T, UnaryOp::Tanh>(x, out, p0, p1);
      case UnaryOp::Sigmoid: return run_unary<T, UnaryOp::Sigmoid>(x, out, p0, p1);
      case UnaryOp::Reciprocal: return run_unary<T, UnaryOp::Reciprocal>(x, out, p0, p1);
      default: break;
    }
  }
  VT_FAIL("cuda unary ", kernels::name(op), ": unsupported dtype ", dtype_name(x.dtype()));
}

void CudaBackend::unary(UnaryOp op, const Tensor& x, const Tensor& out, double p0, double p1) {
  check_cuda(x, kernels::name(op));
  check_cuda(out, kernels::name(op));
  DeviceGuard g(out.device());
  visit_dtype(x.dtype(), [&](auto tag) { unary_typed<typename decltype(tag)::type>(op, x, out, p0, p1); });
}

// ---- binary --------------------------------------------------------------------------------------
template <BinaryOp OP, class C>
struct BinaryF {
  C alpha;
  __device__ __forceinline__ auto operator()(C x, C y) const {
    if constexpr (OP == BinaryOp::Add) return C(x + alpha * y);
    else if constexpr (OP == BinaryOp::Sub) return C(x - alpha * y);
    else if constexpr (OP == BinaryOp::Mul) return C(x * y);
    else if constexpr (OP == BinaryOp::Div) return C(x / y);
    else if constexpr (OP == BinaryOp::Pow) {
      if constexpr (std::is_floating_point_v<C>) return m_pow(x, y);
      else return int_pow(x, y);
    } else if constexpr (OP == BinaryOp::Max) return x != x ? x : (y != y ? y : (x > y ? x : y));
    else if constexpr (OP == BinaryOp::Min) return x != x ? x : (y != y ? y : (x < y ? x : y));
    else if constexpr (OP == BinaryOp::Eq) return int64_t(x == y);
    else if constexpr (OP == BinaryOp::Ne) return int64_t(x != y);
    else if constexpr (OP == BinaryOp::Lt) return int64_t(x < y);
    else if constexpr (OP == BinaryOp::Le) return int64_t(x <= y);
    else if constexpr (OP == BinaryOp::Gt) return int64_t(x > y);
    else if constexpr (OP == BinaryOp::Ge) return int64_t(x >= y);
    else if constexpr (OP == BinaryOp::And) return int64_t(x != C(0) && y != C(0));
    else if constexpr (OP == BinaryOp::Or) return int64_t(x != C(0) || y != C(0));
  }
};

// a + b without the multiply when alpha is 1 (the common case; exact either way, but a separate
// functor keeps x + 1*y from becoming an fma that rounds differently from the CPU's x + y).
template <class C>
struct AddF {
  __device__ __forceinline__ C operator()(C x, C y) const { return C(x + y); }
};
template <class C>
struct SubF {
  __device__ __forceinline__ C operator()(C x, C y) const { return C(x - y); }
};

template <class T, BinaryOp OP>
static void run_binary(const Tensor& a, const Tensor& b, const Tensor& out, double alpha) {
  using C = compute_t<T>;
  constexpr bool pred = OP >= BinaryOp::Eq;
  if constexpr (pred) {
    launch_map<bool, T, T>(out, BinaryF<OP, C>{C(1)}, {&a, &b});
  } else if constexpr (OP == BinaryOp::Add) {
    if (alpha == 1) launch_map<T, T, T>(out, AddF<C>{}, {&a, &b});
    else launch_map<T, T, T>(out, BinaryF<OP, C>{param<C>(alpha)}, {&a, &b});
  } else if constexpr (OP == BinaryOp::Sub) {
    if (alpha == 1) launch_map<T, T, T>(out, SubF<C>{}, {&a, &b});
    else launch_map<T, T, T>(out, BinaryF<OP, C>{param<C>(alpha)}, {&a, &b});
  } else {
    launch_map<T, T, T>(out, BinaryF<OP, C>{C(1)}, {&a, &b});
  }
}

template <class T>
static void binary_typed(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out, double alpha) {
  constexpr bool fp = std::is_floating_point_v<compute_t<T>>;
  switch (op) {
    case BinaryOp::Add: return run_binary<T, BinaryOp::Add>(a, b, out, alpha);
    case BinaryOp::Sub: return run_binary<T, BinaryOp::Sub>(a, b, out, alpha);
    case BinaryOp::Mul: return run_binary<T, BinaryOp::Mul>(a, b, out, alpha);
    case BinaryOp::Div:
      if constexpr (fp) return run_binary<T, BinaryOp::Div>(a, b, out, alpha);
      break;
    case BinaryOp::Pow: return run_binary<T, BinaryOp::Pow>(a, b, out, alpha);
    case BinaryOp::Max: return run_binary<T, BinaryOp::Max>(a, b, out, alpha);
    case BinaryOp::Min: return run_binary<T, BinaryOp::Min>(a, b, out, alpha);
    case BinaryOp::Eq: return run_binary<T, BinaryOp::Eq>(a, b, out, alpha);
    case BinaryOp::Ne: return run_binary<T, BinaryOp::Ne>(a, b, out, alpha);
    case BinaryOp::Lt: return run_binary<T, BinaryOp::Lt>(a, b, out, alpha);
    case BinaryOp::Le: return run_binary<T, BinaryOp::Le>(a, b, out, alpha);
    case BinaryOp::Gt: return run_binary<T, BinaryOp::Gt>(a, b, out, alpha);
    case BinaryOp::Ge: return run_binary<T, BinaryOp::Ge>(a, b, out, alpha);
    case BinaryOp::And: return run_binary<T, BinaryOp::And>(a, b, out, alpha);
    case BinaryOp::Or: return run_binary<T, BinaryOp::Or>(a, b, out, alpha);
  }
  VT_FAIL("cuda binary ", kernels::name(op), ": unsupported dtype ", dtype_name(a.dtype()));
}

void CudaBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out, double alpha) {
  check_cuda(a, kernels::name(op));
  check_cuda(b, kernels::name(op));
  check_cuda(out, kernels::name(op));
  VT_CHECK(a.dtype() == b.dtype(), "cuda ", kernels::name(op), ": operand dtypes ", dtype_name(a.dtype()), " and ",
           dtype_name(b.dtype()), " differ");
  DeviceGuard g(out.device());
  visit_dtype(a.dtype(), [&](auto tag) { binary_typed<typename decltype(tag)::type>(op, a, b, out, alpha); });
}

}  // namespace vt::cuda
