// The CUDA backend against the CPU and PyTorch: the core op table (forward and backward), random
// streams bit-identical to the CPU's, copies and casts, the caching allocator, guard bytes around
// outputs, non-contiguous inputs, reductions, sort, index errors and matmul layouts.
//
// Every case passes with a message when no GPU is visible (CI has none); tests/test_ops_core.cpp
// runs the same op table on the CPU.
#ifdef VT_WITH_CUDA
#include <cmath>
#include <cstring>
#include <limits>

#include "op_table.h"
#include "vt/backend.h"
#include "cuda_test_util.h"
#include "vt/cuda.h"
#include "vt/random.h"

using namespace vt;

using test::bytes_of;
using test::kCpu;
using test::kGpu;

namespace {

// The raw bytes of a whole storage (for guard checks).
std::vector<uint8_t> storage_bytes(const Tensor& t) {
  Tensor all = make_tensor(t.storage(), Layout(Shape{static_cast<int64_t>(t.storage()->nbytes)}), DType::U8);
  return bytes_of(all);
}

// Random data of any dtype on the CPU, with float specials mixed in for float dtypes.
Tensor random_cpu(const Shape& s, DType t, uint64_t seed, bool specials = false) {
  Generator g(seed);
  if (!is_floating(t)) {
    if (t == DType::Bool) return lt(rand(s, DType::F32, &g), 0.5);
    return t == DType::U8 ? randint(0, 256, s, t, &g) : randint(-1000, 1000, s, t, &g);
  }
  Tensor x = mul(randn(s, DType::F64, &g), 3.0);
  if (specials && x.numel() >= 8) {
    double* p = x.data<double>();
    const double sp[] = {NAN, INFINITY, -INFINITY, -0.0, 0.0, 1e-40, 1e300, -NAN};
    for (int i = 0; i < 8; ++i) p[(i * 7919) % x.numel()] = sp[i];
  }
  return x.to(t);
}

std::string check_close(const Tensor& got, const Tensor& want, double rtol, double atol) {
  return test::compare(got.to(kCpu), want.to(kCpu), rtol, atol);
}

double tol_for(DType t) {
  switch (t) {
    case DType::F64: return 1e-10;
    case DType::F32: return 1e-5;
    default: return 1e-2;
  }
}

}  // namespace

TEST_CASE("cuda: core ops match PyTorch (forward and backward)") {
  VT_SKIP_WITHOUT_GPU();
  const auto& fx = test::load_fixture("ops_core");
  REQUIRE(fx.cases.size() > 200);
  int failed = 0;
  for (auto& c : fx.cases) {
    auto fails = test::run_case(c, fx, kGpu);
    for (auto& f : fails) MESSAGE(f);
    failed += !fails.empty();
  }
  const int total = static_cast<int>(fx.cases.size());
  MESSAGE((total - failed), " of ", total, " cases pass on CUDA");
  CHECK(failed == 0);
}

TEST_CASE("cuda: random tensors equal the CPU's bit for bit for the same seed") {
  VT_SKIP_WITHOUT_GPU();
  const Shape s{1000, 37};
  for (DType t : {DType::F32, DType::F64, DType::BF16, DType::F16}) {
    CAPTURE(dtype_name(t));
    for (int dist = 0; dist < 4; ++dist) {
      CAPTURE(dist);
      Generator gc(1234 + dist), gg(1234 + dist);
      auto draw = [&](Device d, Generator* g) {
        switch (dist) {
          case 0: return rand(s, {t, d}, g);
          case 1: return randn(s, {t, d}, g);
          case 2: return uniform(s, -2.0, 3.0, {t, d}, g);  // the CPU's affine map is fma-contracted
          default: return normal(s, 1.0, 2.0, {t, d}, g);
        }
      };
      Tensor a = draw(kCpu, &gc), b = draw(kGpu, &gg);
      CHECK(bytes_of(a) == bytes_of(b));
      // The second call of each generator draws a different stream, still equal across devices.
      CHECK(bytes_of(draw(kCpu, &gc)) == bytes_of(draw(kGpu, &gg)));
    }
  }
  for (DType t : {DType::I64, DType::I32, DType::F32, DType::U8}) {
    Generator gc(99), gg(99);
    const int64_t lo = t == DType::U8 ? 0 : -5;
    CHECK(bytes_of(randint(lo, 200, {4097}, {t, kCpu}, &gc)) == bytes_of(randint(lo, 200, {4097}, {t, kGpu}, &gg)));
  }
  Generator gc(7), gg(7);
  Tensor p = rand({513}, DType::F32, &gc);
  Generator gp(7);
  (void)rand({513}, DType::F32, &gp);  // gp now at the same offset as gc
  CHECK(bytes_of(bernoulli(p, &gc)) == bytes_of(bernoulli(p.to(kGpu), &gp)));
}

TEST_CASE("cuda: copies round-trip and casts match the CPU bit for bit") {
  VT_SKIP_WITHOUT_GPU();
  const DType all[] = {DType::F32, DType::F64, DType::BF16, DType::F16, DType::I32, DType::I64, DType::U8, DType::Bool};
  for (DType t : all) {
    CAPTURE(dtype_name(t));
    Tensor x = random_cpu({3, 5, 7}, t, 11, true);
    Tensor g = x.to(kGpu);
    CHECK(g.device() == kGpu);
    CHECK(bytes_of(g) == bytes_of(x));
    // Device strided copy (a transposed view made contiguous) and a cross-device strided read.
    CHECK(bytes_of(g.transpose(0, 2).contiguous()) == bytes_of(x.transpose(0, 2).contiguous()));
    for (DType u : all) {
      CAPTURE(dtype_name(u));
      Tensor c = cast(x, u), cg = cast(g, u);
      CHECK(bytes_of(cg) == bytes_of(c));
      CHECK(bytes_of(cast(g.transpose(0, 1), u)) == bytes_of(cast(x.transpose(0, 1), u)));
    }
  }
  // Larger than the pinned staging buffers, odd length.
  Tensor big = random_cpu({5 * 1024 * 1024 + 3}, DType::F32, 5);
  CHECK(bytes_of(big.to(kGpu)) == bytes_of(big));
  // Host -> device into a strided view, device -> host into a strided host view.
  Tensor dst = zeros({6, 8}, {DType::F32, kGpu});
  Tensor src = random_cpu({8, 3}, DType::F32, 6);
  Tensor view = dst.slice(0, 0, 6, 2).transpose(0, 1);  // (8, 3), non-contiguous
  kernels::backend(kGpu).copy(src, view);
  CHECK(bytes_of(view) == bytes_of(src));
  Tensor host = zeros({3, 16}, DType::F64);
  Tensor host_view = host.slice(1, 0, 16, 2);  // (3, 8) stride 2
  kernels::backend(kGpu).copy(view.transpose(0, 1), host_view);  // cast f32 -> f64 too
  CHECK(bytes_of(host_view) == bytes_of(cast(src.transpose(0, 1), DType::F64)));
  CHECK(bytes_of(host.slice(1, 1, 16, 2)) == bytes_of(zeros({3, 8}, DType::F64)));
  // fill through every dtype, including a strided view and a non-representable value.
  for (DType t : all) {
    Tensor a = zeros({4, 6}, {t, kGpu}), b = zeros({4, 6}, t);
    Tensor av = a.slice(1, 1, 6, 2), bv = b.slice(1, 1, 6, 2);
    fill_(av, 2.7);
    fill_(bv, 2.7);
    CHECK(bytes_of(a) == bytes_of(b));
  }
}

TEST_CASE("cuda: the caching allocator reuses blocks and its statistics add up") {
  VT_SKIP_WITHOUT_GPU();
  cuda::synchronize();
  cuda::empty_cache();
  const cuda::MemoryStats s0 = cuda::memory_stats();
  CHECK(s0.reserved >= s0.allocated);
  CHECK(s0.allocated >= s0.requested);
  void* first = nullptr;
  {
    Tensor a = empty({1000}, {DType::F32, kGpu});
    first = a.raw_data();
    const cuda::MemoryStats s1 = cuda::memory_stats();
    CHECK(s1.allocated == s0.allocated + 4096);  // 4000 bytes round up to 512-byte multiples
    CHECK(s1.requested == s0.requested + 4000);
    CHECK(s1.peak_allocated >= s1.allocated);
    CHECK(s1.num_allocs == s0.num_allocs + 1);
  }
  const cuda::MemoryStats s2 = cuda::memory_stats();
  CHECK(s2.allocated == s0.allocated);
  CHECK(s2.requested == s0.requested);
  CHECK(s2.num_frees == s0.num_frees + 1);
  {
    Tensor b = empty({1000}, {DType::F32, kGpu});
    CHECK(b.raw_data() == first);  // the freed block comes back
    CHECK(cuda::memory_stats().num_cache_hits == s2.num_cache_hits + 1);
  }
  // A large block is split for a smaller request and merges back when it is freed.
  const int64_t n64 = 64 << 20;
  void* big_ptr = nullptr;
  { big_ptr = empty({n64}, {DType::U8, kGpu}).raw_data(); }
  const cuda::MemoryStats s3 = cuda::memory_stats();
  {
    Tensor half = empty({n64 / 2}, {DType::U8, kGpu});
    const cuda::MemoryStats s4 = cuda::memory_stats();
    CHECK(half.raw_data() == big_ptr);
    CHECK(s4.num_device_allocs == s3.num_device_allocs);  // no cudaMalloc: served from the cache
    CHECK(s4.num_splits == s3.num_splits + 1);
  }
  const cuda::MemoryStats s5 = cuda::memory_stats();
  CHECK(s5.num_merges >= s3.num_merges + 1);
  { CHECK(empty({n64}, {DType::U8, kGpu}).raw_data() == big_ptr); }
  CHECK(s5.reserved >= s5.allocated);
  cuda::empty_cache();
  const cuda::MemoryStats s6 = cuda::memory_stats();
  CHECK(s6.reserved <= s5.reserved - n64);  // the free 64 MiB segment went back to the driver
  CHECK(s6.reserved >= s6.allocated);
  MESSAGE("allocator: ", s6.str());
  // The device index is honoured (not the current device), and a missing device is named.
  const int n = cuda::device_count();
  CHECK_THROWS_WITH_AS(empty({4}, {DType::F32, Device::cuda(n)}), doctest::Contains("does not exist"), Error);
  if (n > 1) {
    Tensor t = full({4}, 3.0, {DType::F32, Device::cuda(1)});
    CHECK(t.storage()->device == Device::cuda(1));
    CHECK(t.to(kCpu).tolist<float>() == std::vector<float>(4, 3.f));
  }
}

TEST_CASE("cuda: kernels write only inside their output view (guard bytes)") {
  VT_SKIP_WITHOUT_GPU();
  kernels::Backend& gpu = kernels::backend(kGpu);
  kernels::Backend& cpu = kernels::cpu_backend();
  const int64_t G = 67;  // guard elements on each side
  for (DType t : {DType::F32, DType::BF16, DType::F64, DType::F16}) {
    CAPTURE(dtype_name(t));
    // out views (4, 6) in the middle of a guarded buffer, on both devices.
    auto guarded = [&](Device d, DType dt, const Shape& s) {
      Tensor buf = full({G + s.numel() + G}, -3.25, {dt, d});
      return buf.narrow(0, G, s.numel()).view(s);
    };
    auto run = [&](const char* what, DType out_dtype, const Shape& s,
                   const std::function<void(kernels::Backend&, Device, const Tensor&)>& k) {
      CAPTURE(what);
      Tensor og = guarded(kGpu, out_dtype, s), oc = guarded(kCpu, out_dtype, s);
      const std::vector<uint8_t> before = storage_bytes(og);
      k(gpu, kGpu, og);
      k(cpu, kCpu, oc);
      const std::vector<uint8_t> after = storage_bytes(og);
      const size_t es = dtype_size(out_dtype), guard = G * es;
      CHECK(std::memcmp(before.data(), after.data(), guard) == 0);
      CHECK(std::memcmp(before.data() + before.size() - guard, after.data() + after.size() - guard, guard) == 0);
      const double tol = tol_for(out_dtype);
      CHECK_MESSAGE(check_close(og, oc, tol, tol).empty(), what, ": ", check_close(og, oc, tol, tol));
    };
    Tensor xc = random_cpu({4, 6}, t, 1), yc = random_cpu({6}, t, 2);
    Tensor xg = xc.to(kGpu), yg = yc.to(kGpu);
    auto on = [&](Device d, const Tensor& c, const Tensor& g) { return d.is_cpu() ? c : g; };
    run("copy", t, {4, 6}, [&](kernels::Backend& b, Device d, const Tensor& o) {
      b.copy(on(d, xc, xg).transpose(0, 1).contiguous().transpose(0, 1), o);
    });
    run("fill", t, {4, 6}, [&](kernels::Backend& b, Device, const Tensor& o) { b.fill(o, 1.5); });
    run("unary", t, {4, 6}, [&](kernels::Backend& b, Device d, const Tensor& o) {
      b.unary(kernels::UnaryOp::Tanh, on(d, xc, xg), o, 0, 0);
    });
    run("binary broadcast", t, {4, 6}, [&](kernels::Backend& b, Device d, const Tensor& o) {
      Tensor y = on(d, yc, yg);
      b.binary(kernels::BinaryOp::Add, on(d, xc, xg), make_tensor(y.storage(), Layout({4, 6}, {0, 1}, 0), t), o, 0.5);
    });
    run("where", t, {4, 6}, [&](kernels::Backend& b, Device d, const Tensor& o) {
      Tensor x = on(d, xc, xg);
      b.where(gt(x, 0.0), x, zeros({4, 6}, {t, d}), o);
    });
    run("reduce", t, {4, 1}, [&](kernels::Backend& b, Device d, const Tensor& o) {
      b.reduce(kernels::ReduceOp::Sum, on(d, xc, xg), 2u, o);
    });
    run("argmax", DType::I64, {1, 6}, [&](kernels::Backend& b, Device d, const Tensor& o) {
      b.reduce(kernels::ReduceOp::ArgMax, on(d, xc, xg), 1u, o);
    });
    run("cumsum", t, {4, 6}, [&](kernels::Backend& b, Device d, const Tensor& o) { b.cumsum(on(d, xc, xg), 1, o); });
    run("index_select", t, {3, 6}, [&](kernels::Backend& b, Device d, const Tensor& o) {
      b.index_select(on(d, xc, xg), 0, from_vector<int64_t>({3, 0, 3}).to(d), o);
    });
    run("gather", t, {4, 2}, [&](kernels::Backend& b, Device d, const Tensor& o) {
      b.gather(on(d, xc, xg), 1, from_vector<int64_t>({5, 0, 1, 1, 2, 3, 4, 4}, {4, 2}).to(d), o);
    });
    run("scatter_add", t, {4, 6}, [&](kernels::Backend& b, Device d, const Tensor& o) {
      b.copy(on(d, xc, xg), o);
      b.scatter_add(o, 1, from_vector<int64_t>({5, 5, 1, 1, 2, 2, 0, 4}, {4, 2}).to(d), ones({4, 2}, {t, d}));
    });
    run("bmm", t, {1, 4, 4}, [&](kernels::Backend& b, Device d, const Tensor& o) {
      Tensor x = on(d, xc, xg).view({1, 4, 6});
      b.bmm(x, x.transpose(1, 2), o);
    });
    run("random", t, {4, 6}, [&](kernels::Backend& b, Device, const Tensor& o) {
      b.random(kernels::RandomDist::Normal, o, 0.5, 2.0, 42, 3);
    });
    run("sort values", t, {4, 6}, [&](kernels::Backend& b, Device d, const Tensor& o) {
      b.sort_rows(on(d, xc, xg), true, o, empty({4, 6}, {DType::I64, d}));
    });
    run("sort indices", DType::I64, {4, 6}, [&](kernels::Backend& b, Device d, const Tensor& o) {
      b.sort_rows(on(d, xc, xg), false, empty({4, 6}, {t, d}), o);
    });
    // A strided output: every second element of the buffer; the ones between must stay.
    Tensor buf = full({48}, -3.25, {t, kGpu});
    Tensor strided = buf.slice(0, 0, 48, 2).view({4, 6});
    gpu.unary(kernels::UnaryOp::Neg, xg, strided, 0, 0);
    CHECK(bytes_of(buf.slice(0, 1, 48, 2)) == bytes_of(full({24}, -3.25, t)));
    CHECK(bytes_of(strided) == bytes_of(neg(xc)));
  }
}

TEST_CASE("cuda: non-contiguous inputs give the CPU's results") {
  VT_SKIP_WITHOUT_GPU();
  for (DType t : {DType::F32, DType::BF16, DType::F64}) {
    CAPTURE(dtype_name(t));
    const double tol = tol_for(t) * 10;
    Tensor a = random_cpu({5, 7, 9}, t, 21), b = random_cpu({9, 7}, t, 22);
    Tensor ag = a.to(kGpu), bg = b.to(kGpu);
    auto both = [&](const char* what, const std::function<Tensor(const Tensor&, const Tensor&)>& f) {
      CAPTURE(what);
      std::string m = check_close(f(ag, bg), f(a, b), tol, tol);
      CHECK_MESSAGE(m.empty(), what, ": ", m);
    };
    both("permuted add", [](const Tensor& x, const Tensor& y) { return add(x.permute({2, 0, 1}), y.unsqueeze(1)); });
    both("sliced mul", [](const Tensor& x, const Tensor&) { return mul(x.slice(1, 1, 7, 3), x.slice(1, 0, 6, 3)); });
    both("expanded sub", [](const Tensor& x, const Tensor& y) {
      return sub(x.select(2, 0).unsqueeze(2).expand({5, 7, 9}), y.t().unsqueeze(0));
    });
    both("exp of transpose", [](const Tensor& x, const Tensor&) { return exp(x.transpose(0, 2)); });
    both("sum dims 0,2", [](const Tensor& x, const Tensor&) { return sum(x, {0, 2}); });
    both("sum of transpose", [](const Tensor& x, const Tensor&) { return sum(x.transpose(1, 2), {1}); });
    both("amax dim 1", [](const Tensor& x, const Tensor&) { return amax(x, {1}); });
    both("argmin of slice", [](const Tensor& x, const Tensor&) { return argmin(x.slice(2, 1, 9, 2), 2); });
    both("cumsum dim 0", [](const Tensor& x, const Tensor&) { return cumsum(x.transpose(0, 1), 1); });
    both("matmul transposed", [](const Tensor& x, const Tensor& y) { return matmul(x.transpose(1, 2), y.t()); });
    both("matmul both transposed", [](const Tensor& x, const Tensor& y) {
      return matmul(y.t().unsqueeze(0).expand({5, 7, 9}), x.transpose(1, 2).transpose(1, 2).transpose(1, 2));
    });
    both("matmul vector", [](const Tensor& x, const Tensor& y) { return matmul(x.select(0, 1), y.select(1, 2)); });
    both("matmul batch-strided", [](const Tensor& x, const Tensor& y) {
      return matmul(x.slice(0, 0, 4, 2), x.slice(0, 1, 5, 2).transpose(1, 2));
    });
    both("gather of transpose", [](const Tensor& x, const Tensor&) {
      return gather(x.transpose(0, 2), 1, from_vector<int64_t>({4, 0, 2, 1, 3, 3}, {2, 3, 1}).to(x.device()));
    });
  }
}

TEST_CASE("cuda: reductions are deterministic, first-index and NaN aware") {
  VT_SKIP_WITHOUT_GPU();
  Tensor x = random_cpu({3000001}, DType::F32, 31);
  Tensor xg = x.to(kGpu);
  Tensor s1 = sum(xg), s2 = sum(xg);
  CHECK(bytes_of(s1) == bytes_of(s2));
  CHECK(check_close(s1, sum(x), 1e-6, 1e-6).empty());
  CHECK(check_close(sum(xg.narrow(0, 0, 3000000).view({1000, 3000}), {0}),
                    sum(x.narrow(0, 0, 3000000).view({1000, 3000}), {0}), 1e-5, 1e-5)
            .empty());
  // First index of the extreme, across slices of a long reduction.
  std::vector<float> v(1 << 20, 0.f);
  v[700000] = v[900000] = 5.f;
  v[100] = v[200] = -5.f;
  Tensor big = from_vector(v).to(kGpu);
  CHECK(argmax(big).item() == 700000);
  CHECK(argmin(big).item() == 100);
  v[800000] = NAN;
  v[950000] = NAN;
  Tensor with_nan = from_vector(v).to(kGpu);
  CHECK(argmax(with_nan).item() == 800000);
  CHECK(argmin(with_nan).item() == 800000);
  CHECK(std::isnan(amax(with_nan, {}).item()));
  Tensor small = from_vector<float>({3, 1, 3, 1, NAN, 2, NAN}).to(kGpu);
  CHECK(argmax(small.narrow(0, 0, 4)).item() == 0);
  CHECK(argmin(small.narrow(0, 0, 4)).item() == 1);
  CHECK(argmax(small).item() == 4);
  // Integer and bool sums give int64.
  Tensor ints = random_cpu({1000, 17}, DType::I32, 3);
  CHECK(bytes_of(sum(ints.to(kGpu), {0})) == bytes_of(sum(ints, {0})));
  Tensor bools = random_cpu({100000}, DType::Bool, 4);
  CHECK(sum(bools.to(kGpu)).item() == sum(bools).item());
}

TEST_CASE("cuda: sort is stable, NaN largest, like the CPU") {
  VT_SKIP_WITHOUT_GPU();
  std::vector<double> v;
  for (int i = 0; i < 600; ++i) v.push_back(static_cast<double>((i * 37) % 11) - 5);
  v[3] = NAN, v[50] = -0.0, v[51] = 0.0, v[52] = -NAN, v[99] = INFINITY, v[100] = -INFINITY;
  Tensor base = from_vector(v).view({6, 100});
  for (DType t : {DType::F32, DType::BF16, DType::F16, DType::F64, DType::I32, DType::I64, DType::Bool}) {
    CAPTURE(dtype_name(t));
    Tensor x = cast(base, t);
    for (bool desc : {false, true}) {
      CAPTURE(desc);
      auto [vc, ic] = sort(x, -1, desc);
      auto [vg, ig] = sort(x.to(kGpu), -1, desc);
      CHECK(bytes_of(ig) == bytes_of(ic));
      CHECK(bytes_of(vg) == bytes_of(vc));
      auto [vc0, ic0] = sort(x, 0, desc);  // along a strided dim
      auto [vg0, ig0] = sort(x.to(kGpu), 0, desc);
      CHECK(bytes_of(ig0) == bytes_of(ic0));
    }
  }
  auto [tv, ti] = topk(cast(base, DType::F32).to(kGpu), 5, -1);
  auto [cv, ci] = topk(cast(base, DType::F32), 5, -1);
  CHECK(bytes_of(ti) == bytes_of(ci));
}

TEST_CASE("cuda: bad indices raise an error naming the op, index and position") {
  VT_SKIP_WITHOUT_GPU();
  Tensor x = random_cpu({5, 3}, DType::F32, 8).to(kGpu);
  auto message = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  std::string m = message([&] { index_select(x, 0, from_vector<int64_t>({1, 4, 10, 7}).to(kGpu)); });
  CHECK_MESSAGE(m.find("index_select: index 10 at position 2 is out of bounds for a dim of size 5") != std::string::npos,
                m);
  m = message([&] { gather(x, 1, from_vector<int64_t>({0, -1}, {1, 2}).to(kGpu)); });
  CHECK_MESSAGE(m.find("gather: index -1 at position 1") != std::string::npos, m);
  m = message([&] { scatter_add(x, 0, from_vector<int32_t>({0, 5}, {2, 1}).to(kGpu), ones({2, 1}, {DType::F32, kGpu})); });
  CHECK_MESSAGE(m.find("scatter_add: index 5 at position 1") != std::string::npos, m);
  // The device is still usable afterwards.
  CHECK(sum(x).item() == doctest::Approx(sum(x.to(kCpu)).item()));
}

TEST_CASE("cuda: matmul in every float dtype matches the CPU") {
  VT_SKIP_WITHOUT_GPU();
  for (DType t : {DType::F32, DType::F64, DType::BF16, DType::F16}) {
    CAPTURE(dtype_name(t));
    const double tol = t == DType::F64 ? 1e-10 : t == DType::F32 ? 1e-4 : 2e-2;
    Tensor a = random_cpu({3, 33, 65}, t, 1), b = random_cpu({3, 65, 17}, t, 2), w = random_cpu({65, 17}, t, 3);
    Tensor ag = a.to(kGpu), bg = b.to(kGpu), wg = w.to(kGpu);
    CHECK(check_close(matmul(ag, bg), matmul(a, b), tol, tol).empty());
    CHECK(check_close(matmul(ag, wg), matmul(a, w), tol, tol).empty());
    CHECK(check_close(matmul(bg.transpose(1, 2), ag.transpose(1, 2)), matmul(b.transpose(1, 2), a.transpose(1, 2)),
                      tol, tol)
              .empty());
    CHECK(check_close(matmul(ag.select(1, 0).unsqueeze(1), bg), matmul(a.select(1, 0).unsqueeze(1), b), tol, tol)
              .empty());  // M = 1
    CHECK(check_close(matmul(ag, bg.select(2, 0).unsqueeze(2)), matmul(a, b.select(2, 0).unsqueeze(2)), tol, tol)
              .empty());  // N = 1
  }
}

#else
#include "test_skip.h"

TEST_CASE("cuda: not built") { VT_SKIP("vt was built without CUDA (VT_CUDA=OFF or no nvcc)"); }
#endif
