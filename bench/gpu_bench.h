// gpu_bench.h: what the GPU benchmark programs share (bench_cuda_ops, bench_cuda_nn,
// bench_gpu_models, bench_gpu_infinity): CUDA error checks, timing with events or with
// synchronised wall clocks, and the "vt <key> <value> <unit> <ms> ms" lines that the PyTorch
// baseline scripts join into their tables (bench/gpu_bench.py). Only compiled with VT_WITH_CUDA.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "device_flow.h"  // report, note: the line protocol
#include "vt/cuda.h"

#define CHECK_CUDA(x)                                                                              \
  do {                                                                                             \
    cudaError_t err_ = (x);                                                                        \
    if (err_ != cudaSuccess) {                                                                     \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(err_));   \
      std::exit(1);                                                                                \
    }                                                                                              \
  } while (0)

namespace vt::bench {

// Median milliseconds of `iters` runs of f after 3 warm-ups, each run between two CUDA events on
// vt's stream (for kernels that keep the host ahead of the device).
inline double time_ms(const std::function<void()>& f, int iters) {
  cudaStream_t s = vt::cuda::stream();
  for (int i = 0; i < 3; ++i) f();
  std::vector<cudaEvent_t> ev(2 * iters);
  for (auto& e : ev) CHECK_CUDA(cudaEventCreate(&e));
  for (int i = 0; i < iters; ++i) {
    CHECK_CUDA(cudaEventRecord(ev[2 * i], s));
    f();
    CHECK_CUDA(cudaEventRecord(ev[2 * i + 1], s));
  }
  CHECK_CUDA(cudaEventSynchronize(ev.back()));
  std::vector<double> ms(iters);
  for (int i = 0; i < iters; ++i) {
    float t = 0;
    CHECK_CUDA(cudaEventElapsedTime(&t, ev[2 * i], ev[2 * i + 1]));
    ms[i] = t;
  }
  for (auto& e : ev) CHECK_CUDA(cudaEventDestroy(e));
  std::sort(ms.begin(), ms.end());
  return ms[iters / 2];
}

// Milliseconds of f() between two device synchronisations (for whole programs that sync inside).
template <class F>
double wall_ms(F&& f) {
  vt::cuda::synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  f();
  vt::cuda::synchronize();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

template <class F>
double median_ms(F&& f, int warm, int iters) {
  for (int i = 0; i < warm; ++i) f();
  std::vector<double> ms;
  for (int i = 0; i < iters; ++i) ms.push_back(wall_ms(f));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// The value of command-line option argv[i] (which it steps over), or exit 2 naming the program and
// the option when argv ends there.
inline std::string option_value(int argc, char** argv, int& i, const char* program) {
  if (i + 1 >= argc) {
    std::fprintf(stderr, "%s: %s needs a value\n", program, argv[i]);
    std::exit(2);
  }
  return argv[++i];
}

// Sets environment variable `name` to `value` while alive (no-op for a null value), then unsets it:
// how a benchmark times a kernel's alternative path (VT_FLASH_BWD=atomic, ...) beside the default.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(value ? name : nullptr) {
    if (name_) setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (name_) unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
};

inline double free_device_gb() {
  size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) return -1;
  return double(free_b) / 1e9;
}

}  // namespace vt::bench
