#!/usr/bin/env python3
"""Fixtures for tests/test_bsq_vae.cpp: a PyTorch reference of the BSQ-VAE written from
shared/spec/infinity_bsq.md §1-§4 (not from upstream code), with random weights.

Writes tests/fixtures/bsq_vae.safetensors holding
  * the tiny model's weights under upstream's *wrapped* names (`...conv1.conv.weight`,
    `...norm1.norm.weight`), stored as f16 to keep the file small (the reference computes in f32
    with the same f16-rounded values);
  * `ref.image` (1,3,32,32) in [-1,1], a smooth "real-looking" picture (gradients, a disc, noise);
  * `ref.latent` encoder output, `ref.bits.<k>` per-scale bits (u8), `ref.quantized` decoder
    input, `ref.recon` clamped reconstruction;
  * `q.latent` (1,32,32,32) and `q.bits.<k>`, `q.quantized` for the 0.25M (512x512) 1:1 schedule
    with d = 32, to check the quantiser alone on the real schedule.
Tiny config: base_ch 32, ch_mult (1,2), 1 res block per encoder level (2 per decoder level),
d = 16, patch 2 (latent 16x16), schedule 1,2,3,4,5,6,8,10,13,16 (non-integer area ratios).
"""
import math
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(0)
CH, MULT, NRES, D = 32, (1, 2), 1, 16
TINY_SIDES = [1, 2, 3, 4, 5, 6, 8, 10, 13, 16]
SQUARE_512 = [1, 2, 4, 6, 8, 12, 16, 20, 24, 32]

weights = {}  # wrapped name -> f16 tensor


def conv_param(name, cin, cout, k):
    w = (torch.randn(cout, cin, k, k) / math.sqrt(cin * k * k)).half()
    b = (0.1 * torch.randn(cout)).half()
    weights[name + ".conv.weight"], weights[name + ".conv.bias"] = w, b
    return w.float(), b.float()


def norm_param(name, c):
    w = (1 + 0.2 * torch.randn(c)).half()
    b = (0.1 * torch.randn(c)).half()
    weights[name + ".norm.weight"], weights[name + ".norm.bias"] = w, b
    return w.float(), b.float()


def gn(x, p):
    return F.group_norm(x, 32, p[0], p[1], eps=1e-6)


def swish(x):
    return x * torch.sigmoid(x)


def make_res(name, cin, cout):
    p = dict(n1=norm_param(name + ".norm1", cin), c1=conv_param(name + ".conv1", cin, cout, 3),
             n2=norm_param(name + ".norm2", cout), c2=conv_param(name + ".conv2", cout, cout, 3))
    if cin != cout:
        p["sc"] = conv_param(name + ".nin_shortcut", cin, cout, 1)
    return p


def res(x, p):
    h = F.conv2d(swish(gn(x, p["n1"])), *p["c1"], padding=1)
    h = F.conv2d(swish(gn(h, p["n2"])), *p["c2"], padding=1)
    return (F.conv2d(x, *p["sc"]) if "sc" in p else x) + h


# ---- encoder (§1.3) -----------------------------------------------------------------------------
enc = {"conv_in": conv_param("encoder.conv_in", 3, CH, 3), "levels": []}
block_in = CH
for i, m in enumerate(MULT):
    blocks = []
    for j in range(NRES):
        blocks.append(make_res(f"encoder.down.{i}.block.{j}", block_in, CH * m))
        block_in = CH * m
    down = conv_param(f"encoder.down.{i}.downsample.conv", block_in, block_in, 3) if i < len(MULT) - 1 else None
    enc["levels"].append((blocks, down))
enc["mid1"] = make_res("encoder.mid.block_1", block_in, block_in)
enc["mid2"] = make_res("encoder.mid.block_2", block_in, block_in)
enc["norm_out"] = norm_param("encoder.norm_out", block_in)
enc["conv_out"] = conv_param("encoder.conv_out", block_in, D, 3)


def encode(x):
    h = F.conv2d(x, *enc["conv_in"], padding=1)
    for blocks, down in enc["levels"]:
        for p in blocks:
            h = res(h, p)
        if down is not None:
            h = F.conv2d(F.pad(h, (0, 1, 0, 1)), *down, stride=2)
    h = res(res(h, enc["mid1"]), enc["mid2"])
    return F.conv2d(swish(gn(h, enc["norm_out"])), *enc["conv_out"], padding=1)


# ---- decoder (§1.4) -----------------------------------------------------------------------------
dec = {}
block_in = CH * MULT[-1]
dec["conv_in"] = conv_param("decoder.conv_in", D, block_in, 3)
dec["mid1"] = make_res("decoder.mid.block_1", block_in, block_in)
dec["mid2"] = make_res("decoder.mid.block_2", block_in, block_in)
dec["levels"] = []
for i in reversed(range(len(MULT))):
    blocks = []
    for j in range(NRES + 1):
        blocks.append(make_res(f"decoder.up.{i}.block.{j}", block_in, CH * MULT[i]))
        block_in = CH * MULT[i]
    up = conv_param(f"decoder.up.{i}.upsample.conv", block_in, block_in, 3) if i != 0 else None
    dec["levels"].append((blocks, up))
dec["norm_out"] = norm_param("decoder.norm_out", block_in)
dec["conv_out"] = conv_param("decoder.conv_out", block_in, 3, 3)


def decode(z):
    h = F.conv2d(z, *dec["conv_in"], padding=1)
    h = res(res(h, dec["mid1"]), dec["mid2"])
    for blocks, up in dec["levels"]:
        for p in blocks:
            h = res(h, p)
        if up is not None:
            h = F.conv2d(F.interpolate(h, scale_factor=2.0, mode="nearest"), *up, padding=1)
    return F.conv2d(swish(gn(h, dec["norm_out"])), *dec["conv_out"], padding=1).clamp(-1, 1)


# ---- quantiser (§2, §3.1), on the 5-D (B,d,1,H,W) form as upstream ------------------------------
def bsq(r):
    d = r.shape[1]
    u = F.normalize(r, dim=1)
    q = torch.where(u > 0, 1.0, -1.0) / math.sqrt(d)
    return q, (q > 0).squeeze(2).permute(0, 2, 3, 1).to(torch.uint8)


def multiscale(f, sides):
    R = f.unsqueeze(2)
    H, W = f.shape[-2:]
    acc = torch.zeros_like(R)
    bits = []
    for s in sides:
        full = (s, s) == (H, W)
        r = R if full else F.interpolate(R, size=(1, s, s), mode="area")
        q, b = bsq(r)
        Q = q if full else F.interpolate(q, size=(1, H, W), mode="trilinear", align_corners=False)
        R = R - Q
        acc = acc + Q
        bits.append(b)
    return bits, acc.squeeze(2)


def picture(n):
    y, x = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    disc = ((x - 0.2) ** 2 + (y + 0.1) ** 2 < 0.3).float()
    img = torch.stack([0.8 * x, 0.6 * y - 0.3 * disc, disc - 0.5 + 0.3 * x * y])
    img = img + 0.05 * torch.randn(3, n, n)
    return img.clamp(-1, 1).unsqueeze(0)


out = {}
with torch.no_grad():
    image = picture(32)
    latent = encode(image)
    bits, quantized = multiscale(latent, TINY_SIDES)
    out["ref.image"], out["ref.latent"], out["ref.quantized"] = image, latent, quantized
    out["ref.recon"] = decode(quantized)
    out["ref.recon_latent"] = decode(latent)
    for k, b in enumerate(bits):
        out[f"ref.bits.{k}"] = b
    # Quantiser alone on the 512x512 1:1 schedule, d = 32: a smooth latent plus noise.
    g = torch.linspace(0, 3, 32)
    qlat = torch.sin(g[None, :, None] * torch.arange(1, 33)[:, None, None] * 0.3 + g[None, None, :])
    qlat = (qlat + 0.3 * torch.randn(32, 32, 32)).unsqueeze(0)
    qbits, qquant = multiscale(qlat, SQUARE_512)
    out["q.latent"], out["q.quantized"] = qlat, qquant
    for k, b in enumerate(qbits):
        out[f"q.bits.{k}"] = b

tensors = {**weights, **{k: v.contiguous() for k, v in out.items()}}
path = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "bsq_vae.safetensors")
save_file(tensors, path)
print(path, os.path.getsize(path), "bytes,", len(weights), "weights,",
      sum(w.numel() for w in weights.values()), "parameters")
