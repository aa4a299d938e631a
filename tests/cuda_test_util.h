// cuda_test_util.h: what every CUDA test file shares: the skip rule (CI has no GPU, so every case
// skips itself when none is visible, and CTest reports the suite as skipped: tests/test_skip.h),
// the two devices, and a tensor's bytes on the host.
#pragma once
#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "test_skip.h"
#include "vt/cuda.h"
#include "vt/tensor.h"

#define VT_SKIP_WITHOUT_GPU()                                                                     \
  do {                                                                                            \
    if (!::vt::cuda::is_available()) VT_SKIP("no CUDA device visible (CUDA tests need a GPU)"); \
  } while (0)

namespace vt::test {

inline const Device kGpu = Device::cuda();
inline const Device kCpu = Device::cpu();

// Sets environment variable `name` to `value` while alive, then unsets it: how a test picks one of
// the CUDA kernels' alternative paths (VT_ATTENTION_FALLBACK, VT_FLASH_BWD, VT_RMS_NORM_BLOCK, ...).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) { setenv(name, value, 1); }
  ~ScopedEnv() { unsetenv(name_); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
};

// The element bytes of a tensor, row-major, read back on the host.
inline std::vector<uint8_t> bytes_of(const Tensor& t) {
  Tensor c = t.to(kCpu).contiguous();
  std::vector<uint8_t> v(c.nbytes());
  if (!v.empty()) std::memcpy(v.data(), c.raw_data(), v.size());
  return v;
}

}  // namespace vt::test
