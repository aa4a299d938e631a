// gemm.cpp: C = alpha * A.B + beta * C on the CPU for f32, f64 and bf16/f16 operands, GotoBLAS
// style: pack, block for the caches, and run one register-blocked micro-kernel (gemm_kernels.cpp).
//
// Loop nest of the packed path, for the C block one thread owns (rows [m0, m1), cols [n0, n1)):
//   for ic in rows, step MC:                  A block (MC, KC) packed into MR-row micro-panels (L3)
//     for pc in 0..K, step KC:                  the first pass applies beta, later ones add (beta 1)
//       pack A(ic.., pc..)
//       for jc in cols, step NC:                B block (KC, NC) packed into NR-column micro-panels (L2)
//         pack B(pc.., jc..)
//         for ir, step MR: for jr, step NR:     A micro-panel stays in L1 while B micro-panels stream
//           micro_kernel(A panel ir, B panel jr, C tile)
// Packing reads any strides and widens bf16/f16 to f32, so transposed and half-precision operands
// cost one pass over memory and then run the same f32 kernel.
//
// Threads: C is cut into a grid of one block per thread (more cuts along the longer side), each
// thread runs the nest above on its block with private pack buffers. No thread ever splits K, so
// each C element is one FMA chain over k = 0..K-1 in KC-sized passes whatever the thread count, and
// results are bitwise identical with 1 or many threads. The cost is that each thread packs the A
// (or B) rows it shares with its neighbour itself; that is O(MK + KN) against O(MNK) of arithmetic.
//
// Precision: every product is accumulated in the compute type (f32, or f64 for gemm_f64); bf16
// and f16 are widened exactly to f32 while packing. alpha scales the sum once per KC pass.
//
// Small problems (M, N or K below 8, or under 32^3 multiply-adds) take a direct path without
// packing: blocks of up to 8 rows of C accumulate in a stack tile, either as axpys over k sharing
// one widened B row (B rows contiguous) or as 16-lane dot products (B columns contiguous, as in
// x . W^T, the decode-time GEMV). It stays on the calling thread below 2^21 multiply-adds, as does
// the packed path below 96^3, and never opens an OpenMP region then: a 4x4x4 call costs ~0.1 us.
#include "vt/cpu/gemm.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "gemm_kernels.h"
#include "vt/error.h"

namespace vt::cpu {

float f16_bits_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24 is exact in f32.
    float f = float(mant) * 5.9604644775390625e-8f;
    std::memcpy(&bits, &f, 4);
    bits |= sign;
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf, or NaN keeping its payload
  } else {
    bits = sign | ((exp + 112) << 23) | (mant << 13);  // rebias 15 -> 127
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

namespace {

using detail::KernelSet;

// How an operand element of storage type S widens to the compute type T.
template <class T>
struct Same {
  using S = T;
  static T at(const S* p) { return *p; }
};
struct BF16 {
  using S = uint16_t;
  static float at(const S* p) { return bf16_bits_to_f32(*p); }
};
struct F16 {
  using S = uint16_t;
  static float at(const S* p) { return f16_bits_to_f32(*p); }
};

int64_t iabs(int64_t x) { return x < 0 ? -x : x; }
int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
// The size of each of the fewest equal blocks of at most `block` that cover `len`.
int64_t balanced_block(int64_t len, int64_t block) {
  const int64_t count = (len + block - 1) / block;
  return (len + count - 1) / count;
}

// C[M,N] = beta * C, with beta == 0 writing zeros (C may hold NaN).
template <class T>
void scale_c(int64_t M, int64_t N, T beta, T* C, int64_t rsC, int64_t csC) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      T& c = C[i * rsC + j * csC];
      c = beta == 0 ? T(0) : beta * c;
    }
}

// ---- packing ----------------------------------------------------------------------------------

// a: (mc, kc) block of A at stride (rsA, csA) -> dst: ceil(mc/mr) panels of (kc, mr), k-major,
// rows past mc zero-filled.
template <class T, class PA>
void pack_a(int64_t mc, int64_t kc, const typename PA::S* a, int64_t rsA, int64_t csA, int mr,
            detail::Transpose16<T> transpose16, T* __restrict__ dst) {
  for (int64_t i = 0; i < mc; i += mr, dst += mr * kc) {
    const int m = int(std::min<int64_t>(mr, mc - i));
    const typename PA::S* ai = a + i * rsA;
    if constexpr (std::is_same_v<PA, Same<T>>) {
      if (transpose16 && csA == 1 && mr <= 16) {  // row-major A: 16 k at a time in registers
        for (int64_t k = 0; k < kc; k += 16)
          transpose16(ai + k, rsA, m, int(std::min<int64_t>(16, kc - k)), dst + k * mr, mr, mr);
        continue;
      }
    }
    if (iabs(rsA) <= iabs(csA)) {  // rows adjacent in memory (A^T): walk r fastest
      for (int64_t k = 0; k < kc; ++k) {
        for (int r = 0; r < m; ++r) dst[k * mr + r] = PA::at(ai + r * rsA + k * csA);
        for (int r = m; r < mr; ++r) dst[k * mr + r] = T(0);
      }
    } else {  // k adjacent in memory (row-major A): walk k fastest
      for (int r = 0; r < m; ++r)
        for (int64_t k = 0; k < kc; ++k) dst[k * mr + r] = PA::at(ai + r * rsA + k * csA);
      for (int r = m; r < mr; ++r)
        for (int64_t k = 0; k < kc; ++k) dst[k * mr + r] = T(0);
    }
  }
}

// b: (kc, nc) block of B at stride (rsB, csB) -> dst: ceil(nc/nr) panels of (kc, nr), k-major,
// columns past nc zero-filled.
template <class T, class PB>
void pack_b(int64_t kc, int64_t nc, const typename PB::S* b, int64_t rsB, int64_t csB, int nr,
            detail::Transpose16<T> transpose16, T* __restrict__ dst) {
  for (int64_t j = 0; j < nc; j += nr, dst += nr * kc) {
    const int n = int(std::min<int64_t>(nr, nc - j));
    const typename PB::S* bj = b + j * csB;
    if constexpr (std::is_same_v<PB, Same<T>>) {
      if (transpose16 && rsB == 1 && nr % 16 == 0) {  // B = W^T: 16 columns x 16 k at a time
        for (int c = 0; c < nr; c += 16) {
          const int cols = std::clamp(n - c, 0, 16);
          const T* src = cols > 0 ? bj + c * csB : bj;
          for (int64_t k = 0; k < kc; k += 16)
            transpose16(src + k, csB, cols, int(std::min<int64_t>(16, kc - k)), dst + k * nr + c,
                        nr, 16);
        }
        continue;
      }
    }
    if (iabs(csB) <= iabs(rsB)) {  // row-major B: each k row of the panel is a contiguous run
      for (int64_t k = 0; k < kc; ++k) {
        const typename PB::S* bk = bj + k * rsB;
        T* d = dst + k * nr;
        if (std::is_same_v<PB, Same<T>> && csB == 1)  // an inline loop: a libc memcpy call per
          for (int c = 0; c < n; ++c) d[c] = T(PB::at(bk + c));  // k row of nr floats was ~15% of a conv
        else if (csB == 1)
          for (int c = 0; c < n; ++c) d[c] = PB::at(bk + c);
        else
          for (int c = 0; c < n; ++c) d[c] = PB::at(bk + c * csB);
        for (int c = n; c < nr; ++c) d[c] = T(0);
      }
    } else {  // B = W^T of a row-major W: columns contiguous; transpose 16 k at a time in L1
      for (int64_t k0 = 0; k0 < kc; k0 += 16) {
        const int kn = int(std::min<int64_t>(16, kc - k0));
        for (int c = 0; c < n; ++c) {
          const typename PB::S* bc = bj + c * csB + k0 * rsB;
          for (int k = 0; k < kn; ++k) dst[(k0 + k) * nr + c] = PB::at(bc + k * rsB);
        }
        for (int k = 0; k < kn; ++k)
          for (int c = n; c < nr; ++c) dst[(k0 + k) * nr + c] = T(0);
      }
    }
  }
}

// Per-thread pack buffers, kept across calls (OpenMP reuses its threads).
struct PackBuffer {
  void* data = nullptr;
  size_t bytes = 0;
  ~PackBuffer() { std::free(data); }
  template <class T>
  T* get(size_t n) {
    if (n * sizeof(T) > bytes) {
      std::free(data);
      bytes = round_up(int64_t(n * sizeof(T)), 4096);
      data = std::aligned_alloc(64, bytes);
      VT_CHECK(data != nullptr, "gemm: cannot allocate ", bytes, " bytes of pack buffer");
    }
    return static_cast<T*>(data);
  }
};
thread_local PackBuffer tls_pack;

// ---- the packed path on one thread's block of C ------------------------------------------------

// B given in memory at strides (rsB, csB): packs the (kc, nc) block at (k0, n0).
template <class T, class PB>
struct StridedB {
  const typename PB::S* B;
  int64_t rsB, csB;
  detail::Transpose16<T> transpose16;
  void operator()(int64_t k0, int64_t kc, int64_t n0, int64_t nc, int nr, T* dst) const {
    pack_b<T, PB>(kc, nc, B + k0 * rsB + n0 * csB, rsB, csB, nr, transpose16, dst);
  }
};

// packb(k0, kc, n0, nc, nr, dst) writes B's (kc, nc) block at row k0, column n0 (n0 counted from
// this block's first column) as ceil(nc / nr) panels (kc, nr), k-major, columns past nc zero.
template <class T, class PA, class PackB>
void gemm_block(const KernelSet<T>& ks, int64_t M, int64_t N, int64_t K, T alpha,
                const typename PA::S* A, int64_t rsA, int64_t csA, const PackB& packb, T beta, T* C,
                int64_t rsC, int64_t csC) {
  const int mr = ks.mr, nr = ks.nr;
  // Equal blocks no larger than the tuned ones (K = 896 runs as 3 x 299, not 384 + 384 + 128),
  // holding whole micro-panels: MC and NC round up to multiples of MR and NR.
  const int64_t MC = round_up(balanced_block(M, ks.mc), mr), KC = balanced_block(K, ks.kc),
                NC = round_up(balanced_block(N, ks.nc), nr);
  T* ap = tls_pack.get<T>(size_t(MC * KC + KC * NC + 64 / sizeof(T)));
  T* bp = ap + MC * KC;
  alignas(64) T tile[2048 / sizeof(T)];  // edge tiles go through it
  VT_CHECK(mr * nr * sizeof(T) <= sizeof(tile), "gemm: micro-tile ", mr, "x", nr, " too large");

  for (int64_t ic = 0; ic < M; ic += MC) {
    const int64_t mc = std::min(MC, M - ic);
    for (int64_t pc = 0; pc < K; pc += KC) {
      const int64_t kc = std::min(KC, K - pc);
      const T beta_pass = pc == 0 ? beta : T(1);
      pack_a<T, PA>(mc, kc, A + ic * rsA + pc * csA, rsA, csA, mr, ks.transpose16, ap);
      for (int64_t jc = 0; jc < N; jc += NC) {
        const int64_t nc = std::min(NC, N - jc);
        packb(pc, kc, jc, nc, nr, bp);
        for (int64_t ir = 0; ir < mc; ir += mr) {
          const int m = int(std::min<int64_t>(mr, mc - ir));
          const T* a = ap + ir * kc;
          for (int64_t jr = 0; jr < nc; jr += nr) {
            const int n = int(std::min<int64_t>(nr, nc - jr));
            const T* b = bp + jr * kc;
            T* c = C + (ic + ir) * rsC + (jc + jr) * csC;
            if (m == mr && n == nr && csC == 1) {
              ks.kernel(kc, a, b, c, rsC, alpha, beta_pass);
              continue;
            }
            // Edge or strided tile: run the same kernel on a copy, so the arithmetic (and the
            // rounding) is exactly that of a full tile.
            if (beta_pass != T(0))
              for (int r = 0; r < mr; ++r)
                for (int q = 0; q < nr; ++q)
                  tile[r * nr + q] = r < m && q < n ? c[r * rsC + q * csC] : T(0);
            ks.kernel(kc, a, b, tile, nr, alpha, beta_pass);
            for (int r = 0; r < m; ++r)
              for (int q = 0; q < n; ++q) c[r * rsC + q * csC] = tile[r * nr + q];
          }
        }
      }
    }
  }
}

// Rows and columns of C are cut into tm x tn blocks, tm * tn = threads, along micro-tile edges;
// the split minimises the largest block's arithmetic plus its packing.
struct Split {
  int tm, tn;
};
Split choose_split(int threads, int64_t M, int64_t N, int64_t K, int mr, int nr, int64_t mc) {
  Split best{1, threads};
  double best_cost = 1e300;
  for (int tm = 1; tm <= threads; ++tm) {
    if (threads % tm) continue;
    const int tn = threads / tm;
    const double rows = double((M + mr - 1) / mr + tm - 1) / tm * mr;
    const double cols = double((N + nr - 1) / nr + tn - 1) / tn * nr;
    const double passes = std::ceil(rows / double(mc));
    const double cost = rows * cols * K / 16.0 + (rows + passes * cols) * K;
    if (cost < best_cost) best_cost = cost, best = {tm, tn};
  }
  return best;
}

// [begin, end) of part `i` of `parts` when `len` is cut along multiples of `unit`.
void part_range(int64_t len, int unit, int parts, int i, int64_t& begin, int64_t& end) {
  const int64_t units = (len + unit - 1) / unit;
  const int64_t base = units / parts, extra = units % parts;
  const int64_t u0 = i * base + std::min<int64_t>(i, extra);
  const int64_t u1 = u0 + base + (i < extra ? 1 : 0);
  begin = std::min(len, u0 * unit);
  end = std::min(len, u1 * unit);
}

// ---- the direct path for small or thin problems -----------------------------------------------

// One block of C, rows [i0, i0 + mt), columns [j0, j0 + jn), mt * jn <= kDirectTile, accumulated
// in a stack tile. Fewer rows make wider blocks, so a GEMV streams long runs of each B row.
constexpr int kDirectRows = 8, kDirectTile = 4096;

template <class T, class PA, class PB>
void gemm_direct_block(int64_t i0, int mt, int64_t j0, int jn, int64_t K, T alpha,
                       const typename PA::S* A, int64_t rsA, int64_t csA, const typename PB::S* B,
                       int64_t rsB, int64_t csB, T beta, T* C, int64_t rsC, int64_t csC) {
  alignas(64) T tile[kDirectTile];
  auto acc = [&](int i) { return tile + i * jn; };  // acc(i)[q]: C[i0 + i, j0 + q]
  if (iabs(csB) <= iabs(rsB) || K < 16) {
    // axpy form: acc[i][j] += A(i,k) * B(k,j), one (widened) B row segment shared by mt rows.
    alignas(64) T brow[kDirectTile];
    for (int q = 0; q < mt * jn; ++q) tile[q] = T(0);
    for (int64_t k = 0; k < K; ++k) {
      const typename PB::S* b = B + k * rsB + j0 * csB;
      if (csB == 1)
        for (int q = 0; q < jn; ++q) brow[q] = PB::at(b + q);
      else
        for (int q = 0; q < jn; ++q) brow[q] = PB::at(b + q * csB);
      for (int i = 0; i < mt; ++i) {
        const T aik = PA::at(A + (i0 + i) * rsA + k * csA);
        T* __restrict__ row = acc(i);
        for (int q = 0; q < jn; ++q) row[q] += aik * brow[q];
      }
    }
  } else {
    // dot form (B columns contiguous, as in x . W^T): 16 partial sums per element, then a fixed
    // tree, so the order is the same for every element.
    for (int i = 0; i < mt; ++i)
      for (int q = 0; q < jn; ++q) {
        const typename PA::S* a = A + (i0 + i) * rsA;
        const typename PB::S* b = B + (j0 + q) * csB;
        T part[16] = {};
        int64_t k = 0;
        if (csA == 1 && rsB == 1) {
          for (; k + 16 <= K; k += 16)
            for (int l = 0; l < 16; ++l) part[l] += PA::at(a + k + l) * PB::at(b + k + l);
        } else {
          for (; k + 16 <= K; k += 16)
            for (int l = 0; l < 16; ++l)
              part[l] += PA::at(a + (k + l) * csA) * PB::at(b + (k + l) * rsB);
        }
        for (int l = 0; k + l < K; ++l) part[l] += PA::at(a + (k + l) * csA) * PB::at(b + (k + l) * rsB);
        for (int w = 8; w >= 1; w /= 2)
          for (int l = 0; l < w; ++l) part[l] += part[l + w];
        acc(i)[q] = part[0];
      }
  }
  for (int i = 0; i < mt; ++i) {
    T* c = C + (i0 + i) * rsC + j0 * csC;
    for (int q = 0; q < jn; ++q) {
      T& cq = c[q * csC];
      cq = beta == T(0) ? alpha * acc(i)[q] : alpha * acc(i)[q] + beta * cq;
    }
  }
}

template <class T, class PA, class PB>
void gemm_direct(int64_t M, int64_t N, int64_t K, T alpha, const typename PA::S* A, int64_t rsA,
                 int64_t csA, const typename PB::S* B, int64_t rsB, int64_t csB, T beta, T* C,
                 int64_t rsC, int64_t csC, int threads) {
  const int rows = int(std::min<int64_t>(kDirectRows, M));
  int cols = kDirectTile / rows;
  // A GEMV (M = 1, the decode step of an LLM) is one row of blocks: narrow the blocks until every
  // thread has a couple, or a 896-wide projection would run on one thread at half the bandwidth.
  // Each C element is summed the same way in any block, so results do not change.
  if (threads > 1 && M <= kDirectRows)
    cols = int(std::clamp<int64_t>(((N + 2 * threads - 1) / (2 * threads) + 15) & ~int64_t{15}, 16, cols));
  const int64_t row_blocks = (M + rows - 1) / rows;
  const int64_t col_blocks = (N + cols - 1) / cols, items = row_blocks * col_blocks;
  auto run = [&](int64_t t) {
    const int64_t i0 = (t / col_blocks) * rows, j0 = (t % col_blocks) * cols;
    gemm_direct_block<T, PA, PB>(i0, int(std::min<int64_t>(rows, M - i0)), j0,
                                 int(std::min<int64_t>(cols, N - j0)), K, alpha, A, rsA, csA, B,
                                 rsB, csB, beta, C, rsC, csC);
  };
  if (threads <= 1 || items == 1) {  // no OpenMP region at all: tiny calls pay nothing for it
    for (int64_t t = 0; t < items; ++t) run(t);
    return;
  }
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t t = 0; t < items; ++t) run(t);
}

// The packed path over `threads` blocks of C cut along micro-tile edges (choose_split); each block
// packs its own rows of A and, through `packb`, its own columns of B.
template <class T, class PA, class PackB>
void gemm_packed(const KernelSet<T>& ks, int64_t M, int64_t N, int64_t K, T alpha, const typename PA::S* A,
                 int64_t rsA, int64_t csA, const PackB& packb, T beta, T* C, int64_t rsC, int64_t csC,
                 int threads) {
  if (threads <= 1) return gemm_block<T, PA>(ks, M, N, K, alpha, A, rsA, csA, packb, beta, C, rsC, csC);
  const Split split = choose_split(threads, M, N, K, ks.mr, ks.nr, ks.mc);
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    // A runtime that gave fewer threads than asked leaves the extra blocks to thread 0.
    const int got = omp_get_num_threads();
    for (int b = t; b < split.tm * split.tn; b += got) {
      int64_t m0, m1, n0, n1;
      part_range(M, ks.mr, split.tm, b / split.tn, m0, m1);
      part_range(N, ks.nr, split.tn, b % split.tn, n0, n1);
      if (m1 <= m0 || n1 <= n0) continue;
      // The block's packer sees columns from its own first column n0.
      auto block_b = [&packb, n0](int64_t k0, int64_t kc, int64_t j, int64_t nc, int nr, T* dst) {
        packb(k0, kc, n0 + j, nc, nr, dst);
      };
      gemm_block<T, PA>(ks, m1 - m0, n1 - n0, K, alpha, A + m0 * rsA, rsA, csA, block_b, beta,
                        C + m0 * rsC + n0 * csC, rsC, csC);
    }
  }
}

// ---- entry ------------------------------------------------------------------------------------

template <class T, class PA, class PB>
void gemm_any(const KernelSet<T>& ks, int64_t M, int64_t N, int64_t K, T alpha,
              const typename PA::S* A, int64_t rsA, int64_t csA, const typename PB::S* B,
              int64_t rsB, int64_t csB, T beta, T* C, int64_t rsC, int64_t csC) {
  VT_CHECK(M >= 0 && N >= 0 && K >= 0, "gemm: negative size M=", M, " N=", N, " K=", K);
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == T(0)) return scale_c(M, N, beta, C, rsC, csC);
  // The kernels store along rows of C; a column-major C is the transposed problem
  // C^T = B^T . A^T, which swaps the operands (and their storage types).
  if (iabs(csC) > iabs(rsC))
    return gemm_any<T, PB, PA>(ks, N, M, K, alpha, B, csB, rsB, A, csA, rsA, beta, C, csC, rsC);
  const double macs = double(M) * double(N) * double(K);
  int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  const bool thin = M < 8 || N < 8 || K < 8 || macs < 32.0 * 32 * 32;
  if (thin) {
    if (macs < double(1 << 18)) threads = 1;  // ~1 MB of f32 operands: below, a region costs more
    return gemm_direct<T, PA, PB>(M, N, K, alpha, A, rsA, csA, B, rsB, csB, beta, C, rsC, csC,
                                  threads);
  }
  if (macs < 96.0 * 96 * 96) threads = 1;
  gemm_packed<T, PA>(ks, M, N, K, alpha, A, rsA, csA, StridedB<T, PB>{B, rsB, csB, ks.transpose16}, beta, C, rsC,
                     csC, threads);
}

}  // namespace

void gemm_f32(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t rsA, int64_t csA,
              const float* B, int64_t rsB, int64_t csB, float beta, float* C, int64_t rsC,
              int64_t csC) {
  gemm_any<float, Same<float>, Same<float>>(detail::active_kernel_f32(), M, N, K, alpha, A, rsA,
                                            csA, B, rsB, csB, beta, C, rsC, csC);
}

void gemm_f32_pack_b(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t rsA, int64_t csA,
                     const PackBFn& pack_b, float beta, float* C, int64_t rsC) {
  VT_CHECK(M >= 0 && N >= 0 && K >= 0, "gemm: negative size M=", M, " N=", N, " K=", K);
  if (M == 0 || N == 0) return;
  const KernelSet<float>& ks = detail::active_kernel_f32();
  if (K == 0 || alpha == 0.f) return scale_c(M, N, beta, C, rsC, int64_t{1});
  const double macs = double(M) * double(N) * double(K);
  const int threads = omp_in_parallel() || macs < 96.0 * 96 * 96 ? 1 : omp_get_max_threads();
  auto packb = [&pack_b](int64_t k0, int64_t kc, int64_t n0, int64_t nc, int nr, float* dst) {
    pack_b(k0, kc, n0, nc, nr, dst);
  };
  gemm_packed<float, Same<float>>(ks, M, N, K, alpha, A, rsA, csA, packb, beta, C, rsC, int64_t{1}, threads);
}

void gemm_f64(int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t rsA,
              int64_t csA, const double* B, int64_t rsB, int64_t csB, double beta, double* C,
              int64_t rsC, int64_t csC) {
  gemm_any<double, Same<double>, Same<double>>(detail::active_kernel_f64(), M, N, K, alpha, A, rsA,
                                               csA, B, rsB, csB, beta, C, rsC, csC);
}

void gemm_bf16_f32acc(int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A, int64_t rsA,
                      int64_t csA, const uint16_t* B, int64_t rsB, int64_t csB, float beta,
                      float* C, int64_t rsC, int64_t csC) {
  gemm_any<float, BF16, BF16>(detail::active_kernel_f32(), M, N, K, alpha, A, rsA, csA, B, rsB, csB,
                              beta, C, rsC, csC);
}

void gemm_f16_f32acc(int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A, int64_t rsA,
                     int64_t csA, const uint16_t* B, int64_t rsB, int64_t csB, float beta,
                     float* C, int64_t rsC, int64_t csC) {
  gemm_any<float, F16, F16>(detail::active_kernel_f32(), M, N, K, alpha, A, rsA, csA, B, rsB, csB,
                            beta, C, rsC, csC);
}

}  // namespace vt::cpu
