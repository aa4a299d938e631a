"""What the PyTorch GPU baseline scripts share (torch_gpu_baseline.py, torch_gpu_nn.py,
torch_gpu_models.py, torch_gpu_infinity.py): timing with CUDA events or synchronised wall clocks, the "torch <key> <value> <unit> <ms> ms" lines, and the table that
joins them with a vt program's "vt ..." lines (bench/gpu_bench.h writes those)."""
import os
import time

import torch

def run_section(name, fn, *args):
    """fn(*args); a failure is printed as "# <name> FAILED: ..." and returns False, so a baseline
    script goes on to its other sections and still joins what it measured."""
    try:
        fn(*args)
        return True
    except Exception as e:  # noqa: BLE001
        print(f"# {name} FAILED: {type(e).__name__}: {e}", flush=True)
        return False


# For these units a larger number is better; for the rest (ms, GB, x_weights) a smaller one.
# "%" is bench_gpu_train's model FLOPs utilisation.
HIGHER_IS_BETTER = {"tok/s", "TFLOP/s", "GB/s", "%"}


def time_ms(fn, iters=20):
    """Median milliseconds of `iters` runs of fn after 3 warm-ups, each between two CUDA events."""
    for _ in range(3):
        fn()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    for s, e in zip(starts, ends):
        s.record()
        fn()
        e.record()
    torch.cuda.synchronize()
    ms = sorted(s.elapsed_time(e) for s, e in zip(starts, ends))
    return ms[iters // 2]


def pick_device(name, what):
    """The torch device for --device NAME, printing it; None (after saying so) when CUDA is asked
    for and absent. On the CPU (the scripts' smoke mode) torch gets at most 2 threads."""
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            print(f"no CUDA device visible: {what} skipped")
            return None
        dev = torch.device("cuda", torch.cuda.current_device())
        print(f"device: {torch.cuda.get_device_name(dev)}, torch {torch.__version__}", flush=True)
    else:
        torch.set_num_threads(min(2, os.cpu_count() or 1))
        print(f"device: {dev}, torch {torch.__version__}", flush=True)
    return dev


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def wall_ms(fn, dev):
    sync(dev)
    t0 = time.perf_counter()
    fn()
    sync(dev)
    return 1e3 * (time.perf_counter() - t0)


def median_ms(fn, dev, warm=2, iters=5):
    for _ in range(warm):
        fn()
    ms = sorted(wall_ms(fn, dev) for _ in range(iters))
    return ms[len(ms) // 2]


def emit(out, key, value, unit, ms):
    out[key] = (value, unit, ms)
    print(f"torch {key:<22} {value:12.2f} {unit:<9} {ms:10.3f} ms", flush=True)


def read_vt(path):
    """{key: (value, unit, ms)} from a vt program's output; other lines are ignored."""
    vt = {}
    for line in open(path):
        f = line.split()
        if len(f) >= 5 and f[0] == "vt":
            try:
                vt[f[1]] = (float(f[2]), f[3], float(f[4]))
            except ValueError:
                pass
    return vt


def print_table(vt, out, footnote):
    """One "benchmark" row per key: vt, torch, vt/torch and vt's speed-up (> 1: vt is faster)."""
    print(f"\nbenchmark {'key':<22} {'vt':>12} {'torch':>12} {'unit':<9} {'vt/torch':>8} {'vt speed':>8}")
    for k in list(vt) + [k for k in out if k not in vt]:
        v = vt.get(k)
        t = out.get(k)
        unit = (v or t)[1]
        ratio = f"{v[0] / t[0]:.2f}" if v and t and t[0] else "-"
        if v and t and v[0] and t[0] and unit in HIGHER_IS_BETTER | {"ms"}:
            speed = v[0] / t[0] if unit in HIGHER_IS_BETTER else t[0] / v[0]
            speed = f"{speed:.2f}x"
        else:
            speed = "-"
        vs = f"{v[0]:12.2f}" if v else f"{'-':>12}"
        ts = f"{t[0]:12.2f}" if t else f"{'-':>12}"
        print(f"benchmark {k:<22} {vs} {ts} {unit:<9} {ratio:>8} {speed:>8}")
    print(footnote)


def join_vt(path, out, footnote):
    """vt's notes, skips and failures (echoed with a "vt" prefix), then the joined table."""
    for line in open(path):
        if line.startswith("#") or "skipped" in line or "FAILED" in line:
            print(f"vt {line.rstrip()}")
    print_table(read_vt(path), out, footnote)
