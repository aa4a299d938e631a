// cuda.h: the small public face of vt's CUDA backend: is a GPU there, streams and events, and the
// caching allocator's statistics. Everything else is reached through tensors on Device::cuda().
//
// Streams. Every vt op on a device is queued on the calling thread's *current stream* of that
// device: the device's default stream (created blocking, so kernels that other code launches on
// the legacy stream 0 stay ordered with it) unless a StreamGuard names another. Work on different
// streams may overlap (a gradient all-reduce beside the next layer's backward, a host-to-device copy
// beside compute); ordering between streams is explicit: Event::record then Stream::wait.
// Memory comes from a caching allocator (cuda/allocator.cu): freed blocks return to a cache of the
// stream they were allocated on and are reused by later allocations on that stream without a
// cudaMalloc/cudaFree round trip. A tensor used on a stream other than the one it was allocated on
// must be announced with record_stream(), or its memory could be handed out again while that
// stream still reads it (PyTorch's rule, and the same remedy).
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "vt/tensor.h"

struct CUstream_st;  // = cudaStream_t, without pulling in the CUDA headers
struct CUevent_st;   // = cudaEvent_t

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
CUstream_st* stream(int device = 0);  // the calling thread's current stream on `device`

class Event;

// A stream of one device: a copyable handle. Streams are never destroyed (the allocator keys its
// cache by stream): Stream::create hands out the streams of a per-device pool of kStreamPoolSize,
// round robin, as PyTorch does, so two create() calls far apart may return the same stream.
class Stream {
 public:
  static constexpr int kStreamPoolSize = 32;
  static Stream create(int device = -1);          // -1: the current device; non-blocking
  static Stream default_stream(int device = -1);  // the device's default stream
  static Stream current(int device = -1);         // this thread's current stream on the device

  int device() const { return device_; }
  CUstream_st* handle() const { return stream_; }
  void synchronize() const;         // waits on the host until the work queued so far has run
  bool query() const;               // true when it has
  void wait(const Event& e) const;  // work queued later on this stream waits for e
  void wait(const Stream& other) const;  // ... for all work queued on `other` so far
  bool operator==(const Stream& o) const { return stream_ == o.stream_ && device_ == o.device_; }
  bool operator!=(const Stream& o) const { return !(*this == o); }

 private:
  Stream(int device, CUstream_st* s) : device_(device), stream_(s) {}
  int device_ = 0;
  CUstream_st* stream_ = nullptr;
};

// Makes `s` the calling thread's current stream of s.device() while alive; restores the previous
// one after. Guards nest.
class StreamGuard {
 public:
  explicit StreamGuard(const Stream& s);
  ~StreamGuard();
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  int device_;
  CUstream_st* prev_;
};

// A marker in a stream's work. Copies share one CUDA event (created on the recording stream's
// device at the first record). `timing` events can measure the time between two of them; plain
// ones are cheaper to record and wait on.
class Event {
 public:
  explicit Event(bool timing = false);
  void record(const Stream& s);  // marks the work queued on s so far
  void record();                 // ... on the current stream of the current device
  bool recorded() const;
  void synchronize() const;  // waits on the host until the marked work has run (unrecorded: returns)
  bool query() const;        // whether it has (true when never recorded)
  // Milliseconds from this event to `end`, both timing events, recorded and completed.
  float elapsed_ms(const Event& end) const;
  CUevent_st* handle() const;  // null until recorded
  int device() const;          // -1 until recorded

 private:
  struct State;
  std::shared_ptr<State> state_;
};

// Announces that `t`'s memory is used by work on `s`, a stream other than the one it was allocated
// on: when t's storage is freed, its block is kept from reuse until the work queued on `s` by then
// has finished. A no-op for CPU tensors and for s == the allocating stream.
void record_stream(const Tensor& t, const Stream& s);

}  // namespace vt::cuda
