#!/usr/bin/env python3
"""PyTorch baseline for bench_vargpt's vargpt/tiny/train_step: one teacher-forced training step of the
tiny VARGPT fixture on the CPU, f32, 2 threads, with the spec-written reference tools/vargpt_reference.py
(transformers' Qwen2-VL for the ViT and LLM, the reference Infinity blocks), from the same files.

    python3 bench/torch_vargpt_train.py [--runs 10] [--attn sdpa|eager] [--vt bench_vargpt.json ...]

Step (as vt's): the fixture's reference batch (reference.safetensors train.*: 2 sequences, an
understanding image, a 256² generation span of 521 tokens per row, self-correction labels),
train_forward (text CE + 3 x bit CE) and backward into every parameter but vae_local; gradients are
zeroed (set to None) before each step. Median wall and process CPU time of --runs after one warm-up,
and tokens per second (non-padding positions of the batch per wall second).

With --vt FILE (bench_vargpt --benchmark_filter=train_step --benchmark_out FILE), the vt rows are
joined: vt tokens/s over torch tokens/s (issue goal >= 1.0, the CPU-limits issue asks 1.5), by wall
and by process CPU time (the steadier number on a shared machine; run both with
OMP_WAIT_POLICY=passive there).
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import torch_vargpt as TV  # noqa: E402  (load_model, the tiny fixture path, the reference modules)

VG = TV.VG


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    ap.add_argument("--vt", nargs="*", default=[])
    args = ap.parse_args()
    torch.set_num_threads(2)
    m, _ = TV.load_model(TV.TINY, args.attn)
    r = load_file(os.path.join(TV.TINY, "reference.safetensors"))
    ids, mask = r["train.input_ids"], r["train.attention_mask"]
    inputs, labels = r["train.inputs"], r["train.labels"]
    pix, grid = r["train.pixel_values"], r["train.image_grid_thw"]
    params = m.trainable()
    for p in params.values():
        p.requires_grad_(True)
    m.hf.train()
    tokens = float(mask.sum())

    def step():
        for p in params.values():
            p.grad = None
        out = VG.train_forward(m, ids, mask, inputs, labels, pix, grid)
        out["loss"].backward()
        return float(out["loss"])

    step()  # warm-up
    wall, cpu = [], []
    for _ in range(args.runs):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    w, c = statistics.median(wall), statistics.median(cpu)
    print(f"torch vargpt/tiny/train_step: wall {w:.1f} ms, process CPU {c:.1f} ms, {tokens / w * 1e3:.0f} tokens/s "
          f"({tokens:.0f} tokens)")
    for path in args.vt:
        for b in json.load(open(path)).get("benchmarks", []):
            if not b["name"].startswith("vargpt/tiny/train_step"):
                continue
            unit = {"ms": 1.0, "us": 1e-3, "ns": 1e-6, "s": 1e3}[b.get("time_unit", "ms")]
            v, vc = b["real_time"] * unit, b["cpu_time"] * unit
            print(f"{b['name']}: wall vt {v:.1f} ms, torch {w:.1f} ms, tokens/s ratio vt/torch {w / v:.2f} "
                  f"(goal >= 1.0); process CPU vt {vc:.1f} ms, torch {c:.1f} ms, ratio {c / vc:.2f}")


if __name__ == "__main__":
    main()
