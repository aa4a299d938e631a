// allocator.h: the caching device allocator and the pinned host staging buffers of the CUDA backend.
//
// Device memory: cudaMalloc and cudaFree synchronise the device and cost tens of microseconds, so
// freed blocks go back to a per-device cache and later requests reuse them (PyTorch's scheme):
//   - sizes round up to 512 bytes; requests up to 1 MiB come from 2 MiB "small" segments, larger
//     ones from "large" segments (20 MiB for requests under 10 MiB, else the size rounded to 2 MiB);
//   - a cached block bigger than needed is split and the rest stays cached (small pool: when at
//     least 512 bytes remain; large pool: when more than 1 MiB remains); on free, a block merges
//     with free neighbours of its segment;
//   - blocks are cached per stream: a block freed while kernels on its stream may still use it is
//     only handed to later work on that same stream, which stream order runs after the old work;
//     a block that record_stream() marked as used on other streams returns to the cache only once
//     events recorded on those streams at its free have completed;
//   - on cudaMalloc failure the cache is emptied and the call retried once before raising.
// Storages own a handle whose deleter returns the block to the cache.
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
