// unary.cu: the unary kernels of the CUDA backend (neg .. logical_not).
//
// Each op is a functor over compute values (f32 for bf16/f16/f32, f64, int64 for integers and
// bool) run by launch_map (map.cuh): a dense path with 128-bit loads and stores, a strided path for
// views. The rules follow cpu_elementwise.cpp (NaN passes through relu and clamp, sign(NaN) = 0,
// integer pow by squaring), with libdevice in place of libm, so results agree with the CPU to an
// ulp or two for the transcendental ops and exactly for the rest. abs(-0) gives +0, as in PyTorch.
#include "math.cuh"

namespace vt::cuda {

using kernels::UnaryOp;

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

}  // namespace vt::cuda
