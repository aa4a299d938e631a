#!/usr/bin/env python3
"""PyTorch eager baseline for bench/bench_nn_functional.cpp: the same cases, f32, 2 threads.

    python3 bench/torch_nn_functional.py

rms_norm is timed twice: Qwen2RMSNorm as HF writes it (the reference vt reproduces) and torch's own
F.rms_norm (fp32 here, where the two agree; the faster one is the baseline to beat); layer_norm is
F.layer_norm; cross_entropy is F.cross_entropy (mean, ignore_index -100, 5% ignored rows). Each
case reports the median of its timed iterations (after one warm-up) and, for cross_entropy, the
peak RSS of one forward+backward over the logits' bytes, measured like the C++ benchmark: reset
the high-water mark with /proc/self/clear_refs, then VmHWM - VmRSS before the step.
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


def timeit(step, iters):
    step()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def qwen2_rms_norm(x, w, eps=1e-6):
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return w * h.to(x.dtype)


def bench_norm(name, fn, params):
    x = torch.randn(8192, 2048, requires_grad=True)
    gy = torch.randn(8192, 2048)

    def step():
        y = fn(x, *params)
        y.backward(gy)
        x.grad = None
        for p in params:
            p.grad = None

    print(f"{name:52s} {timeit(step, 20):9.2f} ms")


def bench_cross_entropy():
    N, C = 2048, 152064
    z = torch.randn(N, C, requires_grad=True)
    y = torch.randint(0, C, (N,))
    y[torch.rand(N) < 0.05] = -100

    def step():
        loss = F.cross_entropy(z, y)
        loss.backward()
        z.grad = None

    step()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = rss("VmRSS:")
    step()
    peak = (rss("VmHWM:") - before) / (N * C * 4)
    ms = timeit(step, 10)
    print(f"{'cross_entropy/2048x152064/fwd+bwd':52s} {ms:9.2f} ms   peak_over_logits {peak:.3f}")


if __name__ == "__main__":
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}")
    w = torch.randn(2048, requires_grad=True)
    b = torch.randn(2048, requires_grad=True)
    bench_norm("rms_norm/8192x2048/fwd+bwd (HF Qwen2RMSNorm)", qwen2_rms_norm, [w])
    bench_norm("rms_norm/8192x2048/fwd+bwd (F.rms_norm)", lambda x, w: F.rms_norm(x, (2048,), w, 1e-6), [w])
    bench_norm("layer_norm/8192x2048/fwd+bwd", lambda x, w, b: F.layer_norm(x, (2048,), w, b, 1e-5), [w, b])
    bench_cross_entropy()
    x, r, w = torch.randn(8192, 2048), torch.randn(8192, 2048), torch.randn(2048)
    with torch.no_grad():
        ms = timeit(lambda: F.rms_norm(x + r, (2048,), w, 1e-6), 20)
    print(f"{'add_then_rms_norm/8192x2048/fwd (x + r, F.rms_norm)':52s} {ms:9.2f} ms")
