// philox.h: the counter-based generator behind every random tensor in vt, and its stream convention.
//
// Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC 2011)
// maps a 128-bit counter and a 64-bit key to 128 random bits with ten rounds of two 32x32 -> 64
// multiplies; the constants are those of Random123, curand and PyTorch's CUDA generator.
//
// Stream convention (identical on CPU and CUDA, independent of thread count and order):
//   key     = {seed lo, seed hi}
//   counter = {i lo, i hi, call_offset lo, call_offset hi}
// where call_offset is reserved from a Generator, one per random-tensor call (offset += 1), and i
// is the element's index in the call's output. Element i reads only block i, so any thread can
// compute any element, and two calls never share a counter.
//
// Each element's words become numbers by fixed rules (the same bits on host and device):
//   uniform01(w0)           (w0 >> 8) * 2^-24 in [0, 1): 24 bits, every value exact in f32
//   uniform01_f64(w0, w1)   top 53 bits of (w1:w0) * 2^-53 in [0, 1)
//   normal01(w0, w1)        Box-Muller, cos branch: sqrt(-2 ln u1) cos(2 pi u2) with
//                           u1 = ((w0 >> 8) + 1) * 2^-24 in (0, 1] (never log 0; |z| <= 5.77)
//                           and u2 = uniform01(w1); evaluated in f64, rounded once to f32
//   normal_f64(block)       the same from 53-bit u1 (from w0, w1; (k + 1) * 2^-53) and u2 (w2, w3)
//   randint_from(w0, w1, lo, hi)  lo + floor((w1:w0) * (hi - lo) / 2^64) (Lemire's multiply-high
//                           without the rejection step: the bias is below (hi - lo) / 2^64, under
//                           1e-12 for any range below 2^24)
//   bernoulli(w0, p)        uniform01(w0) < p
// The logarithm and sine/cosine are evaluated here with fma-only polynomials instead of libm, so
// glibc and CUDA's libdevice (which differ in the last ulp) cannot make the normals differ.
#pragma once
#include <atomic>
#include <cmath>
#include <cstdint>

#include "vt/half.h"  // VT_HOST_DEVICE, f64_bits / f64_from_bits

namespace vt {

// 128 bits: four 32-bit words, x[0] first (the layout of CUDA's uint4).
struct alignas(16) uint4x {
  uint32_t x[4];
  VT_HOST_DEVICE uint32_t operator[](int i) const { return x[i]; }
  VT_HOST_DEVICE bool operator==(const uint4x& o) const {
    return x[0] == o.x[0] && x[1] == o.x[1] && x[2] == o.x[2] && x[3] == o.x[3];
  }
};
using PhiloxBlock = uint4x;

inline constexpr uint32_t kPhiloxM0 = 0xD2511F53u, kPhiloxM1 = 0xCD9E8D57u;  // round multipliers
// Key bumps: the fractional bits of the golden ratio and of sqrt(3) - 1.
inline constexpr uint32_t kPhiloxW0 = 0x9E3779B9u, kPhiloxW1 = 0xBB67AE85u;

namespace philox_detail {
VT_HOST_DEVICE inline void mulhilo32(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}
}  // namespace philox_detail

VT_HOST_DEVICE inline uint4x philox4x32_10(const uint32_t counter[4], const uint32_t key[2]) {
  uint32_t c0 = counter[0], c1 = counter[1], c2 = counter[2], c3 = counter[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int round = 0; round < 10; ++round) {
    if (round > 0) { k0 += kPhiloxW0; k1 += kPhiloxW1; }  // the key schedule bumps before rounds 2..10
    uint32_t hi0, lo0, hi1, lo1;
    philox_detail::mulhilo32(kPhiloxM0, c0, hi0, lo0);
    philox_detail::mulhilo32(kPhiloxM1, c2, hi1, lo1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
  }
  return uint4x{{c0, c1, c2, c3}};
}

// The 128 random bits of element i of the call that reserved call_offset (see the convention above).
VT_HOST_DEVICE inline uint4x philox_element(uint64_t seed, uint64_t call_offset, uint64_t i) {
  const uint32_t counter[4] = {static_cast<uint32_t>(i), static_cast<uint32_t>(i >> 32),
                               static_cast<uint32_t>(call_offset), static_cast<uint32_t>(call_offset >> 32)};
  const uint32_t key[2] = {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
  return philox4x32_10(counter, key);
}

// ---- words -> numbers --------------------------------------------------------------------------
VT_HOST_DEVICE inline float uniform01(uint32_t w) { return static_cast<float>(w >> 8) * 0x1p-24f; }

VT_HOST_DEVICE inline double uniform01_f64(uint32_t lo, uint32_t hi) {
  const uint64_t x = (static_cast<uint64_t>(hi) << 32) | lo;
  return static_cast<double>(x >> 11) * 0x1p-53;
}

VT_HOST_DEVICE inline bool bernoulli(uint32_t w, float p) { return uniform01(w) < p; }

// Uniform integer in [lo, hi), hi > lo; the full int64 range works (hi - lo wraps into uint64).
VT_HOST_DEVICE inline int64_t randint_from(uint32_t w0, uint32_t w1, int64_t lo, int64_t hi) {
  const uint64_t x = (static_cast<uint64_t>(w1) << 32) | w0;
  const uint64_t range = static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo);
#if defined(__CUDA_ARCH__)
  const uint64_t scaled = __umul64hi(x, range);
#else
  const uint64_t scaled = static_cast<uint64_t>((static_cast<unsigned __int128>(x) * range) >> 64);
#endif
  return static_cast<int64_t>(static_cast<uint64_t>(lo) + scaled);
}

// ---- deterministic log and sincos for Box-Muller ------------------------------------------------
// Only correctly rounded operations (+ - * / sqrt, fma) in a fixed order: the same bits on every
// IEEE machine, whatever the compiler contracts (every multiply-add is an explicit fma).
namespace philox_detail {
VT_HOST_DEVICE inline double fma_(double a, double b, double c) {
#if defined(__CUDA_ARCH__)
  return ::fma(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}
VT_HOST_DEVICE inline double sqrt_(double x) {
#if defined(__CUDA_ARCH__)
  return ::sqrt(x);
#else
  return std::sqrt(x);
#endif
}

// ln(u) for a positive normal double. u = m * 2^e with m in [sqrt(1/2), sqrt(2)); then
// ln m = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.172, as 2s (1 + s^2/3 + s^4/5 + ... + s^22/23)
// whose truncation error is below 1e-20 relative.
VT_HOST_DEVICE inline double log_pos(double u) {
  const uint64_t b = f64_bits(u);
  int e = static_cast<int>((b >> 52) & 0x7FF) - 1023;
  uint64_t mbits = (b & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull;  // m in [1, 2)
  if (mbits > 0x3FF6A09E667F3BCDull) { mbits -= 1ull << 52; ++e; }        // m > sqrt(2): halve
  const double m = f64_from_bits(mbits);
  const double s = (m - 1.0) / (m + 1.0), z = s * s, two_s = 2.0 * s;
  double p = 1.0 / 23;
  p = fma_(p, z, 1.0 / 21); p = fma_(p, z, 1.0 / 19); p = fma_(p, z, 1.0 / 17);
  p = fma_(p, z, 1.0 / 15); p = fma_(p, z, 1.0 / 13); p = fma_(p, z, 1.0 / 11);
  p = fma_(p, z, 1.0 / 9);  p = fma_(p, z, 1.0 / 7);  p = fma_(p, z, 1.0 / 5);
  p = fma_(p, z, 1.0 / 3);
  const double ln_m = fma_(two_s * z, p, two_s);
  const double ln2_hi = 0x1.62E42FEE00000p-1, ln2_lo = 0x1.A39EF35793C76p-33;  // fdlibm's split
  return fma_(static_cast<double>(e), ln2_hi, fma_(static_cast<double>(e), ln2_lo, ln_m));
}

// sin and cos of x in [0, pi/4] by Taylor series to x^19 / x^18 (remainders below 1e-19).
VT_HOST_DEVICE inline void sincos_octant(double x, double& s, double& c) {
  const double z = x * x;
  double ps = -1.0 / 121645100408832000.0;  // -1/19!
  ps = fma_(ps, z, 1.0 / 355687428096000.0);
  ps = fma_(ps, z, -1.0 / 1307674368000.0);
  ps = fma_(ps, z, 1.0 / 6227020800.0);
  ps = fma_(ps, z, -1.0 / 39916800.0);
  ps = fma_(ps, z, 1.0 / 362880.0);
  ps = fma_(ps, z, -1.0 / 5040.0);
  ps = fma_(ps, z, 1.0 / 120.0);
  ps = fma_(ps, z, -1.0 / 6.0);
  s = fma_(x * z, ps, x);
  double pc = -1.0 / 6402373705728000.0;  // -1/18!
  pc = fma_(pc, z, 1.0 / 20922789888000.0);
  pc = fma_(pc, z, -1.0 / 87178291200.0);
  pc = fma_(pc, z, 1.0 / 479001600.0);
  pc = fma_(pc, z, -1.0 / 3628800.0);
  pc = fma_(pc, z, 1.0 / 40320.0);
  pc = fma_(pc, z, -1.0 / 720.0);
  pc = fma_(pc, z, 1.0 / 24.0);
  pc = fma_(pc, z, -0.5);
  c = fma_(z, pc, 1.0);
}

// cos(2 pi t) for t in [0, 1) given exactly (a multiple of 2^-53). The turn splits into eighths
// exactly (t * 8 is exact), so the only argument rounding is one multiply by pi/4.
VT_HOST_DEVICE inline double cos_turns(double t) {
  const double t8 = t * 8.0;
  const int octant = static_cast<int>(t8);
  double f = t8 - static_cast<double>(octant);  // exact
  if (octant & 1) f = 1.0 - f;                  // exact: f is a multiple of 2^-50 in [0, 1]
  double s, c;
  sincos_octant(f * 0x1.921FB54442D18p-1, s, c);  // pi/4
  switch (octant) {  // 2 pi t = octant * pi/4 + x (even octants) or (octant + 1) * pi/4 - x (odd)
    case 0: return c;
    case 1: return s;
    case 2: return -s;
    case 3: return -c;
    case 4: return -c;
    case 5: return -s;
    case 6: return s;
    default: return c;
  }
}

VT_HOST_DEVICE inline double box_muller(double u1, double u2) {
  return sqrt_(-2.0 * log_pos(u1)) * cos_turns(u2);
}
}  // namespace philox_detail

VT_HOST_DEVICE inline float normal01(uint32_t w0, uint32_t w1) {
  const double u1 = static_cast<double>((w0 >> 8) + 1u) * 0x1p-24;  // (0, 1]
  const double u2 = static_cast<double>(w1 >> 8) * 0x1p-24;         // [0, 1)
  return static_cast<float>(philox_detail::box_muller(u1, u2));
}

VT_HOST_DEVICE inline double normal_f64(const uint4x& w) {
  const uint64_t k = ((static_cast<uint64_t>(w.x[1]) << 32) | w.x[0]) >> 11;
  const double u1 = static_cast<double>(k + 1) * 0x1p-53;  // (0, 1]
  return philox_detail::box_muller(u1, uniform01_f64(w.x[2], w.x[3]));
}

// ---- Generator ---------------------------------------------------------------------------------
// A seed and a call counter. reserve() hands each random-tensor call its own call_offset; it is
// atomic, so threads may draw from one generator concurrently (the order between them is theirs).
// manual_seed / set_state are not meant to race with draws.
class Generator {
 public:
  // torch's default CPU seed (c10::default_rng_seed_val); vt's streams differ from torch's anyway.
  static constexpr uint64_t kDefaultSeed = 67280421310721ull;

  explicit Generator(uint64_t seed = kDefaultSeed) : seed_(seed), offset_(0) {}
  Generator(const Generator& o) : seed_(o.seed()), offset_(o.offset()) {}
  Generator& operator=(const Generator& o) { set_state(o.seed(), o.offset()); return *this; }

  uint64_t seed() const { return seed_.load(std::memory_order_relaxed); }
  uint64_t offset() const { return offset_.load(std::memory_order_relaxed); }
  // Reserves `calls` consecutive call offsets and returns the first.
  uint64_t reserve(uint64_t calls = 1) { return offset_.fetch_add(calls, std::memory_order_relaxed); }

  void manual_seed(uint64_t seed) { set_state(seed, 0); }
  void set_state(uint64_t seed, uint64_t offset) {
    seed_.store(seed, std::memory_order_relaxed);
    offset_.store(offset, std::memory_order_relaxed);
  }

 private:
  std::atomic<uint64_t> seed_;
  std::atomic<uint64_t> offset_;
};

// The generator random ops use when none is passed; one per process.
inline Generator& default_generator() {
  static Generator g;
  return g;
}

}  // namespace vt
