#!/usr/bin/env python3
"""PyTorch baseline for bench/bench_bsq_vae.cpp: Infinity's d32 BSQ-VAE decoder (and encoder)
written from shared/spec/infinity_bsq.md §1-§3 as plain torch modules, random weights, f32, eager,
2 threads. Decode = per-scale bits -> codes -> bilinear (trilinear with T = 1) up-sampling to the
latent grid, summed -> decoder -> clamp, as the C++ benchmark times it.
    python3 bench/torch_bsq_vae.py
The classes and helpers import without side effects (bench/torch_gpu_models.py reuses them on the
GPU); the CPU benchmark runs only as a script.
"""
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CH, MULT, NRES, D = 128, (1, 2, 4, 4, 4), 2, 32


class Res(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(32, cin, eps=1e-6), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(32, cout, eps=1e-6), nn.Conv2d(cout, cout, 3, padding=1)
        self.nin = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        return self.nin(x) + self.conv2(F.silu(self.norm2(h)))


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        c = CH * MULT[-1]
        self.conv_in = nn.Conv2d(D, c, 3, padding=1)
        self.mid = nn.Sequential(Res(c, c), Res(c, c))
        self.levels = nn.ModuleList()
        for i in reversed(range(len(MULT))):
            blocks = nn.ModuleList()
            for _ in range(NRES + 1):
                blocks.append(Res(c, CH * MULT[i]))
                c = CH * MULT[i]
            up = nn.Conv2d(c, c, 3, padding=1) if i != 0 else None
            self.levels.append(nn.ModuleList([blocks, up]) if up is not None else nn.ModuleList([blocks]))
        self.norm_out, self.conv_out = nn.GroupNorm(32, c, eps=1e-6), nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, z):
        h = self.mid(self.conv_in(z))
        for level in self.levels:
            for b in level[0]:
                h = b(h)
            if len(level) > 1:
                h = level[1](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h))).clamp(-1, 1)


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_in = nn.Conv2d(3, CH, 3, padding=1)
        self.levels = nn.ModuleList()
        c = CH
        for i, m in enumerate(MULT):
            blocks = nn.ModuleList()
            for _ in range(NRES):
                blocks.append(Res(c, CH * m))
                c = CH * m
            down = nn.Conv2d(c, c, 3, stride=2) if i < len(MULT) - 1 else None
            self.levels.append(nn.ModuleList([blocks, down]) if down is not None else nn.ModuleList([blocks]))
        self.mid = nn.Sequential(Res(c, c), Res(c, c))
        self.norm_out, self.conv_out = nn.GroupNorm(32, c, eps=1e-6), nn.Conv2d(c, D, 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for level in self.levels:
            for b in level[0]:
                h = b(h)
            if len(level) > 1:
                h = level[1](F.pad(h, (0, 1, 0, 1)))
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))


# The 1:1 schedules (infinity_bsq.md §5): 0.06M = 256 px, 0.25M = 512 px.
SIDES = {256: [1, 2, 4, 6, 8, 12, 16], 512: [1, 2, 4, 6, 8, 12, 16, 20, 24, 32]}


def bits_to_latent(bits):
    H = bits[-1].shape[1]
    acc = 0
    for b in bits:
        q = ((b.float() * 2 - 1) / math.sqrt(D)).permute(0, 3, 1, 2).unsqueeze(2)  # (B, d, 1, h, w)
        if b.shape[1] != H:
            q = F.interpolate(q, size=(1, H, H), mode="trilinear", align_corners=False)
        acc = acc + q
    return acc.squeeze(2)


def multiscale(f, sides):
    R, H = f.unsqueeze(2), f.shape[-1]
    for s in sides:
        r = R if s == H else F.interpolate(R, size=(1, s, s), mode="area")
        q = torch.where(F.normalize(r, dim=1) > 0, 1.0, -1.0) / math.sqrt(D)
        R = R - (q if s == H else F.interpolate(q, size=(1, H, H), mode="trilinear", align_corners=False))


def timeit(fn, iters=2):
    """(mean wall ms, mean process CPU ms over both threads) per run, after one warm-up."""
    fn()
    wall, cpu0 = [], time.process_time()
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        wall.append(time.perf_counter() - t0)
    return 1e3 * sum(wall) / len(wall), 1e3 * (time.process_time() - cpu0) / iters


def main():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    dec, enc = Decoder().eval(), Encoder().eval()
    with torch.no_grad():
        for side, sides in SIDES.items():
            bits = [torch.rand(1, s, s, D) > 0.5 for s in sides]
            ms, cpu = timeit(lambda: dec(bits_to_latent(bits)))
            print(f"torch vae_decode/{side}: {ms:.1f} ms wall, {cpu:.1f} ms process CPU")
        img = torch.rand(1, 3, 256, 256) * 2 - 1
        ms, cpu = timeit(lambda: multiscale(enc(img), SIDES[256]))
        print(f"torch vae_encode/256: {ms:.1f} ms wall, {cpu:.1f} ms process CPU")


if __name__ == "__main__":
    main()
