#!/usr/bin/env python3
"""PyTorch baselines for bench_cuda_ops on the same GPU, and the vt-vs-torch table.

  python3 bench/torch_gpu_baseline.py                 # prints "torch <key> <value> <unit> <ms> ms" lines
  python3 bench/torch_gpu_baseline.py --vt vt.txt     # also joins with bench_cuda_ops output: a table

The keys, shapes and byte counts are those of bench/bench_cuda_ops.cpp; each op is timed with CUDA
events around every run (3 warm-ups, median of 20), on random inputs.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu_bench import time_ms  # noqa: E402


def attention(out, dev, key, T, pairs, **mask):
    """SDPA bf16 (B=4, H=16, T, D=128) fwd+bwd as `key` and the forward as `key`_fwd, in TFLOP/s;
    `pairs` visible (query, key) pairs under `mask` (sdpa's is_causal or attn_mask)."""
    sdpa = torch.nn.functional.scaled_dot_product_attention
    B, H, D = 4, 16, 128
    q, k, v = (torch.randn(B, H, T, D, device=dev, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    g = torch.randn(B, H, T, D, device=dev, dtype=torch.bfloat16)

    def fwd_bwd():
        q.grad = k.grad = v.grad = None
        sdpa(q, k, v, **mask).backward(g)

    ms = time_ms(fwd_bwd, 5)
    out[key] = (14.0 * B * H * pairs * D / (ms * 1e-3) / 1e12, "TFLOP/s", ms)
    with torch.no_grad():
        ms = time_ms(lambda: sdpa(q, k, v, **mask), 10)
    out[key + "_fwd"] = (4.0 * B * H * pairs * D / (ms * 1e-3) / 1e12, "TFLOP/s", ms)


def measure(only=""):
    """The rows whose key starts with `only` (all by default)."""
    dev = "cuda"
    bf16 = torch.bfloat16
    out = {}

    def gemm(key, m, k, n):
        a = torch.randn(m, k, device=dev, dtype=bf16)
        b = torch.randn(k, n, device=dev, dtype=bf16)
        ms = time_ms(lambda: torch.matmul(a, b))
        out[key] = (2.0 * m * n * k / (ms * 1e-3) / 1e12, "TFLOP/s", ms)

    def want(*prefixes):  # a section whose keys start with one of `prefixes` may have rows `only` picks
        return any(p.startswith(only) or only.startswith(p) for p in prefixes)

    if want("gemm"):
        gemm("gemm_8192", 8192, 8192, 8192)
        gemm("gemm_ffn", 8192, 3584, 18944)
    if want("add", "memcpy", "bias", "sum"):
        n = 256 << 20
        a = torch.randn(n, device=dev, dtype=bf16)
        b = torch.randn(n, device=dev, dtype=bf16)
        ms = time_ms(lambda: torch.add(a, b))
        out["add_bf16"] = (3.0 * n * 2 / (ms * 1e-3) / 1e9, "GB/s", ms)
        dst = torch.empty_like(a)
        ms = time_ms(lambda: dst.copy_(a))
        out["memcpy_d2d"] = (2.0 * n * 2 / (ms * 1e-3) / 1e9, "GB/s", ms)
        del a, b, dst
        x = torch.randn(65536, 4096, device=dev, dtype=bf16)
        bias = torch.randn(4096, device=dev, dtype=bf16)
        ms = time_ms(lambda: x + bias)
        out["bias_add_bf16"] = (2.0 * x.numel() * 2 / (ms * 1e-3) / 1e9, "GB/s", ms)
        del x
        x = torch.randn(32768, 8192, device=dev, dtype=bf16)
        ms = time_ms(lambda: x.sum(-1))
        out["sum_rows_bf16"] = (x.numel() * 2.0 / (ms * 1e-3) / 1e9, "GB/s", ms)
        del x
        x = torch.randn(8192, 8192, device=dev, dtype=torch.float32)
        ms = time_ms(lambda: x.sum(0))
        out["sum_cols_f32"] = (x.numel() * 4.0 / (ms * 1e-3) / 1e9, "GB/s", ms)
        del x
    # SDPA: FLOPs are 4*D per visible (query, key) pair forward and 2.5x that backward, as in
    # bench_cuda_ops.cpp (causal: half of full, 7*B*H*T^2*D for fwd+bwd).
    if not want("attn"):
        return out
    attention(out, dev, "attn_causal", 2048, 0.5 * 2048 * 2048, is_causal=True)

    # Infinity 512px block-causal: 10 scales (2521 tokens) padded to 2560; padding rows see key 0.
    # torch's flash kernel takes no mask, so this runs its memory-efficient kernel with a bool mask.
    lengths = [1, 4, 16, 36, 64, 144, 256, 400, 576, 1024]
    T = 2560
    end_of = torch.ones(T, dtype=torch.long)
    at = 0
    for n in lengths:
        end_of[at:at + n] = at + n
        at += n
    mask = (torch.arange(T)[None, :] < end_of[:, None]).to(dev)
    attention(out, dev, "attn_block", T, float(mask.sum()), attn_mask=mask)
    return out


def read_vt(path):
    vals = {}
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) >= 4 and p[0] == "vt":
                vals[p[1]] = (float(p[2]), p[3], float(p[4]))
    return vals


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vt", help="bench_cuda_ops output to compare against")
    ap.add_argument("--only", default="", help="just the rows whose key starts with this (e.g. attn)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("torch sees no CUDA device: baselines skipped")
        return 0
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}")
    t = measure(args.only)
    for k, (v, unit, ms) in t.items():
        print(f"torch {k:<15} {v:10.1f} {unit:<8} {ms:9.3f} ms")
    if args.vt:
        vt = read_vt(args.vt)
        print()
        print(f"{'benchmark':<22} {'unit':<8} {'vt':>9} {'torch':>9} {'vt/torch':>9}")
        def base(vk):  # the torch row of a vt key: itself, or the longest key it extends (key_atomic, ...)
            hits = [k for k in t if vk == k or vk.startswith(k + "_")]
            return max(hits, key=len) if hits else None

        for k, (tv, unit, _) in t.items():
            # vt's alternative kernels (key_atomic, key_fwd_cudnn, ...) against the same torch row
            for vk in [k] + [x for x in vt if x != k and base(x) == k]:
                if vk in vt:
                    v = vt[vk][0]
                    print(f"{vk:<22} {unit:<8} {v:9.1f} {tv:9.1f} {v / tv:9.3f}")
                elif vk == k:
                    print(f"{k:<22} {unit:<8} {'-':>9} {tv:9.1f} {'missing':>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
