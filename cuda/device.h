// device.h: per-device state of the CUDA backend: the device's default stream and the calling
// thread's current stream (what every kernel launch uses), the multiprocessor count (launch sizing),
// a device-side error slot for index validation, a per-stream GEMM workspace, and a guard that makes
// a tensor's device current for the duration of an op.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "check.h"
#include "vt/shape.h"

namespace vt::cuda {

// The stream a live StreamGuard (vt/cuda.h) set for `device` on this thread, or null.
cudaStream_t guarded_stream(int device);

struct DeviceContext {
  int device = 0;
  cudaStream_t default_stream = nullptr;  // created blocking: ordered with the legacy stream 0
  int sm_count = 0;
  size_t l2_bytes = 0;
  // Index validation: kernels that find a bad index record it here (see IndexError in index.cu);
  // the host reads it back after the kernel. Device memory, plus a pinned host mirror.
  int64_t* error_slot = nullptr;
  int64_t* error_host = nullptr;
  std::mutex error_mu;  // held from a checked kernel's slot reset to its read-back (index.cu)

  // The stream vt work on this device issued from this thread is queued on: the guarded one, else
  // the default stream.
  cudaStream_t stream() const {
    cudaStream_t s = guarded_stream(device);
    return s ? s : default_stream;
  }
};

// Created on first use (stream, properties, error slot); never destroyed (the driver frees all at
// exit, and tensors released during static destruction must still find their device).
DeviceContext& context(int device);

// The stream vt work on `device` issued from this thread is queued on (DeviceContext::stream).
inline cudaStream_t current_stream(int device) { return context(device).stream(); }

// The switches between a kernel and its alternative (VT_CONV_IM2COL=1, VT_FLASH_BWD=atomic,
// VT_RMS_NORM_BLOCK=0, ...), all read here and at each call, so a test or a benchmark can flip one
// between calls. env_is: the variable is set to exactly `value`. env_on: the switch is on, that is
// set to anything but "" or "0"; env_switch gives its value then, else nullptr.
inline bool env_is(const char* name, const char* value) {
  const char* e = std::getenv(name);
  return e != nullptr && std::strcmp(e, value) == 0;
}
inline const char* env_switch(const char* name) {
  const char* e = std::getenv(name);
  return e == nullptr || *e == '\0' || std::strcmp(e, "0") == 0 ? nullptr : e;
}
inline bool env_on(const char* name) { return env_switch(name) != nullptr; }

// cuBLAS and cuBLASLt scratch: one buffer of kGemmWorkspaceBytes per (device, stream), shared by
// both libraries (work on one stream runs in order, so they never use it at the same time; two
// streams never share one). Allocated on first use and kept for the life of the process.
constexpr size_t kGemmWorkspaceBytes = 32 << 20;
void* gemm_workspace(int device, cudaStream_t stream);

// Makes `device` current while alive; restores the previous device afterwards.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  explicit DeviceGuard(Device d) : DeviceGuard(d.index) {}
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = -1;
};

// Grid for a grid-stride loop over `work` items with `threads` per block: enough blocks to fill
// the device several times over, never more than the work needs (and within the grid limit).
inline unsigned grid_for(int64_t work, int threads, const DeviceContext& ctx, int blocks_per_sm = 8) {
  const int64_t need = (work + threads - 1) / threads;
  const int64_t cap = static_cast<int64_t>(ctx.sm_count) * blocks_per_sm;
  return static_cast<unsigned>(need < 1 ? 1 : (need < cap ? need : cap));
}

}  // namespace vt::cuda
