// bench_cuda_nn: GPU throughput of vt's fused layer kernels against the device's copy bandwidth
// (issue-4 rows), through the public API (autograd included):
//
//   memcpy_d2d      cudaMemcpyAsync of 512 MiB (read + write)                  GB/s, the ceiling
//   rms_norm_fb     rms_norm (16384, 4096) bf16, forward + backward            GB/s over 5 tensor passes
//                   (fwd reads x writes y; bwd reads dy, x writes dx; weight/rstd traffic ignored);
//                   x.grad and w.grad are cleared before each step (as torch's p.grad = None), so
//                   the step measures the op, not the autograd engine's accumulation into old grads
//   rms_norm_f      the forward alone (reads x, writes y)                                       GB/s
//   rms_norm_*_warp   the same with VT_RMS_NORM_BLOCK=0 (cuda/nn_rms_norm.cu's warp-row layout)
//   add_rms_norm_f  sum = x + r, y = rms_norm(sum) in one pass (reads x, r; writes sum, y)  GB/s
//                   over 4 tensor passes; torch runs the two ops
//   group_norm_fb   group_norm (1, 128, 512, 512) bf16, 32 groups (a VAE decoder plane), forward +
//                   backward, grads cleared each step           GB/s over 5 tensor passes, as rms_norm
//   group_norm_fb_groups the same with VT_GROUP_NORM_SPLIT=0 (one block per group, nn_group_norm.cu)
//   adamw_100m      fused AdamW step, 100M bf16 params with bf16 grads, f32 master/m/v
//                   (per element: param r+w 4 B, grad 2 B, master/m/v r+w 24 B = 30 B)       GB/s
//   linear_bias     nn::linear bf16 (8192, 4096) @ (4096, 4096)^T + bias (cuBLASLt bias epilogue)  TFLOP/s
//   ce_fb           cross_entropy over (8192, 152064) bf16 logits, mean, forward + backward  ms, and
//                   the peak memory above the logits themselves, in units of the logits' bytes
//   conv3x3_fb      conv2d 3x3, 128 -> 128 channels, 256x256, N = 1, pad 1, bias, bf16, forward +
//                   backward (dx, dw, db)                     TFLOP/s over the 3 GEMM-sized passes
// The targets (issue 4): rms_norm and AdamW at >= 70% of memcpy_d2d; cross-entropy against torch.
// bench/torch_gpu_nn.py measures the same rows with PyTorch and prints the joined table.
#ifdef VT_WITH_CUDA
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "vt/autograd.h"
#include "gpu_bench.h"
#include "vt/cuda.h"
#include "vt/nn/conv.h"
#include "vt/nn/functional.h"
#include "vt/nn/loss.h"
#include "vt/nn/norm.h"
#include "vt/ops.h"
#include "vt/optim/adamw.h"
#include "vt/random.h"

using namespace vt;
using namespace vt::bench;


int main() {
  if (!vt::cuda::is_available()) {
    std::printf("no CUDA device visible: GPU benchmarks skipped\n");
    return 0;
  }
  const Device gpu = Device::cuda();
  {
    const int64_t n = 256 << 20;  // 512 MiB of bf16
    Tensor a = randn({n}, {DType::BF16, gpu}), b = empty({n}, {DType::BF16, gpu});
    const double ms = time_ms([&] {
      CHECK_CUDA(cudaMemcpyAsync(b.raw_data(), a.raw_data(), n * 2, cudaMemcpyDeviceToDevice, vt::cuda::stream()));
    }, 20);
    report("memcpy_d2d", 2.0 * n * 2 / (ms * 1e-3) / 1e9, "GB/s", ms);
  }
  {
    const int64_t M = 8192, K = 4096, N = 4096;
    Tensor x = randn({M, K}, {DType::BF16, gpu}), w = randn({N, K}, {DType::BF16, gpu});
    Tensor b = randn({N}, {DType::BF16, gpu});
    Tensor y;
    const double ms = time_ms([&] { y = nn::linear(x, w, b); }, 20);
    report("linear_bias", 2.0 * M * N * K / (ms * 1e-3) / 1e12, "TFLOP/s", ms);
  }
  {
    const int64_t R = 16384, C = 4096;
    Tensor x = randn({R, C}, {DType::BF16, gpu}).requires_grad_();
    Tensor w = add(mul(randn({C}, {DType::BF16, gpu}), 0.1), 1.0).requires_grad_();
    Tensor dy = randn({R, C}, {DType::BF16, gpu});
    for (const char* layout : {"", "_warp"}) {
      const ScopedEnv env("VT_RMS_NORM_BLOCK", *layout ? "0" : nullptr);
      const double ms = time_ms([&] {
        x.zero_grad();
        w.zero_grad();
        Tensor y = nn::rms_norm(x, w, 1e-6);
        y.backward(dy);
      }, 20);
      report((std::string("rms_norm_fb") + layout).c_str(), 5.0 * R * C * 2 / (ms * 1e-3) / 1e9, "GB/s", ms);
      NoGradGuard no_grad;
      const double fms = time_ms([&] { (void)nn::rms_norm(x, w, 1e-6); }, 20);
      report((std::string("rms_norm_f") + layout).c_str(), 2.0 * R * C * 2 / (fms * 1e-3) / 1e9, "GB/s", fms);
      const double ams = time_ms([&] { (void)nn::add_rms_norm(x, dy, w, 1e-6); }, 20);
      report((std::string("add_rms_norm_f") + layout).c_str(), 4.0 * R * C * 2 / (ams * 1e-3) / 1e9, "GB/s", ams);
    }
  }
  {
    const int64_t C = 128, H = 512, W = 512;
    Tensor x = randn({1, C, H, W}, {DType::BF16, gpu}).requires_grad_();
    Tensor w = add(mul(randn({C}, {DType::BF16, gpu}), 0.1), 1.0).requires_grad_();
    Tensor b = mul(randn({C}, {DType::BF16, gpu}), 0.1).requires_grad_();
    Tensor dy = randn({1, C, H, W}, {DType::BF16, gpu});
    for (const char* layout : {"", "_groups"}) {
      const ScopedEnv env("VT_GROUP_NORM_SPLIT", *layout ? "0" : nullptr);
      const double ms = time_ms([&] {
        x.zero_grad(), w.zero_grad(), b.zero_grad();
        nn::group_norm(x, 32, w, b).backward(dy);
      }, 20);
      report((std::string("group_norm_fb") + layout).c_str(), 5.0 * C * H * W * 2 / (ms * 1e-3) / 1e9, "GB/s", ms);
    }
  }
  {
    const int64_t n = 100'000'000;
    Tensor p = mul(randn({n}, {DType::BF16, gpu}), 0.02).requires_grad_();
    p.set_grad(mul(randn({n}, {DType::BF16, gpu}), 1e-3));
    optim::AdamW opt({p}, optim::AdamWOptions{1e-4, 0.9, 0.95, 1e-8, 0.1});
    const double ms = time_ms([&] { opt.step(); }, 20);
    report("adamw_100m", 30.0 * n / (ms * 1e-3) / 1e9, "GB/s", ms);
  }
  {
    const int64_t N = 8192, V = 152064;
    Tensor logits = randn({N, V}, {DType::BF16, gpu}).requires_grad_();
    Tensor target = randint(0, V, {N}, {DType::I64, gpu});
    vt::cuda::synchronize();
    const int64_t base = vt::cuda::memory_stats().allocated;
    vt::cuda::reset_peak_stats();
    const double ms = time_ms([&] {
      logits.zero_grad();
      Tensor loss = nn::cross_entropy(logits, target);
      loss.backward();
    }, 10);
    vt::cuda::synchronize();
    const double extra = double(vt::cuda::memory_stats().peak_allocated - base) / (double(N) * V * 2);
    report("ce_fb", ms, "ms", ms);
    report("ce_fb_peak", extra, "x_logits", ms);
  }
  {
    const int64_t C = 128, H = 256, W = 256;
    Tensor x = randn({1, C, H, W}, {DType::BF16, gpu}).requires_grad_();
    Tensor w = mul(randn({C, C, 3, 3}, {DType::BF16, gpu}), 0.03).requires_grad_();
    Tensor b = randn({C}, {DType::BF16, gpu}).requires_grad_();
    Tensor dy = randn({1, C, H, W}, {DType::BF16, gpu});
    const double ms = time_ms([&] {
      x.zero_grad();
      w.zero_grad();
      b.zero_grad();
      nn::conv2d(x, w, b, 1, 1).backward(dy);
    }, 20);
    report("conv3x3_fb", 3.0 * 2 * C * C * 9 * H * W / (ms * 1e-3) / 1e12, "TFLOP/s", ms);
  }
  return 0;
}
#else
#include <cstdio>
int main() {
  std::printf("CUDA not built: bench_cuda_nn has nothing to run (configure with -DVT_CUDA=ON)\n");
  return 0;
}
#endif
