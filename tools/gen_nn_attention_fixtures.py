#!/usr/bin/env python3
"""Writes tests/fixtures/nn_attention.{safetensors,json}: the PyTorch reference for vt's attention
(include/vt/nn/attention.h) and AdaLN helpers (include/vt/nn/adaln.h), in the format of ops_core
(tools/gen_op_fixtures.py), read by tests/op_table_nn_attention.h.

References: torch.nn.functional.scaled_dot_product_attention (enable_gqa=True) for no mask, torch's
top-left is_causal and explicit masks; the structural masks torch has no flag for are built as
explicit boolean masks here, from their definitions:
  causal_from_end  query i sees keys j <= i + Tk - Tq         (KV-cache decoding, bottom-right)
  block_causal     scale(q) >= scale(k); padding rows see key 0 only (infinity_bsq.md §7)
  varlen           same segment of cu_seqlens (and cu_seqlens_k for cross-attention)
Cosine attention follows Infinity's SelfAttention (infinity_bsq.md §6.4): F.normalize in fp32,
q * scale_mul.clamp_max(ln 100).exp(), softmax scale 1. Rows that see no key give 0 (torch >= 2.5).

    pip install torch safetensors && python3 tools/gen_nn_attention_fixtures.py
"""
import json
import math
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(0)
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures")
DT = {"f32": torch.float32, "f64": torch.float64, "bf16": torch.bfloat16}
tensors, cases = {}, []


def make(shape, dt="f32", scale=1.0):
    return (torch.randn(shape, dtype=torch.float64) * scale).to(DT[dt])


def case(name, op, inputs, args, fn, rtol=None, atol=None):
    """inputs: list of (tensor, requires_grad)."""
    rec = {"name": name, "op": op, "args": args, "inputs": []}
    xs = []
    for i, (x, rg) in enumerate(inputs):
        key = f"{name}.in{i}"
        tensors[key] = x.detach().clone().contiguous()
        rg = bool(rg and x.is_floating_point())
        xv = x.clone().requires_grad_(rg)
        xs.append(xv)
        rec["inputs"].append({"key": key, "view": None, "grad": rg})
    out = fn(*xs)
    tensors[f"{name}.out0"] = out.detach().clone().contiguous()
    rec["outs"] = [f"{name}.out0"]
    if any(r["grad"] for r in rec["inputs"]):
        g = torch.randn(out.shape, dtype=torch.float64).to(out.dtype)
        tensors[f"{name}.gout"] = g.clone().contiguous()
        rec["gout"] = f"{name}.gout"
        (out * g).sum().backward()
        rec["grads"] = []
        for x, r in zip(xs, rec["inputs"]):
            if r["grad"]:
                key = f"{name}.grad{len(rec['grads'])}"
                tensors[key] = x.grad.clone().contiguous()
                rec["grads"].append(key)
            else:
                rec["grads"].append(None)
    dt = out.dtype
    rec["rtol"] = rtol if rtol is not None else {torch.float64: 1e-10, torch.float32: 1e-5}.get(dt, 2e-2)
    rec["atol"] = atol if atol is not None else {torch.float64: 1e-12, torch.float32: 1e-5}.get(dt, 2e-2)
    cases.append(rec)


# ---- structural masks as explicit boolean (Tq, Tk) matrices (True = attend) ---------------------
def causal_from_end(tq, tk):
    return torch.ones(tq, tk, dtype=torch.bool).tril(diagonal=tk - tq)


def block_causal(lengths, tq, tk):
    scale_of = torch.full((tk,), -1)
    at = 0
    for s, n in enumerate(lengths):
        scale_of[at:at + n] = s
        at += n
    vis = torch.zeros(tk, tk, dtype=torch.bool)
    real = scale_of >= 0
    vis[real[:, None] & real[None, :]] = (scale_of[:, None] >= scale_of[None, :])[real[:, None] & real[None, :]]
    vis[~real, 0] = True  # padding rows see key 0 only
    return vis[tk - tq:]


def varlen(cu_q, cu_k, tq, tk):
    vis = torch.zeros(tq, tk, dtype=torch.bool)
    for s in range(len(cu_q) - 1):
        vis[cu_q[s]:cu_q[s + 1], cu_k[s]:cu_k[s + 1]] = True
    return vis


def sdpa(q, k, v, mask=None, causal=False, scale=None):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=scale,
                                          enable_gqa=q.shape[1] != k.shape[1])


def attn_case(name, B, Hq, Hkv, Tq, Tk, D, Dv=None, dt="f32", mask="none", lengths=None, cu_k=None, scale=None,
              extra=None, **tol):
    """extra: an explicit mask tensor passed to both sides (combined with the structural mask)."""
    Dv = Dv or D
    q, k, v = make((B, Hq, Tq, D), dt), make((B, Hkv, Tk, D), dt), make((B, Hkv, Tk, Dv), dt)
    args = {"mask": mask, "lengths": lengths or [], "cu_k": cu_k or []}
    if scale is not None:
        args["scale"] = scale
    structural = {"none": None, "causal": None,
                  "causal_from_end": lambda: causal_from_end(Tq, Tk),
                  "block_causal": lambda: block_causal(lengths, Tq, Tk),
                  "varlen": lambda: varlen(lengths, cu_k or lengths, Tq, Tk)}[mask]
    inputs = [(q, True), (k, True), (v, True)]
    if extra is not None:
        inputs.append((extra, False))
        args["has_mask"] = True

    def fn(q, k, v, m=None):
        bias = structural() if structural else None
        if m is not None:
            if bias is None:
                bias = m
            elif m.dtype == torch.bool:
                bias = bias & m
            else:
                bias = torch.where(bias, m, float("-inf")).to(q.dtype)
        if mask == "causal" and bias is not None:  # torch forbids is_causal with a mask: build it
            tril = torch.ones(Tq, Tk, dtype=torch.bool).tril()
            bias = (tril & bias) if bias.dtype == torch.bool else torch.where(tril, bias, float("-inf")).to(q.dtype)
            return sdpa(q, k, v, bias, False, scale)
        return sdpa(q, k, v, bias, mask == "causal", scale)

    case(name, "sdpa", inputs, args, fn, **tol)


# ---- scaled_dot_product_attention ------------------------------------------------------------------
attn_case("none_T37_D64", 1, 2, 2, 37, 37, 64)
attn_case("causal_T37_D80_gqa7", 1, 7, 1, 37, 37, 80, mask="causal")
attn_case("causal_topleft_Tq5_Tk37", 1, 2, 1, 5, 37, 64, mask="causal")
attn_case("causal_from_end_Tq5_Tk37_gqa7", 1, 7, 1, 5, 37, 64, mask="causal_from_end")
attn_case("causal_from_end_empty_rows", 1, 2, 2, 6, 4, 16, mask="causal_from_end")
attn_case("decode_T1", 2, 2, 2, 1, 37, 64)
attn_case("self_T1_causal", 1, 3, 3, 1, 1, 80, mask="causal")
attn_case("cross_Tq11_Tk29_Dv48", 2, 2, 1, 11, 29, 64, Dv=48)
pad = torch.ones(2, 1, 1, 23, dtype=torch.bool)
pad[0, ..., 17:] = False
pad[1, ..., 20:] = False
attn_case("bool_key_padding_scale0.3", 2, 2, 2, 9, 23, 24, scale=0.3, extra=pad)
add = make((13, 13), scale=2.0)
add[3, 5:] = float("-inf")
attn_case("float_mask_T13", 1, 4, 2, 13, 13, 32, extra=add)
attn_case("causal_and_key_padding", 2, 2, 2, 23, 23, 24, mask="causal", extra=pad)
attn_case("block_causal_1_4_9_16_pad3", 1, 2, 2, 33, 33, 64, mask="block_causal", lengths=[1, 4, 9, 16])
attn_case("block_causal_last_scale", 1, 2, 1, 9, 14, 32, mask="block_causal", lengths=[1, 4, 9])
attn_case("varlen_0_5_17_30", 1, 2, 2, 30, 30, 80, mask="varlen", lengths=[0, 5, 17, 30])
attn_case("varlen_cross", 1, 2, 2, 8, 13, 32, mask="varlen", lengths=[0, 3, 8], cu_k=[0, 10, 13])
attn_case("bf16_causal_T37_gqa7", 1, 7, 1, 37, 37, 64, dt="bf16", mask="causal", rtol=3e-2, atol=3e-2)
attn_case("bf16_block_causal", 1, 2, 2, 21, 21, 64, dt="bf16", mask="block_causal", lengths=[1, 4, 16],
          rtol=3e-2, atol=3e-2)
attn_case("f64_causal", 1, 2, 1, 7, 7, 8, dt="f64", mask="causal")


# ---- cosine attention (Infinity) ---------------------------------------------------------------------
def cos_case(name, B, H, T, D, dt, mask, lengths, scale_shape, **tol):
    q, k, v = make((B, H, T, D), dt), make((B, H, T, D), dt), make((B, H, T, D), dt)
    sm = torch.full((H,), math.log(4.0), dtype=torch.float32) + make((H,), scale=0.5)
    sm[-1] = 5.0  # above ln 100: clamped, so its gradient is 0
    sm = sm.reshape(scale_shape)

    def fn(q, k, v, sm):
        s = sm.reshape(1, H, 1, 1).clamp_max(math.log(100.0)).exp()
        qn = F.normalize(q.float(), dim=-1) * s
        kn = F.normalize(k.float(), dim=-1)
        bias = block_causal(lengths, T, T) if mask == "block_causal" else None
        return sdpa(qn.to(v.dtype), kn.to(v.dtype), v, bias, False, 1.0)

    case(name, "cosine_attention", [(q, True), (k, True), (v, True), (sm, True)],
         {"mask": mask, "lengths": lengths}, fn, **tol)


cos_case("cosine_block_causal_f32", 2, 3, 21, 16, "f32", "block_causal", [1, 4, 16], (1, 3, 1, 1))
cos_case("cosine_f32_1_1_H_1", 1, 2, 10, 32, "f32", "none", [], (1, 1, 2, 1))
cos_case("cosine_bf16", 1, 2, 21, 64, "bf16", "block_causal", [1, 4, 16], (1, 2, 1, 1), rtol=3e-2, atol=3e-2)

# ---- AdaLN ------------------------------------------------------------------------------------------
case("modulate_B1C", "modulate", [(make((2, 7, 12)), True), (make((2, 1, 12)), True), (make((2, 1, 12)), True)],
     {}, lambda x, sh, sc: x * (1 + sc) + sh)
case("modulate_BC", "modulate", [(make((3, 5, 8)), True), (make((3, 8)), True), (make((3, 8)), True)],
     {}, lambda x, sh, sc: x * (1 + sc[:, None]) + sh[:, None])
case("modulate_bf16", "modulate", [(make((2, 5, 16), "bf16"), True), (make((2, 1, 16), "bf16"), True),
                                   (make((2, 1, 16), "bf16"), True)], {}, lambda x, sh, sc: x.mul(sc.add(1)).add_(sh))
case("gated_residual", "gated_residual", [(make((2, 7, 12)), True), (make((2, 1, 12)), True), (make((2, 7, 12)), True)],
     {}, lambda x, g, y: x + g * y)
case("gated_residual_f32_gamma_bf16_branch", "gated_residual",
     [(make((2, 3, 8)), True), (make((2, 1, 8)), True), (make((2, 3, 8), "bf16"), True)], {},
     lambda x, g, y: x + g * y, rtol=1e-2, atol=1e-2)

os.makedirs(OUT, exist_ok=True)
save_file(tensors, os.path.join(OUT, "nn_attention.safetensors"))
with open(os.path.join(OUT, "nn_attention.json"), "w") as f:
    json.dump({"generator": "tools/gen_nn_attention_fixtures.py", "torch": torch.__version__, "cases": cases}, f,
              indent=1)
size = os.path.getsize(os.path.join(OUT, "nn_attention.safetensors"))
print(f"{len(cases)} cases, {len(tensors)} tensors, {size / 1e6:.2f} MB")
