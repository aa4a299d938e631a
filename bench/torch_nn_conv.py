#!/usr/bin/env python3
"""PyTorch baseline for bench/bench_nn_conv.cpp: the same cases, eager mode, 2 threads, f32.

Prints ms/iter for each row of the C++ benchmark: the median wall time, and the process CPU time
(both threads) per iteration, which is the fairer number when the machine is shared.
The BM_conv_pass rows time one pass each (forward with bias, grad-input, grad-weight with
grad-bias) through aten.convolution_backward on 1 and 2 threads; the stride-2 rows pad the input
(0, 1, 0, 1) beforehand, as vt pads inside the conv.
    python3 bench/torch_nn_conv.py [--passes-only]
"""
import statistics
import sys
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(2)
N, C, HW = 4, 128, 64


def timeit(fn, min_time=2.0):
    """(median wall ms, mean process CPU ms over both threads) per iteration."""
    for _ in range(3):
        fn()
    times, start, cpu0 = [], time.perf_counter(), time.process_time()
    while time.perf_counter() - start < min_time or len(times) < 5:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    cpu = (time.process_time() - cpu0) / len(times)
    return 1e3 * statistics.median(times), 1e3 * cpu


def conv_case(stride, pad):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, C, HW, HW, generator=g, requires_grad=True)
    w = (torch.randn(C, C, 3, 3, generator=g) * 0.03).requires_grad_()
    b = torch.randn(C, generator=g, requires_grad=True)
    fwd = lambda: F.conv2d(F.pad(x, pad), w, b, stride=stride)
    with torch.no_grad():
        gout = torch.randn_like(fwd())

    def fwd_only():
        with torch.no_grad():
            fwd()

    def fwd_bwd():
        y = fwd()
        y.backward(gout)
        x.grad = w.grad = b.grad = None

    return fwd_only, fwd_bwd


def interp_case(mode, out):
    x = torch.randn(N, C, HW, HW, requires_grad=True)
    gout = torch.randn(N, C, out, out)

    def run():
        y = F.interpolate(x, size=(out, out), mode=mode, **({} if mode == "area" else {"align_corners": False}))
        y.backward(gout)
        x.grad = None

    return run


def pass_case(n, c, hw, stride, which):
    g = torch.Generator().manual_seed(0)
    pad = (1, 1, 1, 1) if stride == 1 else (0, 1, 0, 1)
    x = F.pad(torch.randn(n, c, hw, hw, generator=g), pad)  # padded beforehand: conv padding 0
    w = torch.randn(c, c, 3, 3, generator=g) * 0.03
    b = torch.randn(c, generator=g)
    gout = torch.randn_like(F.conv2d(x, w, b, stride=stride))
    args = ([c], [stride, stride], [0, 0], [1, 1], False, [0, 0], 1)
    if which == "forward":
        return lambda: F.conv2d(x, w, b, stride=stride)
    mask = [True, False, False] if which == "grad_input" else [False, True, True]
    return lambda: torch.ops.aten.convolution_backward(gout, x, w, *args, mask)


def pass_rows():
    shapes = [("n4_c128_64x64", 4, 128, 64, 1), ("n4_c32_64x64", 4, 32, 64, 1), ("n4_c64_32x32", 4, 64, 32, 1),
              ("n4_c64_16x16", 4, 64, 16, 1), ("n4_c32_64x64_s2", 4, 32, 64, 2)]
    print(f"{'case (torch, aten kernels)':45s} {'wall ms':>9s} {'CPU ms':>9s}")
    with torch.no_grad():
        for name, n, c, hw, stride in shapes:
            for which in ("forward", "grad_input", "grad_weight"):
                fn = pass_case(n, c, hw, stride, which)
                for threads in (1, 2):
                    torch.set_num_threads(threads)
                    wall, cpu = timeit(fn, 0.5)
                    print(f"{'BM_conv_pass/%s/%s/threads:%d' % (name, which, threads):45s} {wall:9.3f} {cpu:9.3f}")
    torch.set_num_threads(2)


if "--passes-only" in sys.argv:
    print(f"torch {torch.__version__}, mkldnn {torch.backends.mkldnn.is_available()}")
    pass_rows()
    sys.exit(0)

f, fb = conv_case(1, (1, 1, 1, 1))
_, fb2 = conv_case(2, (0, 1, 0, 1))
rows = [("BM_conv_forward/3x3_p1", f), ("BM_conv_forward_backward/3x3_p1", fb),
        ("BM_conv_forward_backward/3x3_s2_pad0101", fb2),
        ("BM_interpolate/bilinear_64_to_45", interp_case("bilinear", 45)),
        ("BM_interpolate/area_64_to_24", interp_case("area", 24))]
print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, mkldnn {torch.backends.mkldnn.is_available()}")
print(f"{'case':45s} {'wall ms':>9s} {'CPU ms':>9s}")
for name, fn in rows:
    wall, cpu = timeit(fn)
    print(f"{name:45s} {wall:9.2f} {cpu:9.2f}")
pass_rows()
