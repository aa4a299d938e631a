// Tensor core: views share storage, contiguous() copies only when needed, creation functions,
// printing, error messages, thread-count independence of reductions and random streams.
#include <doctest/doctest.h>
#include <omp.h>

#include <cmath>
#include <filesystem>

#include "vt/io/tensor_io.h"
#include "vt/ops.h"
#include "vt/random.h"

using namespace vt;

static std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST_CASE("views share storage and compute strides like PyTorch") {
  Tensor a = arange(0, 24, 1, DType::F32).reshape({2, 3, 4});
  CHECK(a.strides() == Shape{12, 4, 1});
  Tensor t = a.transpose(0, 2);
  CHECK(t.shape() == Shape{4, 3, 2});
  CHECK(t.strides() == Shape{1, 4, 12});
  CHECK(t.storage() == a.storage());
  CHECK_FALSE(t.is_contiguous());
  Tensor s = a.slice(2, 1, 4, 2);  // a[:, :, 1:4:2]
  CHECK(s.shape() == Shape{2, 3, 2});
  CHECK(s.strides() == Shape{12, 4, 2});
  CHECK(s.offset() == 1);
  CHECK(s.tolist<float>() == std::vector<float>{1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23});
  Tensor e = a.select(1, 2).unsqueeze(1).expand({2, 5, 4});
  CHECK(e.strides() == Shape{12, 0, 1});
  CHECK(e.storage() == a.storage());
  CHECK(a.view({6, 4}).storage() == a.storage());
  CHECK(a.permute({1, 0, 2}).reshape({3, 8}).storage() != a.storage());  // needs a copy
  CHECK(a.flatten().shape() == Shape{24});
  CHECK(a.unsqueeze(-1).shape() == Shape{2, 3, 4, 1});
  CHECK(a.unsqueeze(-1).squeeze().shape() == Shape{2, 3, 4});
  CHECK(a.narrow(1, 1, 2).shape() == Shape{2, 2, 4});
}

TEST_CASE("contiguous copies only when needed") {
  Tensor a = rand({3, 4});
  CHECK(a.contiguous().is_same(a));
  Tensor t = a.t();
  Tensor c = t.contiguous();
  CHECK_FALSE(c.is_same(t));
  CHECK(c.is_contiguous());
  CHECK(c.tolist<float>() == t.tolist<float>());
  CHECK(a.select(0, 1).contiguous().is_same(a.select(0, 1)) == false);  // a fresh handle...
  CHECK(a.select(0, 1).contiguous().storage() == a.storage());          // ...over the same bytes
}

TEST_CASE("view refuses incompatible strides, reshape copies") {
  Tensor a = rand({4, 6}).t();
  CHECK_THROWS_AS(a.view({24}), Error);
  CHECK(a.reshape({24}).tolist<float>() == a.contiguous().view({24}).tolist<float>());
  CHECK(error_of([&] { (void)a.reshape({5, 5}); }).find("invalid for input of size 24") != std::string::npos);
}

TEST_CASE("creation functions") {
  CHECK(arange(5).tolist<int64_t>() == std::vector<int64_t>{0, 1, 2, 3, 4});
  CHECK(arange(1, 2, 0.25, DType::F64).tolist<double>() == std::vector<double>{1, 1.25, 1.5, 1.75});
  CHECK(arange(5, 0, -2).tolist<int64_t>() == std::vector<int64_t>{5, 3, 1});
  CHECK(linspace(0, 1, 5, DType::F64).tolist<double>() == std::vector<double>{0, 0.25, 0.5, 0.75, 1});
  CHECK(linspace(2, 2, 1).tolist<float>() == std::vector<float>{2});
  CHECK(eye(2, 3).tolist<float>() == std::vector<float>{1, 0, 0, 0, 1, 0});
  CHECK(full({2}, 7.5, DType::BF16).tolist<float>() == std::vector<float>{7.5, 7.5});
  CHECK(zeros({0, 3}).numel() == 0);
  CHECK(ones({}, DType::I32).item() == 1);
  std::vector<uint16_t> raw = {0x3F80, 0xC000};  // bf16 1, -2
  CHECK(from_blob(raw.data(), {2}, DType::BF16).tolist<float>() == std::vector<float>{1, -2});
}

TEST_CASE("printing follows PyTorch") {
  CHECK(from_vector<float>({1, 2.5f, -3}).str() == "tensor([ 1.0000,  2.5000, -3.0000])");
  CHECK(from_vector<float>({1, 2}).str() == "tensor([1., 2.])");
  CHECK(from_vector<int64_t>({3, -10}).str() == "tensor([  3, -10])");
  CHECK(from_vector<bool>({true, false}).str() == "tensor([ True, False])");
  CHECK(full({2, 2}, 0.5, DType::BF16).str() == "tensor([[0.5000, 0.5000],\n        [0.5000, 0.5000]], dtype=torch.bfloat16)");
  std::string big = arange(0, 2000, 1, DType::F32).str();
  CHECK(big.find("...") != std::string::npos);
  CHECK(big.find("size=(2000)") != std::string::npos);
  CHECK(big.size() < 200);
  CHECK(scalar_tensor(3).str() == "tensor(3.)");
}

TEST_CASE("shape, dtype and index errors name the op, the operand and the sizes") {
  Tensor a = rand({2, 3}), b = rand({4, 3});
  std::string m = error_of([&] { (void)add(a, b); });
  CHECK(m.find("add") != std::string::npos);
  CHECK(m.find("(2, 3)") != std::string::npos);
  CHECK(m.find("(4, 3)") != std::string::npos);
  m = error_of([&] { (void)matmul(a, b); });
  CHECK(m.find("matmul") != std::string::npos);
  CHECK(m.find("cannot be multiplied") != std::string::npos);
  m = error_of([&] { (void)index_select(a, 0, from_vector<int64_t>({0, 5})); });
  CHECK(m.find("index_select: index 5") != std::string::npos);
  m = error_of([&] { (void)a.permute({0, 0}); });
  CHECK(m.find("permute") != std::string::npos);
  m = error_of([&] { (void)a.select(3, 0); });
  CHECK(m.find("dim 3 out of range") != std::string::npos);
  m = error_of([&] { (void)where(a, a, a); });
  CHECK(m.find("where: condition must be bool") != std::string::npos);
  m = error_of([&] { (void)a.data<double>(); });
  CHECK(m.find("float32") != std::string::npos);
  m = error_of([&] { (void)gather(a, 1, from_vector<int64_t>({0, 1}, {1, 2})); });
  CHECK(m.empty());
  m = error_of([&] { (void)gather(a, 1, from_vector<int64_t>({0, 9}, {1, 2})); });
  CHECK(m.find("gather: index 9") != std::string::npos);
  m = error_of([&] { (void)empty({2, -1}); });
  CHECK(m.find("negative dim") != std::string::npos);
  CHECK(error_of([&] { (void)Device::parse("tpu"); }).find("tpu") != std::string::npos);
}

TEST_CASE("reductions and matmul are bitwise identical with 1 and 2 threads") {
  Generator gen(7);
  Tensor x = randn({3, 300000}, DType::F32, &gen);
  Tensor m = randn({257, 129}, DType::F32, &gen), n = randn({129, 263}, DType::F32, &gen);
  auto run = [&](int threads) {
    omp_set_num_threads(threads);
    std::vector<float> out = sum(x).reshape({1}).tolist<float>();
    for (float v : sum(x, {1}).tolist<float>()) out.push_back(v);
    for (float v : sum(x, {0}).tolist<float>()) out.push_back(v);
    for (float v : cumsum(x.narrow(1, 0, 1000), 1).tolist<float>()) out.push_back(v);
    for (float v : matmul(m, n).tolist<float>()) out.push_back(v);
    return out;
  };
  std::vector<float> one = run(1), two = run(2);
  omp_set_num_threads(2);
  REQUIRE(one.size() == two.size());
  CHECK(std::memcmp(one.data(), two.data(), one.size() * sizeof(float)) == 0);
}

TEST_CASE("the same seed gives the same random tensor regardless of thread count") {
  auto draw = [](int threads) {
    omp_set_num_threads(threads);
    Generator g(99);
    std::vector<double> v = rand({100000}, DType::F64, &g).tolist<double>();
    for (float f : randn({70001}, DType::F32, &g).tolist<float>()) v.push_back(f);
    for (int64_t i : randint(-3, 9, {50000}, DType::I64, &g).tolist<int64_t>()) v.push_back(double(i));
    return v;
  };
  std::vector<double> a = draw(1), b = draw(2);
  omp_set_num_threads(2);
  CHECK(a == b);
  Generator g1(5), g2(6);
  CHECK(rand({8}, DType::F32, &g1).tolist<float>() != rand({8}, DType::F32, &g2).tolist<float>());
  // consecutive calls draw different numbers
  Generator g3(5);
  CHECK(rand({8}, DType::F32, &g3).tolist<float>() != rand({8}, DType::F32, &g3).tolist<float>());
}

TEST_CASE("random distributions have the right moments") {
  Generator g(3);
  Tensor u = rand({200000}, DType::F64, &g);
  CHECK(std::fabs(mean(u).item() - 0.5) < 0.005);
  Tensor n = normal({200000}, 2.0, 3.0, DType::F64, &g);
  CHECK(std::fabs(mean(n).item() - 2.0) < 0.05);
  CHECK(std::fabs(std::sqrt(var(n).item()) - 3.0) < 0.05);
  Tensor ri = randint(0, 4, {100000}, DType::I64, &g);
  CHECK(amin(ri).item() == 0);
  CHECK(amax(ri).item() == 3);
  Tensor p = full({100000}, 0.3, DType::F32);
  CHECK(std::fabs(mean(bernoulli(p, &g)).item() - 0.3) < 0.01);
  // multinomial without replacement: distinct indices, zero-weight categories never drawn
  Tensor w = from_vector<float>({0, 1, 2, 0, 3, 4}, {1, 6});
  std::vector<int64_t> d = multinomial(w, 4, false, &g).tolist<int64_t>();
  std::sort(d.begin(), d.end());
  CHECK(d == std::vector<int64_t>{1, 2, 4, 5});
  Tensor counts = zeros({6}, DType::F64);
  std::vector<int64_t> draws = multinomial(from_vector<double>({1, 0, 3}), 40000, true, &g).tolist<int64_t>();
  int64_t c0 = std::count(draws.begin(), draws.end(), 0), c1 = std::count(draws.begin(), draws.end(), 1);
  CHECK(c1 == 0);
  CHECK(std::fabs(c0 / 40000.0 - 0.25) < 0.01);
}

TEST_CASE("dtype promotion follows PyTorch") {
  Tensor i = arange(3), f = rand({3}), h = rand({3}, DType::BF16), s = scalar_tensor(2.0, DType::F64);
  CHECK(add(i, f).dtype() == DType::F32);
  CHECK(add(h, f).dtype() == DType::F32);
  CHECK(add(h, s).dtype() == DType::BF16);  // a 0-d tensor of the same category does not promote
  CHECK(add(i, s).dtype() == DType::F64);   // ...but a higher category does
  CHECK(mul(i, 0.5).dtype() == DType::F32);
  CHECK(mul(i, 2.0).dtype() == DType::I64);
  CHECK(div(i, i).dtype() == DType::F32);
  CHECK(sum(from_vector<bool>({true, true})).item() == 2);
  CHECK(sum(from_vector<bool>({true, true})).dtype() == DType::I64);
}

TEST_CASE("safetensors round trip through tensors, views included") {
  auto dir = std::filesystem::temp_directory_path() / "vt_test_tensor_io";
  std::filesystem::create_directories(dir);
  std::string path = (dir / "t.safetensors").string();
  Tensor a = randn({3, 5}).t();  // non-contiguous
  Tensor b = arange(0, 7, 1, DType::BF16);
  io::save_safetensors(path, {{"model.a", a}, {"model.b", b}}, {{"format", "pt"}});
  auto m = io::load_safetensors(path);
  CHECK(m.at("model.a").tolist<float>() == a.tolist<float>());
  CHECK(m.at("model.b").dtype() == DType::BF16);
  auto z = io::load_safetensors(path, true);  // zero-copy view of the mapping
  CHECK(z.at("model.b").tolist<float>() == b.tolist<float>());
  std::filesystem::remove_all(dir);
}

TEST_CASE("SkipInitGuard: random creation inside it draws nothing and returns the right shape") {
  Generator g(5);
  {
    SkipInitGuard skip;
    CHECK(skip_init_enabled());
    const Tensor t = normal({3, 4}, 0.0, 1.0, {}, &g);
    CHECK(t.shape() == Shape{3, 4});
    CHECK(rand({2}, {}, &g).shape() == Shape{2});
    CHECK(g.offset() == 0);  // no Philox call reserved
  }
  CHECK_FALSE(skip_init_enabled());
  const Tensor u = rand({2}, {}, &g);
  CHECK(g.offset() == 1);
  CHECK(amax(u).item() < 1.0);
}

TEST_CASE("embedding backward: rows summed in index order, equal to a float64 sum, bitwise equal on 1 and 2 threads") {
  // index_select's backward adds whole gradient rows into the picked rows of a zero table; each
  // thread owns a block of rows, so a row's repeated contributions add in index order everywhere.
  const int64_t V = 1000, D = 24, T = 3000;
  default_generator().manual_seed(11);
  Tensor w = randn({V, D});
  w.requires_grad_(true);
  std::vector<int64_t> ids(T);
  for (int64_t t = 0; t < T; ++t) ids[t] = (t * 7919) % 97 + (t % 3 == 0 ? 900 : 0);  // repeats, two row blocks
  for (int64_t t = 0; t < T; t += 50) ids[t] = std::vector<int64_t>{0, 499, 500, 999}[(t / 50) % 4];  // block edges
  const Tensor index = from_vector(ids);
  const Tensor g = randn({T, D});
  auto grad_with = [&](int threads) {
    omp_set_num_threads(threads);
    w.zero_grad();
    sum(embedding(w, index) * g).backward();
    omp_set_num_threads(2);
    return w.grad().clone();
  };
  const Tensor one = grad_with(1), two = grad_with(2);
  CHECK(amax(abs(one - two)).item() == 0.0);
  // Reference: the same sums in float64, in index order.
  std::vector<double> ref(V * D, 0.0);
  const Tensor gc = g.contiguous();
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < D; ++j) ref[ids[t] * D + j] += gc.data<float>()[t * D + j];
  const Tensor want = from_vector(ref).view({V, D});
  CHECK(amax(abs(two.to(DType::F64) - want)).item() < 1e-4);
  CHECK(sum(ne(two, 0.0)).item() > 0);
}

TEST_CASE("cumsum of one long line: chunked scan equals the float64 running sum, bitwise equal on 1 and 2 threads") {
  // Fewer lines than threads: the line runs as a scan in fixed chunks (chunk sums in parallel, then
  // offsets in order), which must not depend on the thread count and must equal a running sum.
  const int64_t L = 200003;  // several chunks and a ragged last one
  default_generator().manual_seed(5);
  const Tensor x = randn({L});
  auto with = [&](int threads) {
    omp_set_num_threads(threads);
    Tensor y = cumsum(x, 0);
    omp_set_num_threads(2);
    return y;
  };
  const Tensor one = with(1), two = with(2);
  CHECK(amax(abs(one - two)).item() == 0.0);
  double acc = 0, worst = 0;
  const float* px = x.data<float>();
  const float* py = two.data<float>();
  for (int64_t i = 0; i < L; ++i) {
    acc += px[i];
    worst = std::max(worst, std::abs(double(py[i]) - acc) / std::max(1.0, std::abs(acc)));
  }
  CHECK(worst < 1e-6);
  // Integers: exact.
  std::vector<int64_t> kv(L);
  for (int64_t i = 0; i < L; ++i) kv[i] = (i * 3) % 7;
  const Tensor k = from_vector(kv);
  const Tensor ck = cumsum(k, 0);
  int64_t s = 0, bad = 0;
  for (int64_t i = 0; i < L; ++i) bad += (ck.data<int64_t>()[i] != (s += (i * 3) % 7));
  CHECK(bad == 0);
}
