#!/usr/bin/env python3
"""PyTorch eager baseline for bench/bench_infinity.cpp: the same training step, f32, 2 threads.

    python3 bench/torch_infinity.py

The model is tools/infinity_reference.py (written from the spec): depth 4, C 256, 4 heads, d 32,
text width 256, the 0.06M 1:1 schedule (L = 521), batch 2 with condition lengths 12 and 20.
Cases: fwd+bwd (condition + forward + bitwise loss + backward; weights require grad) and fwd
(no grad). Median of the timed iterations after one warm-up, wall clock and process CPU time
(the CPU time is the steadier number on a shared machine; bench_infinity reports both too).
"""
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import infinity_reference as R  # noqa: E402

torch.set_num_threads(2)
SIDES = [(s, s) for s in (1, 2, 4, 6, 8, 12, 16)]
GRID = (64, 64)


def timeit(step, iters):
    """Median wall ms and median process CPU ms (all threads) per step."""
    step()  # warm-up
    wall, cpu = [], []
    for _ in range(iters):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall) * 1e3, statistics.median(cpu) * 1e3


def main():
    g = torch.Generator().manual_seed(0)
    cfg = R.config(depth=4, C=256, heads=4, d=32, Ctext=256, maxlen=64)
    w = {k: v.requires_grad_() for k, v in R.random_weights(cfg, g).items() if "zero_k_bias" not in k}
    w.update({k: v for k, v in R.random_weights(cfg, g).items() if "zero_k_bias" in k})
    text = torch.randn(32, 256, generator=g)
    cu = [0, 12, 32]
    f = torch.randn(2, 32, 16, 16, generator=g)
    flips = [torch.rand(2, h, wd, 32, generator=g) < 0.1 for h, wd in SIDES]
    inputs, labels = R.self_correction(f, SIDES, flips)

    def fwd_bwd():
        logits = R.forward(w, cfg, R.condition(w, cfg, text, cu), inputs, SIDES, GRID)
        R.bitwise_loss(logits, labels, SIDES).backward()
        for v in w.values():
            v.grad = None

    def fwd():
        with torch.no_grad():
            R.forward(w, cfg, R.condition(w, cfg, text, cu), inputs, SIDES, GRID)

    for name, step in (("fwd+bwd", fwd_bwd), ("fwd", fwd)):
        wall, cpu = timeit(step, 20)
        print(f"infinity/d4w256/L521xB2/{name:10s} {wall:9.2f} ms wall {cpu:9.2f} ms cpu")


if __name__ == "__main__":
    main()
