// backend.h (cuda): the CUDA implementation of the kernel interface (include/vt/backend.h). Its
// methods are defined by concept: backend.cu (allocate, copy, fill, where, registration),
// unary.cu, binary.cu + compare.cu (elementwise), reduce.cu + reduce_minmax.cu + reduce_arg.cu
// (reduce, cumsum), sort.cu (sort_rows), index.cu (index_select, gather, scatter_add), gemm.cu
// (bmm), random.cu (random). Shared pieces: device.h (stream, guard), allocator.h (memory),
// loop.cuh (loads/stores, dtype dispatch), map.cuh (the elementwise launcher).
#pragma once
#include "vt/backend.h"

namespace vt::cuda {

struct CudaBackend final : kernels::Backend {
  const char* name() const override { return "cuda"; }
  std::shared_ptr<Storage> allocate(size_t nbytes, Device device) override;
  void copy(const Tensor& src, const Tensor& dst) override;
  void fill(const Tensor& dst, double value) override;
  void unary(kernels::UnaryOp op, const Tensor& x, const Tensor& out, double p0, double p1) override;
  void binary(kernels::BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out, double alpha) override;
  void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) override;
  void reduce(kernels::ReduceOp op, const Tensor& x, uint32_t mask, const Tensor& out) override;
  void cumsum(const Tensor& x, int dim, const Tensor& out) override;
  void sort_rows(const Tensor& x, bool descending, const Tensor& values, const Tensor& indices) override;
  void index_select(const Tensor& x, int dim, const Tensor& index, const Tensor& out) override;
  void gather(const Tensor& x, int dim, const Tensor& index, const Tensor& out) override;
  void scatter_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src) override;
  void bmm(const Tensor& a, const Tensor& b, const Tensor& out) override;
  void random(kernels::RandomDist dist, const Tensor& out, double p0, double p1, uint64_t seed,
              uint64_t call_offset) override;
};

// Raises when `t` is not on a CUDA device (the op layer keeps operands on one device; copy is the
// one method that also accepts CPU tensors).
void check_cuda(const Tensor& t, const char* op);

// Registers "linear_bias_forward" (gemm_lt.cu: cuBLASLt with bias / GELU epilogues).
void register_gemm_lt_kernels();

}  // namespace vt::cuda
