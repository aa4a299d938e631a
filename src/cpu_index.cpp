// cpu_index.cpp: index_select, gather, scatter_add, batched matmul and Philox random fills.
//
// Index kernels validate every index before touching memory (one serial pass), so a bad index is
// an error naming the op, never an out-of-bounds read. scatter_add walks each line along `dim` in
// order on one thread (lines in parallel), so colliding indices always add in the same order.
#include <omp.h>

#include <cmath>
#include <vector>

#include "cpu_backend.h"
#include "cpu_loop.h"
#include "vt/cpu/gemm.h"
#include "vt/philox.h"

namespace vt::cpu {

static std::vector<int64_t> read_indices(const Tensor& index) {
  std::vector<int64_t> v(index.numel());
  Tensor c = index.contiguous();
  if (index.dtype() == DType::I64) {
    std::memcpy(v.data(), c.raw_data(), v.size() * 8);
  } else {
    const int32_t* p = c.data<int32_t>();
    for (size_t i = 0; i < v.size(); ++i) v[i] = p[i];
  }
  return v;
}

static void check_range(const std::vector<int64_t>& idx, int64_t size, const char* op) {
  for (size_t i = 0; i < idx.size(); ++i)
    VT_CHECK(idx[i] >= 0 && idx[i] < size, op, ": index ", idx[i], " at position ", i,
             " is out of bounds for a dim of size ", size);
}

// Splits a tensor's dims around `dim` into (outer, inner) flat counts, assuming the tensors are
// viewed with the same outer/inner shapes; offsets are computed per flat index.
struct DimSplit {
  Shape outer_shape, inner_shape;
  int64_t outer_n = 1, inner_n = 1;
  DimSplit(const Shape& s, int dim) {
    for (int d = 0; d < s.size(); ++d) {
      if (d < dim) outer_shape.push_back(s[d]), outer_n *= s[d];
      if (d > dim) inner_shape.push_back(s[d]), inner_n *= s[d];
    }
  }
};

static int64_t flat_offset(int64_t i, const Shape& shape, const int64_t* strides) {
  int64_t off = 0;
  for (int d = shape.size() - 1; d >= 0; --d) {
    off += (i % shape[d]) * strides[d];
    i /= shape[d];
  }
  return off;
}

void CpuBackend::index_select(const Tensor& x, int dim, const Tensor& index, const Tensor& out) {
  std::vector<int64_t> idx = read_indices(index);
  check_range(idx, x.shape()[dim], "index_select");
  DimSplit sp(x.shape(), dim);
  const int64_t es = x.element_size(), n = idx.size();
  const int64_t* xs = x.strides().begin();
  const int64_t* os = out.strides().begin();
  const bool dense_inner = (sp.inner_n == 1) ||
                           (x.dim() > dim + 1 && x.strides()[x.dim() - 1] == 1 && out.strides()[x.dim() - 1] == 1 &&
                            sp.inner_shape.size() == 1);
  const char* xb = static_cast<const char*>(x.raw_data());
  char* ob = static_cast<char*>(out.raw_data());
#pragma omp parallel for collapse(2) if (sp.outer_n * n * sp.inner_n >= kParallelGrain)
  for (int64_t o = 0; o < sp.outer_n; ++o) {
    for (int64_t j = 0; j < n; ++j) {
      const char* src = xb + (flat_offset(o, sp.outer_shape, xs) + idx[j] * xs[dim]) * es;
      char* dst = ob + (flat_offset(o, sp.outer_shape, os) + j * os[dim]) * es;
      if (dense_inner) {
        std::memcpy(dst, src, sp.inner_n * es);
      } else {
        for (int64_t i = 0; i < sp.inner_n; ++i)
          std::memcpy(dst + flat_offset(i, sp.inner_shape, os + dim + 1) * es,
                      src + flat_offset(i, sp.inner_shape, xs + dim + 1) * es, es);
      }
    }
  }
}

void CpuBackend::gather(const Tensor& x, int dim, const Tensor& index, const Tensor& out) {
  std::vector<int64_t> idx = read_indices(index);
  check_range(idx, x.shape()[dim], "gather");
  const Shape& s = index.shape();
  const int64_t es = x.element_size(), n = index.numel();
  const char* xb = static_cast<const char*>(x.raw_data());
  char* ob = static_cast<char*>(out.raw_data());
#pragma omp parallel for if (n >= kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    int64_t rem = i, xo = 0, oo = 0;
    for (int d = s.size() - 1; d >= 0; --d) {
      int64_t c = rem % s[d];
      rem /= s[d];
      xo += (d == dim ? idx[i] : c) * x.strides()[d];
      oo += c * out.strides()[d];
    }
    std::memcpy(ob + oo * es, xb + xo * es, es);
  }
}

// index_select's (and so embedding's) backward: out (V, D) += the rows of src (T, D) at rows idx[t]
// of out, the index given once per row and broadcast along D (stride 0). Each thread owns a block of
// out's rows and walks t in order, adding whole contiguous rows: a row sums its contributions in
// the same order on any thread count (deterministic), both cores work even when D is small, and
// the (T, D) index is never materialised. Returns false when the operands are not of that form.
static bool scatter_add_rows(const Tensor& out, int dim, const Tensor& index, const Tensor& src) {
  if (dim != 0 || out.dim() != 2 || index.dim() != 2 || index.strides()[1] != 0 || !out.is_contiguous() ||
      src.strides()[1] != 1 || index.shape()[1] != out.shape()[1])
    return false;
  const std::vector<int64_t> idx = read_indices(index.select(1, 0));
  check_range(idx, out.shape()[0], "scatter_add");
  const int64_t V = out.shape()[0], D = out.shape()[1], T = static_cast<int64_t>(idx.size()), ss = src.strides()[0];
  visit_dtype(out.dtype(), [&](auto tag) {
    using T_ = typename decltype(tag)::type;
    char* o = static_cast<char*>(out.raw_data());
    const char* g = static_cast<const char*>(src.raw_data());
    const int threads = T * D >= kParallelGrain ? omp_get_max_threads() : 1;
#pragma omp parallel num_threads(threads)
    {
      const int p = omp_get_thread_num(), P = omp_get_num_threads();
      const int64_t lo = V * p / P, hi = V * (p + 1) / P;  // this thread's rows of out
      for (int64_t t = 0; t < T; ++t) {
        const int64_t k = idx[t];
        if (k < lo || k >= hi) continue;
        char* row = o + k * D * sizeof(T_);
        const char* grow = g + t * ss * sizeof(T_);
        if constexpr (std::is_same_v<T_, float> || std::is_same_v<T_, double>) {
          T_* r = reinterpret_cast<T_*>(row);
          const T_* x = reinterpret_cast<const T_*>(grow);
          for (int64_t j = 0; j < D; ++j) r[j] += x[j];  // vectorised
        } else {
          for (int64_t j = 0; j < D; ++j)
            store<T_>(row + j * sizeof(T_), load<T_>(row + j * sizeof(T_)) + load<T_>(grow + j * sizeof(T_)));
        }
      }
    }
  });
  return true;
}

void CpuBackend::scatter_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src) {
  if (scatter_add_rows(out, dim, index, src)) return;
  std::vector<int64_t> idx = read_indices(index);  // row-major over index's shape
  check_range(idx, out.shape()[dim], "scatter_add");
  const Shape& s = index.shape();
  const int64_t L = s[dim], n = index.numel(), lines = L ? n / L : 0;
  // idx is contiguous over s: the stride of `dim` in it is the product of later sizes.
  int64_t idx_dim_stride = 1;
  for (int d = dim + 1; d < s.size(); ++d) idx_dim_stride *= s[d];
  visit_dtype(out.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    char* ob = static_cast<char*>(out.raw_data());
    const char* sb = static_cast<const char*>(src.raw_data());
#pragma omp parallel for if (n >= kParallelGrain)
    for (int64_t line = 0; line < lines; ++line) {
      // Position of the line's first element: all coordinates except `dim`.
      int64_t rem = line, so = 0, oo = 0, io = 0, w = 1;
      for (int d = s.size() - 1; d >= 0; --d) {
        if (d == dim) { w *= s[d]; continue; }
        int64_t c = rem % s[d];
        rem /= s[d];
        so += c * src.strides()[d];
        oo += c * out.strides()[d];
        io += c * w;
        w *= s[d];
      }
      for (int64_t j = 0; j < L; ++j) {
        int64_t k = idx[io + j * idx_dim_stride];
        char* o = ob + (oo + k * out.strides()[dim]) * sizeof(T);
        store<T>(o, load<T>(o) + load<T>(sb + (so + j * src.strides()[dim]) * sizeof(T)));
      }
    }
  });
}

// ---- batched matmul ----------------------------------------------------------------------------
void CpuBackend::bmm(const Tensor& a, const Tensor& b, const Tensor& out) {
  const int64_t B = out.shape()[0], M = out.shape()[1], N = out.shape()[2], K = a.shape()[2];
  const int64_t* as = a.strides().begin();
  const int64_t* bs = b.strides().begin();
  const int64_t* cs = out.strides().begin();
  // Many small products: one per thread; large ones: the GEMM threads internally.
  const bool batch_parallel = B >= 2 && M * N * K < (int64_t(1) << 21);
  auto one = [&](int64_t i) {
    switch (out.dtype()) {
      case DType::F32:
        gemm_f32(M, N, K, 1.f, a.data<float>() + i * as[0], as[1], as[2], b.data<float>() + i * bs[0], bs[1], bs[2],
                 0.f, out.data<float>() + i * cs[0], cs[1], cs[2]);
        break;
      case DType::F64:
        gemm_f64(M, N, K, 1.0, a.data<double>() + i * as[0], as[1], as[2], b.data<double>() + i * bs[0], bs[1],
                 bs[2], 0.0, out.data<double>() + i * cs[0], cs[1], cs[2]);
        break;
      case DType::BF16:
      case DType::F16: {
        // f32 accumulation into a scratch tile, one rounding to the 16-bit output.
        std::vector<float> c(M * N);
        auto* ap = static_cast<const uint16_t*>(a.raw_data()) + i * as[0];
        auto* bp = static_cast<const uint16_t*>(b.raw_data()) + i * bs[0];
        if (out.dtype() == DType::BF16)
          gemm_bf16_f32acc(M, N, K, 1.f, ap, as[1], as[2], bp, bs[1], bs[2], 0.f, c.data(), N, 1);
        else
          gemm_f16_f32acc(M, N, K, 1.f, ap, as[1], as[2], bp, bs[1], bs[2], 0.f, c.data(), N, 1);
        auto* op = static_cast<uint16_t*>(out.raw_data()) + i * cs[0];
        for (int64_t r = 0; r < M; ++r)
          for (int64_t col = 0; col < N; ++col)
            op[r * cs[1] + col * cs[2]] = out.dtype() == DType::BF16 ? float_to_bf16_bits(c[r * N + col])
                                                                     : float_to_f16_bits(c[r * N + col]);
        break;
      }
      default: VT_FAIL("matmul: unsupported dtype ", dtype_name(out.dtype()), " on cpu");
    }
  };
  if (batch_parallel) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < B; ++i) one(i);
  } else {
    for (int64_t i = 0; i < B; ++i) one(i);
  }
}

// ---- random ------------------------------------------------------------------------------------
// Element i of the call draws Philox block (i, call_offset) under key `seed`: any thread can
// produce any element, and CUDA produces the same numbers (the affine maps are explicit fma in
// f64 on both, so the result does not depend on whether the compiler contracts).
void CpuBackend::random(kernels::RandomDist dist, const Tensor& out, double p0, double p1, uint64_t seed,
                        uint64_t call_offset) {
  VT_CHECK(out.is_contiguous(), "random: output must be contiguous");
  const int64_t n = out.numel();
  visit_dtype(out.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = static_cast<T*>(out.raw_data());
#pragma omp parallel for if (n >= kParallelGrain / 4) schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      uint4x w = philox_element(seed, call_offset, static_cast<uint64_t>(i));
      switch (dist) {
        case kernels::RandomDist::Uniform:
          if constexpr (std::is_same_v<T, double>)
            store<T>(o + i, std::fma(p1 - p0, uniform01_f64(w.x[0], w.x[1]), p0));
          else
            store<T>(o + i, static_cast<float>(std::fma(p1 - p0, double(uniform01(w.x[0])), p0)));
          break;
        case kernels::RandomDist::Normal:
          if constexpr (std::is_same_v<T, double>)
            store<T>(o + i, std::fma(p1, normal_f64(w), p0));
          else
            store<T>(o + i, static_cast<float>(std::fma(p1, double(normal01(w.x[0], w.x[1])), p0)));
          break;
        case kernels::RandomDist::RandInt:
          store<T>(o + i, static_cast<compute_t<T>>(randint_from(w.x[0], w.x[1], int64_t(p0), int64_t(p1))));
          break;
        case kernels::RandomDist::Bernoulli:
          store<T>(o + i, static_cast<compute_t<T>>(uniform01(w.x[0]) < p0 ? 1 : 0));
          break;
      }
    }
  });
}

}  // namespace vt::cpu
