// binary.cu: the arithmetic binary kernels of the CUDA backend (add, sub, mul, div, pow, maximum,
// minimum); comparisons and logical ops are in compare.cu.
//
// Functors over compute values run by launch_map (map.cuh): 128-bit dense path when both operands
// are unit-stride (or one is a broadcast scalar), strided path for broadcast views. Rules follow
// cpu_elementwise.cpp: a + alpha * b (alpha 1 adds without a multiply), NaN-propagating
// maximum/minimum, integer pow by squaring; bf16/f16 compute in f32 and round once.
#include "math.cuh"

namespace vt::cuda {

using kernels::BinaryOp;

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
    } else if constexpr (OP == BinaryOp::Max) return scalar::maximum(x, y);
    else if constexpr (OP == BinaryOp::Min) return scalar::minimum(x, y);
  }
};

// a + b and a - b without the multiply by alpha when alpha is 1 (the common case).
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
  if constexpr (OP == BinaryOp::Add) {
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
    default: break;
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
  if (op >= BinaryOp::Eq) return binary_compare(op, a, b, out);
  visit_dtype(a.dtype(), [&](auto tag) { binary_typed<typename decltype(tag)::type>(op, a, b, out, alpha); });
}

}  // namespace vt::cuda
