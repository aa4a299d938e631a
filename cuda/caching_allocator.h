// caching_allocator.h: the bookkeeping of vt's caching device allocator, free of CUDA types.
// allocator.cu binds it to the CUDA runtime; tests/test_caching_allocator.cpp drives it with a fake
// runtime on any machine, so the part that is easy to get subtly wrong (splits, merges, per-stream
// reuse, blocks held back for other streams, statistics) is tested without a GPU.
//
// Data structures: each segment obtained from the runtime is a doubly linked list of blocks in
// address order (prev/next). Free blocks sit in one of two ordered sets (small, large) keyed by
// (stream, size, address), so a best fit is one lower_bound. A block leaves its set when handed out
// and returns on free, after merging with free neighbours. A block freed while other streams may
// still use it (record_stream) waits in `pending_` until an event recorded on each of them at the
// free has completed; it counts as allocated until then, so no neighbour merges with it. All of it
// under one mutex.
//
// Sizes (PyTorch's scheme): requests round up to 512 bytes; up to 1 MiB they come from 2 MiB
// "small" segments, larger ones from "large" segments (20 MiB under 10 MiB requests, else the size
// rounded to 2 MiB). A cached block bigger than needed is split (small pool: when at least 512
// bytes remain; large pool: when more than 1 MiB remains). When the runtime is out of memory, the
// allocator waits for the held-back blocks, returns every wholly free segment and tries once more.
// Destroying the allocator returns every segment and frees every block record, live ones included:
// no block may be freed after that (allocator.cu never destroys its allocators, because storages
// may outlive static teardown; it empties their caches at exit instead).
//
// The runtime (Driver) provides, with Stream and Event pointer-like (nullptr: none):
//   bool alloc(void** p, size_t bytes)     false when out of memory (other failures throw)
//   void release(void* p)                  returns a segment (waits for the device's work)
//   Event new_event()                      nullptr when it cannot make one
//   bool record(Event e, Stream s)         false when it cannot (the allocator then waits for s)
//   bool done(Event e)                     whether the work before e has run (errors count as done)
//   void wait(Event e)
//   void wait_stream(Stream s)
//   std::string oom_detail()               appended to the out-of-memory error
// The event calls come from a storage's deleter: they must not throw.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "vt/cuda.h"
#include "vt/error.h"

namespace vt::cuda {

template <class Driver>
class CachingAllocator {
 public:
  using Stream = typename Driver::Stream;
  using Event = typename Driver::Event;

  static constexpr size_t kRound = 512;             // every block size is a multiple of this
  static constexpr size_t kSmallRequest = 1 << 20;  // <= 1 MiB: small pool
  static constexpr size_t kSmallSegment = 2 << 20;  // small segments are 2 MiB
  static constexpr size_t kMidRequest = 10 << 20;   // < 10 MiB: carved from 20 MiB segments
  static constexpr size_t kLargeSegment = 20 << 20;
  static constexpr size_t kSegmentRound = 2 << 20;  // larger segments round to 2 MiB

  struct Block {
    size_t size = 0;       // bytes of this block (multiple of kRound)
    size_t requested = 0;  // bytes the caller asked for (while allocated)
    char* ptr = nullptr;
    Stream stream = nullptr;
    bool small = false;  // which pool the block's segment belongs to
    bool allocated = false;
    Block* prev = nullptr;  // neighbours in the same segment
    Block* next = nullptr;
    std::vector<Stream> used_on;  // other streams that use it (record_stream)
    int waiting = 0;              // events still pending after its free
  };

  // `name` names the device in errors ("cuda:0").
  CachingAllocator(Driver driver, std::string name) : drv_(std::move(driver)), name_(std::move(name)) {}
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;
  ~CachingAllocator() {
    std::lock_guard<std::mutex> lock(mu_);
    finish_pending(true);
    for (Block* head : segments_) {
      drv_.release(head->ptr);
      for (Block* b = head; b;) {
        Block* next = b->next;
        delete b;
        b = next;
      }
    }
  }

  Block* allocate(size_t nbytes, Stream stream) {
    std::lock_guard<std::mutex> lock(mu_);
    finish_pending(false);
    const size_t size = round_size(nbytes);
    const bool small = size <= kSmallRequest;
    auto& pool = small ? small_ : large_;
    Block key;
    key.stream = stream;
    key.size = size;
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
    stats_.allocated += b->size;
    stats_.requested += nbytes;
    stats_.peak_allocated = std::max(stats_.peak_allocated, stats_.allocated);
    ++stats_.num_allocs;
    return b;
  }

  // Runs from a storage's deleter, so it never throws: when an event cannot be recorded, it waits
  // for that stream on the host instead.
  void free(Block* b) {
    std::lock_guard<std::mutex> lock(mu_);
    finish_pending(false);
    for (Stream s : b->used_on) {
      Event e = take_event();
      if (e && drv_.record(e, s)) {
        pending_.push_back({e, b});
        ++b->waiting;
      } else {
        drv_.wait_stream(s);
        if (e) events_.push_back(e);
      }
    }
    b->used_on.clear();
    if (b->waiting == 0) release(b);  // else released by finish_pending once every event has passed
  }

  // Marks live block b as used by work on `stream` (no-op for its own stream).
  void record_stream(Block* b, Stream stream) {
    std::lock_guard<std::mutex> lock(mu_);
    if (stream != b->stream && std::find(b->used_on.begin(), b->used_on.end(), stream) == b->used_on.end())
      b->used_on.push_back(stream);
  }

  // Waits for the held-back blocks, then returns every segment that is one whole free block.
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
  size_t pending_blocks() {  // freed blocks still waiting on other streams
    std::lock_guard<std::mutex> lock(mu_);
    std::set<const Block*> blocks;
    for (const Pending& p : pending_) blocks.insert(p.block);
    return blocks.size();
  }

  static size_t round_size(size_t n) { return std::max(kRound, (n + kRound - 1) / kRound * kRound); }
  static size_t segment_size(size_t rounded) {
    if (rounded <= kSmallRequest) return kSmallSegment;
    if (rounded < kMidRequest) return kLargeSegment;
    return (rounded + kSegmentRound - 1) / kSegmentRound * kSegmentRound;
  }

 private:
  struct Pending {
    Event event;
    Block* block;
  };
  struct BlockLess {
    bool operator()(const Block* a, const Block* b) const {
      if (a->stream != b->stream) return std::less<Stream>()(a->stream, b->stream);
      if (a->size != b->size) return a->size < b->size;
      return std::less<char*>()(a->ptr, b->ptr);
    }
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
      absorb(p, b);
      b = p;
    }
    if (b->next && !b->next->allocated) {
      pool.erase(b->next);
      absorb(b, b->next);
    }
    pool.insert(b);
  }

  // left takes over its right neighbour's bytes; right is deleted.
  void absorb(Block* left, Block* right) {
    left->size += right->size;
    left->next = right->next;
    if (right->next) right->next->prev = left;
    delete right;
    ++stats_.num_merges;
  }

  Event take_event() {
    if (events_.empty()) return drv_.new_event();
    Event e = events_.back();
    events_.pop_back();
    return e;
  }

  // Releases the blocks whose other streams have passed their events; `wait` blocks on each instead.
  void finish_pending(bool wait) {
    for (size_t i = 0; i < pending_.size();) {
      const Pending p = pending_[i];
      if (wait) drv_.wait(p.event);
      else if (!drv_.done(p.event)) {
        ++i;
        continue;
      }
      events_.push_back(p.event);
      pending_[i] = pending_.back();
      pending_.pop_back();
      if (--p.block->waiting == 0) release(p.block);
    }
  }

  Block* new_segment(size_t size, bool small, Stream stream) {
    const size_t seg = segment_size(size);
    void* p = nullptr;
    if (!drv_.alloc(&p, seg)) {
      finish_pending(true);  // wait out blocks other streams still use, give the cache back, retry
      release_free_segments();
      if (!drv_.alloc(&p, seg))
        VT_FAIL("cuda: out of memory allocating ", size, " bytes (segment ", seg, ") on ", name_, "; vt holds ",
                stats_.allocated, " bytes in tensors and ", stats_.reserved, " reserved; ", drv_.oom_detail());
    }
    Block* b = new Block();
    b->size = seg;
    b->ptr = static_cast<char*>(p);
    b->stream = stream;
    b->small = small;
    stats_.reserved += seg;
    stats_.peak_reserved = std::max(stats_.peak_reserved, stats_.reserved);
    ++stats_.num_device_allocs;
    segments_.insert(b);
    return b;
  }

  void release_free_segments() {
    for (auto* pool : {&small_, &large_}) {
      for (auto it = pool->begin(); it != pool->end();) {
        Block* b = *it;
        if (b->prev || b->next) {
          ++it;
          continue;
        }
        drv_.release(b->ptr);
        stats_.reserved -= b->size;
        ++stats_.num_device_frees;
        it = pool->erase(it);
        segments_.erase(b);
        delete b;
      }
    }
  }

  Driver drv_;
  std::string name_;
  std::mutex mu_;
  std::set<Block*, BlockLess> small_, large_;
  std::vector<Pending> pending_;            // freed blocks waiting on other streams
  std::vector<Event> events_;               // reusable events for pending_
  std::set<Block*> segments_;               // the first block of each segment (it never merges away)
  MemoryStats stats_;
};

}  // namespace vt::cuda
