// cpu_allocator.cpp: host memory for CPU tensors.
//
// Small blocks come from aligned_alloc. Large blocks (>= 1 MiB) are cached after release, keyed by
// their size rounded up to 2 MiB, because glibc hands such blocks straight to mmap/munmap and the
// page faults of re-touching fresh pages would cost more than the arithmetic of a 16M-element
// elementwise op (the same reason PyTorch caches device memory). The cache keeps at most
// kMaxCached bytes; beyond that blocks are freed. At exit the cache frees what it holds and closes:
// blocks released later (storages held by statics) are freed at once, so LeakSanitizer finds nothing.
#include <cstdlib>
#include <map>
#include <mutex>

#include "cpu_backend.h"

namespace vt::cpu {

namespace {

constexpr size_t kLarge = size_t(1) << 20;
constexpr size_t kRound = size_t(2) << 20;
constexpr size_t kMaxCached = size_t(2) << 30;

struct LargeCache {
  std::mutex mu;
  std::multimap<size_t, void*> free_blocks;
  size_t cached = 0;
  bool closed = false;  // after exit: nothing more is cached

  void* get(size_t size) {
    {
      std::lock_guard<std::mutex> lock(mu);
      auto it = free_blocks.find(size);
      if (it != free_blocks.end()) {
        void* p = it->second;
        free_blocks.erase(it);
        cached -= size;
        return p;
      }
    }
    void* p = std::aligned_alloc(kRound, size);
    return p;
  }
  void put(void* p, size_t size) {
    std::lock_guard<std::mutex> lock(mu);
    if (closed || cached + size > kMaxCached) {
      std::free(p);
      return;
    }
    free_blocks.emplace(size, p);
    cached += size;
  }
  void close() {
    std::lock_guard<std::mutex> lock(mu);
    for (auto& [size, p] : free_blocks) std::free(p);
    free_blocks.clear();
    cached = 0;
    closed = true;
  }
};

// Never destroyed (storages may outlive static teardown), but emptied and closed at exit.
LargeCache& cache() {
  static LargeCache* c = [] {
    auto* made = new LargeCache();
    std::atexit([] { cache().close(); });
    return made;
  }();
  return *c;
}

}  // namespace

size_t large_cache_bytes() {
  LargeCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.cached;
}

namespace {

// Small tensors (<= 4 KiB) keep their bytes inside the same heap block as the Storage and its
// refcount: one allocation per tensor instead of three, which is most of the per-op cost of
// 16-element ops (see bench_tensor's small-op chain).
template <size_t N>
struct InlineBlock {
  Storage storage;
  alignas(64) unsigned char bytes[N];
};

template <size_t N>
std::shared_ptr<Storage> inline_storage(size_t nbytes) {
  auto blk = std::make_shared<InlineBlock<N>>();
  blk->storage.data = blk->bytes;
  blk->storage.nbytes = nbytes;
  blk->storage.device = Device::cpu();
  return std::shared_ptr<Storage>(blk, &blk->storage);
}

}  // namespace

std::shared_ptr<Storage> CpuBackend::allocate(size_t nbytes, Device) {
  if (nbytes <= 64) return inline_storage<64>(nbytes);
  if (nbytes <= 256) return inline_storage<256>(nbytes);
  if (nbytes <= 1024) return inline_storage<1024>(nbytes);
  if (nbytes <= 4096) return inline_storage<4096>(nbytes);
  auto s = std::make_shared<Storage>();
  s->nbytes = nbytes;
  s->device = Device::cpu();
  if (nbytes >= kLarge) {
    size_t size = (nbytes + kRound - 1) / kRound * kRound;
    void* p = cache().get(size);
    VT_CHECK(p != nullptr, "cpu: out of memory allocating ", nbytes, " bytes");
    s->data = p;
    s->owner = std::shared_ptr<void>(p, [size](void* q) { cache().put(q, size); });
    return s;
  }
  // 64-byte alignment (one cache line, one AVX-512 vector); at least one line so data() is valid.
  size_t padded = std::max<size_t>((nbytes + 63) / 64 * 64, 64);
  void* p = std::aligned_alloc(64, padded);
  VT_CHECK(p != nullptr, "cpu: out of memory allocating ", nbytes, " bytes");
  s->data = p;
  s->owner = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
  return s;
}

}  // namespace vt::cpu
