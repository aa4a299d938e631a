// allocator.cu: the caching device allocator (caching_allocator.h holds its bookkeeping, bound here
// to the CUDA runtime) and pinned staging copies (design notes in allocator.h).
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <sstream>
#include <unordered_map>
#include <vector>

#include "allocator.h"
#include "caching_allocator.h"
#include "check.h"
#include "device.h"

namespace vt::cuda {

namespace {

// The CUDA runtime as CachingAllocator's Driver, for one device. The event calls run from storage
// deleters (possibly during process exit): they switch devices and report failures without throwing.
struct CudaDriver {
  using Stream = cudaStream_t;
  using Event = cudaEvent_t;
  int device;

  // Makes the device current for a scope, without throwing.
  struct Current {
    int prev = -1, want;
    explicit Current(int d) : want(d) {
      if (cudaGetDevice(&prev) != cudaSuccess || (prev != want && cudaSetDevice(want) != cudaSuccess))
        (void)cudaGetLastError();
    }
    ~Current() {
      if (prev >= 0 && prev != want) (void)cudaSetDevice(prev);
    }
  };

  bool alloc(void** p, size_t bytes) const {
    Current c(device);
    const cudaError_t e = cudaMalloc(p, bytes);
    if (e == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      return false;
    }
    VT_CUDA_CHECK(e);
    return true;
  }
  void release(void* p) const {  // cudaFree waits for the device, so kernels still reading p finish first
    Current c(device);
    VT_CUDA_CHECK(cudaFree(p));
  }
  Event new_event() const {
    Current c(device);
    cudaEvent_t e = nullptr;
    if (cudaEventCreateWithFlags(&e, cudaEventDisableTiming) != cudaSuccess) {
      (void)cudaGetLastError();
      return nullptr;
    }
    return e;
  }
  bool record(Event e, Stream s) const {
    Current c(device);
    if (cudaEventRecord(e, s) == cudaSuccess) return true;
    (void)cudaGetLastError();
    return false;
  }
  bool done(Event e) const {
    const cudaError_t st = cudaEventQuery(e);
    if (st == cudaErrorNotReady) return false;
    if (st != cudaSuccess) (void)cudaGetLastError();  // a failed stream: its work is over either way
    return true;
  }
  void wait(Event e) const {
    if (cudaEventSynchronize(e) != cudaSuccess) (void)cudaGetLastError();
  }
  void wait_stream(Stream s) const {
    if (cudaStreamSynchronize(s) != cudaSuccess) (void)cudaGetLastError();
  }
  std::string oom_detail() const {
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) (void)cudaGetLastError();
    std::ostringstream os;
    os << "the device has " << free_b << " bytes free of " << total_b;
    return os.str();
  }
};

using DeviceAllocator = CachingAllocator<CudaDriver>;
using Block = DeviceAllocator::Block;

DeviceAllocator& allocator(int device) {
  static std::mutex mu;
  static std::vector<DeviceAllocator*> all;  // leaked on purpose: storages may die after main
  std::lock_guard<std::mutex> lock(mu);
  if (all.empty()) {
    all.assign(std::max(device_count(), 1), nullptr);
    // At exit the cached segments go back to the driver, before the CUDA runtime's own teardown
    // (registered earlier, by device_count(), so run later). Blocks still held stay with their holders.
    std::atexit([] {
      for (DeviceAllocator* a : all) {
        try {
          if (a) a->empty_cache();
        } catch (const std::exception&) {  // a failed cudaFree at exit: nothing left to report it to
        }
      }
    });
  }
  VT_CHECK(device >= 0 && device < static_cast<int>(all.size()), "cuda: device cuda:", device, " does not exist (",
           all.size(), " visible)");
  if (!all[device]) all[device] = new DeviceAllocator(CudaDriver{device}, "cuda:" + std::to_string(device));
  return *all[device];
}

// The deleter of a block's handle: returns the block to its allocator when the last owner goes.
// record_stream finds the block through it (std::get_deleter), with no address lookup.
struct ReturnBlock {
  DeviceAllocator* allocator;
  Block* block;
  void operator()(void*) const { allocator->free(block); }
};

// A block from `stream`'s cache.
std::shared_ptr<void> own_block(int device, size_t nbytes, cudaStream_t stream) {
  DeviceAllocator& a = allocator(device);
  Block* b = a.allocate(nbytes, stream);
  return std::shared_ptr<void>(b->ptr, ReturnBlock{&a, b});
}

// ---- pinned staging ----------------------------------------------------------------------------
constexpr size_t kStageBytes = 8 << 20;  // per buffer; two buffers per device

struct Staging {
  std::mutex mu;
  char* buf[2] = {nullptr, nullptr};
  cudaEvent_t done[2] = {nullptr, nullptr};  // the last copy that used buf[i] has finished
};

Staging& staging(int device) {
  static std::mutex mu;
  static std::vector<Staging*> all;
  std::lock_guard<std::mutex> lock(mu);
  if (all.empty()) all.assign(std::max(device_count(), 1), nullptr);
  if (!all[device]) {
    auto* s = new Staging();
    DeviceGuard g(device);
    for (int i = 0; i < 2; ++i) {
      VT_CUDA_CHECK(cudaMallocHost(&s->buf[i], kStageBytes));
      VT_CUDA_CHECK(cudaEventCreateWithFlags(&s->done[i], cudaEventDisableTiming));
      VT_CUDA_CHECK(cudaEventRecord(s->done[i], context(device).stream()));
    }
    all[device] = s;
  }
  return *all[device];
}

}  // namespace

std::shared_ptr<Storage> allocate_storage(size_t nbytes, int device) {
  auto s = std::make_shared<Storage>();
  s->owner = own_block(device, nbytes, current_stream(device));
  s->data = s->owner.get();
  s->nbytes = nbytes;
  s->device = Device::cuda(device);
  return s;
}

std::shared_ptr<void> allocate_workspace(size_t nbytes, int device) {
  return own_block(device, nbytes, current_stream(device));
}

void* gemm_workspace(int device, cudaStream_t stream) {
  static std::mutex mu;
  static std::vector<std::unordered_map<cudaStream_t, std::shared_ptr<void>>> all;  // kept until exit
  std::lock_guard<std::mutex> lock(mu);
  if (all.empty()) all.resize(std::max(device_count(), 1));
  VT_CHECK(device >= 0 && device < static_cast<int>(all.size()), "cuda: no device ", device);
  std::shared_ptr<void>& ws = all[device][stream];
  if (!ws) ws = own_block(device, kGemmWorkspaceBytes, stream);
  return ws.get();
}

void copy_host_to_device(void* dst, const void* src, size_t nbytes, int device) {
  if (nbytes == 0) return;
  DeviceGuard g(device);
  cudaStream_t stream = context(device).stream();
  Staging& s = staging(device);
  std::lock_guard<std::mutex> lock(s.mu);
  // Buffer i is refilled only after the copy that last read it completed (its event).
  int i = 0;
  for (size_t off = 0; off < nbytes; off += kStageBytes, i ^= 1) {
    const size_t n = std::min(kStageBytes, nbytes - off);
    VT_CUDA_CHECK(cudaEventSynchronize(s.done[i]));
    std::memcpy(s.buf[i], static_cast<const char*>(src) + off, n);
    VT_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dst) + off, s.buf[i], n, cudaMemcpyHostToDevice, stream));
    VT_CUDA_CHECK(cudaEventRecord(s.done[i], stream));
  }
}

void copy_device_to_host(void* dst, const void* src, size_t nbytes, int device) {
  if (nbytes == 0) return;
  DeviceGuard g(device);
  cudaStream_t stream = context(device).stream();
  Staging& s = staging(device);
  std::lock_guard<std::mutex> lock(s.mu);
  // Chunk k lands in buf[k % 2]; chunk k + 1 is in flight while chunk k is copied out on the host.
  const size_t chunks = (nbytes + kStageBytes - 1) / kStageBytes;
  auto issue = [&](size_t k) {
    const size_t off = k * kStageBytes, n = std::min(kStageBytes, nbytes - off);
    VT_CUDA_CHECK(cudaMemcpyAsync(s.buf[k & 1], static_cast<const char*>(src) + off, n, cudaMemcpyDeviceToHost,
                                  stream));
    VT_CUDA_CHECK(cudaEventRecord(s.done[k & 1], stream));
  };
  issue(0);
  for (size_t k = 0; k < chunks; ++k) {
    if (k + 1 < chunks) issue(k + 1);
    VT_CUDA_CHECK(cudaEventSynchronize(s.done[k & 1]));
    const size_t off = k * kStageBytes, n = std::min(kStageBytes, nbytes - off);
    std::memcpy(static_cast<char*>(dst) + off, s.buf[k & 1], n);
  }
}

// ---- public statistics and record_stream (vt/cuda.h) ------------------------------------------------
void record_stream(const Tensor& t, const Stream& s) {
  if (!t.defined() || !t.is_cuda() || !t.storage() || t.storage()->nbytes == 0) return;
  VT_CHECK(s.device() == t.device().index, "record_stream: the tensor is on cuda:", t.device().index,
           " but the stream on cuda:", s.device());
  // Storages not from the allocator (wrapped memory) have another deleter: nothing to hold back.
  if (const ReturnBlock* r = std::get_deleter<ReturnBlock>(t.storage()->owner))
    r->allocator->record_stream(r->block, s.handle());
}
// ---- public statistics (vt/cuda.h) -------------------------------------------------------------
MemoryStats memory_stats(int device) { return allocator(device).stats(); }
void reset_peak_stats(int device) { allocator(device).reset_peak(); }
void empty_cache(int device) {
  if (device < 0) VT_CUDA_CHECK(cudaGetDevice(&device));
  allocator(device).empty_cache();
}

std::string MemoryStats::str() const {
  std::ostringstream os;
  os << "allocated " << allocated << " (peak " << peak_allocated << "), requested " << requested << ", reserved "
     << reserved << " (peak " << peak_reserved << "), allocs " << num_allocs << " (cache hits " << num_cache_hits
     << "), frees " << num_frees << ", cudaMalloc " << num_device_allocs << ", cudaFree " << num_device_frees
     << ", splits " << num_splits << ", merges " << num_merges;
  return os.str();
}

}  // namespace vt::cuda
