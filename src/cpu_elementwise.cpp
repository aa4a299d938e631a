// cpu_elementwise.cpp: copy/cast, fill, unary, binary and where kernels of the CPU backend.
//
// Values are loaded into their compute type (float for bf16/f16/f32, double for f64, int64 for
// integers), combined, and rounded once on store, as PyTorch's CPU kernels do. Each kernel has a
// dense branch (every operand's inner stride is one element, or zero for a broadcast scalar) that
// the compiler vectorises, and a strided branch for everything else.
#include <cmath>
#include <cstdlib>
#include <limits>

#include "cpu_backend.h"
#include "cpu_loop.h"

namespace vt::cpu {

using kernels::BinaryOp;
using kernels::UnaryOp;

// ---- copy with cast ----------------------------------------------------------------------------
template <class S, class D>
static void copy_typed(const Tensor& src, const Tensor& dst) {
  for_each<2>(dst.shape(), {&dst, &src}, [](char** p, const int64_t* st, int64_t n) {
    if (st[0] == sizeof(D) && st[1] == sizeof(S)) {
      D* o = reinterpret_cast<D*>(p[0]);
      const S* x = reinterpret_cast<const S*>(p[1]);
      if constexpr (std::is_same_v<S, D>) {
        std::memcpy(o, x, n * sizeof(D));
      } else {
        for (int64_t i = 0; i < n; ++i) store<D>(o + i, load<S>(x + i));
      }
      return;
    }
    for (int64_t i = 0; i < n; ++i) store<D>(p[0] + i * st[0], load<S>(p[1] + i * st[1]));
  });
}

// Float -> int casts truncate toward zero, as static_cast does and PyTorch does (for values in
// range; out-of-range values are undefined behaviour in C++ and implementation-defined in torch).
template <class S, class D>
static void copy_cast(const Tensor& src, const Tensor& dst) {
  if constexpr (std::is_integral_v<compute_t<D>> && !std::is_integral_v<compute_t<S>>) {
    for_each<2>(dst.shape(), {&dst, &src}, [](char** p, const int64_t* st, int64_t n) {
      for (int64_t i = 0; i < n; ++i) {
        double v = static_cast<double>(load<S>(p[1] + i * st[1]));
        if constexpr (std::is_same_v<D, bool>) {
          store<D>(p[0] + i * st[0], static_cast<int64_t>(v != 0));
        } else {
          // Saturate instead of invoking UB on NaN/inf/out-of-range values.
          double lo = static_cast<double>(std::numeric_limits<int64_t>::min());
          int64_t iv = std::isnan(v) ? 0 : v <= lo ? std::numeric_limits<int64_t>::min()
                                       : v >= -lo  ? std::numeric_limits<int64_t>::max()
                                                   : static_cast<int64_t>(v);
          store<D>(p[0] + i * st[0], iv);
        }
      }
    });
  } else if constexpr (std::is_same_v<D, bool>) {
    for_each<2>(dst.shape(), {&dst, &src}, [](char** p, const int64_t* st, int64_t n) {
      for (int64_t i = 0; i < n; ++i) store<D>(p[0] + i * st[0], static_cast<int64_t>(load<S>(p[1] + i * st[1]) != 0));
    });
  } else if constexpr (std::is_same_v<compute_t<S>, double> && (std::is_same_v<D, bf16> || std::is_same_v<D, f16>)) {
    // f64 -> bf16/f16 as PyTorch does it: through float (two roundings), see half.h.
    for_each<2>(dst.shape(), {&dst, &src}, [](char** p, const int64_t* st, int64_t n) {
      for (int64_t i = 0; i < n; ++i) {
        double v = load<S>(p[1] + i * st[1]);
        uint16_t bits = std::is_same_v<D, bf16> ? double_to_bf16_bits(v) : double_to_f16_bits(v);
        *reinterpret_cast<uint16_t*>(p[0] + i * st[0]) = bits;
      }
    });
  } else {
    copy_typed<S, D>(src, dst);
  }
}

void CpuBackend::copy(const Tensor& src, const Tensor& dst) {
  visit_dtype(src.dtype(), [&](auto s) {
    visit_dtype(dst.dtype(), [&](auto d) {
      copy_cast<typename decltype(s)::type, typename decltype(d)::type>(src, dst);
    });
  });
}

void CpuBackend::fill(const Tensor& dst, double value) {
  visit_dtype(dst.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    alignas(8) char bytes[8];
    store<T>(bytes, static_cast<C>(value));
    for_each<1>(dst.shape(), {&dst}, [&](char** p, const int64_t* st, int64_t n) {
      for (int64_t i = 0; i < n; ++i) std::memcpy(p[0] + i * st[0], bytes, sizeof(T));
    });
  });
}

// ---- unary ------------------------------------------------------------------------------------
template <class T, class R, class F>
static void unary_loop(const Tensor& x, const Tensor& out, F f) {
  for_each<2>(out.shape(), {&out, &x}, [f](char** p, const int64_t* st, int64_t n) {
    if (st[0] == sizeof(R) && st[1] == sizeof(T)) {
      R* o = reinterpret_cast<R*>(p[0]);
      const T* a = reinterpret_cast<const T*>(p[1]);
      for (int64_t i = 0; i < n; ++i) store<R>(o + i, f(load<T>(a + i)));
    } else {
      for (int64_t i = 0; i < n; ++i) store<R>(p[0] + i * st[0], f(load<T>(p[1] + i * st[1])));
    }
  });
}

template <class T>
static void unary_typed(UnaryOp op, const Tensor& x, const Tensor& out, double p0, double p1) {
  using C = compute_t<T>;
  constexpr bool fp = std::is_floating_point_v<C>;
  switch (op) {
    case UnaryOp::Neg: return unary_loop<T, T>(x, out, [](C v) { return C(-v); });
    case UnaryOp::Abs: return unary_loop<T, T>(x, out, [](C v) { return v < 0 ? C(-v) : v; });
    case UnaryOp::Sign:  // sign(NaN) = 0 and sign(-0) = 0, as in PyTorch
      return unary_loop<T, T>(x, out, [](C v) { return C((C(0) < v) - (v < C(0))); });
    case UnaryOp::Square: return unary_loop<T, T>(x, out, [](C v) { return C(v * v); });
    case UnaryOp::Relu: return unary_loop<T, T>(x, out, [](C v) { return v > C(0) || v != v ? v : C(0); });
    case UnaryOp::Clamp:
      return unary_loop<T, T>(x, out, [lo = C(p0), hi = C(p1)](C v) {
        if constexpr (fp) if (std::isnan(v)) return v;
        return v < lo ? lo : (v > hi ? hi : v);
      });
    case UnaryOp::IsNan:
      return unary_loop<T, bool>(x, out, [](C v) { return int64_t(v != v); });
    case UnaryOp::IsInf:
      return unary_loop<T, bool>(x, out, [](C v) {
        if constexpr (fp) return int64_t(std::isinf(v));
        else return int64_t(0);
      });
    case UnaryOp::LogicalNot: return unary_loop<T, bool>(x, out, [](C v) { return int64_t(v == C(0)); });
    default: break;
  }
  if constexpr (fp) {
    switch (op) {
      case UnaryOp::Exp: return unary_loop<T, T>(x, out, [](C v) { return std::exp(v); });
      case UnaryOp::Log: return unary_loop<T, T>(x, out, [](C v) { return std::log(v); });
      case UnaryOp::Sqrt: return unary_loop<T, T>(x, out, [](C v) { return std::sqrt(v); });
      case UnaryOp::Rsqrt: return unary_loop<T, T>(x, out, [](C v) { return C(1) / std::sqrt(v); });
      case UnaryOp::Sin: return unary_loop<T, T>(x, out, [](C v) { return std::sin(v); });
      case UnaryOp::Cos: return unary_loop<T, T>(x, out, [](C v) { return std::cos(v); });
      case UnaryOp::Tanh: return unary_loop<T, T>(x, out, [](C v) { return std::tanh(v); });
      case UnaryOp::Sigmoid: return unary_loop<T, T>(x, out, [](C v) { return C(1) / (C(1) + std::exp(-v)); });
      case UnaryOp::Reciprocal: return unary_loop<T, T>(x, out, [](C v) { return C(1) / v; });
      case UnaryOp::PowScalar:
        if (p0 == 2) return unary_loop<T, T>(x, out, [](C v) { return v * v; });
        if (p0 == 0.5) return unary_loop<T, T>(x, out, [](C v) { return std::sqrt(v); });
        return unary_loop<T, T>(x, out, [e = C(p0)](C v) { return std::pow(v, e); });
      default: break;
    }
  } else if (op == UnaryOp::PowScalar) {
    return unary_loop<T, T>(x, out, [e = int64_t(p0)](C v) {
      C r = 1, b = v;
      for (int64_t k = e; k > 0; k >>= 1, b *= b)
        if (k & 1) r *= b;
      return r;
    });
  }
  VT_FAIL("cpu unary ", kernels::name(op), ": unsupported dtype ", dtype_name(x.dtype()));
}

void CpuBackend::unary(UnaryOp op, const Tensor& x, const Tensor& out, double p0, double p1) {
  visit_dtype(x.dtype(), [&](auto tag) { unary_typed<typename decltype(tag)::type>(op, x, out, p0, p1); });
}

// ---- binary -----------------------------------------------------------------------------------
template <class T, class R, class F>
static void binary_loop(const Tensor& a, const Tensor& b, const Tensor& out, F f) {
  for_each<3>(out.shape(), {&out, &a, &b}, [f](char** p, const int64_t* st, int64_t n) {
    constexpr int64_t es = sizeof(T);
    R* o = reinterpret_cast<R*>(p[0]);
    const T* x = reinterpret_cast<const T*>(p[1]);
    const T* y = reinterpret_cast<const T*>(p[2]);
    if (st[0] == sizeof(R) && st[1] == es && st[2] == es) {
      for (int64_t i = 0; i < n; ++i) store<R>(o + i, f(load<T>(x + i), load<T>(y + i)));
    } else if (st[0] == sizeof(R) && st[1] == es && st[2] == 0) {
      auto yv = load<T>(y);
      for (int64_t i = 0; i < n; ++i) store<R>(o + i, f(load<T>(x + i), yv));
    } else if (st[0] == sizeof(R) && st[1] == 0 && st[2] == es) {
      auto xv = load<T>(x);
      for (int64_t i = 0; i < n; ++i) store<R>(o + i, f(xv, load<T>(y + i)));
    } else {
      for (int64_t i = 0; i < n; ++i)
        store<R>(p[0] + i * st[0], f(load<T>(p[1] + i * st[1]), load<T>(p[2] + i * st[2])));
    }
  });
}

template <class T>
static void binary_typed(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out, double alpha) {
  using C = compute_t<T>;
  constexpr bool fp = std::is_floating_point_v<C>;
  switch (op) {
    case BinaryOp::Add:
      if (alpha == 1) return binary_loop<T, T>(a, b, out, [](C x, C y) { return C(x + y); });
      return binary_loop<T, T>(a, b, out, [s = C(alpha)](C x, C y) { return C(x + s * y); });
    case BinaryOp::Sub:
      if (alpha == 1) return binary_loop<T, T>(a, b, out, [](C x, C y) { return C(x - y); });
      return binary_loop<T, T>(a, b, out, [s = C(alpha)](C x, C y) { return C(x - s * y); });
    case BinaryOp::Mul: return binary_loop<T, T>(a, b, out, [](C x, C y) { return C(x * y); });
    case BinaryOp::Div:
      if constexpr (fp) return binary_loop<T, T>(a, b, out, [](C x, C y) { return x / y; });
      break;
    case BinaryOp::Pow:
      if constexpr (fp) {
        return binary_loop<T, T>(a, b, out, [](C x, C y) { return std::pow(x, y); });
      } else {
        return binary_loop<T, T>(a, b, out, [](C x, C y) { return C(scalar::int_pow(x, y)); });
      }
    case BinaryOp::Max:
      return binary_loop<T, T>(a, b, out, [](C x, C y) { return scalar::maximum(x, y); });
    case BinaryOp::Min:
      return binary_loop<T, T>(a, b, out, [](C x, C y) { return scalar::minimum(x, y); });
    case BinaryOp::Eq: return binary_loop<T, bool>(a, b, out, [](C x, C y) { return int64_t(x == y); });
    case BinaryOp::Ne: return binary_loop<T, bool>(a, b, out, [](C x, C y) { return int64_t(x != y); });
    case BinaryOp::Lt: return binary_loop<T, bool>(a, b, out, [](C x, C y) { return int64_t(x < y); });
    case BinaryOp::Le: return binary_loop<T, bool>(a, b, out, [](C x, C y) { return int64_t(x <= y); });
    case BinaryOp::Gt: return binary_loop<T, bool>(a, b, out, [](C x, C y) { return int64_t(x > y); });
    case BinaryOp::Ge: return binary_loop<T, bool>(a, b, out, [](C x, C y) { return int64_t(x >= y); });
    case BinaryOp::And: return binary_loop<T, bool>(a, b, out, [](C x, C y) { return int64_t(x != C(0) && y != C(0)); });
    case BinaryOp::Or: return binary_loop<T, bool>(a, b, out, [](C x, C y) { return int64_t(x != C(0) || y != C(0)); });
  }
  VT_FAIL("cpu binary ", kernels::name(op), ": unsupported dtype ", dtype_name(a.dtype()));
}

void CpuBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out, double alpha) {
  visit_dtype(a.dtype(), [&](auto tag) { binary_typed<typename decltype(tag)::type>(op, a, b, out, alpha); });
}

void CpuBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  visit_dtype(out.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    for_each<4>(out.shape(), {&out, &cond, &a, &b}, [](char** p, const int64_t* st, int64_t n) {
      for (int64_t i = 0; i < n; ++i) {
        const char* src = *reinterpret_cast<const uint8_t*>(p[1] + i * st[1]) ? p[2] + i * st[2] : p[3] + i * st[3];
        std::memcpy(p[0] + i * st[0], src, sizeof(T));
      }
    });
  });
}

}  // namespace vt::cpu
