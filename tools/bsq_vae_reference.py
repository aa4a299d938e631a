#!/usr/bin/env python3
"""An importable PyTorch reference of the BSQ-VAE autoencoder, written from shared/spec/infinity_bsq.md
§1 (not from upstream code), f32 throughout. tools/gen_bsq_vae_fixtures.py keeps its own inline copy
(its outputs are unchanged); this module is what tools/vargpt_reference.py uses.

Weights are a plain dict keyed by upstream's *wrapped* names, as the VARGPT checkpoint stores them
(prefix `vae_local.` there):
    encoder.conv_in.conv.{weight,bias}
    encoder.down.{i}.block.{j}.{norm1,norm2}.norm.{weight,bias}, .{conv1,conv2}.conv.{weight,bias},
        .nin_shortcut.conv.{weight,bias} (only when the channel count changes)
    encoder.down.{i}.downsample.conv.conv.{weight,bias}   (levels i < L-1)
    encoder.mid.block_{1,2}.*, encoder.norm_out.norm.*, encoder.conv_out.conv.*
    decoder.conv_in.conv.*, decoder.mid.block_{1,2}.*, decoder.up.{i}.block.{j}.* (j < nres+1),
    decoder.up.{i}.upsample.conv.conv.* (levels i >= 1), decoder.norm_out.norm.*, decoder.conv_out.conv.*

    cfg = config(base_ch, ch_mult, num_res_blocks, d)
    w = random_weights(cfg, generator)           # drawn in spec_names() order
    f = encode(w, cfg, image)                    # (B, 3, H, W) in [-1, 1] -> (B, d, H/p, W/p), p = 2^(L-1)
    img = decode(w, cfg, latent)                 # -> (B, 3, H, W), clamped to [-1, 1]

Layers: Res(i, o): h = conv1(swish(norm1(x))); h = conv2(swish(norm2(h))); out = shortcut(x) + h.
Down: pad right/bottom by 1, 3x3 conv stride 2. Up: nearest x2, 3x3 conv. GroupNorm(32, eps 1e-6).
"""
import math

import torch
import torch.nn.functional as F


def config(base_ch, ch_mult, num_res_blocks, d, groups=32, eps=1e-6):
    return dict(base_ch=base_ch, ch_mult=tuple(ch_mult), nres=num_res_blocks, d=d, groups=groups, eps=eps)


def _res_specs(s, name, cin, cout):
    s.append((name + ".norm1", "norm", cin))
    s.append((name + ".conv1", "conv", (cin, cout, 3)))
    s.append((name + ".norm2", "norm", cout))
    s.append((name + ".conv2", "conv", (cout, cout, 3)))
    if cin != cout:
        s.append((name + ".nin_shortcut", "conv", (cin, cout, 1)))


def spec_names(cfg):
    """[(module name, 'conv' | 'norm', shape info)] in a fixed order (encoder, then decoder)."""
    ch, mult, nres, d = cfg["base_ch"], cfg["ch_mult"], cfg["nres"], cfg["d"]
    s = [("encoder.conv_in", "conv", (3, ch, 3))]
    block_in = ch
    for i, m in enumerate(mult):
        for j in range(nres):
            _res_specs(s, f"encoder.down.{i}.block.{j}", block_in, ch * m)
            block_in = ch * m
        if i < len(mult) - 1:
            s.append((f"encoder.down.{i}.downsample.conv", "conv", (block_in, block_in, 3)))
    _res_specs(s, "encoder.mid.block_1", block_in, block_in)
    _res_specs(s, "encoder.mid.block_2", block_in, block_in)
    s.append(("encoder.norm_out", "norm", block_in))
    s.append(("encoder.conv_out", "conv", (block_in, d, 3)))
    block_in = ch * mult[-1]
    s.append(("decoder.conv_in", "conv", (d, block_in, 3)))
    _res_specs(s, "decoder.mid.block_1", block_in, block_in)
    _res_specs(s, "decoder.mid.block_2", block_in, block_in)
    for i in reversed(range(len(mult))):
        for j in range(nres + 1):
            _res_specs(s, f"decoder.up.{i}.block.{j}", block_in, ch * mult[i])
            block_in = ch * mult[i]
        if i != 0:
            s.append((f"decoder.up.{i}.upsample.conv", "conv", (block_in, block_in, 3)))
    s.append(("decoder.norm_out", "norm", block_in))
    s.append(("decoder.conv_out", "conv", (block_in, 3, 3)))
    return s


def random_weights(cfg, g, conv_gain=1.0):
    """conv weight N(0, conv_gain^2/fan_in), conv bias N(0, 0.1^2); norm weight 1 + N(0, 0.2^2),
    norm bias N(0, 0.1^2). Wrapped names."""
    w = {}
    for name, kind, info in spec_names(cfg):
        if kind == "conv":
            cin, cout, k = info
            w[name + ".conv.weight"] = torch.randn(cout, cin, k, k, generator=g) * (conv_gain / math.sqrt(cin * k * k))
            w[name + ".conv.bias"] = 0.1 * torch.randn(cout, generator=g)
        else:
            w[name + ".norm.weight"] = 1 + 0.2 * torch.randn(info, generator=g)
            w[name + ".norm.bias"] = 0.1 * torch.randn(info, generator=g)
    return w


def _conv(w, name, x, **kw):
    return F.conv2d(x, w[name + ".conv.weight"], w[name + ".conv.bias"], **kw)


def _gn(w, cfg, name, x):
    return F.group_norm(x, cfg["groups"], w[name + ".norm.weight"], w[name + ".norm.bias"], eps=cfg["eps"])


def _swish(x):
    return x * torch.sigmoid(x)


def _res(w, cfg, name, x):
    h = _conv(w, name + ".conv1", _swish(_gn(w, cfg, name + ".norm1", x)), padding=1)
    h = _conv(w, name + ".conv2", _swish(_gn(w, cfg, name + ".norm2", h)), padding=1)
    sc = _conv(w, name + ".nin_shortcut", x) if name + ".nin_shortcut.conv.weight" in w else x
    return sc + h


def encode(w, cfg, x):
    """Continuous latent f (no quantisation): (B, 3, H, W) -> (B, d, H/p, W/p)."""
    h = _conv(w, "encoder.conv_in", x, padding=1)
    L = len(cfg["ch_mult"])
    for i in range(L):
        for j in range(cfg["nres"]):
            h = _res(w, cfg, f"encoder.down.{i}.block.{j}", h)
        if i < L - 1:
            h = _conv(w, f"encoder.down.{i}.downsample.conv", F.pad(h, (0, 1, 0, 1)), stride=2)
    h = _res(w, cfg, "encoder.mid.block_2", _res(w, cfg, "encoder.mid.block_1", h))
    return _conv(w, "encoder.conv_out", _swish(_gn(w, cfg, "encoder.norm_out", h)), padding=1)


def decode(w, cfg, z, clamp=True):
    h = _conv(w, "decoder.conv_in", z, padding=1)
    h = _res(w, cfg, "decoder.mid.block_2", _res(w, cfg, "decoder.mid.block_1", h))
    for i in reversed(range(len(cfg["ch_mult"]))):
        for j in range(cfg["nres"] + 1):
            h = _res(w, cfg, f"decoder.up.{i}.block.{j}", h)
        if i != 0:
            h = _conv(w, f"decoder.up.{i}.upsample.conv", F.interpolate(h, scale_factor=2.0, mode="nearest"), padding=1)
    out = _conv(w, "decoder.conv_out", _swish(_gn(w, cfg, "decoder.norm_out", h)), padding=1)
    return out.clamp(-1, 1) if clamp else out
