// test_philox.cpp: Philox4x32-10 against Random123's known answers, the stream convention (order
// and thread-count independence), the word -> number maps and their distributions.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "vt/philox.h"

using namespace vt;

TEST_CASE("Philox4x32-10 matches the Random123 known-answer vectors (kat_vectors)") {
  struct Kat {
    uint32_t ctr[4], key[2], want[4];
  };
  const Kat kats[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8}},
      {{0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF},
       {0xFFFFFFFF, 0xFFFFFFFF},
       {0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD}},
      {{0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344},  // digits of pi
       {0xA4093822, 0x299F31D0},
       {0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1}},
  };
  for (const Kat& k : kats) {
    const uint4x got = philox4x32_10(k.ctr, k.key);
    for (int j = 0; j < 4; ++j) CHECK(got[j] == k.want[j]);
  }
}

TEST_CASE("philox_element lays out the counter as {i lo, i hi, offset lo, offset hi}, key = seed") {
  const uint64_t seed = 0x299F31D0A4093822ull, off = 0x0370734413198A2Eull, i = 0x85A308D3243F6A88ull;
  const uint4x w = philox_element(seed, off, i);
  CHECK(w == uint4x{{0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1}});
  // Neighbouring elements and calls get different blocks.
  CHECK(!(philox_element(1, 0, 0) == philox_element(1, 0, 1)));
  CHECK(!(philox_element(1, 0, 0) == philox_element(1, 1, 0)));
  CHECK(!(philox_element(1, 0, 0) == philox_element(2, 0, 0)));
  CHECK(!(philox_element(1, 0, 1ull << 32) == philox_element(1, 1, 0)));
}

TEST_CASE("word -> number maps: ranges and endpoints") {
  CHECK(uniform01(0) == 0.0f);
  CHECK(uniform01(0xFFFFFFFFu) == 1.0f - 0x1p-24f);  // below 1, exactly
  CHECK(uniform01(0x00000100u) == 0x1p-24f);
  CHECK(uniform01_f64(0, 0) == 0.0);
  CHECK(uniform01_f64(0xFFFFFFFFu, 0xFFFFFFFFu) == 1.0 - 0x1p-53);
  CHECK(randint_from(0, 0, -5, 7) == -5);
  CHECK(randint_from(0xFFFFFFFFu, 0xFFFFFFFFu, -5, 7) == 6);
  CHECK(randint_from(0xFFFFFFFFu, 0xFFFFFFFFu, INT64_MIN, INT64_MAX) == INT64_MAX - 1);
  CHECK(randint_from(0, 0x80000000u, INT64_MIN, INT64_MAX) == -1);
  CHECK(bernoulli(0, 1e-30f));
  CHECK(!bernoulli(0xFFFFFFFFu, 1.0f - 0x1p-24f));
  CHECK(bernoulli(0xFFFFFFFFu, 1.0f));
  // Box-Muller endpoints: u1 = 1 gives 0; the smallest u1 = 2^-24 gives the largest |z|.
  CHECK(normal01(0xFFFFFFFFu, 0) == 0.0f);
  CHECK(normal01(0, 0) == doctest::Approx(std::sqrt(48 * std::log(2.0))).epsilon(1e-6));
  CHECK(normal01(0, 0x80000000u) == doctest::Approx(-std::sqrt(48 * std::log(2.0))).epsilon(1e-6));
}

TEST_CASE("the fma-only log and cos agree with libm to a few ulp") {
  double worst_log = 0, worst_cos = 0;
  for (int i = 0; i < 200000; ++i) {
    const uint4x w = philox_element(99, 0, static_cast<uint64_t>(i));
    const double u = (static_cast<double>(((static_cast<uint64_t>(w[1]) << 32 | w[0]) >> 11) + 1)) * 0x1p-53;
    const double t = uniform01_f64(w[2], w[3]);
    worst_log = std::max(worst_log, std::fabs(philox_detail::log_pos(u) - std::log(u)) /
                                         std::max(std::fabs(std::log(u)), 1e-300));
    worst_cos = std::max(worst_cos, std::fabs(philox_detail::cos_turns(t) - std::cos(2 * M_PI * t)));
  }
  CHECK(worst_log < 4e-16);
  CHECK(worst_cos < 2e-15);  // libm's own argument 2 pi t is rounded; ours is exact to 1 ulp
  for (int k = 0; k < 8; ++k)  // exact at the octant points
    CHECK(philox_detail::cos_turns(k / 8.0) == doctest::Approx(std::cos(2 * M_PI * k / 8.0)).epsilon(1e-15));
  CHECK(philox_detail::cos_turns(0.0) == 1.0);
  CHECK(philox_detail::cos_turns(0.5) == -1.0);
  CHECK(philox_detail::log_pos(1.0) == 0.0);
  CHECK(philox_detail::log_pos(0x1p-24) == -24 * std::log(2.0));
}

namespace {
struct Moments {
  double mean = 0, var = 0;
};
template <class F>
Moments moments(size_t n, F f) {
  double s = 0, s2 = 0;
  for (size_t i = 0; i < n; ++i) {
    const double x = f(i);
    s += x;
    s2 += x * x;
  }
  const double mean = s / n;
  return {mean, s2 / n - mean * mean};
}
}  // namespace

TEST_CASE("distributions: mean and variance of 1M draws within 5 sigma; randint chi-square") {
  const size_t n = 1 << 20;
  const uint64_t seed = 1234, off = 7;
  // U[0,1): mean 1/2 (sd of the mean 0.289/sqrt n), variance 1/12 (sd of the variance 0.0745/sqrt n)
  auto u = moments(n, [&](size_t i) { return uniform01(philox_element(seed, off, i)[0]); });
  CHECK(std::fabs(u.mean - 0.5) < 5 * 0.2887 / std::sqrt(n));
  CHECK(std::fabs(u.var - 1.0 / 12) < 5 * 0.0745 / std::sqrt(n));
  auto u64 = moments(n, [&](size_t i) {
    const uint4x w = philox_element(seed, off, i);
    return uniform01_f64(w[2], w[3]);
  });
  CHECK(std::fabs(u64.mean - 0.5) < 5 * 0.2887 / std::sqrt(n));
  // N(0,1): mean 0 (sd 1/sqrt n), variance 1 (sd sqrt(2/n))
  auto z = moments(n, [&](size_t i) {
    const uint4x w = philox_element(seed, off, i);
    return static_cast<double>(normal01(w[0], w[1]));
  });
  CHECK(std::fabs(z.mean) < 5 / std::sqrt(n));
  CHECK(std::fabs(z.var - 1) < 5 * std::sqrt(2.0 / n));
  auto z64 = moments(n, [&](size_t i) { return normal_f64(philox_element(seed, off + 1, i)); });
  CHECK(std::fabs(z64.mean) < 5 / std::sqrt(n));
  CHECK(std::fabs(z64.var - 1) < 5 * std::sqrt(2.0 / n));
  // Tail mass: P(|z| > 3) = 0.0026998; binomial sd sqrt(p (1 - p) / n).
  size_t tail = 0;
  for (size_t i = 0; i < n; ++i) {
    const uint4x w = philox_element(seed, off + 2, i);
    tail += std::fabs(normal01(w[0], w[1])) > 3.0f;
  }
  CHECK(std::fabs(tail / double(n) - 0.0026998) < 5 * std::sqrt(0.0027 / n));
  // randint over 1000 buckets: chi-square with 999 dof has mean 999, sd 44.7; allow 5 sd.
  const int64_t K = 1000;
  std::vector<int64_t> count(K);
  for (size_t i = 0; i < n; ++i) {
    const uint4x w = philox_element(seed, off + 3, i);
    const int64_t v = randint_from(w[0], w[1], -500, 500);
    REQUIRE(v >= -500);
    REQUIRE(v < 500);
    ++count[v + 500];
  }
  double chi2 = 0, expect = double(n) / K;
  for (int64_t c : count) chi2 += (c - expect) * (c - expect) / expect;
  CHECK(std::fabs(chi2 - (K - 1)) < 5 * std::sqrt(2.0 * (K - 1)));
  // bernoulli(0.3)
  size_t ones = 0;
  for (size_t i = 0; i < n; ++i) ones += bernoulli(philox_element(seed, off + 4, i)[0], 0.3f);
  CHECK(std::fabs(ones / double(n) - 0.3) < 5 * std::sqrt(0.21 / n));
}

TEST_CASE("a call's elements do not depend on order or thread count") {
  const int64_t n = 300001;
  const uint64_t seed = 42, off = 3;
  auto fill = [&](int threads, bool reversed) {
    std::vector<float> out(2 * n);
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1024)
    for (int64_t j = 0; j < n; ++j) {
      const int64_t i = reversed ? n - 1 - j : j;
      const uint4x w = philox_element(seed, off, static_cast<uint64_t>(i));
      out[2 * i] = normal01(w[0], w[1]);
      out[2 * i + 1] = uniform01(w[2]);
    }
    return out;
  };
  const auto one = fill(1, false);
  CHECK(std::memcmp(one.data(), fill(2, false).data(), one.size() * sizeof(float)) == 0);
  CHECK(std::memcmp(one.data(), fill(2, true).data(), one.size() * sizeof(float)) == 0);
  CHECK(std::memcmp(one.data(), fill(1, true).data(), one.size() * sizeof(float)) == 0);
  // A prefix of a longer call is the shorter call: element i never sees n.
  const auto w = philox_element(seed, off, 12345);
  CHECK(one[2 * 12345] == normal01(w[0], w[1]));
}

TEST_CASE("pinned values of vt's stream (seed 42, offset 0); CUDA must reproduce them bit for bit") {
  // Words from an independent Python Philox; normals: Python's float(sqrt(-2 log u1) cos(2 pi u2))
  // in f64 libm agrees with the fma-only evaluation after rounding to f32.
  const uint4x want[4] = {{{0x9CEAF053, 0x77F5493B, 0x12BF50AD, 0x5742B3D7}},
                          {{0xFCDB2127, 0x53BA6CFD, 0x838F5A6E, 0x744E06FB}},
                          {{0xD36C0225, 0xA8875DCB, 0x9A4D6D99, 0xC609A559}},
                          {{0xBAC70475, 0xABAF0DAB, 0x961E5543, 0x610E67F7}}};
  const uint32_t normal_bits[4] = {0xBF785E5A, 0xBD95E015, 0xBEAC8647, 0xBEC26CF1};
  const int64_t randint_m5_7[4] = {0, -2, 2, 3};
  const double normal64[4] = {-0.6653748678073486, -1.4338891806537384, 0.13500793462831734,
                              -0.6482506427558838};
  for (uint64_t i = 0; i < 4; ++i) {
    const uint4x w = philox_element(42, 0, i);
    CHECK(w == want[i]);
    CHECK(f32_bits(normal01(w[0], w[1])) == normal_bits[i]);
    CHECK(randint_from(w[0], w[1], -5, 7) == randint_m5_7[i]);
    CHECK(normal_f64(w) == doctest::Approx(normal64[i]).epsilon(1e-15));
  }
  CHECK(f64_bits(normal_f64(want[0])) == 0xBFE54AC03C1A032Bull);  // vt's own bits (libm: ...0328)
  CHECK(uniform01(want[0][0]) == 0.6129598617553711f);
}

TEST_CASE("Generator: one offset per call, atomic reservation, manual_seed resets") {
  Generator g(5);
  CHECK(g.seed() == 5);
  CHECK(g.reserve() == 0);
  CHECK(g.reserve() == 1);
  CHECK(g.reserve(3) == 2);
  CHECK(g.offset() == 5);
  Generator copy = g;
  CHECK(copy.seed() == 5);
  CHECK(copy.reserve() == 5);
  CHECK(g.offset() == 5);  // the copy advanced alone
  g.manual_seed(9);
  CHECK(g.seed() == 9);
  CHECK(g.offset() == 0);

  Generator shared(1);
  const int threads = 4, per = 10000;
  std::vector<std::vector<uint64_t>> got(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      for (int k = 0; k < per; ++k) got[t].push_back(shared.reserve());
    });
  for (auto& th : pool) th.join();
  std::set<uint64_t> all;
  for (auto& v : got) all.insert(v.begin(), v.end());
  CHECK(all.size() == size_t(threads) * per);
  CHECK(*all.rbegin() == uint64_t(threads) * per - 1);

  CHECK(&default_generator() == &default_generator());
  CHECK(default_generator().seed() == Generator::kDefaultSeed);
}
