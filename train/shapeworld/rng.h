// rng.h: the one random source of ShapeWorld, a counter-based SplitMix64.
//
// Why not <random>: std::uniform_int_distribution and friends are implementation-defined, so the
// same seed would draw different scenes under libstdc++ and libc++. SplitMix64 plus the integer
// and float mappings below are fully specified here, so a seed names the same bytes everywhere.
// Streams are derived by hashing (seed, split, index, purpose) rather than by drawing in order, so
// scene i does not depend on how many draws scene i-1 made, and OpenMP may render in any order.
#pragma once
#include <cstdint>

namespace vt::shapes {

// The SplitMix64 finaliser: a bijective 64-bit mix (Steele, Lea, Flood 2014).
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// A stream key from up to four words; distinct tuples give unrelated streams.
inline uint64_t stream_key(uint64_t a, uint64_t b = 0, uint64_t c = 0, uint64_t d = 0) {
  uint64_t h = mix64(a + 0x9E3779B97F4A7C15ull);
  h = mix64(h ^ (b + 0x632BE59BD9B4E019ull));
  h = mix64(h ^ (c + 0x85157AF5ull));
  return mix64(h ^ (d + 0x2545F4914F6CDD1Dull));
}

struct Rng {
  uint64_t state;
  explicit Rng(uint64_t seed) : state(seed) {}

  uint64_t next() {
    state += 0x9E3779B97F4A7C15ull;
    return mix64(state);
  }
  // Uniform in [0, 1) with 24 bits: floats are all ShapeWorld needs.
  float uniform() { return float(next() >> 40) * (1.0f / 16777216.0f); }
  float uniform(float lo, float hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [0, n), by Lemire's multiply-shift (bias < n / 2^64, irrelevant here).
  int below(int n) { return int((unsigned __int128)next() * uint64_t(n) >> 64); }
  bool chance(float p) { return uniform() < p; }
};

// Hash noise for pixel (i, channel c): uniform in [0, 1), a pure function of its arguments.
inline float hash_uniform(uint64_t key, uint64_t i) {
  return float(mix64(key ^ (i * 0xD6E8FEB86659FD93ull)) >> 40) * (1.0f / 16777216.0f);
}

}  // namespace vt::shapes
