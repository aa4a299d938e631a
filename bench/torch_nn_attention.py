#!/usr/bin/env python3
"""PyTorch eager baseline for bench/bench_nn_attention.cpp: the same cases, f32, 2 threads.

    python3 bench/torch_nn_attention.py

F.scaled_dot_product_attention (is_causal=True; the block-causal case passes its boolean mask,
which torch's CPU flash kernel accepts). Each case reports the median of its timed iterations
after one warm-up and, where the C++ benchmark does, the peak RSS of the first step in MB
(VmHWM - VmRSS before, after resetting the high-water mark through /proc/self/clear_refs).
"""
import statistics
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(2)
torch.manual_seed(0)


def rss(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return -1


def peak_mb(step):
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        step()
        return -1.0
    before = rss("VmRSS:")
    step()
    return (rss("VmHWM:") - before) / 1e6


def timeit(step, iters):
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def infinity_mask(T=2521):
    scale_of = torch.cat([torch.full((s * s,), i) for i, s in enumerate([1, 2, 4, 6, 8, 12, 16, 20, 24, 32])])
    return scale_of[:, None] >= scale_of[None, :]


def case(name, B, H, T, D, causal=True, mask=None, backward=True, iters=10, memory=False):
    q, k, v = (torch.randn(B, H, T, D, requires_grad=backward) for _ in range(3))
    g = torch.randn(B, H, T, D)

    def step():
        if backward:
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
            o.backward(g)
            q.grad = k.grad = v.grad = None
        else:
            with torch.no_grad():
                F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)

    peak = peak_mb(step) if memory else None
    ms = timeit(step, iters)
    print(f"{name:52s} {ms:9.1f} ms" + (f"   peak_mb={peak:.1f}" if peak is not None else ""))


case("sdpa/causal/B2xH8xT1024xD64/fwd+bwd", 2, 8, 1024, 64)
case("sdpa/causal/B2xH8xT1024xD64/fwd", 2, 8, 1024, 64, backward=False)
case("sdpa/causal/B1xH4xT8192xD64/fwd", 1, 4, 8192, 64, backward=False, iters=2, memory=True)
case("sdpa/block_causal/B1xH16xT2521xD128/fwd+bwd", 1, 16, 2521, 128, causal=False, mask=infinity_mask(), iters=2,
     memory=True)
