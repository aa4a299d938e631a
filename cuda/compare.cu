// compare.cu: comparisons and logical ops of binary() (eq, ne, lt, le, gt, ge, logical_and,
// logical_or): compute-type comparisons written as bool (one byte, 0 or 1), so NaN compares
// unequal to everything, as on the CPU. Same launcher as the arithmetic ops (map.cuh).
#include "math.cuh"

namespace vt::cuda {

using kernels::BinaryOp;

template <BinaryOp OP>
struct CompareF {
  template <class C>
  __device__ __forceinline__ bool operator()(C x, C y) const {
    if constexpr (OP == BinaryOp::Eq) return x == y;
    else if constexpr (OP == BinaryOp::Ne) return x != y;
    else if constexpr (OP == BinaryOp::Lt) return x < y;
    else if constexpr (OP == BinaryOp::Le) return x <= y;
    else if constexpr (OP == BinaryOp::Gt) return x > y;
    else if constexpr (OP == BinaryOp::Ge) return x >= y;
    else if constexpr (OP == BinaryOp::And) return x != C(0) && y != C(0);
    else return x != C(0) || y != C(0);
  }
};

void binary_compare(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  VT_CHECK(out.dtype() == DType::Bool, "cuda ", kernels::name(op), ": output must be bool, got ",
           dtype_name(out.dtype()));
  visit_dtype(a.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    switch (op) {
      case BinaryOp::Eq: return launch_map<bool, T, T>(out, CompareF<BinaryOp::Eq>{}, {&a, &b});
      case BinaryOp::Ne: return launch_map<bool, T, T>(out, CompareF<BinaryOp::Ne>{}, {&a, &b});
      case BinaryOp::Lt: return launch_map<bool, T, T>(out, CompareF<BinaryOp::Lt>{}, {&a, &b});
      case BinaryOp::Le: return launch_map<bool, T, T>(out, CompareF<BinaryOp::Le>{}, {&a, &b});
      case BinaryOp::Gt: return launch_map<bool, T, T>(out, CompareF<BinaryOp::Gt>{}, {&a, &b});
      case BinaryOp::Ge: return launch_map<bool, T, T>(out, CompareF<BinaryOp::Ge>{}, {&a, &b});
      case BinaryOp::And: return launch_map<bool, T, T>(out, CompareF<BinaryOp::And>{}, {&a, &b});
      case BinaryOp::Or: return launch_map<bool, T, T>(out, CompareF<BinaryOp::Or>{}, {&a, &b});
      default: VT_FAIL("cuda binary_compare: ", kernels::name(op), " is not a comparison");
    }
  });
}

}  // namespace vt::cuda
