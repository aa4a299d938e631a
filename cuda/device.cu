// device.cu: device discovery, the per-device context and default stream, and the public device
// functions of include/vt/cuda.h (is_available, device_count, synchronize, stream). Streams, events
// and the current stream are in stream.cu.
//
// The default stream of a device is created with default flags (blocking): it orders with the
// legacy default stream, so a kernel launched without a stream argument elsewhere still runs in
// program order with vt's own work. Contexts are created lazily under a mutex and intentionally
// leaked.
#include <mutex>
#include <vector>

#include "device.h"
#include "vt/cuda.h"

namespace vt::cuda {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // no driver or no device: report none, leave no error behind
    return 0;
  }
  return n;
}

bool is_available() {
  static const bool available = device_count() > 0;
  return available;
}

DeviceContext& context(int device) {
  static std::mutex mu;
  static std::vector<DeviceContext*> contexts;
  std::lock_guard<std::mutex> lock(mu);
  if (contexts.empty()) {
    const int n = device_count();
    VT_CHECK(n > 0, "cuda: no CUDA device is visible (cudaGetDeviceCount found none)");
    contexts.assign(n, nullptr);
  }
  VT_CHECK(device >= 0 && device < static_cast<int>(contexts.size()), "cuda: device ", device,
           " does not exist (", contexts.size(), " visible)");
  if (!contexts[device]) {
    auto* c = new DeviceContext();
    c->device = device;
    DeviceGuard g(device);
    VT_CUDA_CHECK(cudaStreamCreate(&c->default_stream));
    cudaDeviceProp prop{};
    VT_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    c->sm_count = prop.multiProcessorCount;
    c->l2_bytes = prop.l2CacheSize;
    VT_CUDA_CHECK(cudaMalloc(&c->error_slot, 4 * sizeof(int64_t)));
    VT_CUDA_CHECK(cudaMallocHost(&c->error_host, 4 * sizeof(int64_t)));
    contexts[device] = c;
  }
  return *contexts[device];
}

DeviceGuard::DeviceGuard(int device) {
  VT_CUDA_CHECK(cudaGetDevice(&prev_));
  if (prev_ != device) VT_CUDA_CHECK(cudaSetDevice(device));
}
DeviceGuard::~DeviceGuard() {
  int cur = -1;
  if (cudaGetDevice(&cur) == cudaSuccess && cur != prev_ && prev_ >= 0) (void)cudaSetDevice(prev_);
}

void synchronize(int device) {
  if (device < 0) VT_CUDA_CHECK(cudaGetDevice(&device));
  DeviceGuard g(device);
  VT_CUDA_CHECK(cudaDeviceSynchronize());  // every stream of the device
}

CUstream_st* stream(int device) { return context(device).stream(); }

}  // namespace vt::cuda
