#!/usr/bin/env python3
"""A PyTorch reference of Infinity's bitwise next-scale transformer, written from
shared/spec/infinity_bsq.md §5-§10 (not from upstream code), f32 throughout.

Used by tools/gen_infinity_fixtures.py (fixtures for tests/test_infinity.cpp) and by
bench/torch_infinity.py (the CPU baseline of bench/bench_infinity.cpp). Weights are a plain dict
keyed by the upstream state-dict names (§12), so they save to safetensors as they are.

    cfg = config(depth, C, heads, d, Ctext, maxlen)
    w = random_weights(cfg, generator)
    cond = condition(w, cfg, text_rows, cu_seqlens)       -> (cond_BD (B, C), memory (ΣT, C), cu)
    logits = forward(w, cfg, cond, inputs, sides)         -> (B, L, 2d)
    inputs, labels = self_correction(f, sides, flip_masks) (§9.1, explicit flip masks)
    loss = bitwise_loss(logits, labels, sides, reweight)  (§9.2)
"""
import math

import torch
import torch.nn.functional as F


def config(depth, C, heads, d, Ctext, maxlen, block_chunks=1, eps=1e-6, levels=15):
    return dict(depth=depth, C=C, heads=heads, d=d, Ctext=Ctext, maxlen=maxlen, block_chunks=block_chunks,
                eps=eps, levels=levels, ffn=round(C * 4 / 256) * 256)


def block_prefix(cfg, b):
    per = cfg["depth"] // cfg["block_chunks"]
    return f"block_chunks.{b // per}.module.{b % per}."


def weight_specs(cfg):
    """name -> (shape, init) of every tensor, upstream names, in the order random_weights draws
    them. init: ("normal", std), ("one_plus", std) for 1 + N(0, std), ("log4_plus", std) for
    ln 4 + N(0, std), or ("zeros",)."""
    C, H, d, Ct, ffn = cfg["C"], cfg["heads"], cfg["d"], cfg["Ctext"], cfg["ffn"]
    s = {}

    def lin(name, i, o, bias=True):
        s[name + ".weight"] = ((o, i), ("normal", 1 / math.sqrt(i)))
        if bias:
            s[name + ".bias"] = ((o,), ("normal", 0.1))

    s["cfg_uncond"] = ((cfg["maxlen"], Ct), ("normal", 1.2 / math.sqrt(Ct)))
    s["pos_start"] = ((1, 1, C), ("normal", 0.5))
    s["lvl_embed.weight"] = ((cfg["levels"], C), ("normal", 0.5))
    lin("word_embed", d, C)
    s["text_norm.weight"] = ((Ct,), ("one_plus", 0.2))
    s["text_proj_for_sos.ca.mat_q"] = ((1, H, C // H), ("normal", 1.0))
    lin("text_proj_for_sos.ca.mat_kv", Ct, 2 * C, bias=False)
    s["text_proj_for_sos.ca.v_bias"] = ((C,), ("normal", 0.1))
    s["text_proj_for_sos.ca.zero_k_bias"] = ((C,), ("zeros",))
    lin("text_proj_for_sos.ca.proj", C, C)
    lin("text_proj_for_ca.0", Ct, C)
    lin("text_proj_for_ca.2", C, C)
    lin("shared_ada_lin.1", C, 6 * C)
    lin("head_nm.ada_lin.1", C, 2 * C)
    lin("head", C, 2 * d)
    for b in range(cfg["depth"]):
        p = block_prefix(cfg, b)
        s[p + "ada_gss"] = ((1, 1, 6, C), ("normal", 0.3))
        lin(p + "sa.mat_qkv", C, 3 * C, bias=False)
        s[p + "sa.q_bias"] = ((C,), ("normal", 0.1))
        s[p + "sa.v_bias"] = ((C,), ("normal", 0.1))
        s[p + "sa.zero_k_bias"] = ((C,), ("zeros",))
        s[p + "sa.scale_mul_1H11"] = ((1, H, 1, 1), ("log4_plus", 0.3))
        lin(p + "sa.proj", C, C)
        lin(p + "ca.mat_q", C, C)
        lin(p + "ca.mat_kv", C, 2 * C, bias=False)
        s[p + "ca.v_bias"] = ((C,), ("normal", 0.1))
        s[p + "ca.zero_k_bias"] = ((C,), ("zeros",))
        lin(p + "ca.proj", C, C)
        s[p + "ca_norm.weight"] = ((C,), ("one_plus", 0.2))
        s[p + "ca_norm.bias"] = ((C,), ("normal", 0.1))
        lin(p + "ffn.fc1", C, ffn)
        lin(p + "ffn.fc2", ffn, C)
    return s


def random_weights(cfg, g, dtype=torch.float32):
    """Random weights of a sensible size for testing (not upstream's init, whose tiny AdaLN gammas
    would make every block an identity), drawn from g in weight_specs order."""
    w = {}
    for name, (shape, init) in weight_specs(cfg).items():
        if init[0] == "zeros":
            w[name] = torch.zeros(*shape, dtype=dtype)
            continue
        x = (torch.randn(*shape, generator=g) * init[1]).to(dtype)
        if init[0] == "one_plus":
            x = (1 + x).to(dtype)
        elif init[0] == "log4_plus":
            x = (math.log(4.0) + x).to(dtype)
        w[name] = x
    return w


# ---- schedule and RoPE (§5, §6.5) ----------------------------------------------------------------
def scale_tokens(sides):
    return [h * w for h, w in sides]


def rope_tables(sides, grid, head_dim, theta=1e4):
    """cos, sin (L, head_dim/2): pair p < D/4 turns by row*inv_freq[p], else by col*inv_freq[p-D/4];
    positions round(r*UH/h), round(c*UW/w) in f32 (round half to even)."""
    uh, uw = grid
    rows, cols = [], []
    for h, w in sides:
        r = (torch.arange(h, dtype=torch.float32) * torch.tensor(uh / h, dtype=torch.float32)).round()
        c = (torch.arange(w, dtype=torch.float32) * torch.tensor(uw / w, dtype=torch.float32)).round()
        rows.append(r[:, None].expand(h, w).reshape(-1))
        cols.append(c[None, :].expand(h, w).reshape(-1))
    R, Cc = torch.cat(rows), torch.cat(cols)
    half = head_dim // 2
    inv_freq = 1.0 / (theta ** (torch.arange(0, half, 2, dtype=torch.float32) / half))  # (D/4)
    ang = torch.cat([R[:, None] * inv_freq[None], Cc[:, None] * inv_freq[None]], dim=1)  # (L, D/2)
    return ang.cos(), ang.sin()


def apply_rope(x, cos, sin):
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2)


def block_causal_bias(tokens):
    scale = torch.cat([torch.full((n,), k) for k, n in enumerate(tokens)])
    visible = scale[:, None] >= scale[None, :]
    return torch.zeros(visible.shape).masked_fill(~visible, float("-inf"))


# ---- conditioning (§6.2) --------------------------------------------------------------------------
def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def condition(w, cfg, text, cu):
    C, H = cfg["C"], cfg["heads"]
    D = C // H
    t = rms_norm(text, w["text_norm.weight"], cfg["eps"])
    kv = F.linear(t, w["text_proj_for_sos.ca.mat_kv.weight"],
                  torch.cat([w["text_proj_for_sos.ca.zero_k_bias"], w["text_proj_for_sos.ca.v_bias"]]))
    k, v = kv.view(-1, 2, H, D).unbind(1)  # (T, H, D)
    q = w["text_proj_for_sos.ca.mat_q"][0]  # (H, D)
    pooled = []
    for b in range(len(cu) - 1):
        kb, vb = k[cu[b]:cu[b + 1]], v[cu[b]:cu[b + 1]]
        att = torch.einsum("hd,thd->ht", q, kb) / math.sqrt(D)
        pooled.append(torch.einsum("ht,thd->hd", att.softmax(-1), vb).reshape(C))
    cond_BD = F.linear(torch.stack(pooled), w["text_proj_for_sos.ca.proj.weight"], w["text_proj_for_sos.ca.proj.bias"])
    mem = F.linear(t, w["text_proj_for_ca.0.weight"], w["text_proj_for_ca.0.bias"])
    mem = F.linear(F.gelu(mem, approximate="tanh"), w["text_proj_for_ca.2.weight"], w["text_proj_for_ca.2.bias"])
    return cond_BD, mem, list(cu)


# ---- the block (§6.3-§6.6) ------------------------------------------------------------------------
def self_attention(w, p, cfg, x, cos, sin, bias):
    B, L, C = x.shape
    H = cfg["heads"]
    D = C // H
    qkv = F.linear(x, w[p + "mat_qkv.weight"], torch.cat([w[p + "q_bias"], w[p + "zero_k_bias"], w[p + "v_bias"]]))
    q, k, v = qkv.view(B, L, 3, H, D).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, L, D)
    scale = w[p + "scale_mul_1H11"].reshape(1, H, 1, 1).clamp_max(math.log(100)).exp()
    q = F.normalize(q, dim=-1) * scale
    k = F.normalize(k, dim=-1)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    att = (q @ k.transpose(-1, -2) + bias).softmax(-1)  # softmax scale 1
    o = (att @ v).transpose(1, 2).reshape(B, L, C)
    return F.linear(o, w[p + "proj.weight"], w[p + "proj.bias"])


def cross_attention(w, p, cfg, x, mem, cu):
    B, L, C = x.shape
    H = cfg["heads"]
    D = C // H
    q = F.linear(x, w[p + "mat_q.weight"], w[p + "mat_q.bias"]).view(B, L, H, D).transpose(1, 2)
    kv = F.linear(mem, w[p + "mat_kv.weight"], torch.cat([w[p + "zero_k_bias"], w[p + "v_bias"]]))
    k, v = kv.view(-1, 2, H, D).permute(1, 2, 0, 3).unbind(0)  # (H, T, D)
    out = []
    for b in range(B):
        kb, vb = k[:, cu[b]:cu[b + 1]], v[:, cu[b]:cu[b + 1]]
        att = (q[b] @ kb.transpose(-1, -2) / math.sqrt(D)).softmax(-1)
        out.append((att @ vb).transpose(0, 1).reshape(L, C))
    return F.linear(torch.stack(out), w[p + "proj.weight"], w[p + "proj.bias"])


def block(w, p, cfg, x, cond6, cos, sin, bias, mem, cu):
    C, eps = cfg["C"], cfg["eps"]
    g1, g2, s1, s2, b1, b2 = (w[p + "ada_gss"] + cond6).unbind(2)  # (B, 1, C) each
    ln = lambda t: F.layer_norm(t, (C,), eps=eps)
    x = x + g1 * self_attention(w, p + "sa.", cfg, ln(x) * (1 + s1) + b1, cos, sin, bias)
    x = x + cross_attention(w, p + "ca.", cfg, F.layer_norm(x, (C,), w[p + "ca_norm.weight"], w[p + "ca_norm.bias"],
                                                            eps), mem, cu)
    h = F.linear(ln(x) * (1 + s2) + b2, w[p + "ffn.fc1.weight"], w[p + "ffn.fc1.bias"])
    h = F.linear(F.gelu(h, approximate="tanh"), w[p + "ffn.fc2.weight"], w[p + "ffn.fc2.bias"])
    return x + g2 * h


def forward(w, cfg, cond, inputs, sides, grid):
    """Teacher-forced logits (B, L, 2d) for inputs (B, L-1, d) of scales 1..K-1 (§6.7, §6.8, §7)."""
    cond_BD, mem, cu = cond
    B, C = cond_BD.shape
    tokens = scale_tokens(sides)
    x = torch.cat([cond_BD[:, None] + w["pos_start"],
                   F.linear(inputs, w["word_embed.weight"], w["word_embed.bias"])], dim=1)
    lvl = torch.cat([torch.full((n,), k) for k, n in enumerate(tokens)])
    x = x + w["lvl_embed.weight"][lvl]
    cond6 = F.linear(F.silu(cond_BD), w["shared_ada_lin.1.weight"], w["shared_ada_lin.1.bias"]).view(B, 1, 6, C)
    cos, sin = rope_tables(sides, grid, C // cfg["heads"])
    bias = block_causal_bias(tokens)
    for b in range(cfg["depth"]):
        x = block(w, block_prefix(cfg, b), cfg, x, cond6, cos, sin, bias, mem, cu)
    scale, shift = F.linear(F.silu(cond_BD), w["head_nm.ada_lin.1.weight"], w["head_nm.ada_lin.1.bias"])[:, None].chunk(2, -1)
    h = F.layer_norm(x, (C,), eps=cfg["eps"]) * (1 + scale) + shift
    return F.linear(h, w["head.weight"], w["head.bias"])


# ---- bitwise self-correction (§9.1) and loss (§9.2) -----------------------------------------------
def self_correction(f, sides, flip_masks, requant=True):
    """f (B, d, H, W); flip_masks[k] (B, h_k, w_k, d) bool -> inputs (B, L-1, d), labels (B, L, d)."""
    B, d, H, W = f.shape
    cum = torch.zeros_like(f)
    inputs, labels = [], []
    for k, (h, w) in enumerate(sides):
        full = (h, w) == (H, W)
        res = f - cum
        if not full:
            res = F.interpolate(res, size=(h, w), mode="area")
        bits = F.normalize(res, dim=1) > 0  # (B, d, h, w)
        labels.append(bits.permute(0, 2, 3, 1).reshape(B, h * w, d))
        q = (bits.float() * 2 - 1) / math.sqrt(d)
        if flip_masks is not None and k < len(flip_masks):
            flipped = bits ^ flip_masks[k].permute(0, 3, 1, 2)
            if requant:
                q = (flipped.float() * 2 - 1) / math.sqrt(d)
        cum = cum + (q if full else F.interpolate(q, size=(H, W), mode="bilinear", align_corners=False))
        if k + 1 < len(sides):
            nxt = F.interpolate(cum, size=sides[k + 1], mode="bilinear", align_corners=False)
            inputs.append(nxt.flatten(2).transpose(1, 2))
    return torch.cat(inputs, 1), torch.cat(labels, 1)


def bitwise_loss(logits, labels, sides, reweight=False):
    B, L, _ = logits.shape
    z = logits.view(B, L, -1, 2)
    per_bit = F.cross_entropy(z.reshape(-1, 2), labels.reshape(-1).long(), reduction="none").view(B, L, -1)
    per_token = per_bit.mean(-1)  # (B, L)
    if not reweight:
        return per_token.mean()
    hK, wK = sides[-1]
    wt = torch.cat([torch.full((h * w,), math.sqrt(hK * wK) / math.sqrt(h * w)) for h, w in sides])
    wt = wt / wt.sum()
    return (per_token * wt).sum(-1).mean()
