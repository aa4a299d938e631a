// reduce_minmax.cu: max and min reductions (NaN propagates), instantiated from reduce.cuh (kernels and design notes
// there and in reduce.cu).
#include "reduce.cuh"

namespace vt::cuda {

using kernels::ReduceOp;

void reduce_max(const Tensor& x, uint32_t mask, const Tensor& out) {
  visit_dtype(x.dtype(), [&](auto tag) {
    reduce_detail::reduce_typed<typename decltype(tag)::type, ReduceOp::Max>(x, mask, out);
  });
}
void reduce_min(const Tensor& x, uint32_t mask, const Tensor& out) {
  visit_dtype(x.dtype(), [&](auto tag) {
    reduce_detail::reduce_typed<typename decltype(tag)::type, ReduceOp::Min>(x, mask, out);
  });
}

}  // namespace vt::cuda
