// random.cu: Philox random fills on CUDA, bit-identical to the CPU backend for the same seed.
//
// Element i of a call draws Philox4x32-10 block (i, call_offset) under key `seed` (philox.h) and
// turns its words into a number with the same host/device functions the CPU uses (uniform01,
// normal01's fma-only Box-Muller, randint_from's multiply-high), so only the final affine map
// could differ. The CPU's `p0 + (p1 - p0) * u` and `p0 + p1 * z` are compiled with FMA
// contraction (-march=native; checked in the disassembly of cpu_index.cpp: vfmadd), so the device
// evaluates them as explicit fma() in f64, then rounds to f32 and to the storage type exactly as
// the CPU does. For rand/randn (p0 = 0, p1 = 1) both forms are exact and agree on any host.
// One thread per element in a grid-stride loop; the output must be contiguous (as on the CPU).
#include "backend.h"
#include "loop.cuh"
#include "vt/philox.h"

namespace vt::cuda {

namespace {

using kernels::RandomDist;

template <class T>
__global__ void __launch_bounds__(256) random_kernel(T* __restrict__ out, int64_t n, RandomDist dist, double p0,
                                                     double p1, uint64_t seed, uint64_t call_offset) {
  using C = compute_t<T>;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    const uint4x w = philox_element(seed, call_offset, static_cast<uint64_t>(i));
    switch (dist) {
      case RandomDist::Uniform:
        if constexpr (std::is_same_v<T, double>)
          out[i] = fma(p1 - p0, uniform01_f64(w.x[0], w.x[1]), p0);
        else
          out[i] = to_storage<T>(static_cast<float>(fma(p1 - p0, static_cast<double>(uniform01(w.x[0])), p0)));
        break;
      case RandomDist::Normal:
        if constexpr (std::is_same_v<T, double>)
          out[i] = fma(p1, normal_f64(w), p0);
        else
          out[i] = to_storage<T>(static_cast<float>(fma(p1, static_cast<double>(normal01(w.x[0], w.x[1])), p0)));
        break;
      case RandomDist::RandInt:
        out[i] = to_storage<T>(static_cast<C>(randint_from(w.x[0], w.x[1], static_cast<int64_t>(p0),
                                                           static_cast<int64_t>(p1))));
        break;
      case RandomDist::Bernoulli:
        out[i] = to_storage<T>(static_cast<C>(static_cast<double>(uniform01(w.x[0])) < p0 ? 1 : 0));
        break;
    }
  }
}

}  // namespace

void CudaBackend::random(RandomDist dist, const Tensor& out, double p0, double p1, uint64_t seed,
                         uint64_t call_offset) {
  check_cuda(out, "random");
  VT_CHECK(out.is_contiguous(), "random: output must be contiguous");
  const int64_t n = out.numel();
  if (n == 0) return;
  DeviceGuard g(out.device());
  DeviceContext& ctx = context(out.device().index);
  visit_dtype(out.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    random_kernel<T><<<grid_for(n, 256, ctx), 256, 0, ctx.stream()>>>(static_cast<T*>(out.raw_data()), n, dist, p0,
                                                                     p1, seed, call_offset);
    VT_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace vt::cuda
