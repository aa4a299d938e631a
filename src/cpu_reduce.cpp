// cpu_reduce.cpp: sum/max/min/argmax/argmin over any set of dims, cumsum, and row sort.
//
// Determinism: every output element is reduced in one fixed order whatever the thread count.
// Threads split the *outputs*; when there are fewer outputs than threads (a full reduction), the
// reduced range is cut into fixed blocks of kBlock elements whose partial results are combined in
// block order, so 1 and 2 threads give bitwise identical sums.
// Precision: float sums accumulate in double (bf16/f16/f32 alike), then round once; integer and
// bool sums accumulate in int64 and produce int64 (PyTorch's promotion for sum).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include <omp.h>

#include "cpu_backend.h"
#include "cpu_loop.h"

namespace vt::cpu {

using kernels::ReduceOp;

static constexpr int64_t kBlock = 4096;

namespace {

// A coalesced (shape, byte-stride) iteration space of up to 8 dims.
struct Space {
  int n = 0;
  int64_t shape[kMaxDims], stride[kMaxDims];
  int64_t numel() const {
    int64_t p = 1;
    for (int i = 0; i < n; ++i) p *= shape[i];
    return p;
  }
  void add(int64_t size, int64_t st) {
    if (size == 1) return;
    if (n > 0 && stride[n - 1] == st * size) {  // merge into the previous (outer) dim
      shape[n - 1] *= size;
      stride[n - 1] = st;
      return;
    }
    shape[n] = size;
    stride[n] = st;
    ++n;
  }
  // Byte offset of the flat index i (row-major over shape).
  int64_t offset(int64_t i) const {
    int64_t off = 0;
    for (int d = n - 1; d >= 0; --d) {
      off += (i % shape[d]) * stride[d];
      i /= shape[d];
    }
    return off;
  }
};

template <class T, ReduceOp OP>
struct Reducer {
  using C = compute_t<T>;
  static constexpr bool fp = std::is_floating_point_v<C>;
  using Acc = std::conditional_t<OP == ReduceOp::Sum, scalar::sum_acc_t<C>, C>;
  Acc v;
  int64_t idx = -1;
  Reducer() {
    if constexpr (OP == ReduceOp::Sum) v = 0;
    else if constexpr (fp) v = (OP == ReduceOp::Max || OP == ReduceOp::ArgMax) ? -INFINITY : INFINITY;
    else v = (OP == ReduceOp::Max || OP == ReduceOp::ArgMax) ? std::numeric_limits<Acc>::lowest()
                                                             : std::numeric_limits<Acc>::max();
  }
  static bool is_nan(Acc x) { return x != x; }
  void push(C x, int64_t i) {
    if constexpr (OP == ReduceOp::Sum) {
      v += static_cast<Acc>(x);
    } else if constexpr (OP == ReduceOp::Max || OP == ReduceOp::Min) {
      if (is_nan(v)) return;
      if (is_nan(x) || (OP == ReduceOp::Max ? x > v : x < v)) v = x;
    } else {  // ArgMax/ArgMin: first index of the extreme value; NaN counts as the extreme
      if (idx >= 0 && is_nan(v)) return;
      if (idx < 0 || is_nan(x) || (OP == ReduceOp::ArgMax ? x > v : x < v)) { v = x; idx = i; }
    }
  }
  // Combines a later block's partial result (indices of `o` are larger).
  void merge(const Reducer& o) {
    if constexpr (OP == ReduceOp::Sum) v += o.v;
    else if constexpr (OP == ReduceOp::Max || OP == ReduceOp::Min) push(o.v, 0);
    else if (o.idx >= 0) {
      if (idx >= 0 && is_nan(v)) return;
      if (idx < 0 || is_nan(o.v) || (OP == ReduceOp::ArgMax ? o.v > v : o.v < v)) { v = o.v; idx = o.idx; }
    }
  }
};

// Reduces the elements [begin, end) of `in` (flat index over the reduced space) at base pointer p.
template <class T, ReduceOp OP>
Reducer<T, OP> reduce_range(const char* p, const Space& in, int64_t begin, int64_t end) {
  Reducer<T, OP> r;
  const int last = in.n - 1;
  const int64_t inner = in.shape[last], st = in.stride[last];
  for (int64_t i = begin; i < end;) {
    int64_t j = i % inner, n = std::min(inner - j, end - i);
    const char* q = p + in.offset(i);
    if constexpr (OP == ReduceOp::Sum && std::is_floating_point_v<compute_t<T>>) {
      if (st == sizeof(T)) {  // eight partial sums, fixed order, vectorisable
        const T* x = reinterpret_cast<const T*>(q);
        double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        int64_t k = 0;
        for (; k + 8 <= n; k += 8)
          for (int l = 0; l < 8; ++l) acc[l] += load<T>(x + k + l);
        double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
        for (; k < n; ++k) s += load<T>(x + k);
        r.v += s;
        i += n;
        continue;
      }
    }
    for (int64_t k = 0; k < n; ++k) r.push(load<T>(q + k * st), i + k);
    i += n;
  }
  return r;
}

template <class T, ReduceOp OP>
void store_result(char* o, const Reducer<T, OP>& r) {
  if constexpr (OP == ReduceOp::ArgMax || OP == ReduceOp::ArgMin) {
    *reinterpret_cast<int64_t*>(o) = std::max<int64_t>(r.idx, 0);
  } else if constexpr (OP == ReduceOp::Sum && !std::is_floating_point_v<compute_t<T>>) {
    *reinterpret_cast<int64_t*>(o) = r.v;
  } else {
    store<T>(o, r.v);
  }
}

template <class T, ReduceOp OP>
void reduce_typed(const Tensor& x, uint32_t mask, const Tensor& out) {
  const int64_t es = sizeof(T);
  Space red, kept_x, kept_o;
  for (int d = 0; d < x.dim(); ++d) {
    if (mask >> d & 1) {
      red.add(x.shape()[d], x.strides()[d] * es);
    } else if (x.shape()[d] != 1) {
      // kept dims: walk x and out together (no merging across, strides may differ)
      kept_x.shape[kept_x.n] = x.shape()[d];
      kept_x.stride[kept_x.n++] = x.strides()[d] * es;
      kept_o.shape[kept_o.n] = x.shape()[d];
      kept_o.stride[kept_o.n++] = out.strides()[d] * static_cast<int64_t>(out.element_size());
    }
  }
  if (red.n == 0) red.n = 1, red.shape[0] = 1, red.stride[0] = 0;  // nothing reduced: copy through
  const int64_t M = kept_x.numel(), N = red.numel();
  const char* xb = static_cast<const char*>(x.raw_data());
  char* ob = static_cast<char*>(out.raw_data());
  if (N == 0) {  // empty reduction: identity (sum 0); max/min of nothing is an error upstream
    for (int64_t m = 0; m < M; ++m) store_result<T, OP>(ob + kept_o.offset(m), Reducer<T, OP>());
    return;
  }
  const int threads = M * N >= kParallelGrain ? omp_get_max_threads() : 1;
  if (M >= threads * 4 || N <= kBlock) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t m = 0; m < M; ++m) {
      const char* p = xb + kept_x.offset(m);
      Reducer<T, OP> r;
      for (int64_t b = 0; b < N; b += kBlock) r.merge(reduce_range<T, OP>(p, red, b, std::min(N, b + kBlock)));
      store_result<T, OP>(ob + kept_o.offset(m), r);
    }
    return;
  }
  // Few outputs, long reductions: blocks in parallel, merged in order.
  const int64_t nb = (N + kBlock - 1) / kBlock;
  std::vector<Reducer<T, OP>> part(nb);
  for (int64_t m = 0; m < M; ++m) {
    const char* p = xb + kept_x.offset(m);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < nb; ++b) part[b] = reduce_range<T, OP>(p, red, b * kBlock, std::min(N, (b + 1) * kBlock));
    Reducer<T, OP> r;
    for (int64_t b = 0; b < nb; ++b) r.merge(part[b]);
    store_result<T, OP>(ob + kept_o.offset(m), r);
  }
}

}  // namespace

void CpuBackend::reduce(ReduceOp op, const Tensor& x, uint32_t mask, const Tensor& out) {
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    switch (op) {
      case ReduceOp::Sum: return reduce_typed<T, ReduceOp::Sum>(x, mask, out);
      case ReduceOp::Max: return reduce_typed<T, ReduceOp::Max>(x, mask, out);
      case ReduceOp::Min: return reduce_typed<T, ReduceOp::Min>(x, mask, out);
      case ReduceOp::ArgMax: return reduce_typed<T, ReduceOp::ArgMax>(x, mask, out);
      case ReduceOp::ArgMin: return reduce_typed<T, ReduceOp::ArgMin>(x, mask, out);
    }
  });
}

// Lines along `dim` accumulate sequentially (double for floats, as PyTorch's CPU cumsum does;
// int64 for integers); lines run in parallel, and a single long line runs as a chunked scan (below).
constexpr int64_t kScanChunk = 1 << 15;
void CpuBackend::cumsum(const Tensor& x, int dim, const Tensor& out) {
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    using Acc = scalar::sum_acc_t<C>;
    Space lines_x, lines_o;
    for (int d = 0; d < x.dim(); ++d) {
      if (d == dim || x.shape()[d] == 1) continue;
      lines_x.shape[lines_x.n] = lines_o.shape[lines_o.n] = x.shape()[d];
      lines_x.stride[lines_x.n++] = x.strides()[d] * int64_t(sizeof(T));
      lines_o.stride[lines_o.n++] = out.strides()[d] * int64_t(out.element_size());
    }
    const int64_t L = x.dim() ? x.shape()[dim] : 1, M = lines_x.numel();
    const int64_t sx = x.dim() ? x.strides()[dim] * int64_t(sizeof(T)) : 0;
    const int64_t so = out.dim() ? out.strides()[dim] * int64_t(out.element_size()) : 0;
    const char* xb = static_cast<const char*>(x.raw_data());
    char* ob = static_cast<char*>(out.raw_data());
    const bool to_i64 = out.dtype() == DType::I64 && x.dtype() != DType::I64;
    // Elements [i0, i1) of a line, starting from acc.
    auto scan = [&](const char* p, char* o, int64_t i0, int64_t i1, Acc acc) {
      for (int64_t i = i0; i < i1; ++i) {
        acc += static_cast<Acc>(load<T>(p + i * sx));
        if (to_i64) *reinterpret_cast<int64_t*>(o + i * so) = static_cast<int64_t>(acc);
        else store<T>(o + i * so, acc);
      }
    };
    if (M == 1 && L >= 2 * kScanChunk) {
      // One long line: fixed chunks of kScanChunk (a constant, so which path runs and the result do
      // not depend on the thread count). The chunks' sums in
      // parallel, their running offsets in order, then each chunk scanned from its offset in
      // parallel. The chunking does not depend on the thread count, so neither does the result.
      const int64_t chunks = (L + kScanChunk - 1) / kScanChunk;
      std::vector<Acc> offset(chunks + 1);
      for (int64_t m = 0; m < M; ++m) {
        const char* p = xb + lines_x.offset(m);
        char* o = ob + lines_o.offset(m);
#pragma omp parallel for schedule(static)
        for (int64_t c = 0; c < chunks; ++c) {
          Acc s = 0;
          for (int64_t i = c * kScanChunk, e = std::min(L, i + kScanChunk); i < e; ++i)
            s += static_cast<Acc>(load<T>(p + i * sx));
          offset[c + 1] = s;
        }
        offset[0] = 0;
        for (int64_t c = 0; c < chunks; ++c) offset[c + 1] += offset[c];
#pragma omp parallel for schedule(static)
        for (int64_t c = 0; c < chunks; ++c) scan(p, o, c * kScanChunk, std::min(L, (c + 1) * kScanChunk), offset[c]);
      }
      return;
    }
#pragma omp parallel for if (M * L >= kParallelGrain) schedule(static)
    for (int64_t m = 0; m < M; ++m) scan(xb + lines_x.offset(m), ob + lines_o.offset(m), 0, L, Acc(0));
  });
}

// Stable sort of each row (last dim); NaN sorts above +inf (PyTorch's order).
void CpuBackend::sort_rows(const Tensor& x, bool descending, const Tensor& values, const Tensor& indices) {
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    const int64_t L = x.dim() ? x.shape().back() : 1, M = L ? x.numel() / L : 0;
    const int nd = x.dim();
    Space rx, rv, ri;
    for (int d = 0; d + 1 < nd; ++d) {
      if (x.shape()[d] == 1) continue;
      rx.shape[rx.n] = rv.shape[rv.n] = ri.shape[ri.n] = x.shape()[d];
      rx.stride[rx.n++] = x.strides()[d] * int64_t(sizeof(T));
      rv.stride[rv.n++] = values.strides()[d] * int64_t(sizeof(T));
      ri.stride[ri.n++] = indices.strides()[d] * 8;
    }
    const int64_t sx = nd ? x.strides()[nd - 1] * int64_t(sizeof(T)) : 0;
    const int64_t sv = nd ? values.strides()[nd - 1] * int64_t(sizeof(T)) : 0;
    const int64_t si = nd ? indices.strides()[nd - 1] * 8 : 0;
    const char* xb = static_cast<const char*>(x.raw_data());
#pragma omp parallel for if (M * L >= kParallelGrain) schedule(dynamic, 1)
    for (int64_t m = 0; m < M; ++m) {
      const char* p = xb + rx.offset(m);
      std::vector<C> v(L);
      std::vector<int64_t> ix(L);
      for (int64_t i = 0; i < L; ++i) v[i] = load<T>(p + i * sx), ix[i] = i;
      auto less = [&](int64_t a, int64_t b) {  // NaN is the largest value
        C x0 = v[a], x1 = v[b];
        if (x1 != x1) return x0 == x0;
        return x0 == x0 && x0 < x1;
      };
      if (descending) std::stable_sort(ix.begin(), ix.end(), [&](int64_t a, int64_t b) { return less(b, a); });
      else std::stable_sort(ix.begin(), ix.end(), less);
      char* ov = static_cast<char*>(values.raw_data()) + rv.offset(m);
      char* oi = static_cast<char*>(indices.raw_data()) + ri.offset(m);
      for (int64_t i = 0; i < L; ++i) {
        store<T>(ov + i * sv, v[ix[i]]);
        *reinterpret_cast<int64_t*>(oi + i * si) = ix[i];
      }
    }
  });
}

}  // namespace vt::cpu
