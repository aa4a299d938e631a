// device_flow.h: the device calls of the benchmarks whose flow runs on a GPU and, at small shapes,
// on the CPU too (bench_gpu_vargpt, bench_gpu_train): each call is a no-op or a sentinel on the CPU
// and in a build without CUDA, so one program serves both.
#pragma once
#include "vt/shape.h"  // Device
#ifdef VT_WITH_CUDA
#include "vt/cuda.h"
#endif

namespace vt::bench {

inline bool cuda_available() {
#ifdef VT_WITH_CUDA
  return vt::cuda::is_available();
#else
  return false;
#endif
}

inline void sync(Device d) {
#ifdef VT_WITH_CUDA
  if (d.is_cuda()) vt::cuda::synchronize();
#endif
  (void)d;
}

inline void reset_peak(Device d) {
#ifdef VT_WITH_CUDA
  if (d.is_cuda()) vt::cuda::synchronize(), vt::cuda::empty_cache(), vt::cuda::reset_peak_stats();
#endif
  (void)d;
}

inline double peak_gib(Device d) {  // -1 on the CPU
#ifdef VT_WITH_CUDA
  if (d.is_cuda()) return double(vt::cuda::memory_stats().peak_allocated) / double(1 << 30);
#endif
  (void)d;
  return -1;
}

}  // namespace vt::bench
