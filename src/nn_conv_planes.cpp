// nn_conv_planes.cpp: the f32 conv2d of the CPU, an implicit GEMM over phase planes of the
// zero-padded input; no im2col column is ever stored.
//
// The input is copied once (about its own size) into sh*sw zero-padded phase planes per channel:
//   plane[c][a][b] (Hq, Wq):  plane(r, s) = x[c, r*sh + a - top, s*sw + b - left]   (0 outside x)
// Tap k = (c, i, j) of output (oh, ow) is then plane[c][i%sh][j%sw](oh + i/sh, ow + j/sw): for every
// tap, one output row is a contiguous run of one plane, starting at tap[k] + oh*Wq + ow.
//   forward      out[n] (O, P) = w (O, K) @ col(x[n]) (K, P): micro-kernels that load B's row k
//                straight from the run of tap k (gemm_kernels.h, offset kernels), so B is never
//                packed; only w is, once per call.
//   grad-input   stride 1: dx[n] = conv(gout[n], w') with w'[c, o, i, j] = w[o, c, kh-1-i, kw-1-j] and
//                padding (kh-1-top, kw-1-left): the forward again, on planes of gout. (A strided
//                conv's grad-input stays on im2col's GEMM + col2im, nn_conv.cpp.)
//   grad-weight  dw (O, K) = sum_n gout[n] (O, P) @ col(x[n])^T (P, K): cpu::gemm_f32_pack_b, whose
//                B panels are each tap's runs written down a column (8 x 8 AVX2 transposes).
// Measured on the 2-core AMD EPYC (Zen 3, AVX2) at 32 channels, 64x64: the old packer (im2col
// indices per element, straight from the image) cost half as much as the multiply, the backward's
// stored column and col2im a third of its time; see README (CPU conv2d) for the numbers.
// Summation order: each output element is one FMA chain over the reduction in fixed KC passes;
// grad-weight adds the images in order (each image's GEMM accumulates into dw with beta 1). Threads
// split the output (images, blocks of output rows, or GEMM blocks), never a reduction, so results
// are bitwise identical on any thread count.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "nn_conv_cpu.h"
#include "gemm_kernels.h"
#include "vt/cpu/gemm.h"
#include "vt/error.h"

namespace vt::nn::detail {
namespace {

constexpr int kMaxNr = 64;  // widest micro-tile of any kernel set (edge tiles, plane slack)

// The planes of a batch of src (N, C, H, W), read by a (kh, kw) conv with strides (sh, sw) whose
// padded origin is at (-top, -left) and whose output is (Ho, Wo); a negative top or left crops.
// make_planes sizes them and the taps; fill(q) writes plane q = ((n*C + c)*sh + a)*sw + b, so a
// caller fills them inside the parallel region that uses them.
struct Planes {
  int64_t Hq = 0, Wq = 0, per_image = 0;  // per_image = C * sh * sw * Hq * Wq
  std::vector<int64_t> tap;                // (C*kh*kw): run start of tap k for output (0, 0)
  std::unique_ptr<float[]> data;           // (N, C, sh, sw, Hq, Wq), then kMaxNr floats of zero slack
  const float* src = nullptr;
  int64_t C = 0, H = 0, W = 0, sh = 1, sw = 1, top = 0, left = 0;

  const float* image(int64_t n) const { return data.get() + n * per_image; }
  int64_t per_image_planes() const { return C * sh * sw; }
  void fill(int64_t q) const {
    auto ceil_div = [](int64_t a, int64_t b) { return a <= 0 ? -((-a) / b) : (a + b - 1) / b; };
    const int64_t b = q % sw, a = (q / sw) % sh, nc = q / (sh * sw);
    // columns s with 0 <= s*sw + b - left < W: [lo, hi)
    const int64_t lo = std::clamp<int64_t>(ceil_div(left - b, sw), 0, Wq);
    const int64_t hi = std::clamp<int64_t>(ceil_div(W + left - b, sw), lo, Wq);
    float* d = data.get() + q * Hq * Wq;
    for (int64_t r = 0; r < Hq; ++r, d += Wq) {
      const int64_t y = r * sh + a - top;
      if (y < 0 || y >= H) {
        std::fill(d, d + Wq, 0.f);
        continue;
      }
      const float* xs = src + (nc * H + y) * W + b - left;  // xs[s*sw] = x[n, c, y, s*sw + b - left]
      std::fill(d, d + lo, 0.f);
      if (sw == 1) std::copy(xs + lo, xs + hi, d + lo);
      else for (int64_t s = lo; s < hi; ++s) d[s] = xs[s * sw];
      std::fill(d + hi, d + Wq, 0.f);
    }
  }
};

Planes make_planes(const float* src, int64_t N, int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw,
                   int64_t sh, int64_t sw, int64_t top, int64_t left, int64_t Ho, int64_t Wo) {
  Planes pl;
  pl.Hq = Ho + (kh - 1) / sh;
  pl.Wq = Wo + (kw - 1) / sw;
  const int64_t plane = pl.Hq * pl.Wq, planes = N * C * sh * sw;
  pl.per_image = C * sh * sw * plane;
  pl.tap.resize(size_t(C * kh * kw));
  for (int64_t c = 0; c < C; ++c)
    for (int64_t i = 0; i < kh; ++i)
      for (int64_t j = 0; j < kw; ++j)
        pl.tap[size_t((c * kh + i) * kw + j)] = ((c * sh + i % sh) * sw + j % sw) * plane + (i / sh) * pl.Wq + j / sw;
  pl.data.reset(new float[size_t(planes * plane + kMaxNr)]);
  std::fill(pl.data.get() + planes * plane, pl.data.get() + planes * plane + kMaxNr, 0.f);
  pl.src = src;
  pl.C = C, pl.H = H, pl.W = W, pl.sh = sh, pl.sw = sw, pl.top = top, pl.left = left;
  return pl;
}

// d[e * ld + c] = s[c][e] for 8 runs s[c] and e < 8: an 8 x 8 transpose in AVX2 registers.
__attribute__((target("avx2"))) void transpose8(const float* const* s, int64_t e, float* d, int64_t ld) {
  __m256 r[8], t[8];
  for (int c = 0; c < 8; ++c) r[c] = _mm256_loadu_ps(s[c] + e);
  for (int c = 0; c < 8; c += 2) {
    t[c] = _mm256_unpacklo_ps(r[c], r[c + 1]);
    t[c + 1] = _mm256_unpackhi_ps(r[c], r[c + 1]);
  }
  for (int h = 0; h < 8; h += 4) {  // r[h + q]: elements 4q'.. of runs h..h+3, per 128-bit lane
    r[h + 0] = _mm256_shuffle_ps(t[h], t[h + 2], 0x44);
    r[h + 1] = _mm256_shuffle_ps(t[h], t[h + 2], 0xEE);
    r[h + 2] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0x44);
    r[h + 3] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0xEE);
  }
  for (int q = 0; q < 4; ++q) {
    _mm256_storeu_ps(d + q * ld, _mm256_permute2f128_ps(r[q], r[4 + q], 0x20));
    _mm256_storeu_ps(d + (q + 4) * ld, _mm256_permute2f128_ps(r[q], r[4 + q], 0x31));
  }
}
bool has_avx2() {  // asked at first use, not in a static initialiser (cpu features may not be read yet)
  static const bool yes = __builtin_cpu_supports("avx2");
  return yes;
}

// B = col^T (P, K) of one image, for grad-weight: the (kc, nc) block at (p0, t0) as panels (kc, nr),
// nr taps wide. Rows of a panel go by runs of positions inside one output row; each tap's run is
// written down a column of the panel, 8 taps x 8 positions at a time where the CPU has AVX2.
void pack_col_t(const float* img, const Planes& pl, int64_t Wo, int64_t p0, int64_t kc, int64_t t0, int64_t nc,
                int nr, float* dst) {
  for (int64_t j = 0; j < nc; j += nr, dst += nr * kc) {
    const int n = int(std::min<int64_t>(nr, nc - j));
    const int64_t* tap = pl.tap.data() + t0 + j;
    for (int64_t u = 0; u < kc;) {
      const int64_t p = p0 + u, ow = p % Wo, len = std::min(Wo - ow, kc - u);
      const float* src = img + p / Wo * pl.Wq + ow;
      float* d = dst + u * nr;
      int c = 0;
      if (has_avx2())
        for (; c + 8 <= n; c += 8) {
          const float* s[8];
          for (int q = 0; q < 8; ++q) s[q] = src + tap[c + q];
          int64_t e = 0;
          for (; e + 8 <= len; e += 8) transpose8(s, e, d + e * nr + c, nr);
          for (; e < len; ++e)
            for (int q = 0; q < 8; ++q) d[e * nr + c + q] = s[q][e];
        }
      for (; c < n; ++c) {
        const float* s = src + tap[c];
        for (int64_t e = 0; e < len; ++e) d[e * nr + c] = s[e];
      }
      for (int64_t e = 0; e < len; ++e)
        for (c = n; c < nr; ++c) d[e * nr + c] = 0.f;
      u += len;
    }
  }
}

// out[n] (M, Ho*Wo) = a (M, K) @ col(planes of image n), for every image, by the micro-kernels that
// read B in place (cpu::detail::offset_kernels_f32): B's row k for the output columns (oh, ow..) is
// the run at tap[k] + oh*Wq + ow, so nothing of B is packed; only a is, once, in panels of mr rows
// (the last panel has M % mr rows and its own kernel). Loop nest for one image:
//   for blocks of output rows (~kBlockCols columns, run in parallel when images are not):
//     for KC passes over K:  for rows oh:  for nr-wide column tiles:  for a panels: micro-kernel
// A tile past the row's end (Wo not a multiple of nr) runs on a copy: its loads read on into the
// next plane row (or the slack after the planes), values it drops.
constexpr int64_t kKc = 256, kBlockCols = 512;

void gemm_images(const float* a, int64_t M, int64_t N, const Planes& pl, int64_t K, int64_t Ho, int64_t Wo,
                 float* out) {
  const cpu::detail::OffsetKernelsF32& ks = cpu::detail::offset_kernels_f32();
  const int mr = ks.mr, nr = ks.nr;
  const int64_t P = Ho * Wo, panels = (M + mr - 1) / mr;
  const int64_t passes = (K + kKc - 1) / kKc, KC = (K + passes - 1) / passes;  // equal passes of <= kKc
  VT_CHECK(mr <= 8 && nr <= kMaxNr, "conv2d: micro-tile ", mr, "x", nr, " over 8x", kMaxNr);
  // ap: panel i (rows [i*mr, i*mr + m)) is (K, m) k-major at ap + i*mr*K
  std::unique_ptr<float[]> ap(new float[size_t(panels * mr * K)]);
  for (int64_t i = 0; i < panels; ++i) {
    const int m = int(std::min<int64_t>(mr, M - i * mr));
    for (int64_t k = 0; k < K; ++k)
      for (int r = 0; r < m; ++r) ap[size_t(i * mr * K + k * m + r)] = a[(i * mr + r) * K + k];
  }
  // Blocks of about kBlockCols output columns; at least two per thread when the threads share an image.
  const bool images_in_parallel = by_image(N);
  const int64_t threads = images_in_parallel || omp_in_parallel() ? 1 : omp_get_max_threads();
  int64_t rows_per = kBlockCols / std::max<int64_t>(Wo, 1);
  if (threads > 1) rows_per = std::min(rows_per, (Ho + 2 * threads - 1) / (2 * threads));
  rows_per = std::clamp<int64_t>(rows_per, 1, std::max<int64_t>(Ho, 1));
  const int64_t blocks = (Ho + rows_per - 1) / rows_per;
  auto block = [&](int64_t n, int64_t blk) {  // output rows [oh0, oh1) of image n
    const float* img = pl.image(n);
    float* outn = out + n * M * P;
    alignas(64) float tile[8 * kMaxNr];
    const int64_t oh0 = blk * rows_per, oh1 = std::min(Ho, oh0 + rows_per);
    for (int64_t pc = 0; pc < K; pc += KC) {
      const int64_t kc = std::min(KC, K - pc);
      const int64_t* tap = pl.tap.data() + pc;
      for (int64_t oh = oh0; oh < oh1; ++oh)
        for (int64_t ow = 0; ow < Wo; ow += nr) {
          const int n_cols = int(std::min<int64_t>(nr, Wo - ow));
          const float* b = img + oh * pl.Wq + ow;
          for (int64_t i = 0; i < panels; ++i) {
            const int m = int(std::min<int64_t>(mr, M - i * mr));
            const float* apan = ap.get() + i * mr * K + pc * m;
            float* c = outn + i * mr * P + oh * Wo + ow;
            if (n_cols == nr) {
              ks.by_rows[m](kc, apan, b, tap, c, P, pc > 0);
              continue;
            }
            if (pc > 0)
              for (int r = 0; r < m; ++r) std::copy(c + r * P, c + r * P + n_cols, tile + r * nr);
            ks.by_rows[m](kc, apan, b, tap, tile, nr, pc > 0);
            for (int r = 0; r < m; ++r) std::copy(tile + r * nr, tile + r * nr + n_cols, c + r * P);
          }
        }
    }
  };
  const int64_t q_img = pl.per_image_planes();
  if (images_in_parallel) {  // one region: each thread fills its images' planes, then runs them
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t q = n * q_img; q < (n + 1) * q_img; ++q) pl.fill(q);
      for (int64_t blk = 0; blk < blocks; ++blk) block(n, blk);
    }
  } else {
#pragma omp parallel for schedule(static) if (threads > 1 && N * pl.per_image > (1 << 15))
    for (int64_t q = 0; q < N * q_img; ++q) pl.fill(q);
    for (int64_t n = 0; n < N; ++n) {
#pragma omp parallel for schedule(static) if (threads > 1 && blocks > 1 && M * P * K > (1 << 20))
      for (int64_t blk = 0; blk < blocks; ++blk) block(n, blk);
    }
  }
}

}  // namespace

void conv2d_planes_forward(const float* x, const float* w, const ConvGeom& g, const Conv2dOptions& o, float* out) {
  const Planes pl = make_planes(x, g.N, g.C, g.H, g.W, g.kh, g.kw, o.stride_h, o.stride_w, o.pad.top, o.pad.left,
                                g.Ho, g.Wo);
  gemm_images(w, g.O, g.N, pl, g.K(), g.Ho, g.Wo, out);
}

void conv2d_planes_grad_weight(const float* x, const float* gout, const ConvGeom& g, const Conv2dOptions& o,
                               float* dw) {
  const Planes pl = make_planes(x, g.N, g.C, g.H, g.W, g.kh, g.kw, o.stride_h, o.stride_w, o.pad.top, o.pad.left,
                                g.Ho, g.Wo);
  const int64_t K = g.K(), P = g.P();
  if (g.N == 0) std::fill(dw, dw + g.O * K, 0.f);
  // One region: the threads fill the planes, then each takes a slice of dw's columns (taps, in
  // units of 16) for every image in turn: dw[:, k0:k1] (+)= gout[n] (O, P) @ col^T (P, k0:k1).
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
#pragma omp parallel num_threads(threads) if (threads > 1 && g.N * g.O * K * P > (1 << 21))
  {
#pragma omp for schedule(static)
    for (int64_t q = 0; q < g.N * pl.per_image_planes(); ++q) pl.fill(q);
    const int64_t units = (K + 15) / 16, parts = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t k0 = std::min(K, (units * t / parts) * 16), k1 = std::min(K, (units * (t + 1) / parts) * 16);
    for (int64_t n = 0; n < g.N && k1 > k0; ++n) {
      const float* img = pl.image(n);
      cpu::gemm_f32_pack_b(g.O, k1 - k0, P, 1.f, gout + n * g.O * P, P, 1,
                           [&](int64_t p0, int64_t kc, int64_t t0, int64_t nc, int nr, float* dst) {
                             pack_col_t(img, pl, g.Wo, p0, kc, k0 + t0, nc, nr, dst);
                           },
                           n == 0 ? 0.f : 1.f, dw + k0, K);
    }
  }
}

void conv2d_planes_grad_input(const float* w, const float* gout, const ConvGeom& g, const Conv2dOptions& o,
                              float* dx) {
  VT_CHECK(o.stride_h == 1 && o.stride_w == 1, "conv2d_planes_grad_input: stride (", o.stride_h, ", ", o.stride_w,
           ") is not 1");
  // w' (C, O, kh, kw): the weight flipped in space, input and output channels swapped.
  const int64_t taps = g.kh * g.kw;
  std::unique_ptr<float[]> wt(new float[size_t(g.C * g.O * taps)]);
  for (int64_t oc = 0; oc < g.O; ++oc)
    for (int64_t c = 0; c < g.C; ++c)
      for (int64_t t = 0; t < taps; ++t) wt[size_t((c * g.O + oc) * taps + t)] = w[(oc * g.C + c) * taps + taps - 1 - t];
  const Planes pl = make_planes(gout, g.N, g.O, g.Ho, g.Wo, g.kh, g.kw, 1, 1, g.kh - 1 - o.pad.top,
                                g.kw - 1 - o.pad.left, g.H, g.W);
  gemm_images(wt.get(), g.C, g.N, pl, g.O * taps, g.H, g.W, dx);
}

}  // namespace vt::nn::detail
