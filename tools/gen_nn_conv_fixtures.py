#!/usr/bin/env python3
"""Writes tests/fixtures/nn_conv.{safetensors,json}: PyTorch references for vt's conv2d, Conv3d patch
embedding, interpolate and rotary embeddings, in the ops_core format (see tools/gen_op_fixtures.py and
tests/op_table.h): inputs, args, forward outputs and the gradients of sum(out * gout).

The rotary references are the upstream formulas written with torch ops, each naming the function it
mirrors; where transformers is installed the Qwen2-VL ones are cross-checked against it.

    pip install torch safetensors numpy [transformers] && python3 tools/gen_nn_conv_fixtures.py
"""
import json
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(0)
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures")
DT = {"f32": torch.float32, "f64": torch.float64, "bf16": torch.bfloat16}
tensors, cases = {}, []


def make(shape, dt="f32"):
    return torch.randn(shape, dtype=torch.float64).to(DT[dt])


def case(name, op, inputs, args=None, rtol=None, atol=None, fn=None):
    """inputs: list of (tensor, requires_grad). Same record layout as gen_op_fixtures.py."""
    rec = {"name": name, "op": op, "args": args or {}, "inputs": []}
    xs = []
    for i, (x, rg) in enumerate(inputs):
        key = f"{name}.in{i}"
        tensors[key] = x.detach().clone().contiguous()
        rg = bool(rg and x.is_floating_point())
        xv = x.clone().requires_grad_(rg)
        xs.append(xv)
        rec["inputs"].append({"key": key, "view": None, "grad": rg})
    out = fn(*xs)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    rec["outs"] = []
    for j, o in enumerate(outs):
        tensors[f"{name}.out{j}"] = o.detach().clone().contiguous()
        rec["outs"].append(f"{name}.out{j}")
    if any(r["grad"] for r in rec["inputs"]):
        g = torch.randn(outs[0].shape, dtype=torch.float64).to(outs[0].dtype)
        tensors[f"{name}.gout"] = g.clone().contiguous()
        rec["gout"] = f"{name}.gout"
        (outs[0] * g).sum().backward()
        rec["grads"] = []
        for i, (x, r) in enumerate(zip(xs, rec["inputs"])):
            if r["grad"]:
                tensors[f"{name}.grad{i}"] = x.grad.clone().contiguous()
                rec["grads"].append(f"{name}.grad{i}")
            else:
                rec["grads"].append(None)
    dt = outs[0].dtype
    rec["rtol"] = rtol if rtol is not None else {torch.float64: 1e-10, torch.float32: 1e-5}.get(dt, 1e-2)
    rec["atol"] = atol if atol is not None else {torch.float64: 1e-12, torch.float32: 1e-6}.get(dt, 1e-2)
    cases.append(rec)


# ---- conv2d -------------------------------------------------------------------------------------
# args: stride [sh, sw], pad [left, right, top, bottom] (F.pad order); the reference pads with F.pad
# and convolves with padding 0, which is how Infinity's `Down` is written.
def conv_ref(stride, pad):
    return lambda x, w, b=None: F.conv2d(F.pad(x, pad), w, b, stride=stride)


conv_cases = [
    # name, x shape, w shape, stride, pad, bias, dtype
    ("conv3x3_p1", (2, 3, 7, 9), (5, 3, 3, 3), (1, 1), (1, 1, 1, 1), True, "f32"),
    ("conv3x3_p1_f64", (2, 3, 7, 9), (5, 3, 3, 3), (1, 1), (1, 1, 1, 1), True, "f64"),
    ("conv_down_s2_pad0101", (2, 4, 9, 8), (6, 4, 3, 3), (2, 2), (0, 1, 0, 1), True, "f32"),
    ("conv_down_s2_pad0101_f64", (1, 3, 7, 10), (2, 3, 3, 3), (2, 2), (0, 1, 0, 1), True, "f64"),
    ("conv_odd_kernel_stride", (1, 5, 11, 6), (4, 5, 3, 2), (2, 1), (2, 0, 1, 3), False, "f32"),
    ("conv5x5_s3_p2", (3, 2, 13, 12), (3, 2, 5, 5), (3, 3), (2, 2, 2, 2), True, "f32"),
    ("conv1x1", (2, 7, 5, 3), (9, 7, 1, 1), (1, 1), (0, 0, 0, 0), True, "f32"),
    ("conv1x1_s2", (2, 7, 5, 3), (9, 7, 1, 1), (2, 2), (0, 0, 0, 0), True, "f32"),
    ("conv_size1", (1, 1, 1, 1), (1, 1, 3, 3), (1, 1), (1, 1, 1, 1), True, "f32"),
    ("conv3x3_bf16", (2, 8, 10, 9), (6, 8, 3, 3), (1, 1), (1, 1, 1, 1), True, "bf16"),
    ("conv_down_bf16", (1, 8, 8, 8), (4, 8, 3, 3), (2, 2), (0, 1, 0, 1), True, "bf16"),
]
for name, xs, ws, stride, pad, bias, dt in conv_cases:
    ins = [(make(xs, dt), True), (make(ws, dt) * 0.3, True)]
    if bias:
        ins.append((make((ws[0],), dt), True))
    tol = {"f32": (1e-4, 1e-5), "f64": (1e-10, 1e-12), "bf16": (2e-2, 2e-2)}[dt]
    case(name, "conv2d", ins, {"stride": list(stride), "pad": list(pad)}, rtol=tol[0], atol=tol[1],
         fn=conv_ref(stride, pad))

# Conv3d patch embedding: Qwen2-VL PatchEmbed.forward: view(-1, C, kt, k, k) -> Conv3d(kernel=stride) -> view(-1, O)
def patch_ref(x, w):
    return F.conv3d(x.view(-1, *w.shape[1:]).to(w.dtype), w, stride=w.shape[2:]).view(-1, w.shape[0])


case("conv3d_patch_embed", "conv3d_patch_embed", [(make((6, 3 * 2 * 14 * 14)), True), (make((16, 3, 2, 14, 14)) * 0.05, True)],
     rtol=1e-4, atol=1e-5, fn=patch_ref)
case("conv3d_patch_embed_bf16", "conv3d_patch_embed", [(make((5, 3 * 2 * 4 * 4), "bf16"), True),
                                                       (make((7, 3, 2, 4, 4), "bf16") * 0.2, True)],
     rtol=2e-2, atol=2e-2, fn=patch_ref)

# ---- interpolate --------------------------------------------------------------------------------
# args: mode, and either size or scale (one factor per spatial dim).
def interp_case(name, shape, mode, dt="f32", size=None, scale=None):
    args = {"mode": mode}
    if size is not None:
        args["size"] = list(size)
        fn = lambda x: F.interpolate(x, size=tuple(size), mode=mode, **({} if mode in ("nearest", "area") else {"align_corners": False}))
    else:
        args["scale"] = list(scale)
        fn = lambda x: F.interpolate(x, scale_factor=tuple(scale), mode=mode, **({} if mode in ("nearest", "area") else {"align_corners": False}))
    tol = {"f32": (1e-5, 1e-6), "f64": (1e-10, 1e-12), "bf16": (1e-2, 1e-2)}[dt]
    case(name, "interpolate", [(make(shape, dt), True)], args, rtol=tol[0], atol=tol[1], fn=fn)


for mode in ["nearest", "bilinear", "bicubic", "area"]:
    interp_case(f"{mode}_up_size", (2, 3, 5, 7), mode, size=(12, 10))          # x2.4, x1.43
    interp_case(f"{mode}_down_size", (1, 2, 13, 11), mode, size=(5, 4))        # /2.6, /2.75
    interp_case(f"{mode}_mixed_f64", (1, 2, 6, 9), mode, "f64", size=(10, 4))  # up on H, down on W
    interp_case(f"{mode}_bf16", (1, 3, 7, 6), mode, "bf16", size=(9, 4))
    interp_case(f"{mode}_scale_up", (1, 2, 5, 6), mode, scale=(1.7, 2.3))
    interp_case(f"{mode}_scale_down", (1, 2, 11, 10), mode, scale=(0.6, 0.45))
    interp_case(f"{mode}_same", (1, 1, 4, 5), mode, size=(4, 5))
interp_case("nearest_x2", (1, 2, 4, 3), "nearest", scale=(2.0, 2.0))
interp_case("nearest_1d", (2, 3, 7), "nearest", size=(17,))
interp_case("nearest_3d", (1, 2, 3, 4, 5), "nearest", size=(2, 7, 3))
interp_case("linear_1d_up", (2, 3, 7), "linear", size=(17,))
interp_case("linear_1d_down", (2, 3, 17), "linear", size=(7,))
interp_case("bilinear_from_1x1", (1, 2, 1, 1), "bilinear", size=(3, 4))
interp_case("bilinear_32_to_24", (1, 1, 32, 32), "bilinear", size=(24, 24))
interp_case("area_32_to_6", (1, 2, 32, 13), "area", size=(6, 5))
interp_case("area_1d", (2, 1, 10), "area", size=(4,))
interp_case("area_3d", (1, 2, 3, 7, 5), "area", size=(2, 3, 4))
interp_case("trilinear_d1_up", (1, 3, 1, 5, 6), "trilinear", size=(1, 11, 9))
interp_case("trilinear_d1_down", (2, 2, 1, 16, 12), "trilinear", size=(1, 6, 5))
interp_case("trilinear_3d", (1, 2, 3, 4, 5), "trilinear", size=(5, 3, 7))
interp_case("trilinear_d1_f64", (1, 2, 1, 7, 9), "trilinear", "f64", size=(1, 4, 13))

# ---- rotary embeddings --------------------------------------------------------------------------
def rotate_half(x):  # transformers modeling_qwen2 / modeling_qwen2_vl rotate_half
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def inv_freq(dim, base):  # Qwen2RotaryEmbedding / compute_default_rope_parameters
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))


# (1) Qwen2RotaryEmbedding.forward + apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1)
def qwen2_rope_ref(theta):
    def fn(x, pos):
        freqs = pos[..., None].float() * inv_freq(x.shape[-1], theta)  # (B, T, D/2)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos().to(x.dtype).unsqueeze(1), emb.sin().to(x.dtype).unsqueeze(1)
        return x * cos + rotate_half(x) * sin
    return fn


# (2) transformers 4.x apply_multimodal_rotary_pos_emb: cos/sin (3, B, T, D) split by the doubled
# sections, chunk i from axis i % 3 (in 5.x the same selection happens on the D/2 frequencies).
def mrope_ref(theta, section):
    def fn(x, pos):
        freqs = pos[..., None].float() * inv_freq(x.shape[-1], theta)  # (3, B, T, D/2)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
        sec = section * 2
        cos = torch.cat([m[i % 3] for i, m in enumerate(cos.split(sec, dim=-1))], dim=-1).unsqueeze(1)
        sin = torch.cat([m[i % 3] for i, m in enumerate(sin.split(sec, dim=-1))], dim=-1).unsqueeze(1)
        return x * cos + rotate_half(x) * sin
    return fn


# (3) Qwen2VisionTransformerPretrainedModel.rot_pos_emb + apply_rotary_pos_emb_vision
def vision_positions(t, h, w, m=2):
    hpos = torch.arange(h).unsqueeze(1).expand(-1, w).reshape(h // m, m, w // m, m).permute(0, 2, 1, 3).flatten()
    wpos = torch.arange(w).unsqueeze(0).expand(h, -1).reshape(h // m, m, w // m, m).permute(0, 2, 1, 3).flatten()
    return torch.stack([hpos, wpos], dim=-1).repeat(t, 1)


def vision_rope_ref(grid, theta=10000.0):
    def fn(x):
        pos = vision_positions(*grid)
        dim = x.shape[-1] // 2  # VisionRotaryEmbedding(head_dim // 2)
        seq = torch.arange(int(pos.max()) + 1, dtype=torch.float)
        table = torch.outer(seq, inv_freq(dim, theta))
        rot = table[pos].flatten(1)  # (S, D/2) = [h freqs, w freqs]
        emb = torch.cat((rot, rot), dim=-1)
        cos, sin = emb.cos().unsqueeze(-2).float(), emb.sin().unsqueeze(-2).float()
        xf = x.float()
        return (xf * cos + rotate_half(xf) * sin).to(x.dtype)
    return fn


# (4) Infinity infinity/models/basic.py: precompute_rope2d_freqs_grid (rope2d_normalized_by_hw=2)
# and apply_rotary_emb, for one (q) tensor; the grid is (uh, uw) = the schedule's last scale.
def infinity_rope_ref(scales, uh, uw, pad_to, theta=10000.0):
    def fn(x):
        half_dim = x.shape[-1] // 2
        inv = 1.0 / (theta ** (torch.arange(0, half_dim, 2, dtype=torch.int64).float() / half_dim))
        th = torch.arange(128, dtype=torch.int64).type_as(inv)
        fh, fw = torch.outer(th, inv), torch.outer(th, inv)
        grid = torch.concat([fh[:, None, :].expand(-1, 128, -1), fw[None, :, :].expand(128, -1, -1)], dim=-1)
        grid = torch.stack([torch.cos(grid), torch.sin(grid)], dim=0)  # (2, 128, 128, half_dim)
        caches = []
        for ph, pw in scales:
            idx = torch.stack([(torch.arange(ph) * (uh / ph)).reshape(ph, 1).expand(ph, pw),
                               (torch.arange(pw) * (uw / pw)).reshape(1, pw).expand(ph, pw)], dim=-1).round().int()
            idx = idx.reshape(-1, 2)
            caches.append(grid[:, idx[:, 0], idx[:, 1], :])
        cache = torch.cat(caches, 1)
        if cache.shape[1] % pad_to:
            cache = torch.cat([cache, torch.zeros(2, pad_to - cache.shape[1] % pad_to, half_dim)], dim=1)
        cache = cache[:, None, None, :x.shape[-2]]  # (2, 1, 1, L, half_dim)
        q = x.reshape(*x.shape[:-1], -1, 2)
        q = torch.stack([cache[0] * q[..., 0] - cache[1] * q[..., 1],
                         cache[1] * q[..., 0] + cache[0] * q[..., 1]], dim=-1)
        return q.reshape(*q.shape[:-2], -1).to(x.dtype)
    return fn


ROPE_TOL = {"f32": (1e-5, 2e-6), "f64": (1e-5, 2e-6), "bf16": (1e-2, 1e-2)}
pos_bt = torch.tensor([[0, 1, 2, 3, 7], [100, 101, 4000, 4001, 12345]])
for dt in ["f32", "bf16"]:
    r = ROPE_TOL[dt]
    case(f"rope_qwen2_{dt}", "rope_qwen2", [(make((2, 3, 5, 16), dt), True), (pos_bt, False)], {"theta": 1e6},
         rtol=r[0], atol=r[1], fn=qwen2_rope_ref(1e6))
pos3 = torch.stack([torch.tensor([[0, 1, 2, 2, 2, 2, 2, 2, 5, 6]]), torch.tensor([[0, 1, 2, 2, 2, 3, 3, 3, 5, 6]]),
                    torch.tensor([[0, 1, 2, 3, 4, 2, 3, 4, 5, 6]])])  # text, a 2x3 image grid, text
for dt in ["f32", "bf16"]:
    r = ROPE_TOL[dt]
    case(f"mrope_{dt}", "mrope", [(make((1, 2, 10, 128), dt), True), (pos3, False)],
         {"theta": 1e6, "sections": [16, 24, 24]}, rtol=r[0], atol=r[1], fn=mrope_ref(1e6, [16, 24, 24]))
case("mrope_small_sections", "mrope", [(make((2, 1, 10, 16), "f32"), True), (pos3.expand(3, 2, 10) * 3, False)],
     {"theta": 1e4, "sections": [2, 3, 3]}, rtol=1e-5, atol=2e-6, fn=mrope_ref(1e4, [2, 3, 3]))
for dt, grid in [("f32", (1, 4, 6)), ("bf16", (2, 2, 4))]:
    r = ROPE_TOL[dt]
    S = grid[0] * grid[1] * grid[2]
    case(f"rope_vision_{dt}", "rope_vision", [(make((S, 2, 80), dt), True)], {"grid": list(grid)},
         rtol=r[0], atol=r[1], fn=vision_rope_ref(grid))
inf_scales = [(1, 1), (2, 2), (4, 4), (6, 6)]
case("rope_infinity_1to1", "rope_infinity", [(make((1, 2, 57, 128)), True)],
     {"scales": inf_scales, "grid": [64, 64], "pad_to": 1}, rtol=1e-5, atol=2e-6, fn=infinity_rope_ref(inf_scales, 64, 64, 1))
inf_scales2 = [(1, 1), (2, 3), (3, 5)]
case("rope_infinity_2to3_padded", "rope_infinity", [(make((2, 1, 32, 64)), True)],
     {"scales": inf_scales2, "grid": [40, 60], "pad_to": 16}, rtol=1e-5, atol=2e-6,
     fn=infinity_rope_ref(inf_scales2, 40, 60, 16))

# ---- cross-checks against transformers, where installed ---------------------------------------
try:
    from transformers.models.qwen2_vl import modeling_qwen2_vl as hf
    x = make((1, 2, 10, 128))
    ours = mrope_ref(1e6, [16, 24, 24])(x, pos3)
    if hasattr(hf, "apply_multimodal_rotary_pos_emb"):  # transformers 4.x
        freqs = pos3[..., None].float() * inv_freq(128, 1e6)
        emb = torch.cat((freqs, freqs), -1)
        theirs, _ = hf.apply_multimodal_rotary_pos_emb(x, x, emb.cos(), emb.sin(), [16, 24, 24])
    else:  # transformers 5.x: Qwen2VLRotaryEmbedding.recomposition_frequencies + apply_rotary_pos_emb
        freqs = pos3[..., None].float() * inv_freq(128, 1e6)
        rec = lambda f: torch.cat([torch.cat([m[i % 3] for i, m in enumerate(f.split([16, 24, 24], -1))], -1)] * 2, -1)
        theirs, _ = hf.apply_rotary_pos_emb(x, x, rec(freqs.cos()), rec(freqs.sin()))
    assert torch.equal(ours, theirs), "M-RoPE reference disagrees with transformers"
    xv = make((8, 2, 80))
    rot = (vision_positions(1, 2, 4)[..., None].float() * inv_freq(40, 1e4)).flatten(1)  # 5.x recomposition
    emb = torch.cat((rot, rot), dim=-1)
    theirs, _ = hf.apply_rotary_pos_emb_vision(xv, xv, emb.cos(), emb.sin())
    assert torch.equal(vision_rope_ref((1, 2, 4))(xv), theirs), "vision RoPE reference disagrees with transformers"
    print("cross-checked M-RoPE and vision RoPE references against transformers", __import__("transformers").__version__)
except ImportError:
    print("transformers not installed: skipped the cross-check")

os.makedirs(OUT, exist_ok=True)
save_file(tensors, os.path.join(OUT, "nn_conv.safetensors"))
with open(os.path.join(OUT, "nn_conv.json"), "w") as f:
    json.dump({"generator": "tools/gen_nn_conv_fixtures.py", "torch": torch.__version__, "cases": cases}, f, indent=1)
print(len(cases), "cases,", os.path.getsize(os.path.join(OUT, "nn_conv.safetensors")), "bytes")
