// test_gemm.cpp: vt::cpu::gemm_* against a float64 reference, over shapes that straddle every
// micro-tile and cache block edge, all operand layouts (row-major, transposed, gapped, reversed),
// alpha/beta cases, bf16/f16 inputs, every compiled micro-kernel, guard values around C, and
// bitwise equality of 1-thread and 2-thread results.
#include <doctest/doctest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "../src/gemm_kernels.h"
#include "vt/cpu/gemm.h"

using namespace vt::cpu;

namespace {

enum Layout { RowMajor, ColMajor, Gapped, Reversed };
const char* layout_name(Layout l) {
  return l == RowMajor ? "row" : l == ColMajor ? "col" : l == Gapped ? "gapped" : "reversed";
}

// An (R, S) matrix view into a buffer with `guard` sentinel elements on both sides and sentinel
// values in the gaps of a Gapped layout.
template <class T>
struct Mat {
  std::vector<T> buf;
  int64_t R, S, off = 0, rs = 0, cs = 0;
  static constexpr int64_t guard = 67;
  Mat(int64_t R_, int64_t S_, Layout l, T sentinel) : R(R_), S(S_) {
    int64_t span = 0;
    switch (l) {
      case RowMajor: rs = S, cs = 1, span = R * S, off = 0; break;
      case ColMajor: rs = 1, cs = R, span = R * S, off = 0; break;
      case Gapped: rs = 2 * S + 3, cs = 2, span = R * rs, off = 0; break;
      case Reversed: rs = -S, cs = 1, span = R * S, off = (R - 1) * S; break;
    }
    buf.assign(size_t(span + 2 * guard), sentinel);
    off += guard;
  }
  T* ptr() { return buf.data() + off; }
  T& at(int64_t i, int64_t j) { return buf[size_t(off + i * rs + j * cs)]; }
  std::vector<bool> element_mask() const {  // which buffer slots hold one of the R*S elements
    std::vector<bool> mask(buf.size(), false);
    for (int64_t i = 0; i < R; ++i)
      for (int64_t j = 0; j < S; ++j) mask[size_t(off + i * rs + j * cs)] = true;
    return mask;
  }
};

uint16_t f32_to_bf16_bits(float f) {  // round to nearest even (test inputs are finite)
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fff + ((u >> 16) & 1);
  return uint16_t(u >> 16);
}

// A random f16 with magnitude in [2^-6, 2^3) or, one time in 16, a subnormal.
uint16_t random_f16_bits(std::mt19937& rng) {
  uint32_t r = rng();
  uint16_t sign = uint16_t((r & 1) << 15), mant = uint16_t((r >> 1) & 0x3ff);
  uint16_t exp = ((r >> 11) & 15) == 0 ? 0 : uint16_t(9 + (r >> 16) % 9);
  return uint16_t(sign | (exp << 10) | mant);
}

enum class Kind { F32, F64, BF16, F16 };

// Runs one gemm case and checks values and guards. `threads` sets omp_set_num_threads.
template <Kind kind>
void check_case(int64_t M, int64_t N, int64_t K, Layout la, Layout lb, Layout lc, double alpha,
                double beta, uint32_t seed = 1) {
  using T = std::conditional_t<kind == Kind::F64, double, float>;
  using S = std::conditional_t<kind == Kind::F32, float, std::conditional_t<kind == Kind::F64, double, uint16_t>>;
  CAPTURE(M);
  CAPTURE(N);
  CAPTURE(K);
  CAPTURE(layout_name(la));
  CAPTURE(layout_name(lb));
  CAPTURE(layout_name(lc));
  CAPTURE(alpha);
  CAPTURE(beta);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  const T nan = std::numeric_limits<T>::quiet_NaN();
  // Gaps hold NaN (f16/bf16: 0x7e00 / 0x7fc0 bits), so reading a non-element poisons the result.
  const S gap = kind == Kind::BF16 ? S(0x7fc0) : kind == Kind::F16 ? S(0x7e00) : S(nan);
  Mat<S> A(M, K, la, gap), B(K, N, lb, gap);
  std::vector<double> a(size_t(M * K)), b(size_t(K * N));
  auto fill = [&](Mat<S>& X, std::vector<double>& x) {
    for (int64_t i = 0; i < X.R; ++i)
      for (int64_t j = 0; j < X.S; ++j) {
        S s;
        double v;
        if constexpr (kind == Kind::BF16) {
          s = f32_to_bf16_bits(float(u(rng)));
          v = bf16_bits_to_f32(s);
        } else if constexpr (kind == Kind::F16) {
          s = random_f16_bits(rng);
          v = f16_bits_to_f32(s);
        } else {
          s = S(u(rng));
          v = s;
        }
        X.at(i, j) = s;
        x[size_t(i * X.S + j)] = v;
      }
  };
  fill(A, a);
  fill(B, b);
  const T sentinel = T(12345.5);
  Mat<T> C(M, N, lc, sentinel);
  std::vector<double> c0(size_t(M * N));
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      C.at(i, j) = beta == 0 ? nan : T(u(rng));
      c0[size_t(i * N + j)] = C.at(i, j);
    }

  if constexpr (kind == Kind::F32)
    gemm_f32(M, N, K, float(alpha), A.ptr(), A.rs, A.cs, B.ptr(), B.rs, B.cs, float(beta), C.ptr(),
             C.rs, C.cs);
  else if constexpr (kind == Kind::F64)
    gemm_f64(M, N, K, alpha, A.ptr(), A.rs, A.cs, B.ptr(), B.rs, B.cs, beta, C.ptr(), C.rs, C.cs);
  else if constexpr (kind == Kind::BF16)
    gemm_bf16_f32acc(M, N, K, float(alpha), A.ptr(), A.rs, A.cs, B.ptr(), B.rs, B.cs, float(beta),
                     C.ptr(), C.rs, C.cs);
  else
    gemm_f16_f32acc(M, N, K, float(alpha), A.ptr(), A.rs, A.cs, B.ptr(), B.rs, B.cs, float(beta),
                    C.ptr(), C.rs, C.cs);

  // Error bound of a length-K FMA chain: |err| <= (K + 2) eps (|alpha| sum|a b| + |beta c|).
  const double eps = std::numeric_limits<T>::epsilon();
  int64_t bad = 0;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0, mag = 0;
      for (int64_t k = 0; k < K; ++k) {
        s += a[size_t(i * K + k)] * b[size_t(k * N + j)];
        mag += std::abs(a[size_t(i * K + k)] * b[size_t(k * N + j)]);
      }
      const double cij = beta == 0 ? 0 : c0[size_t(i * N + j)];
      const double ref = alpha * s + beta * cij;
      const double tol = double(K + 2) * eps * (std::abs(alpha) * mag + std::abs(beta * cij)) + 1e-30;
      const double got = C.at(i, j);
      if (!(std::abs(got - ref) <= tol) && bad++ < 3) {
        CAPTURE(i);
        CAPTURE(j);
        CAPTURE(got);
        CAPTURE(ref);
        CAPTURE(tol);
        CHECK(std::abs(got - ref) <= tol);
      }
    }
  CHECK(bad == 0);
  // Nothing outside C's elements was written.
  int64_t stray = 0;
  const std::vector<bool> mask = C.element_mask();
  for (size_t idx = 0; idx < C.buf.size(); ++idx)
    if (!mask[idx] && std::memcmp(&C.buf[idx], &sentinel, sizeof(T)) != 0) ++stray;
  CHECK(stray == 0);
}

template <Kind kind>
void check_all_layouts(int64_t M, int64_t N, int64_t K, double alpha = 1, double beta = 0) {
  for (Layout la : {RowMajor, ColMajor})
    for (Layout lb : {RowMajor, ColMajor}) check_case<kind>(M, N, K, la, lb, RowMajor, alpha, beta);
}

// Sizes around the micro-tile (14 x 32 AVX-512, 6 x 16 AVX2) and cache blocks (KC = 384, NC = 320,
// MC = 1008 for f32 AVX-512), plus odd primes.
const int64_t kEdgeSizes[] = {1, 2, 5, 6, 7, 13, 14, 15, 16, 17, 28, 29, 31, 32, 33, 47, 127};

}  // namespace

TEST_CASE("f16 bits widen exactly for all 65536 patterns") {
  int bad = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint32_t s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    const float got = f16_bits_to_f32(uint16_t(h));
    bool ok = std::signbit(got) == bool(s);
    if (e == 31) {
      ok = ok && (m == 0 ? std::isinf(got) : std::isnan(got));
    } else {
      const double mag = e == 0 ? std::ldexp(double(m), -24) : std::ldexp(double(1024 + m), int(e) - 25);
      ok = ok && double(got) == (s ? -mag : mag);
    }
    if (!ok && bad++ < 3) CHECK_MESSAGE(ok, "f16 bits " << h << " -> " << got);
  }
  CHECK(bad == 0);
}

TEST_CASE("gemm f32: small and edge shapes, all transpose combinations") {
  for (int64_t m : kEdgeSizes)
    for (int64_t n : {int64_t(1), int64_t(17), int64_t(31), int64_t(33)})
      check_all_layouts<Kind::F32>(m, n, m % 2 ? 19 : 40);
  for (int64_t n : kEdgeSizes) check_all_layouts<Kind::F32>(29, n, 65);
  for (int64_t k : {1, 2, 3, 8, 9, 17, 383, 384, 385, 769}) check_all_layouts<Kind::F32>(33, 35, k);
}

TEST_CASE("gemm f32: shapes straddling the cache blocks") {
  check_all_layouts<Kind::F32>(127, 257, 257);
  check_case<Kind::F32>(1009, 33, 17, RowMajor, RowMajor, RowMajor, 1, 0);
  check_case<Kind::F32>(1007, 45, 20, ColMajor, RowMajor, RowMajor, 1, 0);
  check_case<Kind::F32>(30, 641, 30, RowMajor, ColMajor, RowMajor, 1, 0);
  check_case<Kind::F32>(45, 319, 390, RowMajor, RowMajor, RowMajor, 1, 0);
  check_case<Kind::F32>(45, 321, 390, ColMajor, ColMajor, RowMajor, 1, 0);
}

TEST_CASE("gemm f32: alpha, beta, strided and column-major C, guards") {
  for (Layout lc : {RowMajor, ColMajor, Gapped, Reversed})
    for (Layout lab : {RowMajor, ColMajor, Gapped, Reversed})
      for (double beta : {0.0, 1.0, -0.5}) {
        check_case<Kind::F32>(37, 45, 29, lab, RowMajor, lc, 0.75, beta);
        check_case<Kind::F32>(5, 70, 33, RowMajor, lab, lc, -2.0, beta);  // direct path
        check_case<Kind::F32>(70, 3, 33, lab, ColMajor, lc, 1.0, beta);   // direct path, thin N
      }
}

TEST_CASE("gemm f32: empty sizes and K == 0") {
  float c[6] = {1, 2, 3, 4, 5, 6};
  gemm_f32(0, 3, 4, 1, nullptr, 4, 1, nullptr, 3, 1, 0, c, 3, 1);
  gemm_f32(2, 0, 4, 1, nullptr, 4, 1, nullptr, 0, 1, 0, c, 3, 1);
  CHECK(c[0] == 1);
  gemm_f32(2, 3, 0, 1, nullptr, 0, 1, nullptr, 3, 1, 2.0f, c, 3, 1);
  CHECK(c[5] == 12);
  c[1] = std::numeric_limits<float>::quiet_NaN();
  gemm_f32(2, 3, 0, 1, nullptr, 0, 1, nullptr, 3, 1, 0.0f, c, 3, 1);
  for (float x : c) CHECK(x == 0);
}

TEST_CASE("gemm f64, bf16 and f16") {
  for (int64_t m : {1, 7, 14, 17, 33, 127})
    for (int64_t n : {1, 15, 16, 17, 31, 33}) {
      check_all_layouts<Kind::F64>(m, n, 37);
      check_all_layouts<Kind::BF16>(m, n, 41);
      check_all_layouts<Kind::F16>(m, n, 41);
    }
  check_all_layouts<Kind::F64>(130, 129, 260, 0.5, 1.0);
  check_all_layouts<Kind::BF16>(200, 100, 300, 1.0, -1.0);
  check_all_layouts<Kind::F16>(100, 200, 400, 2.0, 0.5);
  check_case<Kind::F64>(31, 29, 17, Gapped, Reversed, Gapped, 1.0, 0.5);
}

TEST_CASE("gemm: every compiled micro-kernel") {
  using namespace vt::cpu::detail;
  const KernelSet<float> saved32 = active_kernel_f32();
  const KernelSet<double> saved64 = active_kernel_f64();
  std::vector<std::pair<KernelSet<float>, KernelSet<double>>> sets = {
      {portable_kernel_f32(), portable_kernel_f64()}};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    sets.push_back({avx2_kernel_f32(), avx2_kernel_f64()});
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
    sets.push_back({avx512_kernel_f32(), avx512_kernel_f64()});
  for (auto& [k32, k64] : sets) {
    CAPTURE(k32.name);
    active_kernel_f32() = k32;
    active_kernel_f64() = k64;
    for (int64_t m : {5, 6, 7, 13, 61})
      for (int64_t n : {8, 15, 16, 17, 70}) {
        check_all_layouts<Kind::F32>(m + 8, n + 8, 45, 1.5, m % 2 ? 0.0 : 0.5);
        check_all_layouts<Kind::F64>(m + 8, n + 8, 45, 1.5, m % 2 ? 0.0 : 0.5);
      }
    check_case<Kind::F32>(300, 130, 600, RowMajor, ColMajor, RowMajor, 1, 0);
    check_case<Kind::F16>(90, 130, 70, ColMajor, ColMajor, Gapped, 1, 1);
  }
  active_kernel_f32() = saved32;
  active_kernel_f64() = saved64;
}

TEST_CASE("gemm: 1 and 2 threads give bitwise identical results") {
  struct Shape {
    int64_t M, N, K;
    bool bt;
  };
  const Shape shapes[] = {{300, 290, 500, false}, {257, 700, 400, true}, {1100, 64, 130, false},
                          {64, 1100, 800, true},  {3, 5000, 600, false}, {2, 3000, 700, true}};
  const int saved = omp_get_max_threads();
  for (const Shape& s : shapes) {
    CAPTURE(s.M);
    CAPTURE(s.N);
    CAPTURE(s.K);
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(-1, 1);
    std::vector<float> A(size_t(s.M * s.K)), B(size_t(s.K * s.N));
    for (float& x : A) x = u(rng);
    for (float& x : B) x = u(rng);
    const int64_t rsB = s.bt ? 1 : s.N, csB = s.bt ? s.K : 1;
    std::vector<float> c1(size_t(s.M * s.N)), c2(c1.size());
    omp_set_num_threads(1);
    gemm_f32(s.M, s.N, s.K, 1, A.data(), s.K, 1, B.data(), rsB, csB, 0, c1.data(), s.N, 1);
    omp_set_num_threads(2);
    gemm_f32(s.M, s.N, s.K, 1, A.data(), s.K, 1, B.data(), rsB, csB, 0, c2.data(), s.N, 1);
    CHECK(std::memcmp(c1.data(), c2.data(), c1.size() * sizeof(float)) == 0);
  }
  omp_set_num_threads(saved);
}
