#!/usr/bin/env python3
"""PyTorch eager baseline for bench_tensor's BM_small_op_chain: 1000 adds/muls on 16-element
tensors, forward + backward, microseconds per op. Prints nothing useful without torch."""
import time

try:
    import torch
except ImportError:
    print("torch not installed: skipping the PyTorch baseline")
    raise SystemExit(0)

torch.set_num_threads(2)
w = torch.rand(16, requires_grad=True)
b = torch.rand(16, requires_grad=True)
x0 = torch.rand(16)


def chain():
    x = x0
    for _ in range(500):
        x = x * w + b
    x.sum().backward()
    w.grad = None
    b.grad = None


for _ in range(5):
    chain()
reps = 50
t = time.perf_counter()
for _ in range(reps):
    chain()
dt = (time.perf_counter() - t) / reps
print(f"torch small_op_chain: {dt * 1e6 / 1000:.3f} us/op ({dt * 1e3:.2f} ms per 1000-op chain), torch {torch.__version__}")
