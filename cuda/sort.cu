// sort.cu: stable sort of each row (last dim) with CUB's segmented radix sort.
//
// Keys: every value becomes an unsigned integer whose order is the CPU comparator's order: NaN (any
// sign, any payload) is one key above +inf, -0 and +0 are one key (equal values keep their input
// order, as std::stable_sort does), floats flip to sign-magnitude order, signed integers flip the
// sign bit. bf16/f16/f32 sort as f32 keys (32 bits; the low bits a 16-bit float never sets are
// skipped via begin_bit), f64 and int64 as 64-bit keys, the rest as 32-bit keys. Descending order
// sorts the complemented keys ascending, which keeps ties in input order (the CPU's stable sort
// with the reversed comparator). Values are the positions 0..L-1; the sorted values are then read
// back from x by position, so they are the input's bits (a -0 stays -0).
// Radix sort is stable, so results are deterministic. CUB takes int item counts: rows are sorted
// in chunks of at most 2^31 - 1 elements.
#include <cub/device/device_segmented_radix_sort.cuh>

#include "allocator.h"
#include "backend.h"
#include "loop.cuh"

namespace vt::cuda {

namespace {

constexpr int kThreads = 256;

// Rows of x: every dim but the last, coalesced; element offsets.
struct RowSpace {
  int n = 0;
  int64_t shape[kMaxDims];
  int64_t sx[kMaxDims], sv[kMaxDims], si[kMaxDims];
  __device__ void offsets(int64_t m, int64_t& ox, int64_t& ov, int64_t& oi) const {
    ox = ov = oi = 0;
    for (int d = n - 1; d >= 0; --d) {
      const int64_t c = m % shape[d];
      m /= shape[d];
      ox += c * sx[d];
      ov += c * sv[d];
      oi += c * si[d];
    }
  }
};

template <class T, class K>
__device__ __forceinline__ K sort_key(T raw, bool descending) {
  using C = compute_t<T>;
  const C v = load(&raw);
  K k;
  if constexpr (std::is_same_v<C, double>) {
    uint64_t u = v != v ? 0x7FF8000000000000ull : (v == 0.0 ? 0ull : f64_bits(v));
    k = (u & 0x8000000000000000ull) ? ~u : u | 0x8000000000000000ull;
  } else if constexpr (std::is_same_v<C, float>) {
    uint32_t u = v != v ? 0x7FC00000u : (v == 0.f ? 0u : f32_bits(v));
    k = (u & 0x80000000u) ? ~u : u | 0x80000000u;
  } else if constexpr (std::is_same_v<T, int64_t>) {
    k = static_cast<uint64_t>(v) ^ 0x8000000000000000ull;
  } else if constexpr (std::is_same_v<T, int32_t>) {
    k = static_cast<uint32_t>(static_cast<int32_t>(v)) ^ 0x80000000u;
  } else {  // uint8, bool
    k = static_cast<uint32_t>(v);
  }
  return descending ? ~k : k;
}

// keys[r * L + j] = key of x(row r0 + r, j); positions[r * L + j] = j; offsets[r] = r * L.
template <class T, class K>
__global__ void __launch_bounds__(kThreads) make_keys_kernel(const T* __restrict__ x, RowSpace rows, int64_t sxl,
                                                             int64_t r0, int64_t nrows, int64_t L, bool descending,
                                                             K* __restrict__ keys, int64_t* __restrict__ positions,
                                                             int* __restrict__ offsets) {
  const int64_t n = nrows * L, step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    const int64_t r = i / L, j = i - r * L;
    int64_t ox, ov, oi;
    rows.offsets(r0 + r, ox, ov, oi);
    keys[i] = sort_key<T, K>(x[ox + j * sxl], descending);
    positions[i] = j;
    if (j == 0) offsets[r] = static_cast<int>(r * L);
    if (i == n - 1) offsets[nrows] = static_cast<int>(n);
  }
}

// values(row, j) = x(row, pos[j]); indices(row, j) = pos[j].
template <class T>
__global__ void __launch_bounds__(kThreads) write_sorted_kernel(const T* __restrict__ x, RowSpace rows, int64_t sxl,
                                                                int64_t svl, int64_t sil, int64_t r0, int64_t nrows,
                                                                int64_t L, const int64_t* __restrict__ positions,
                                                                T* __restrict__ values, int64_t* __restrict__ indices) {
  const int64_t n = nrows * L, step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    const int64_t r = i / L, j = i - r * L;
    int64_t ox, ov, oi;
    rows.offsets(r0 + r, ox, ov, oi);
    const int64_t p = positions[i];
    values[ov + j * svl] = x[ox + p * sxl];
    indices[oi + j * sil] = p;
  }
}

template <class T, class K>
void sort_typed(const Tensor& x, bool descending, const Tensor& values, const Tensor& indices) {
  const int nd = x.dim();
  const int64_t L = nd ? x.shape()[nd - 1] : 1;
  const int64_t M = L ? x.numel() / L : 0;
  if (M == 0 || L == 0) return;
  RowSpace rows;
  for (int d = 0; d + 1 < nd; ++d) {
    if (x.shape()[d] == 1) continue;
    rows.shape[rows.n] = x.shape()[d];
    rows.sx[rows.n] = x.strides()[d];
    rows.sv[rows.n] = values.strides()[d];
    rows.si[rows.n] = indices.strides()[d];
    ++rows.n;
  }
  const int64_t sxl = nd ? x.strides()[nd - 1] : 0, svl = nd ? values.strides()[nd - 1] : 0;
  const int64_t sil = nd ? indices.strides()[nd - 1] : 0;
  const int dev = x.device().index;
  DeviceContext& ctx = context(dev);
  // Bits that can differ between keys: 16-bit floats leave the low bits of their f32 key constant.
  int begin_bit = 0;
  const int end_bit = x.dtype() == DType::U8 || x.dtype() == DType::Bool ? 8 : static_cast<int>(sizeof(K) * 8);
  if (x.dtype() == DType::BF16) begin_bit = 16;
  if (x.dtype() == DType::F16) begin_bit = 13;

  const int64_t max_rows = std::max<int64_t>(1, (int64_t(INT32_MAX) - 1) / L);
  VT_CHECK(L <= INT32_MAX - 1, "cuda sort: rows of ", L, " elements exceed CUB's 32-bit item count");
  const int64_t chunk_rows = std::min(M, max_rows), chunk_items = chunk_rows * L;
  auto keys_in = allocate_workspace(sizeof(K) * chunk_items, dev), keys_out = allocate_workspace(sizeof(K) * chunk_items, dev);
  auto pos_in = allocate_workspace(8 * chunk_items, dev), pos_out = allocate_workspace(8 * chunk_items, dev);
  auto offsets = allocate_workspace(sizeof(int) * (chunk_rows + 1), dev);
  size_t temp_bytes = 0;
  VT_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairs(
      nullptr, temp_bytes, static_cast<const K*>(keys_in.get()), static_cast<K*>(keys_out.get()),
      static_cast<const int64_t*>(pos_in.get()), static_cast<int64_t*>(pos_out.get()), static_cast<int>(chunk_items),
      static_cast<int>(chunk_rows), static_cast<const int*>(offsets.get()), static_cast<const int*>(offsets.get()) + 1,
      begin_bit, end_bit, ctx.stream()));
  auto temp = allocate_workspace(std::max<size_t>(temp_bytes, 1), dev);
  const T* xp = static_cast<const T*>(x.raw_data());
  for (int64_t r0 = 0; r0 < M; r0 += chunk_rows) {
    const int64_t nrows = std::min(chunk_rows, M - r0), items = nrows * L;
    const unsigned grid = grid_for(items, kThreads, ctx);
    make_keys_kernel<T, K><<<grid, kThreads, 0, ctx.stream()>>>(xp, rows, sxl, r0, nrows, L, descending,
                                                              static_cast<K*>(keys_in.get()),
                                                              static_cast<int64_t*>(pos_in.get()),
                                                              static_cast<int*>(offsets.get()));
    VT_CUDA_CHECK_LAUNCH();
    size_t bytes = temp_bytes;
    VT_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairs(
        temp.get(), bytes, static_cast<const K*>(keys_in.get()), static_cast<K*>(keys_out.get()),
        static_cast<const int64_t*>(pos_in.get()), static_cast<int64_t*>(pos_out.get()), static_cast<int>(items),
        static_cast<int>(nrows), static_cast<const int*>(offsets.get()), static_cast<const int*>(offsets.get()) + 1,
        begin_bit, end_bit, ctx.stream()));
    write_sorted_kernel<T><<<grid, kThreads, 0, ctx.stream()>>>(xp, rows, sxl, svl, sil, r0, nrows, L,
                                                              static_cast<const int64_t*>(pos_out.get()),
                                                              static_cast<T*>(values.raw_data()),
                                                              static_cast<int64_t*>(indices.raw_data()));
    VT_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace

void CudaBackend::sort_rows(const Tensor& x, bool descending, const Tensor& values, const Tensor& indices) {
  check_cuda(x, "sort");
  check_cuda(values, "sort");
  check_cuda(indices, "sort");
  VT_CHECK(indices.dtype() == DType::I64 && values.dtype() == x.dtype(), "cuda sort: values must be ",
           dtype_name(x.dtype()), " and indices int64");
  DeviceGuard g(x.device());
  switch (x.dtype()) {
    case DType::F32: return sort_typed<float, uint32_t>(x, descending, values, indices);
    case DType::BF16: return sort_typed<bf16, uint32_t>(x, descending, values, indices);
    case DType::F16: return sort_typed<f16, uint32_t>(x, descending, values, indices);
    case DType::I32: return sort_typed<int32_t, uint32_t>(x, descending, values, indices);
    case DType::U8: return sort_typed<uint8_t, uint32_t>(x, descending, values, indices);
    case DType::Bool: return sort_typed<bool, uint32_t>(x, descending, values, indices);
    case DType::F64: return sort_typed<double, uint64_t>(x, descending, values, indices);
    case DType::I64: return sort_typed<int64_t, uint64_t>(x, descending, values, indices);
  }
}

}  // namespace vt::cuda
