// cpu_backend.h: the CPU implementation of the kernel interface (backend.h). Its methods are
// defined by concept across src/cpu_elementwise.cpp, src/cpu_reduce.cpp, src/cpu_index.cpp and
// src/cpu_matmul.cpp.
#pragma once
#include "vt/backend.h"

namespace vt::cpu {

struct CpuBackend final : kernels::Backend {
  const char* name() const override { return "cpu"; }
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

// Bytes held in the cache of large freed blocks (cpu_allocator.cpp); 0 once it is closed at exit.
size_t large_cache_bytes();

}  // namespace vt::cpu
