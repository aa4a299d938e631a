// allocator.cu: the caching device allocator and pinned staging copies (design notes in allocator.h).
//
// Data structures: each cudaMalloc'd segment is a doubly linked list of blocks in address order
// (prev/next). Free blocks sit in one of two ordered sets (small, large) keyed by (stream, size,
// address), so a best fit is one lower_bound. A block leaves its set when handed out and returns
// on free, after merging with free neighbours. A block freed while other streams may still use it
// (record_stream) waits in `pending_` until an event recorded on each of them has completed; it
// counts as allocated until then, so no neighbour merges with it. All of it under one mutex per
// device.
#include <algorithm>
#include <cstring>
#include <mutex>
#include <set>
#include <sstream>
#include <unordered_map>
#include <vector>

#include "allocator.h"
#include "check.h"
#include "device.h"

namespace vt::cuda {

namespace {

constexpr size_t kRound = 512;                    // every block size is a multiple of this
constexpr size_t kSmallRequest = 1 << 20;         // <= 1 MiB: small pool
constexpr size_t kSmallSegment = 2 << 20;         // small segments are 2 MiB
constexpr size_t kMidRequest = 10 << 20;          // < 10 MiB: carved from 20 MiB segments
constexpr size_t kLargeSegment = 20 << 20;
constexpr size_t kSegmentRound = 2 << 20;         // larger segments round to 2 MiB

struct Block {
  size_t size = 0;       // bytes of this block (multiple of kRound)
  size_t requested = 0;  // bytes the caller asked for (while allocated)
  char* ptr = nullptr;
  cudaStream_t stream = nullptr;
  bool small = false;    // which pool the block's segment belongs to
  bool allocated = false;
  Block* prev = nullptr;  // neighbours in the same segment
  Block* next = nullptr;
  std::vector<cudaStream_t> used_on;  // other streams that use it (record_stream)
  int waiting = 0;                    // events still pending after its free
};

struct BlockLess {
  bool operator()(const Block* a, const Block* b) const {
    if (a->stream != b->stream) return reinterpret_cast<uintptr_t>(a->stream) < reinterpret_cast<uintptr_t>(b->stream);
    if (a->size != b->size) return a->size < b->size;
    return a->ptr < b->ptr;
  }
};

size_t round_size(size_t n) { return std::max(kRound, (n + kRound - 1) / kRound * kRound); }
size_t segment_size(size_t rounded) {
  if (rounded <= kSmallRequest) return kSmallSegment;
  if (rounded < kMidRequest) return kLargeSegment;
  return (rounded + kSegmentRound - 1) / kSegmentRound * kSegmentRound;
}

class DeviceAllocator {
 public:
  explicit DeviceAllocator(int device) : device_(device) {}

  Block* allocate(size_t nbytes, cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mu_);
    finish_pending(false);
    const size_t size = round_size(nbytes);
    const bool small = size <= kSmallRequest;
    auto& pool = small ? small_ : large_;
    Block key;
    key.stream = stream;
    key.size = size;
    key.ptr = nullptr;
    Block* b = nullptr;
    auto it = pool.lower_bound(&key);
    // Best fit among the cached blocks of this stream (the set orders by stream first).
    if (it != pool.end() && (*it)->stream == stream) {
      b = *it;
      pool.erase(it);
      ++stats_.num_cache_hits;
    } else {
      b = new_segment(size, small, stream);
    }
    // Split off the tail when enough remains to be useful.
    const size_t rest = b->size - size;
    if (small ? rest >= kRound : rest > kSmallRequest) {
      Block* tail = new Block();
      tail->size = rest;
      tail->ptr = b->ptr + size;
      tail->stream = stream;
      tail->small = b->small;
      tail->prev = b;
      tail->next = b->next;
      if (b->next) b->next->prev = tail;
      b->next = tail;
      b->size = size;
      pool.insert(tail);
      ++stats_.num_splits;
    }
    b->allocated = true;
    b->requested = nbytes;
    live_[b->ptr] = b;
    stats_.allocated += b->size;
    stats_.requested += nbytes;
    stats_.peak_allocated = std::max(stats_.peak_allocated, stats_.allocated);
    ++stats_.num_allocs;
    return b;
  }

  // Runs from a storage's deleter, so it never throws: a failing event call falls back to waiting
  // for the stream on the host.
  void free(Block* b) {
    std::lock_guard<std::mutex> lock(mu_);
    live_.erase(b->ptr);
    finish_pending(false);
    if (!b->used_on.empty()) {
      int prev = -1;  // make the block's device current for its events, without throwing
      if (cudaGetDevice(&prev) != cudaSuccess || (prev != device_ && cudaSetDevice(device_) != cudaSuccess))
        (void)cudaGetLastError();
      for (cudaStream_t s : b->used_on) {
        cudaEvent_t e = take_event();
        if (e && cudaEventRecord(e, s) == cudaSuccess) {
          pending_.push_back({e, b});
          ++b->waiting;
        } else {
          (void)cudaGetLastError();
          (void)cudaStreamSynchronize(s);
          if (e) events_.push_back(e);
        }
      }
      b->used_on.clear();
      if (prev >= 0 && prev != device_) (void)cudaSetDevice(prev);
      if (b->waiting > 0) return;  // released by finish_pending once every event has completed
    }
    release(b);
  }

  // Marks the live block at `ptr` as used by work on `stream` (no-op for its own stream, or for a
  // pointer this allocator did not hand out).
  void record_stream(void* ptr, cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(static_cast<char*>(ptr));
    if (it == live_.end()) return;
    Block* b = it->second;
    if (stream != b->stream && std::find(b->used_on.begin(), b->used_on.end(), stream) == b->used_on.end())
      b->used_on.push_back(stream);
  }

 private:
  struct Pending {
    cudaEvent_t event;
    Block* block;
  };

  // A block whose last user is done: back to its pool, merged with free neighbours.
  void release(Block* b) {
    b->allocated = false;
    stats_.allocated -= b->size;
    stats_.requested -= b->requested;
    b->requested = 0;
    ++stats_.num_frees;
    auto& pool = b->small ? small_ : large_;
    // Merge with free neighbours (the same segment and stream by construction).
    if (b->prev && !b->prev->allocated) {
      Block* p = b->prev;
      pool.erase(p);
      p->size += b->size;
      p->next = b->next;
      if (b->next) b->next->prev = p;
      delete b;
      b = p;
      ++stats_.num_merges;
    }
    if (b->next && !b->next->allocated) {
      Block* n = b->next;
      pool.erase(n);
      b->size += n->size;
      b->next = n->next;
      if (n->next) n->next->prev = b;
      delete n;
      ++stats_.num_merges;
    }
    pool.insert(b);
  }

  cudaEvent_t take_event() {
    if (!events_.empty()) {
      cudaEvent_t e = events_.back();
      events_.pop_back();
      return e;
    }
    cudaEvent_t e = nullptr;
    if (cudaEventCreateWithFlags(&e, cudaEventDisableTiming) != cudaSuccess) {
      (void)cudaGetLastError();
      return nullptr;
    }
    return e;
  }

  // Releases the blocks whose streams have passed their events; `wait` blocks on each instead.
  void finish_pending(bool wait) {
    for (size_t i = 0; i < pending_.size();) {
      const Pending p = pending_[i];
      const cudaError_t st = wait ? cudaEventSynchronize(p.event) : cudaEventQuery(p.event);
      if (st == cudaErrorNotReady) {
        ++i;
        continue;
      }
      if (st != cudaSuccess) (void)cudaGetLastError();  // a failed stream: its work is over either way
      events_.push_back(p.event);
      pending_[i] = pending_.back();
      pending_.pop_back();
      if (--p.block->waiting == 0) release(p.block);
    }
  }

 public:
  // Returns every segment that is one whole free block to the driver.
  void empty_cache() {
    std::lock_guard<std::mutex> lock(mu_);
    finish_pending(true);
    release_free_segments();
  }

  MemoryStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }
  void reset_peak() {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.peak_allocated = stats_.allocated;
    stats_.peak_reserved = stats_.reserved;
  }

 private:
  Block* new_segment(size_t size, bool small, cudaStream_t stream) {
    const size_t seg = segment_size(size);
    void* p = nullptr;
    DeviceGuard g(device_);
    cudaError_t e = cudaMalloc(&p, seg);
    if (e == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      finish_pending(true);  // wait out blocks other streams still use, give the cache back, retry
      release_free_segments();
      e = cudaMalloc(&p, seg);
    }
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      (void)cudaMemGetInfo(&free_b, &total_b);
      VT_FAIL("cuda: out of memory allocating ", size, " bytes (segment ", seg, ") on cuda:", device_, " (",
              cudaGetErrorString(e), "); vt holds ", stats_.allocated, " bytes in tensors and ", stats_.reserved,
              " reserved; the device has ", free_b, " free of ", total_b);
    }
    Block* b = new Block();
    b->size = seg;
    b->ptr = static_cast<char*>(p);
    b->stream = stream;
    b->small = small;
    stats_.reserved += seg;
    stats_.peak_reserved = std::max(stats_.peak_reserved, stats_.reserved);
    ++stats_.num_device_allocs;
    return b;
  }

  void release_free_segments() {
    DeviceGuard g(device_);
    for (auto* pool : {&small_, &large_}) {
      for (auto it = pool->begin(); it != pool->end();) {
        Block* b = *it;
        if (b->prev || b->next) {
          ++it;
          continue;
        }
        // cudaFree waits for the device, so kernels still reading the block finish first.
        VT_CUDA_CHECK(cudaFree(b->ptr));
        stats_.reserved -= b->size;
        ++stats_.num_device_frees;
        it = pool->erase(it);
        delete b;
      }
    }
  }

  int device_;
  std::mutex mu_;
  std::set<Block*, BlockLess> small_, large_;
  std::unordered_map<char*, Block*> live_;  // handed-out blocks by address (record_stream)
  std::vector<Pending> pending_;            // freed blocks waiting on other streams
  std::vector<cudaEvent_t> events_;         // reusable events for pending_
  MemoryStats stats_;
};

DeviceAllocator& allocator(int device) {
  static std::mutex mu;
  static std::vector<DeviceAllocator*> all;  // leaked on purpose: storages may die after main
  std::lock_guard<std::mutex> lock(mu);
  if (all.empty()) all.assign(std::max(device_count(), 1), nullptr);
  VT_CHECK(device >= 0 && device < static_cast<int>(all.size()), "cuda: no device ", device);
  if (!all[device]) all[device] = new DeviceAllocator(device);
  return *all[device];
}

// A block from `stream`'s cache, returned to its allocator when the last owner goes.
std::shared_ptr<void> own_block(int device, size_t nbytes, cudaStream_t stream) {
  DeviceAllocator& a = allocator(device);
  Block* b = a.allocate(nbytes, stream);
  return std::shared_ptr<void>(b->ptr, [&a, b](void*) { a.free(b); });
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
  allocator(s.device()).record_stream(t.storage()->data, s.handle());
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
