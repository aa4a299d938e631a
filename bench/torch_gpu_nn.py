#!/usr/bin/env python3
"""PyTorch baselines for bench/bench_cuda_nn.cpp on the same GPU, and the vt-vs-torch table.

  python3 bench/torch_gpu_nn.py                # "torch <key> <value> <unit> <ms> ms" lines
  python3 bench/torch_gpu_nn.py --vt vt.txt    # also joins with bench_cuda_nn's output

Rows (shapes and byte counts as in bench_cuda_nn.cpp):
  linear_bias   F.linear with bias, bf16 (8192, 4096) x (4096, 4096)^T
  rms_norm_fb   torch.nn.functional.rms_norm (bf16), and HF's Qwen2RMSNorm written out (rms_norm_hf)
  add_rms_norm_f  x + r, then F.rms_norm (torch has no fused residual norm)
  group_norm_fb F.group_norm (1, 128, 512, 512) bf16, 32 groups, fwd + bwd
  adamw_100m    torch.optim.AdamW(fused=True) on 100M f32 params with f32 grads (torch has no
                master-weight mode; its 28 B/element are counted as its traffic)
  ce_fb         F.cross_entropy on (8192, 152064) bf16 logits, fwd + bwd; ce_fb_peak = peak memory
                above the logits, in logits' bytes
  conv3x3_fb    F.conv2d 3x3 128 -> 128, (1, 128, 256, 256) bf16, pad 1, bias, fwd + bwd (cuDNN)
"""
import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu_bench import time_ms  # noqa: E402


def measure():
    dev, bf16 = "cuda", torch.bfloat16
    out = {}
    n = 256 << 20
    a = torch.randn(n, device=dev, dtype=bf16)
    b = torch.empty_like(a)
    ms = time_ms(lambda: b.copy_(a))
    out["memcpy_d2d"] = (2.0 * n * 2 / (ms * 1e-3) / 1e9, "GB/s", ms)
    del a, b

    M, K, N = 8192, 4096, 4096
    x = torch.randn(M, K, device=dev, dtype=bf16)
    w = torch.randn(N, K, device=dev, dtype=bf16)
    bias = torch.randn(N, device=dev, dtype=bf16)
    ms = time_ms(lambda: F.linear(x, w, bias))
    out["linear_bias"] = (2.0 * M * N * K / (ms * 1e-3) / 1e12, "TFLOP/s", ms)
    del x, w, bias

    R, C = 16384, 4096
    x = torch.randn(R, C, device=dev, dtype=bf16, requires_grad=True)
    w = (1 + 0.1 * torch.randn(C, device=dev, dtype=bf16)).requires_grad_()
    dy = torch.randn(R, C, device=dev, dtype=bf16)

    def fused():  # grads cleared each step, as vt's bench does: the op, not the accumulation
        x.grad = w.grad = None
        F.rms_norm(x, (C,), w, 1e-6).backward(dy)

    def hf():  # transformers' Qwen2RMSNorm.forward
        x.grad = w.grad = None
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)
        (w * h.to(bf16)).backward(dy)

    ms = time_ms(fused)
    out["rms_norm_fb"] = (5.0 * R * C * 2 / (ms * 1e-3) / 1e9, "GB/s", ms)
    ms = time_ms(hf)
    out["rms_norm_hf"] = (5.0 * R * C * 2 / (ms * 1e-3) / 1e9, "GB/s", ms)
    with torch.no_grad():
        ms = time_ms(lambda: F.rms_norm(x, (C,), w, 1e-6))
    out["rms_norm_f"] = (2.0 * R * C * 2 / (ms * 1e-3) / 1e9, "GB/s", ms)
    with torch.no_grad():
        ms = time_ms(lambda: F.rms_norm(x + dy, (C,), w, 1e-6))
    out["add_rms_norm_f"] = (4.0 * R * C * 2 / (ms * 1e-3) / 1e9, "GB/s", ms)
    del x, w, dy

    C, H, W = 128, 512, 512
    x = torch.randn(1, C, H, W, device=dev, dtype=bf16, requires_grad=True)
    w = (1 + 0.1 * torch.randn(C, device=dev, dtype=bf16)).requires_grad_()
    b = (0.1 * torch.randn(C, device=dev, dtype=bf16)).requires_grad_()
    dy = torch.randn(1, C, H, W, device=dev, dtype=bf16)

    def gn():
        x.grad = w.grad = b.grad = None
        F.group_norm(x, 32, w, b).backward(dy)

    ms = time_ms(gn)
    out["group_norm_fb"] = (5.0 * C * H * W * 2 / (ms * 1e-3) / 1e9, "GB/s", ms)
    del x, w, b, dy

    N = 100_000_000
    p = torch.nn.Parameter(0.02 * torch.randn(N, device=dev))
    p.grad = 1e-3 * torch.randn(N, device=dev)
    opt = torch.optim.AdamW([p], lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, fused=True)
    ms = time_ms(opt.step)
    out["adamw_100m"] = (28.0 * N / (ms * 1e-3) / 1e9, "GB/s", ms)
    del p, opt

    N, V = 8192, 152064
    logits = torch.randn(N, V, device=dev, dtype=bf16, requires_grad=True)
    target = torch.randint(0, V, (N,), device=dev)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()

    def ce():
        logits.grad = None
        F.cross_entropy(logits, target).backward()

    ms = time_ms(ce, 10)
    peak = (torch.cuda.max_memory_allocated() - base) / (N * V * 2)
    out["ce_fb"] = (ms, "ms", ms)
    out["ce_fb_peak"] = (peak, "x_logits", ms)
    del logits, target

    C, H, W = 128, 256, 256
    x = torch.randn(1, C, H, W, device=dev, dtype=bf16, requires_grad=True)
    w = (0.03 * torch.randn(C, C, 3, 3, device=dev, dtype=bf16)).requires_grad_()
    bias = torch.randn(C, device=dev, dtype=bf16, requires_grad=True)
    dy = torch.randn(1, C, H, W, device=dev, dtype=bf16)

    def conv():
        x.grad = w.grad = bias.grad = None
        F.conv2d(x, w, bias, 1, 1).backward(dy)

    ms = time_ms(conv)
    out["conv3x3_fb"] = (3.0 * 2 * C * C * 9 * H * W / (ms * 1e-3) / 1e12, "TFLOP/s", ms)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vt", help="bench_cuda_nn output to join")
    args = ap.parse_args()
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    out = measure()
    for k, (v, unit, ms) in out.items():
        print(f"torch {k:<15} {v:10.2f} {unit:<8} {ms:9.3f} ms")
    if not args.vt:
        return
    vt = {}
    for line in open(args.vt):
        f = line.split()
        if len(f) >= 5 and f[0] == "vt":
            vt[f[1]] = (float(f[2]), f[3], float(f[4]))
    print(f"\nbenchmark {'key':<14} {'vt':>10} {'torch':>10} {'unit':<9} {'vt/torch':>8} {'vt/memcpy':>9}")
    copy = vt.get("memcpy_d2d", (0,))[0]
    for k, (v, unit, ms) in vt.items():
        # vt's alternative layouts (key_warp, key_groups) against the same torch row
        t = out.get(k) or out.get(k.removesuffix("_warp")) or out.get(k.removesuffix("_groups"))
        ratio = f"{v / t[0]:.2f}" if t and t[0] else "-"
        vs_copy = f"{v / copy:.2f}" if unit == "GB/s" and copy else "-"
        print(f"benchmark {k:<14} {v:10.2f} {t[0] if t else float('nan'):10.2f} {unit:<9} {ratio:>8} {vs_copy:>9}")
    if "rms_norm_hf" in out:
        print(f"benchmark {'rms_norm_hf':<14} {'':>10} {out['rms_norm_hf'][0]:10.2f} GB/s      (torch, HF Qwen2RMSNorm eager)")


if __name__ == "__main__":
    main()
