// cpu_loop.h: the strided N-operand loop under every CPU elementwise kernel, and dtype dispatch.
//
// Operands are broadcast views of one output shape. Dims that are jointly contiguous for every
// operand are merged ("coalesced") so that the innermost loop is as long as possible; the inner
// loop gets per-operand byte strides, which lets a kernel take a vectorisable branch when they all
// equal the element size (or 0 for a broadcast scalar). Work is split into contiguous element
// ranges across OpenMP threads; an element's result never depends on the split.
#pragma once
#include <omp.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "vt/half.h"
#include "vt/scalar.h"
#include "vt/tensor.h"

namespace vt::cpu {

// Elementwise work below this many elements runs on one thread (thread start-up costs ~1 us).
inline constexpr int64_t kParallelGrain = 32768;

template <int N>
struct LoopPlan {
  int ndim = 0;
  int64_t shape[kMaxDims];
  int64_t strides[N][kMaxDims];  // bytes
};

template <int N>
LoopPlan<N> plan_loop(const Shape& shape, const std::array<const Tensor*, N>& ops) {
  LoopPlan<N> p;
  // Drop size-1 dims, then merge dim i into i+1 when contiguous for every operand.
  for (int d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    p.shape[p.ndim] = shape[d];
    for (int k = 0; k < N; ++k)
      p.strides[k][p.ndim] = ops[k]->strides()[d] * static_cast<int64_t>(ops[k]->element_size());
    ++p.ndim;
  }
  int w = 0;
  for (int d = 0; d < p.ndim; ++d) {
    if (w > 0) {
      bool merge = true;
      for (int k = 0; k < N; ++k)
        if (p.strides[k][w - 1] != p.strides[k][d] * p.shape[d]) merge = false;
      if (merge) {
        p.shape[w - 1] *= p.shape[d];
        for (int k = 0; k < N; ++k) p.strides[k][w - 1] = p.strides[k][d];
        continue;
      }
    }
    p.shape[w] = p.shape[d];
    for (int k = 0; k < N; ++k) p.strides[k][w] = p.strides[k][d];
    ++w;
  }
  p.ndim = w;
  if (p.ndim == 0) {  // a single element
    p.ndim = 1;
    p.shape[0] = 1;
    for (int k = 0; k < N; ++k) p.strides[k][0] = 0;
  }
  return p;
}

// Calls row(ptrs, inner_strides, n) over the elements [begin, end) of the plan, in row pieces.
template <int N, class Row>
void run_range(const LoopPlan<N>& p, std::array<char*, N> base, int64_t begin, int64_t end, Row& row) {
  const int last = p.ndim - 1;
  const int64_t inner = p.shape[last];
  int64_t idx[kMaxDims];
  int64_t rem = begin / inner;
  for (int d = last - 1; d >= 0; --d) {
    idx[d] = rem % p.shape[d];
    rem /= p.shape[d];
  }
  int64_t j = begin % inner;
  int64_t e = begin;
  std::array<int64_t, N> inner_strides;
  for (int k = 0; k < N; ++k) inner_strides[k] = p.strides[k][last];
  while (e < end) {
    std::array<char*, N> ptr;
    for (int k = 0; k < N; ++k) {
      int64_t off = j * p.strides[k][last];
      for (int d = 0; d < last; ++d) off += idx[d] * p.strides[k][d];
      ptr[k] = base[k] + off;
    }
    int64_t n = std::min(inner - j, end - e);
    row(ptr.data(), inner_strides.data(), n);
    e += n;
    j = 0;
    for (int d = last - 1; d >= 0; --d) {
      if (++idx[d] < p.shape[d]) break;
      idx[d] = 0;
    }
  }
}

// Runs `row` over all elements of `shape`; operands[0] is usually the output.
template <int N, class Row>
void for_each(const Shape& shape, const std::array<const Tensor*, N>& ops, Row row) {
  int64_t numel = shape.numel();
  if (numel == 0) return;
  LoopPlan<N> p = plan_loop<N>(shape, ops);
  std::array<char*, N> base;
  for (int k = 0; k < N; ++k) base[k] = static_cast<char*>(ops[k]->raw_data());
  int threads = numel >= kParallelGrain ? omp_get_max_threads() : 1;
  if (threads <= 1) {
    run_range<N>(p, base, 0, numel, row);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    int t = omp_get_thread_num(), nt = omp_get_num_threads();
    // Chunks aligned to 16 elements so vector loops start on cache-line boundaries.
    int64_t chunk = ((numel + nt - 1) / nt + 15) / 16 * 16;
    int64_t b = std::min<int64_t>(t * chunk, numel), e = std::min<int64_t>(b + chunk, numel);
    Row local = row;
    if (b < e) run_range<N>(p, base, b, e, local);
  }
}

// ---- loads and stores in compute precision ---------------------------------------------------
// bf16/f16 compute in float, f32 in float, f64 in double, integers in int64, bool in int64.
using scalar::compute_t;  // vt/scalar.h, shared with the CUDA backend

template <class T>
inline compute_t<T> load(const void* p) {
  if constexpr (std::is_same_v<T, bf16>) {
    return bf16_bits_to_float(*static_cast<const uint16_t*>(p));
  } else if constexpr (std::is_same_v<T, f16>) {
    return f16_bits_to_float(*static_cast<const uint16_t*>(p));
  } else if constexpr (std::is_same_v<T, bool>) {
    return *static_cast<const uint8_t*>(p) != 0;
  } else {
    return static_cast<compute_t<T>>(*static_cast<const T*>(p));
  }
}

template <class T, class C>
inline void store(void* p, C v) {
  if constexpr (std::is_same_v<T, bf16>) {
    *static_cast<uint16_t*>(p) = float_to_bf16_bits(static_cast<float>(v));
  } else if constexpr (std::is_same_v<T, f16>) {
    *static_cast<uint16_t*>(p) = float_to_f16_bits(static_cast<float>(v));
  } else if constexpr (std::is_same_v<T, bool>) {
    *static_cast<uint8_t*>(p) = v != C(0);
  } else {
    *static_cast<T*>(p) = static_cast<T>(v);
  }
}

template <class T> struct type_tag { using type = T; };

// Calls f(type_tag<T>{}) for the C++ type of `t`.
template <class F>
decltype(auto) visit_dtype(DType t, F&& f) {
  switch (t) {
    case DType::F32: return f(type_tag<float>{});
    case DType::F64: return f(type_tag<double>{});
    case DType::BF16: return f(type_tag<bf16>{});
    case DType::F16: return f(type_tag<f16>{});
    case DType::I32: return f(type_tag<int32_t>{});
    case DType::I64: return f(type_tag<int64_t>{});
    case DType::U8: return f(type_tag<uint8_t>{});
    case DType::Bool: return f(type_tag<bool>{});
  }
  VT_FAIL("visit_dtype: bad dtype");
}

}  // namespace vt::cpu
