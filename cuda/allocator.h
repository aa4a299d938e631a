// allocator.h: the caching device allocator and the pinned host staging buffers of the CUDA backend.
//
// Device memory: cudaMalloc and cudaFree synchronise the device and cost tens of microseconds, so
// freed blocks go back to a per-device cache and later requests reuse them (PyTorch's scheme; the
// size classes, splitting, merging and per-stream rules are in caching_allocator.h). Blocks are
// cached per stream: a block freed while kernels on its stream may still use it is only handed to
// later work on that same stream, which stream order runs after the old work; a block that
// record_stream() marked as used on other streams returns to the cache only once events recorded
// on those streams at its free have completed. Storages own a handle whose deleter returns the
// block to the cache.
//
// Pinned host staging: host <-> device copies go through two page-locked buffers used in turn
// (one is filled while the other is in flight), so DMA runs at full speed from pageable tensors.
#pragma once
#include <cuda_runtime.h>

#include <memory>

#include "vt/cuda.h"
#include "vt/tensor.h"

namespace vt::cuda {

// A Storage of `nbytes` on `device`, from the cache of the calling thread's current stream.
std::shared_ptr<Storage> allocate_storage(size_t nbytes, int device);

// Raw block access for backend workspaces (cuBLAS, CUB temp storage): the pointer stays valid
// while the returned handle lives.
std::shared_ptr<void> allocate_workspace(size_t nbytes, int device);

// Copies between pageable host memory and device memory through the pinned staging buffers. Both
// return when the host buffer may be reused (H2D) or holds the data (D2H).
void copy_host_to_device(void* dst, const void* src, size_t nbytes, int device);
void copy_device_to_host(void* dst, const void* src, size_t nbytes, int device);

}  // namespace vt::cuda
