// cuda.h: the small public face of vt's CUDA backend: is a GPU there, the device's stream, and the
// caching allocator's statistics. Everything else is reached through tensors on Device::cuda().
//
// All vt work on a device is ordered on one stream per device (stream()); it is created blocking,
// so kernels that other code launches on the legacy default stream (stream 0) stay ordered with it.
// Memory comes from a caching allocator (cuda/allocator.cu): freed blocks return to a cache and
// are reused by later allocations on the same stream without a cudaMalloc/cudaFree round trip.
#pragma once
#include <cstdint>
#include <string>

struct CUstream_st;  // = cudaStream_t, without pulling in the CUDA headers

namespace vt::cuda {

// Bytes and counts of one device's caching allocator. "allocated" counts the rounded sizes of
// blocks held by live storages, "requested" the bytes asked for, "reserved" the device memory
// obtained from cudaMalloc (allocated + cached). Peaks since start or reset_peak_stats().
struct MemoryStats {
  int64_t allocated = 0, requested = 0, reserved = 0;
  int64_t peak_allocated = 0, peak_reserved = 0;
  int64_t num_allocs = 0, num_frees = 0;        // block hand-outs and returns
  int64_t num_cache_hits = 0;                   // hand-outs served from the cache
  int64_t num_device_allocs = 0, num_device_frees = 0;  // cudaMalloc / cudaFree calls
  int64_t num_splits = 0, num_merges = 0;
  std::string str() const;
};

bool is_available();   // a CUDA device is visible and the driver works
int device_count();    // 0 when none (never throws)
void synchronize(int device = -1);  // -1: the current device
void empty_cache(int device = -1);  // returns fully free cached segments to the driver
MemoryStats memory_stats(int device = 0);
void reset_peak_stats(int device = 0);
CUstream_st* stream(int device = 0);  // vt's stream on `device`

}  // namespace vt::cuda
