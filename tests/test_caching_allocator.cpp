// The caching device allocator's bookkeeping (cuda/caching_allocator.h) on a fake runtime: size
// classes, best fit per stream, splits and merges, statistics, blocks held back for other streams
// (record_stream) until their events pass, the fallbacks when an event cannot be made, and the
// out-of-memory retry. Runs on any machine; allocator.cu binds the same code to CUDA. Also the CPU
// allocator's cache of large blocks (src/cpu_allocator.cpp), which must be empty at exit.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>

#include "../cuda/caching_allocator.h"
#include "../src/cpu_backend.h"
#include "vt/tensor.h"

using namespace vt;

namespace {

constexpr size_t MiB = 1 << 20;

// A runtime whose memory is host memory under a capacity, and whose streams finish their work only
// when the test says so: an event recorded on stream s is the s's n-th; it has passed once the
// test has completed s up to n.
struct FakeRuntime {
  size_t capacity = 1ull << 40, used = 0;
  std::map<void*, size_t> segments;
  struct FakeEvent {
    void* stream = nullptr;
    int64_t seq = 0;
  };
  std::vector<std::unique_ptr<FakeEvent>> events;
  std::map<void*, int64_t> issued, completed;  // per stream: events recorded, work completed up to
  bool fail_new_event = false, fail_record = false;
  int waits = 0, stream_waits = 0, frees = 0;

  void complete(void* s) { completed[s] = issued[s]; }
  ~FakeRuntime() {
    for (auto& [p, n] : segments) std::free(p);
  }
};

struct FakeDriver {
  using Stream = void*;
  using Event = FakeRuntime::FakeEvent*;
  FakeRuntime* rt;

  bool alloc(void** p, size_t bytes) const {
    if (rt->used + bytes > rt->capacity) return false;
    *p = std::aligned_alloc(512, bytes);
    rt->used += bytes;
    rt->segments[*p] = bytes;
    return true;
  }
  void release(void* p) const {
    rt->used -= rt->segments.at(p);
    rt->segments.erase(p);
    std::free(p);
    ++rt->frees;
  }
  Event new_event() const {
    if (rt->fail_new_event) return nullptr;
    rt->events.push_back(std::make_unique<FakeRuntime::FakeEvent>());
    return rt->events.back().get();
  }
  bool record(Event e, Stream s) const {
    if (rt->fail_record) return false;
    e->stream = s;
    e->seq = ++rt->issued[s];
    return true;
  }
  bool done(Event e) const { return rt->completed[e->stream] >= e->seq; }
  void wait(Event e) const {
    ++rt->waits;
    rt->completed[e->stream] = std::max(rt->completed[e->stream], e->seq);
  }
  void wait_stream(Stream s) const {
    ++rt->stream_waits;
    rt->complete(s);
  }
  std::string oom_detail() const { return "fake runtime full"; }
};

using Alloc = cuda::CachingAllocator<FakeDriver>;

void* const s1 = reinterpret_cast<void*>(uintptr_t(0x10));
void* const s2 = reinterpret_cast<void*>(uintptr_t(0x20));
void* const s3 = reinterpret_cast<void*>(uintptr_t(0x30));

}  // namespace

TEST_CASE("caching allocator: sizes round to 512 bytes, small requests share 2 MiB segments, stats add up") {
  FakeRuntime rt;
  Alloc a(FakeDriver{&rt}, "fake:0");
  Alloc::Block* b1 = a.allocate(1000, s1);
  cuda::MemoryStats st = a.stats();
  CHECK(b1->size == 1024);
  CHECK(st.allocated == 1024);
  CHECK(st.requested == 1000);
  CHECK(st.reserved == 2 * MiB);
  CHECK(st.num_device_allocs == 1);
  Alloc::Block* b2 = a.allocate(600, s1);  // the rest of the same segment, right after b1
  CHECK(b2->ptr == b1->ptr + 1024);
  CHECK(a.stats().num_device_allocs == 1);
  CHECK(a.stats().num_cache_hits == 1);
  char* p1 = b1->ptr;
  a.free(b1);
  st = a.stats();
  CHECK(st.allocated == 1024);
  CHECK(st.requested == 600);
  CHECK(st.peak_allocated == 2048);
  Alloc::Block* b3 = a.allocate(1024, s1);  // the freed block comes back
  CHECK(b3->ptr == p1);
  Alloc::Block* b4 = a.allocate(1024, s2);  // another stream never gets s1's cache
  CHECK(a.stats().num_device_allocs == 2);
  a.free(b2), a.free(b3), a.free(b4);
  st = a.stats();
  CHECK(st.allocated == 0);
  CHECK(st.requested == 0);
  CHECK(st.num_allocs == st.num_frees);
  a.reset_peak();
  CHECK(a.stats().peak_allocated == 0);
  a.empty_cache();
  CHECK(a.stats().reserved == 0);
  CHECK(rt.used == 0);
  CHECK(Alloc::segment_size(Alloc::round_size(3 * MiB)) == 20 * MiB);
  CHECK(Alloc::segment_size(Alloc::round_size(11 * MiB + 1)) == 12 * MiB);
}

TEST_CASE("caching allocator: a large block splits for a smaller request and merges back when freed") {
  FakeRuntime rt;
  Alloc a(FakeDriver{&rt}, "fake:0");
  Alloc::Block* big = a.allocate(64 * MiB, s1);
  char* base = big->ptr;
  a.free(big);
  Alloc::Block* h1 = a.allocate(32 * MiB, s1);
  CHECK(h1->ptr == base);
  CHECK(a.stats().num_splits == 1);
  Alloc::Block* h2 = a.allocate(32 * MiB, s1);
  CHECK(h2->ptr == base + 32 * MiB);
  CHECK(a.stats().num_device_allocs == 1);
  Alloc::Block* small_rest = a.allocate(31 * MiB + 512 * 1024, s1);  // a new segment: nothing free
  CHECK(a.stats().num_device_allocs == 2);
  a.free(small_rest);
  a.free(h1);
  a.free(h2);
  CHECK(a.stats().num_merges >= 1);
  Alloc::Block* again = a.allocate(64 * MiB, s1);  // whole again
  CHECK(again->ptr == base);
  a.free(again);
  a.empty_cache();
  CHECK(a.stats().reserved == 0);
  // A remainder of at most 1 MiB stays in the large block: no split.
  Alloc fresh(FakeDriver{&rt}, "fake:1");
  Alloc::Block* b = fresh.allocate(20 * MiB - MiB / 2, s1);  // a 20 MiB segment
  CHECK(b->size == 20 * MiB);
  CHECK(fresh.stats().num_splits == 0);
  CHECK(fresh.stats().allocated == int64_t(20 * MiB));
  CHECK(fresh.stats().requested == int64_t(20 * MiB - MiB / 2));
  fresh.free(b);
  fresh.empty_cache();
  CHECK(rt.used == 0);
}

TEST_CASE("caching allocator: record_stream holds a freed block until the other stream's work passes") {
  FakeRuntime rt;
  Alloc a(FakeDriver{&rt}, "fake:0");
  Alloc::Block* x = a.allocate(4 * MiB, s1);
  char* xp = x->ptr;
  a.record_stream(x, s2);
  a.record_stream(x, s2);  // twice: one entry
  a.record_stream(x, s1);  // its own stream: nothing to wait for
  a.free(x);
  CHECK(a.pending_blocks() == 1);
  CHECK(a.stats().allocated == int64_t(4 * MiB));  // still in use by s2
  Alloc::Block* y = a.allocate(4 * MiB, s1);
  CHECK(y->ptr != xp);  // not handed out while s2 may read it
  rt.complete(s2);
  Alloc::Block* z = a.allocate(512, s1);  // any call releases what has passed
  CHECK(a.pending_blocks() == 0);
  CHECK(a.stats().allocated == int64_t(4 * MiB + 512));
  a.free(z);
  Alloc::Block* w = a.allocate(4 * MiB, s1);
  CHECK(w->ptr == xp);  // back in s1's cache
  a.free(w), a.free(y);
  CHECK(rt.waits == 0);
  CHECK(rt.stream_waits == 0);
}

TEST_CASE("caching allocator: a block used on two other streams waits for both") {
  FakeRuntime rt;
  Alloc a(FakeDriver{&rt}, "fake:0");
  Alloc::Block* x = a.allocate(2 * MiB, s1);
  a.record_stream(x, s2);
  a.record_stream(x, s3);
  a.free(x);
  rt.complete(s2);
  a.free(a.allocate(512, s1));
  CHECK(a.pending_blocks() == 1);
  rt.complete(s3);
  a.free(a.allocate(512, s1));
  CHECK(a.pending_blocks() == 0);
  CHECK(a.stats().allocated == 0);
}

TEST_CASE("caching allocator: a held-back block never merges with its free neighbours") {
  FakeRuntime rt;
  Alloc a(FakeDriver{&rt}, "fake:0");
  Alloc::Block* p = a.allocate(1024, s1);
  Alloc::Block* q = a.allocate(1024, s1);
  REQUIRE(q->ptr == p->ptr + 1024);
  char* pp = p->ptr;
  a.record_stream(p, s2);
  a.free(p);  // held back
  a.free(q);  // merges with the segment's free tail, not with p
  Alloc::Block* r = a.allocate(2048, s1);
  CHECK(r->ptr != pp);
  CHECK(r->ptr == pp + 1024);  // q and the tail after it
  a.free(r);
  a.empty_cache();  // waits for s2, then the whole segment is free and goes back
  CHECK(rt.waits == 1);
  CHECK(a.stats().reserved == 0);
  CHECK(a.stats().allocated == 0);
}

TEST_CASE("caching allocator: without an event, the free waits for the other stream on the host") {
  FakeRuntime rt;
  Alloc a(FakeDriver{&rt}, "fake:0");
  for (bool fail_new : {true, false}) {
    CAPTURE(fail_new);
    rt.fail_new_event = fail_new;
    rt.fail_record = !fail_new;
    Alloc::Block* x = a.allocate(3000, s1);
    char* xp = x->ptr;
    a.record_stream(x, s2);
    const int before = rt.stream_waits;
    a.free(x);
    CHECK(rt.stream_waits == before + 1);
    CHECK(a.pending_blocks() == 0);
    Alloc::Block* y = a.allocate(3000, s1);
    CHECK(y->ptr == xp);  // released at once
    a.free(y);
  }
}

TEST_CASE("caching allocator: out of memory empties the cache and retries, then names the sizes") {
  FakeRuntime rt;
  rt.capacity = 40 * MiB;
  Alloc a(FakeDriver{&rt}, "fake:0");
  a.free(a.allocate(20 * MiB, s1));  // a cached 20 MiB segment
  Alloc::Block* x = a.allocate(25 * MiB, s1);  // 26 MiB does not fit beside it: the cache goes back
  CHECK(a.stats().num_device_frees == 1);
  CHECK(a.stats().reserved == int64_t(26 * MiB));
  // A held-back block is waited for before the retry.
  a.record_stream(x, s2);
  a.free(x);
  Alloc::Block* y = a.allocate(30 * MiB, s1);
  CHECK(rt.waits == 1);
  CHECK(a.stats().reserved == int64_t(30 * MiB));
  // Nothing left to give back: a named error, and the allocator still works afterwards.
  CHECK_THROWS_WITH_AS(a.allocate(20 * MiB, s1),
                       doctest::Contains("cuda: out of memory allocating 20971520 bytes (segment 20971520) on fake:0"),
                       Error);
  a.free(y);
  Alloc::Block* z = a.allocate(20 * MiB, s1);
  CHECK(z->ptr != nullptr);
  a.free(z);
  a.empty_cache();
  CHECK(rt.used == 0);
}

TEST_CASE("caching allocator: destruction returns every segment, with live, free and held-back blocks") {
  FakeRuntime rt;
  {
    Alloc a(FakeDriver{&rt}, "fake:0");
    a.allocate(3 * MiB, s1);             // live, split from a 20 MiB segment
    a.free(a.allocate(1000, s1));        // cached in a small segment
    Alloc::Block* held = a.allocate(512, s2);
    a.record_stream(held, s3);
    a.free(held);                        // waits on s3's event
    a.allocate(12 * MiB, s2);            // a segment that is one live block
    CHECK(rt.segments.size() == 4);
  }
  // Every segment went back; the block records went with them (LeakSanitizer checks that part).
  CHECK(rt.segments.empty());
  CHECK(rt.used == 0);
  CHECK(rt.frees == 4);
  CHECK(rt.waits == 1);
}

// A child run of this binary registers its check before the cache exists, so the check runs after
// the cache's own exit hook (atexit runs in reverse order) and sees what the process leaves behind.
TEST_CASE("cpu allocator: the cache of large blocks is emptied at exit") {
  static bool cached_before_exit = false;
  if (std::getenv("VT_CPU_CACHE_EXIT_CHILD")) {
    std::atexit([] { std::_Exit(cached_before_exit && cpu::large_cache_bytes() == 0 ? 0 : 3); });
    { Tensor t = zeros({1 << 20}); }  // 4 MiB: cached when it dies
    cached_before_exit = cpu::large_cache_bytes() >= 4 * MiB;
    std::exit(0);
  }
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  const int status = std::system(
      ("VT_CPU_CACHE_EXIT_CHILD=1 '" + self + "' '--test-case=*emptied at exit*' > /dev/null 2>&1").c_str());
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
