// device_flow.h: what the model-shaped benchmarks share, whether their flow runs on a GPU or, at
// small shapes, on the CPU (bench_gpu_vargpt, bench_gpu_train; gpu_bench.h adds the CUDA-only
// timers): the device calls, each a no-op or a sentinel on the CPU and in a build without CUDA,
// timing between two device synchronisations, and the "vt <key> <value> <unit> <ms> ms" and
// "# note" lines that the PyTorch baseline scripts join (bench/gpu_bench.py).
#pragma once
#include <chrono>
#include <cstdio>
#include <string>

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

// Milliseconds of f() between two synchronisations of d.
template <class F>
double wall_ms(Device d, F&& f) {
  sync(d);
  const auto t0 = std::chrono::steady_clock::now();
  f();
  sync(d);
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

inline void report(const std::string& key, double value, const char* unit, double ms) {
  std::printf("vt %-22s %12.2f %-9s %10.3f ms\n", key.c_str(), value, unit, ms);
  std::fflush(stdout);
}

inline void note(const std::string& s) {
  std::printf("# %s\n", s.c_str());
  std::fflush(stdout);
}

inline std::string fmt(double v, int digits = 1) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", digits, v);
  return b;
}

}  // namespace vt::bench
