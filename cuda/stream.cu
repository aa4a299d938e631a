// stream.cu: the calling thread's current stream per device, the per-device stream pool, and the
// public Stream, StreamGuard and Event of include/vt/cuda.h.
//
// The current stream is thread-local: a StreamGuard on one thread never redirects another thread's
// work. Pool streams are created non-blocking (they do not wait for the legacy stream 0) on first
// use and never destroyed, because the caching allocator keys cached blocks by stream handle: a
// destroyed stream's handle could come back for a new stream while blocks are still keyed to it.
#include <atomic>
#include <mutex>
#include <vector>

#include "device.h"
#include "vt/cuda.h"

namespace vt::cuda {

namespace {

// This thread's current stream per device; null (or absent) means the device's default stream.
std::vector<cudaStream_t>& thread_streams() {
  thread_local std::vector<cudaStream_t> current;
  return current;
}

void set_current_stream(int device, cudaStream_t s) {
  auto& cur = thread_streams();
  if (static_cast<int>(cur.size()) <= device) cur.resize(device + 1, nullptr);
  cur[device] = s;
}

int resolve(int device) {
  VT_CHECK(is_available(), "cuda: no CUDA device is visible, so there are no streams (cudaGetDeviceCount found none)");
  if (device < 0) VT_CUDA_CHECK(cudaGetDevice(&device));
  (void)context(device);  // checks that the device exists (and that there is a GPU at all)
  return device;
}

struct Pool {
  std::mutex mu;
  std::vector<cudaStream_t> streams;
  std::atomic<unsigned> next{0};
};

cudaStream_t pool_stream(int device) {
  static std::mutex mu;
  static std::vector<Pool*> pools;  // leaked with their streams, on purpose (see the file comment)
  Pool* p;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (pools.empty()) pools.assign(std::max(device_count(), 1), nullptr);
    if (!pools[device]) pools[device] = new Pool();
    p = pools[device];
  }
  const unsigned i = p->next.fetch_add(1) % Stream::kStreamPoolSize;
  std::lock_guard<std::mutex> lock(p->mu);
  if (p->streams.size() <= i) {
    DeviceGuard g(device);
    while (p->streams.size() <= i) {
      cudaStream_t s = nullptr;
      VT_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
      p->streams.push_back(s);
    }
  }
  return p->streams[i];
}

}  // namespace

cudaStream_t guarded_stream(int device) {
  const auto& cur = thread_streams();
  return device >= 0 && device < static_cast<int>(cur.size()) ? cur[device] : nullptr;
}

// ---- Stream --------------------------------------------------------------------------------------
Stream Stream::create(int device) {
  device = resolve(device);
  return Stream(device, pool_stream(device));
}
Stream Stream::default_stream(int device) {
  device = resolve(device);
  return Stream(device, context(device).default_stream);
}
Stream Stream::current(int device) {
  device = resolve(device);
  return Stream(device, current_stream(device));
}

void Stream::synchronize() const { VT_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

bool Stream::query() const {
  const cudaError_t e = cudaStreamQuery(stream_);
  if (e == cudaErrorNotReady) return false;
  VT_CUDA_CHECK(e);
  return true;
}

void Stream::wait(const Event& e) const {
  if (!e.recorded()) return;  // nothing to wait for, as in PyTorch
  VT_CUDA_CHECK(cudaStreamWaitEvent(stream_, e.handle(), 0));
}

void Stream::wait(const Stream& other) const {
  if (other == *this) return;
  Event e;
  e.record(other);
  wait(e);
}

// ---- StreamGuard ---------------------------------------------------------------------------------
StreamGuard::StreamGuard(const Stream& s) : device_(s.device()), prev_(current_stream(s.device())) {
  set_current_stream(device_, s.handle());
}
StreamGuard::~StreamGuard() { set_current_stream(device_, prev_); }

// ---- Event ---------------------------------------------------------------------------------------
struct Event::State {
  cudaEvent_t event = nullptr;
  int device = -1;
  bool timing = false, recorded = false;
  ~State() {
    if (event) (void)cudaEventDestroy(event);
  }
};

Event::Event(bool timing) : state_(std::make_shared<State>()) { state_->timing = timing; }

void Event::record(const Stream& s) {
  State& st = *state_;
  if (!st.event) {
    DeviceGuard g(s.device());
    VT_CUDA_CHECK(cudaEventCreateWithFlags(&st.event, st.timing ? cudaEventDefault : cudaEventDisableTiming));
    st.device = s.device();
  }
  VT_CHECK(s.device() == st.device, "Event::record: the event belongs to cuda:", st.device,
           " and cannot be recorded on a stream of cuda:", s.device());
  VT_CUDA_CHECK(cudaEventRecord(st.event, s.handle()));
  st.recorded = true;
}

void Event::record() { record(Stream::current()); }
bool Event::recorded() const { return state_->recorded; }
CUevent_st* Event::handle() const { return state_->event; }
int Event::device() const { return state_->device; }

void Event::synchronize() const {
  if (state_->recorded) VT_CUDA_CHECK(cudaEventSynchronize(state_->event));
}

bool Event::query() const {
  if (!state_->recorded) return true;
  const cudaError_t e = cudaEventQuery(state_->event);
  if (e == cudaErrorNotReady) return false;
  VT_CUDA_CHECK(e);
  return true;
}

float Event::elapsed_ms(const Event& end) const {
  VT_CHECK(state_->timing && end.state_->timing, "Event::elapsed_ms: both events must be created with timing = true");
  VT_CHECK(state_->recorded && end.state_->recorded, "Event::elapsed_ms: both events must be recorded first");
  float ms = 0.f;
  VT_CUDA_CHECK(cudaEventElapsedTime(&ms, state_->event, end.state_->event));
  return ms;
}

}  // namespace vt::cuda
