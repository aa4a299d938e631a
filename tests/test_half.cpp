// test_half.cpp: bf16/f16 conversions against PyTorch, bit for bit.
//
// tests/fixtures/half_*.json come from tools/gen_half_fixtures.py. The inputs are not stored: both
// sides regenerate them from the same splitmix64 stream (the generators below mirror the Python
// ones line by line), and the fixture's input hash proves they agree before outputs are compared.
// Each fixture keeps the first 4096 torch outputs, so a mismatch there is reported with its index
// and input; past the prefix only the FNV-1a hash of all outputs is compared.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>
#include <vector>

#include "vt/half.h"

using namespace vt;

namespace {

struct SplitMix64 {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
};

// ---- input generators: keep in step with tools/gen_half_fixtures.py ---------------------------
const uint32_t kBF16Low[] = {0x8000, 0x7FFF, 0x8001, 0x0000, 0xFFFF, 0x7FFE, 0x8002};
const uint32_t kF16Low[] = {0x1000, 0x0FFF, 0x1001, 0x0000, 0x1FFF, 0x0FFE, 0x1002};
const uint32_t kEdgeBases[] = {0x477FF000, 0x7F7F8000, 0x477FE000, 0x00008000,
                               0x33000000, 0x38800000, 0x387FF000, 0x7F800000};

uint32_t gen_f32_input(uint64_t r) {
  const uint32_t kind = r & 7, sign = static_cast<uint32_t>(r >> 63) << 31;
  if (kind <= 1) return static_cast<uint32_t>(r >> 32);
  if (kind == 2) {
    const uint32_t sel = (r >> 8) & 7;
    const uint32_t low = sel < 7 ? kBF16Low[sel] : (r >> 16) & 0xFFFF;
    return static_cast<uint32_t>(r >> 48) << 16 | low;
  }
  if (kind == 3) {
    const uint32_t exp = 100 + static_cast<uint32_t>((r >> 40) % 44);
    const uint32_t sel = (r >> 8) & 7;
    const uint32_t low = sel < 7 ? kF16Low[sel] : (r >> 44) & 0x1FFF;
    return sign | exp << 23 | static_cast<uint32_t>((r >> 20) & 0x3FF) << 13 | low;
  }
  if (kind == 4) {
    const uint32_t k = (r >> 20) & 0x3FF;
    const int delta = static_cast<int>((r >> 8) % 3) - 1;
    const float tie = static_cast<float>(2 * k + 1) * 0x1p-25f;  // exact
    return sign | ((f32_bits(tie) + delta) & 0x7FFFFFFF);
  }
  if (kind == 5) {
    const uint32_t base = kEdgeBases[(r >> 16) & 7];
    return sign | ((base + static_cast<uint32_t>((r >> 8) & 0xFF) - 128) & 0x7FFFFFFF);
  }
  if (kind == 6) return sign | static_cast<uint32_t>((r >> 32) & 0x7FFFFF);
  return sign | 0x7F800000 | static_cast<uint32_t>((r >> 32) & 0x7FFFFF);
}

const uint64_t kDblLow29[] = {0, 1, 0x1FFFFFFF, 0x10000000, 0x0FFFFFFF, 0x10000001};
const uint64_t kDblEdgeExps[] = {1149, 1150, 1151, 871, 872, 873, 874, 875,
                                 897,  898,  899,  1038, 1039, 997, 998, 999};

uint64_t gen_f64_input(uint64_t r, uint64_t s) {
  const uint64_t kind = r & 3, sign = (r >> 63) << 63, mant = s & ((1ull << 52) - 1);
  if (kind == 0) return s;
  if (kind == 1) return sign | (873 + (r >> 40) % 281) << 52 | mant;
  if (kind == 2) {
    uint32_t fb = static_cast<uint32_t>(s >> 32);
    if (((fb >> 23) & 0xFF) == 0xFF) fb &= ~(1u << 30);
    fb = (r >> 8) & 1 ? (fb & ~0xFFFFu) | 0x8000u : (fb & ~0x1FFFu) | 0x1000u;
    const uint64_t sel = (r >> 16) % 7;
    return f64_bits(static_cast<double>(f32_from_bits(fb))) |
           (sel < 6 ? kDblLow29[sel] : (s & 0x1FFFFFFF));
  }
  return sign | kDblEdgeExps[(r >> 8) & 15] << 52 | mant;
}

// ---- fixture plumbing -------------------------------------------------------------------------
std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

template <class T>
std::string fnv1a64_hex(const std::vector<T>& v) {
  uint64_t h = 0xCBF29CE484222325ull;
  const auto* p = reinterpret_cast<const unsigned char*>(v.data());
  for (size_t i = 0; i < v.size() * sizeof(T); ++i) h = (h ^ p[i]) * 0x100000001B3ull;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

nlohmann::json load_fixture(const char* name) {
  const std::string path = std::string(VT_FIXTURES) + "/" + name;
  std::ifstream f(path);
  REQUIRE_MESSAGE(f.good(), "missing fixture ", path, ": run tools/gen_half_fixtures.py");
  return nlohmann::json::parse(f);
}

// Compares got against one fixture entry ({fnv1a64, prefix}); names the first bad prefix index.
template <class In, class Out>
void check_against(const nlohmann::json& entry, const std::vector<Out>& got,
                   const std::vector<In>& inputs, const std::string& what) {
  const auto& prefix = entry["prefix"];
  for (size_t i = 0; i < prefix.size(); ++i) {
    const auto want = prefix[i].get<uint64_t>();
    if (static_cast<uint64_t>(got[i]) != want) {
      FAIL_CHECK(what, ": index ", i, " input ", hex(inputs[i]), " got ", hex(got[i]), " torch ",
                 hex(want));
      return;
    }
  }
  CHECK_MESSAGE(fnv1a64_hex(got) == entry["fnv1a64"].get<std::string>(), what,
                ": the stored prefix matches but the hash of all ", got.size(), " outputs differs");
}

template <class In, class Gen>
std::vector<In> regenerate_inputs(const nlohmann::json& fx, Gen gen) {
  std::vector<In> in;
  for (const auto& v : fx["input"]["prefix"]) {
    if (in.size() == fx["num_specials"].get<size_t>()) break;
    in.push_back(v.get<In>());
  }
  SplitMix64 rng{fx["seed"].get<uint64_t>()};
  for (size_t i = 0; i < fx["num_generated"].get<size_t>(); ++i) in.push_back(gen(rng));
  REQUIRE(in.size() == fx["count"].get<size_t>());
  check_against(fx["input"], in, in, "regenerated inputs (C++ and Python generators disagree)");
  return in;
}

}  // namespace

TEST_CASE("f32 -> bf16 / f16 matches torch on the fixture (1M values), scalar and bulk") {
  const auto fx = load_fixture("half_f32.json");
  const auto in = regenerate_inputs<uint32_t>(fx, [](SplitMix64& r) { return gen_f32_input(r.next()); });
  const size_t n = in.size();
  std::vector<float> xs(n);
  std::vector<uint16_t> bf(n), hf(n), bf_bulk(n), hf_bulk(n);
  for (size_t i = 0; i < n; ++i) {
    xs[i] = f32_from_bits(in[i]);
    bf[i] = float_to_bf16_bits(xs[i]);
    hf[i] = float_to_f16_bits(xs[i]);
  }
  check_against(fx["bf16"], bf, in, "f32 -> bf16");
  check_against(fx["f16"], hf, in, "f32 -> f16");
  convert_f32_to_bf16(xs.data(), bf_bulk.data(), n);
  convert_f32_to_f16(xs.data(), hf_bulk.data(), n);
  CHECK(bf_bulk == bf);
  CHECK(hf_bulk == hf);
}

TEST_CASE("f64 -> bf16 / f16 matches torch (double rounding through f32), scalar and bulk") {
  const auto fx = load_fixture("half_f64.json");
  const auto in = regenerate_inputs<uint64_t>(fx, [](SplitMix64& r) {
    const uint64_t a = r.next();
    return gen_f64_input(a, r.next());
  });
  const size_t n = in.size();
  std::vector<double> xs(n);
  std::vector<uint16_t> bf(n), hf(n), bf_bulk(n), hf_bulk(n);
  for (size_t i = 0; i < n; ++i) {
    xs[i] = f64_from_bits(in[i]);
    bf[i] = double_to_bf16_bits(xs[i]);
    hf[i] = double_to_f16_bits(xs[i]);
  }
  check_against(fx["bf16"], bf, in, "f64 -> bf16");
  check_against(fx["f16"], hf, in, "f64 -> f16");
  convert_f64_to_bf16(xs.data(), bf_bulk.data(), n);
  convert_f64_to_f16(xs.data(), hf_bulk.data(), n);
  CHECK(bf_bulk == bf);
  CHECK(hf_bulk == hf);
}

TEST_CASE("bf16 / f16 -> f32 / f64 over all 65536 patterns matches torch and exact arithmetic") {
  const auto fx = load_fixture("half_widen.json");
  std::vector<uint16_t> all(65536);
  for (uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<uint16_t>(i);
  std::vector<uint32_t> b32(65536), h32(65536), b32_bulk(65536), h32_bulk(65536);
  std::vector<uint64_t> b64(65536), h64(65536);
  for (uint32_t i = 0; i < 65536; ++i) {
    const auto h = static_cast<uint16_t>(i);
    b32[i] = f32_bits(bf16_bits_to_float(h));
    h32[i] = f32_bits(f16_bits_to_float(h));
    b64[i] = f64_bits(bf16_bits_to_double(h));
    h64[i] = f64_bits(f16_bits_to_double(h));
    // Independent of torch: exact values and round trips.
    const uint32_t exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
    const double sign = (h & 0x8000) ? -1.0 : 1.0;
    if (exp == 0x1F && mant) {
      CHECK(float_to_f16_bits(f16_bits_to_float(h)) == (h | 0x0200));  // quieted, payload kept
    } else {
      const double want = exp == 0x1F ? sign * INFINITY
                          : exp == 0  ? sign * std::ldexp(mant, -24)
                                      : sign * std::ldexp(1024 + mant, static_cast<int>(exp) - 25);
      CHECK(static_cast<double>(f16_bits_to_float(h)) == want);
      CHECK(float_to_f16_bits(f16_bits_to_float(h)) == h);
    }
    const bool bf_nan = (h & 0x7FFF) > 0x7F80;
    CHECK(float_to_bf16_bits(bf16_bits_to_float(h)) == (bf_nan ? kBF16NaNBits : h));
  }
  CHECK(fnv1a64_hex(b32) == fx["bf16_to_f32"].get<std::string>());
  CHECK(fnv1a64_hex(h32) == fx["f16_to_f32"].get<std::string>());
  CHECK(fnv1a64_hex(b64) == fx["bf16_to_f64"].get<std::string>());
  CHECK(fnv1a64_hex(h64) == fx["f16_to_f64"].get<std::string>());
  convert_bf16_to_f32(all.data(), reinterpret_cast<float*>(b32_bulk.data()), 65536);
  convert_f16_to_f32(all.data(), reinterpret_cast<float*>(h32_bulk.data()), 65536);
  CHECK(b32_bulk == b32);
  CHECK(h32_bulk == h32);
}

TEST_CASE("the rules, value by value") {
  auto bf = [](uint32_t u) { return float_to_bf16_bits(f32_from_bits(u)); };
  auto hf = [](uint32_t u) { return float_to_f16_bits(f32_from_bits(u)); };
  CHECK(bf(0x3F808000) == 0x3F80);  // tie, even below: stays
  CHECK(bf(0x3F818000) == 0x3F82);  // tie, odd below: rounds up to even
  CHECK(bf(0x3F808001) == 0x3F81);
  CHECK(bf(0x80000000) == 0x8000);  // -0 keeps its sign
  CHECK(bf(0x00000001) == 0x0000);  // float subnormal below half a bf16 subnormal step
  CHECK(bf(0x00018000) == 0x0002);  // bf16 keeps f32 subnormals (tie to even)
  CHECK(bf(0x7F7F7FFF) == 0x7F7F);  // largest value that stays finite
  CHECK(bf(0x7F7F8000) == 0x7F80);  // ... and the tie above it overflows to inf
  CHECK(bf(0x7FC00000) == 0xFFFF);  // every NaN, any sign and payload
  CHECK(bf(0x7F800001) == 0xFFFF);
  CHECK(bf(0xFF800000) == 0xFF80);
  CHECK(hf(0x477FEFFF) == 0x7BFF);  // just below 65520 stays 65504
  CHECK(hf(0x477FF000) == 0x7C00);  // 65520 (the tie) overflows to inf
  CHECK(hf(0x33000000) == 0x0000);  // 2^-25, tie between 0 and 2^-24: to even (0)
  CHECK(hf(0x33000001) == 0x0001);
  CHECK(hf(0x33C00000) == 0x0002);  // 1.5 * 2^-24 ties up to 2 * 2^-24
  CHECK(hf(0x387FF000) == 0x0400);  // largest subnormal + half a step rounds to min normal
  CHECK(hf(0x80000000) == 0x8000);
  CHECK(hf(0x7F800001) == 0x7E00);  // signalling NaN, payload in low bits only: quieted
  CHECK(hf(0xFFE12345) == 0xFF09);  // sign | 0x7E00 | top 10 payload bits
  CHECK(hf(0x7FFFFFFF) == 0x7FFF);
  // f64: two roundings, f64 -> f32 -> 16 bits (what torch does), not one.
  CHECK(double_to_bf16_bits(1.0 + 0x1p-8 + 0x1p-40) == 0x3F80);  // one rounding: 0x3F81
  CHECK(double_to_f16_bits(65520.0 - 0x1p-30) == 0x7C00);       // one rounding: 0x7BFF
  CHECK(double_to_f16_bits(0x1p-25 + 0x1p-60) == 0x0000);        // one rounding: 0x0001
  CHECK(double_to_f16_bits(f64_from_bits(0xFFF123456789ABCDull)) == 0xFE48);
  CHECK(f64_bits(bf16_bits_to_double(0x7FA5)) == 0x7FFCA00000000000ull);
  CHECK(f64_bits(f16_bits_to_double(0x7C01)) == 0x7FF8040000000000ull);
}

TEST_CASE("bf16 and f16 are trivial 2-byte value types with explicit conversions") {
  static_assert(std::is_trivial_v<bf16> && std::is_trivial_v<f16>);
  static_assert(sizeof(bf16) == 2 && alignof(bf16) == 2 && sizeof(f16) == 2);
  static_assert(!std::is_convertible_v<float, bf16> && !std::is_convertible_v<bf16, float>);
  CHECK(bf16(1.5f).bits == 0x3FC0);
  CHECK(static_cast<float>(bf16::from_bits(0xC040)) == -3.0f);
  CHECK(f16(65504.0f).bits == 0x7BFF);
  CHECK(static_cast<float>(f16::from_bits(0x3555)) == 0x1.554p-2f);
  CHECK(bf16(1.0 + 0x1p-8 + 0x1p-40).bits == 0x3F80);
  CHECK(static_cast<double>(f16::from_bits(0x0001)) == 0x1p-24);
}

TEST_CASE("bulk converters: every length and misalignment agrees with the scalar code") {
  SplitMix64 rng{7};
  std::vector<float> x(80);
  std::vector<double> d(80);
  std::vector<uint16_t> h(80);
  for (size_t i = 0; i < x.size(); ++i) {
    x[i] = f32_from_bits(gen_f32_input(rng.next()));
    d[i] = f64_from_bits(gen_f64_input(rng.next(), rng.next()));
    h[i] = static_cast<uint16_t>(rng.next());
  }
  for (size_t off = 0; off < 3; ++off)
    for (size_t n = 0; n + off <= 70; ++n) {
      std::vector<uint16_t> o16(n + 1, 0xABCD);  // one guard element past the end
      std::vector<float> o32(n + 1, 42.0f);
      convert_f32_to_bf16(x.data() + off, o16.data(), n);
      for (size_t i = 0; i < n; ++i) REQUIRE(o16[i] == float_to_bf16_bits(x[off + i]));
      convert_f32_to_f16(x.data() + off, o16.data(), n);
      for (size_t i = 0; i < n; ++i) REQUIRE(o16[i] == float_to_f16_bits(x[off + i]));
      convert_f64_to_bf16(d.data() + off, o16.data(), n);
      for (size_t i = 0; i < n; ++i) REQUIRE(o16[i] == double_to_bf16_bits(d[off + i]));
      convert_f64_to_f16(d.data() + off, o16.data(), n);
      for (size_t i = 0; i < n; ++i) REQUIRE(o16[i] == double_to_f16_bits(d[off + i]));
      REQUIRE(o16[n] == 0xABCD);
      convert_bf16_to_f32(h.data() + off, o32.data(), n);
      for (size_t i = 0; i < n; ++i) REQUIRE(f32_bits(o32[i]) == f32_bits(bf16_bits_to_float(h[off + i])));
      convert_f16_to_f32(h.data() + off, o32.data(), n);
      for (size_t i = 0; i < n; ++i) REQUIRE(f32_bits(o32[i]) == f32_bits(f16_bits_to_float(h[off + i])));
      REQUIRE(o32[n] == 42.0f);
    }
}

TEST_CASE("f32 -> f16: scalar code equals the bulk path on a stride through all 2^32 floats") {
  // With F16C the bulk path is the hardware instruction torch uses, an independent reference.
  const uint32_t stride = 251;  // prime: visits every exponent and many mantissa patterns
  std::vector<float> x;
  for (uint64_t u = 0; u < (1ull << 32); u += stride) x.push_back(f32_from_bits(static_cast<uint32_t>(u)));
  std::vector<uint16_t> bulk(x.size());
  convert_f32_to_f16(x.data(), bulk.data(), x.size());
  size_t bad = 0;
  for (size_t i = 0; i < x.size(); ++i)
    if (bulk[i] != float_to_f16_bits(x[i]) && bad++ == 0)
      FAIL_CHECK("input ", hex(f32_bits(x[i])), " scalar ", hex(float_to_f16_bits(x[i])), " bulk ",
                 hex(bulk[i]));
  CHECK(bad == 0);
}
