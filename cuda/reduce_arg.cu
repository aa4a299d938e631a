// reduce_arg.cu: argmax and argmin (first index of the extreme; a NaN is the extreme), instantiated from reduce.cuh (kernels and design notes
// there and in reduce.cu).
#include "reduce.cuh"

namespace vt::cuda {

using kernels::ReduceOp;

void reduce_argmax(const Tensor& x, uint32_t mask, const Tensor& out) {
  visit_dtype(x.dtype(), [&](auto tag) {
    reduce_detail::reduce_typed<typename decltype(tag)::type, ReduceOp::ArgMax>(x, mask, out);
  });
}
void reduce_argmin(const Tensor& x, uint32_t mask, const Tensor& out) {
  visit_dtype(x.dtype(), [&](auto tag) {
    reduce_detail::reduce_typed<typename decltype(tag)::type, ReduceOp::ArgMin>(x, mask, out);
  });
}

}  // namespace vt::cuda
