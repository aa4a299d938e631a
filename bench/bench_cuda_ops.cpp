// bench_cuda_ops: GPU throughput of the core CUDA ops, through vt's public op API.
//
//   gemm_8192      bf16 (8192, 8192) @ (8192, 8192), f32 accumulation     TFLOP/s
//   gemm_ffn       bf16 (8192, 3584) @ (3584, 18944) (Qwen2-7B MLP up)    TFLOP/s
//                  (and gemm_ffn_repeat: the same, timed again at the end)
//   add_bf16       a + b over 256M bf16 elements (read 2, write 1)        GB/s
//   bias_add_bf16  (65536, 4096) + (4096) broadcast, bf16                 GB/s
//   memcpy_d2d     cudaMemcpyAsync of 512 MiB (read + write)              GB/s, the bandwidth ceiling
//   sum_rows_bf16  sum over the last dim of (32768, 8192) bf16            GB/s
//   sum_cols_f32   sum over dim 0 of (8192, 8192) f32                     GB/s
//   attn_causal    SDPA fwd+bwd, bf16, B=4 H=16 T=2048 D=128, causal       TFLOP/s (7·B·H·T²·D)
//   attn_causal_fwd  the same, forward only                               TFLOP/s (2·B·H·T²·D)
//   attn_block     SDPA fwd+bwd, Infinity 512px block-causal (10 scales, 2521 tokens padded to
//                  2560), B=4 H=16 D=128                                  TFLOP/s (14·B·H·D per visible pair)
//   attn_block_fwd the same, forward only                                 TFLOP/s (4·B·H·D per visible pair)
//   attn_*_atomic  fwd+bwd with VT_FLASH_BWD=atomic (dQ by atomics in the dK dV kernel, no dQ kernel)
//   attn_causal_cudnn, _cudnn_det, _fwd_cudnn   cuDNN's fused SDPA (VT_ATTENTION_CUDNN=1, =deterministic)
// --only PREFIX runs the rows whose key starts with PREFIX (gpu_check's attn stage: --only attn).
// Inputs are random (never zeros: see METHOD.md). Each op runs 3 warm-ups, then N timed runs, each
// between two CUDA events on vt's stream; the median is reported. Output lines start with "vt " so
// scripts/gpu_check.sh and bench/torch_gpu_baseline.py can join them with PyTorch's numbers.
#ifdef VT_WITH_CUDA
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "gpu_bench.h"
#include "vt/cuda.h"
#include "vt/nn/attention.h"
#include "vt/ops.h"

using namespace vt;
using namespace vt::bench;


// SDPA on bf16 (B=4, H=16, T, D=128) under `mask`, whose visible (query, key) pairs are `pairs`:
// fwd+bwd (`key`), fwd+bwd with the atomic-dQ backward (VT_FLASH_BWD=atomic, `key`_atomic) and the
// forward alone (`key`_fwd). FLOPs: 4·D per visible pair forward, 2.5x that backward.
static void bench_attention(const std::string& key, int64_t T, const nn::AttentionMask& mask, double pairs,
                            bool cudnn_rows) {
  const int64_t B = 4, H = 16, D = 128;
  Tensor q = randn({B, H, T, D}, {DType::BF16, Device::cuda()}).requires_grad_();
  Tensor k = randn({B, H, T, D}, {DType::BF16, Device::cuda()}).requires_grad_();
  Tensor v = randn({B, H, T, D}, {DType::BF16, Device::cuda()}).requires_grad_();
  Tensor g = randn({B, H, T, D}, {DType::BF16, Device::cuda()});
  const double fb_flop = 14.0 * B * H * pairs * D, f_flop = 4.0 * B * H * pairs * D;
  auto fwd_bwd = [&] {
    q.zero_grad(), k.zero_grad(), v.zero_grad();
    nn::scaled_dot_product_attention(q, k, v, mask).backward(g);
  };
  double ms = time_ms(fwd_bwd, 5);
  report(key.c_str(), fb_flop / (ms * 1e-3) / 1e12, "TFLOP/s", ms);
  {
    const ScopedEnv atomic_dq("VT_FLASH_BWD", "atomic");
    ms = time_ms(fwd_bwd, 5);
  }
  report((key + "_atomic").c_str(), fb_flop / (ms * 1e-3) / 1e12, "TFLOP/s", ms);
  Tensor qd = q.detach(), kd = k.detach(), vd = v.detach(), o;
  const auto fwd = [&] { o = nn::scaled_dot_product_attention(qd, kd, vd, mask); };
  ms = time_ms(fwd, 10);
  report((key + "_fwd").c_str(), f_flop / (ms * 1e-3) / 1e12, "TFLOP/s", ms);
  if (!cudnn_rows) return;
  // cuDNN's fused SDPA (VT_ATTENTION_CUDNN): fastest backward, deterministic backward, forward.
  for (const char* mode : {"1", "deterministic"}) {
    const ScopedEnv use_cudnn("VT_ATTENTION_CUDNN", mode);
    ms = time_ms(fwd_bwd, 5);
    report((key + (mode[0] == '1' ? "_cudnn" : "_cudnn_det")).c_str(), fb_flop / (ms * 1e-3) / 1e12, "TFLOP/s", ms);
  }
  const ScopedEnv use_cudnn("VT_ATTENTION_CUDNN", "1");
  ms = time_ms(fwd, 10);
  report((key + "_fwd_cudnn").c_str(), f_flop / (ms * 1e-3) / 1e12, "TFLOP/s", ms);
}

static void bench_gemm(const char* key, int64_t M, int64_t K, int64_t N) {
  Tensor a = randn({M, K}, {DType::BF16, Device::cuda()});
  Tensor b = randn({K, N}, {DType::BF16, Device::cuda()});
  Tensor c;
  const double ms = time_ms([&] { c = matmul(a, b); }, 20);
  report(key, 2.0 * M * N * K / (ms * 1e-3) / 1e12, "TFLOP/s", ms);
}

int main(int argc, char** argv) {
  std::string only;  // --only PREFIX: just the rows whose key starts with it (e.g. attn, gemm)
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--only") only = option_value(argc, argv, i, "bench_cuda_ops");
    else return std::fprintf(stderr, "bench_cuda_ops: unknown option %s (--only PREFIX)\n", argv[i]), 2;
  }
  const auto want = [&](const char* key) { return std::string(key).rfind(only, 0) == 0; };
  if (!vt::cuda::is_available()) {
    std::printf("no CUDA device visible: GPU benchmarks skipped\n");
    return 0;
  }
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs, %.1f GiB\n", prop.name, prop.multiProcessorCount,
              prop.totalGlobalMem / 1073741824.0);

  if (want("gemm")) {
    bench_gemm("gemm_8192", 8192, 8192, 8192);
    bench_gemm("gemm_ffn", 8192, 3584, 18944);
  }
  if (want("add") || want("memcpy")) {
    const int64_t n = int64_t(256) << 20;
    Tensor a = randn({n}, {DType::BF16, Device::cuda()}), b = randn({n}, {DType::BF16, Device::cuda()});
    Tensor c;
    double ms = time_ms([&] { c = add(a, b); }, 20);
    report("add_bf16", 3.0 * n * 2 / (ms * 1e-3) / 1e9, "GB/s", ms);
    c = Tensor();
    Tensor dst = empty({n}, {DType::BF16, Device::cuda()});
    ms = time_ms([&] {
      CHECK_CUDA(cudaMemcpyAsync(dst.raw_data(), a.raw_data(), n * 2, cudaMemcpyDeviceToDevice, vt::cuda::stream()));
    }, 20);
    report("memcpy_d2d", 2.0 * n * 2 / (ms * 1e-3) / 1e9, "GB/s", ms);
  }
  if (want("bias")) {
    Tensor x = randn({65536, 4096}, {DType::BF16, Device::cuda()}), bias = randn({4096}, {DType::BF16, Device::cuda()});
    Tensor y;
    const double ms = time_ms([&] { y = add(x, bias); }, 20);
    report("bias_add_bf16", 2.0 * x.numel() * 2 / (ms * 1e-3) / 1e9, "GB/s", ms);
  }
  if (want("sum")) {
    Tensor x = randn({32768, 8192}, {DType::BF16, Device::cuda()});
    Tensor s;
    const double ms = time_ms([&] { s = sum(x, {-1}); }, 20);
    report("sum_rows_bf16", x.numel() * 2.0 / (ms * 1e-3) / 1e9, "GB/s", ms);
  }
  if (want("sum")) {
    Tensor x = randn({8192, 8192}, {DType::F32, Device::cuda()});
    Tensor s;
    const double ms = time_ms([&] { s = sum(x, {0}); }, 20);
    report("sum_cols_f32", x.numel() * 4.0 / (ms * 1e-3) / 1e9, "GB/s", ms);
  }
  // Issue 4's attention target: SDPA against torch's on the same card (torch_gpu_baseline.py has the
  // same shapes). Causal is half of full (7·B·H·T²·D for fwd+bwd, as torch's benchmarks count).
  if (want("attn")) bench_attention("attn_causal", 2048, nn::AttentionMask::causal(), 0.5 * 2048.0 * 2048.0, true);
  if (want("attn")) {
    // Infinity's 512px training sequence: block-causal over 10 scales (2521 tokens) padded to 2560;
    // a token sees its own and earlier scales, a padding row sees key 0 (infinity_bsq.md §7).
    const std::vector<int64_t> lengths = {1, 4, 16, 36, 64, 144, 256, 400, 576, 1024};
    const int64_t T = 2560;
    double pairs = 0;
    int64_t end = 0;
    for (int64_t n : lengths) end += n, pairs += static_cast<double>(n) * end;
    pairs += static_cast<double>(T - end);
    bench_attention("attn_block", T, nn::AttentionMask::block_causal(lengths), pairs, false);
  }
  // The FFN shape once more, last: its spread against the first row says how much of a gap to
  // torch is noise (METHOD.md: time the same version twice).
  if (want("gemm")) bench_gemm("gemm_ffn_repeat", 8192, 3584, 18944);
  const vt::cuda::MemoryStats st = vt::cuda::memory_stats();
  std::printf("allocator: %s\n", st.str().c_str());
  return 0;
}

#else
#include <cstdio>
#include <cstdlib>
int main() {
  std::printf("CUDA not built: bench_cuda_ops has nothing to run (configure with -DVT_CUDA=ON)\n");
  return 0;
}
#endif
