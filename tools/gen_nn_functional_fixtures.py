#!/usr/bin/env python3
"""Writes tests/fixtures/nn_functional.{safetensors,json}: the PyTorch reference for vt's nn layers
and losses (include/vt/nn/{functional,norm,loss}.h), in the format of ops_core (tools/gen_op_fixtures.py).

Each case names an op of tests/op_table_nn_functional.h, its inputs (stored contiguous, then viewed
the same way on both sides: "t" = transpose the last two dims, "s2" = every second row of dim 0),
parameters, the forward output(s) and, for differentiable cases, the gradients of sum(out0 * gout).

References follow the upstream code vt reproduces: Qwen2RMSNorm's cast rule (normalise in f32, cast,
then multiply by the weight; f64 input stays f64 so that vt's f64 path is checked too), TRL 0.9's
dpo_loss, Infinity's bitwise loss (F.cross_entropy over the logit pair). Dropout and drop_path use
vt's own Philox stream, so they are tested in C++ by their statistics instead.

    pip install torch safetensors && python3 tools/gen_nn_functional_fixtures.py
"""
import json
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(0)
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures")
DT = {"f32": torch.float32, "f64": torch.float64, "bf16": torch.bfloat16, "i64": torch.int64}
tensors, cases = {}, []


def view(x, v):
    if v == "t":
        return x.transpose(-1, -2)
    if v == "s2":
        return x[::2]
    return x


def make(shape, dt="f32", scale=1.0):
    return (torch.randn(shape, dtype=torch.float64) * scale).to(DT[dt])


def case(name, op, inputs, args=None, fn=None, rtol=None, atol=None):
    """inputs: list of (tensor, view, requires_grad)."""
    args = args or {}
    rec = {"name": name, "op": op, "args": args, "inputs": []}
    xs = []
    for i, (x, v, rg) in enumerate(inputs):
        key = f"{name}.in{i}"
        tensors[key] = x.detach().clone().contiguous()
        rg = bool(rg and x.is_floating_point())
        xv = view(x.clone().requires_grad_(rg), v)
        if rg:
            xv.retain_grad()
        xs.append(xv)
        rec["inputs"].append({"key": key, "view": v, "grad": rg})
    out = fn(*xs)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    rec["outs"] = []
    for j, o in enumerate(outs):
        key = f"{name}.out{j}"
        tensors[key] = o.detach().clone().contiguous()
        rec["outs"].append(key)
    if any(r["grad"] for r in rec["inputs"]):
        o = outs[0]
        g = torch.randn(o.shape, dtype=torch.float64).to(o.dtype)
        tensors[f"{name}.gout"] = g.clone().contiguous()
        rec["gout"] = f"{name}.gout"
        (o * g).sum().backward()
        rec["grads"] = []
        for x, r in zip(xs, rec["inputs"]):
            if r["grad"]:
                key = f"{name}.grad{len(rec['grads'])}"
                tensors[key] = x.grad.clone().contiguous()
                rec["grads"].append(key)
            else:
                rec["grads"].append(None)
    dt = outs[0].dtype
    rec["rtol"] = rtol if rtol is not None else {torch.float64: 1e-10, torch.float32: 1e-5}.get(dt, 1e-2)
    rec["atol"] = atol if atol is not None else {torch.float64: 1e-12, torch.float32: 1e-6}.get(dt, 1e-2)
    cases.append(rec)


# ---- linear --------------------------------------------------------------------------------------
case("linear_bias", "linear", [(make((5, 7)), None, True), (make((3, 7)), None, True), (make((3,)), None, True)],
     fn=F.linear, rtol=1e-5, atol=1e-5)
case("linear_nobias", "linear", [(make((5, 7)), None, True), (make((3, 7)), None, True)], fn=F.linear,
     rtol=1e-5, atol=1e-5)
case("linear_3d", "linear", [(make((2, 3, 9)), None, True), (make((1, 9)), None, True), (make((1,)), None, True)],
     fn=F.linear, rtol=1e-5, atol=1e-5)
case("linear_vec", "linear", [(make((7,)), None, True), (make((3, 7)), None, True)], fn=F.linear,
     rtol=1e-5, atol=1e-5)
case("linear_noncontig", "linear", [(make((7, 5)), "t", True), (make((4, 7)), None, True), (make((4,)), None, True)],
     fn=F.linear, rtol=1e-5, atol=1e-5)
case("linear_bf16", "linear", [(make((4, 16), "bf16"), None, True), (make((3, 16), "bf16"), None, True),
                               (make((3,), "bf16"), None, True)], fn=F.linear, rtol=2e-2, atol=2e-2)
case("linear_f64", "linear", [(make((3, 5), "f64"), None, True), (make((2, 5), "f64"), None, True),
                              (make((2,), "f64"), None, True)], fn=F.linear)

# ---- softmax / log_softmax -----------------------------------------------------------------------
for op, f in [("softmax", torch.softmax), ("log_softmax", torch.log_softmax)]:
    case(f"{op}_last", op, [(make((4, 13), scale=3), None, True)], {"dim": -1}, fn=lambda x, f=f: f(x, -1))
    case(f"{op}_dim0", op, [(make((6, 5)), None, True)], {"dim": 0}, fn=lambda x, f=f: f(x, 0))
    case(f"{op}_mid_wide", op, [(make((2, 3, 70)), None, True)], {"dim": 1}, fn=lambda x, f=f: f(x, 1))
    case(f"{op}_size1", op, [(make((3, 1)), None, True)], {"dim": 1}, fn=lambda x, f=f: f(x, 1))
    case(f"{op}_noncontig", op, [(make((5, 3)), "t", True)], {"dim": -1}, fn=lambda x, f=f: f(x, -1))
    case(f"{op}_bf16", op, [(make((3, 37), "bf16", 2), None, True)], {"dim": -1}, fn=lambda x, f=f: f(x, -1))
    case(f"{op}_f64", op, [(make((3, 11), "f64"), None, True)], {"dim": -1}, fn=lambda x, f=f: f(x, -1))
    if op == "softmax":  # > 32768 elements: the multi-threaded path (bf16 keeps the fixture small)
        case(f"{op}_rows_parallel", op, [(make((40, 830), "bf16"), None, True)], {"dim": -1}, fn=lambda x, f=f: f(x, -1))
    masked = make((3, 6))
    masked[0, 2:] = -float("inf")
    masked[2, 0] = -float("inf")
    case(f"{op}_masked", op, [(masked, None, False)], {"dim": -1}, fn=lambda x, f=f: f(x, -1))

# ---- activations ---------------------------------------------------------------------------------
acts = {"silu": (F.silu, {}), "gelu": (F.gelu, {}), "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"), {"tanh": True}),
        "quick_gelu": (lambda x: x * torch.sigmoid(1.702 * x), {})}
for name, (f, a) in acts.items():
    op = "gelu" if name.startswith("gelu") else name
    case(f"{name}_f32", op, [(make((3, 17), scale=3), None, True)], a, fn=f)
    case(f"{name}_bf16", op, [(make((5, 9), "bf16", 3), None, True)], a, fn=f)
    case(f"{name}_f64", op, [(make((2, 7), "f64", 3), None, True)], a, fn=f)
    case(f"{name}_noncontig", op, [(make((9, 4)), "t", True)], a, fn=f)
    case(f"{name}_size1", op, [(make((1,)), None, True)], a, fn=f)
case("silu_parallel_bf16", "silu", [(make((40, 850), "bf16", 4), None, True)], fn=F.silu)
case("gelu_tanh_extreme", "gelu", [(torch.tensor([-100.0, -20.0, -5.0, -1e-4, 0.0, 1e-4, 5.0, 20.0, 100.0]), None, True)],
     {"tanh": True}, fn=lambda x: F.gelu(x, approximate="tanh"))
case("silu_extreme", "silu", [(torch.tensor([-100.0, -20.0, -1e-4, 0.0, 1e-4, 20.0, 100.0]), None, True)], fn=F.silu)
swiglu = lambda g, u: F.silu(g) * u
case("swiglu_f32", "swiglu", [(make((4, 11)), None, True), (make((4, 11)), None, True)], fn=swiglu)
case("swiglu_bf16", "swiglu", [(make((3, 10), "bf16"), None, True), (make((3, 10), "bf16"), None, True)], fn=swiglu,
     rtol=2e-2, atol=2e-2)
case("swiglu_noncontig", "swiglu", [(make((6, 3)), "t", True), (make((3, 6)), None, True)], fn=swiglu)
case("swiglu_f64", "swiglu", [(make((2, 5), "f64"), None, True), (make((2, 5), "f64"), None, True)], fn=swiglu)


# ---- rms_norm (Qwen2RMSNorm) ---------------------------------------------------------------------
def qwen2_rms_norm(x, w=None, eps=1e-6):
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    h = x.to(compute)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    h = h.to(x.dtype)
    return w * h if w is not None else h


case("rms_norm_f32", "rms_norm", [(make((3, 17)), None, True), (make((17,)), None, True)], {"eps": 1e-6},
     fn=qwen2_rms_norm)
case("rms_norm_bf16", "rms_norm", [(make((4, 24), "bf16", 2), None, True), (make((24,), "bf16"), None, True)],
     {"eps": 1e-6}, fn=qwen2_rms_norm)
# Bit parity of the cast rule (qwen2_vl.md §3): forward only, zero tolerance. Without the rounding of
# the normalised value before the weight multiply, about a third of these outputs differ by one ulp.
case("rms_norm_bf16_bitexact", "rms_norm", [(make((16, 96), "bf16", 2), None, False), (make((96,), "bf16"), None, False)],
     {"eps": 1e-6}, fn=qwen2_rms_norm, rtol=0, atol=0)
case("rms_norm_bf16_f32_weight", "rms_norm", [(make((3, 10), "bf16"), None, True), (make((10,)), None, True)],
     {"eps": 1e-6}, fn=qwen2_rms_norm, rtol=1e-2, atol=1e-2)
case("rms_norm_noweight", "rms_norm", [(make((2, 3, 9)), None, True)], {"eps": 1e-5},
     fn=lambda x: qwen2_rms_norm(x, None, 1e-5))
case("rms_norm_size1", "rms_norm", [(make((4, 1)), None, True), (make((1,)), None, True)], {"eps": 1e-6},
     fn=qwen2_rms_norm, rtol=1e-4, atol=1e-5)
case("rms_norm_noncontig", "rms_norm", [(make((7, 5)), "t", True), (make((7,)), None, True)], {"eps": 1e-6},
     fn=qwen2_rms_norm)
case("rms_norm_f64", "rms_norm", [(make((3, 6), "f64"), None, True), (make((6,), "f64"), None, True)], {"eps": 1e-6},
     fn=qwen2_rms_norm)
case("rms_norm_parallel_bf16", "rms_norm", [(make((40, 820), "bf16"), None, True), (make((820,), "bf16"), None, True)],
     {"eps": 1e-6}, fn=qwen2_rms_norm)

# ---- layer_norm ----------------------------------------------------------------------------------
ln = lambda ns, eps=1e-5: (lambda x, w=None, b=None: F.layer_norm(x, ns, w, b, eps))
case("layer_norm_affine", "layer_norm", [(make((4, 13), scale=2) + 1, None, True), (make((13,)), None, True),
                                         (make((13,)), None, True)], {"shape": [13]}, fn=ln([13]), rtol=1e-5, atol=1e-5)
case("layer_norm_2d_shape", "layer_norm", [(make((2, 3, 8)), None, True), (make((3, 8)), None, True),
                                           (make((3, 8)), None, True)], {"shape": [3, 8]}, fn=ln([3, 8]),
     rtol=1e-5, atol=1e-5)
case("layer_norm_noaffine", "layer_norm", [(make((5, 9)), None, True)], {"shape": [9], "eps": 1e-6},
     fn=ln([9], 1e-6), rtol=1e-5, atol=1e-5)
case("layer_norm_bf16", "layer_norm", [(make((3, 40), "bf16"), None, True), (make((40,), "bf16"), None, True),
                                       (make((40,), "bf16"), None, True)], {"shape": [40]}, fn=ln([40]))
case("layer_norm_noncontig", "layer_norm", [(make((6, 4)), "t", True), (make((6,)), None, True),
                                            (make((6,)), None, True)], {"shape": [6]}, fn=ln([6]), rtol=1e-5, atol=1e-5)
case("layer_norm_size1", "layer_norm", [(make((3, 1)), None, True), (make((1,)), None, True), (make((1,)), None, True)],
     {"shape": [1]}, fn=ln([1]), rtol=1e-5, atol=1e-5)
case("layer_norm_f64", "layer_norm", [(make((3, 7), "f64"), None, True), (make((7,), "f64"), None, True),
                                      (make((7,), "f64"), None, True)], {"shape": [7]}, fn=ln([7]))
case("layer_norm_parallel_bf16", "layer_norm", [(make((36, 911), "bf16"), None, True), (make((911,), "bf16"), None, True),
                                                (make((911,), "bf16"), None, True)], {"shape": [911]}, fn=ln([911]))

# ---- group_norm ----------------------------------------------------------------------------------
gn = lambda g, eps=1e-5: (lambda x, w=None, b=None: F.group_norm(x, g, w, b, eps))
case("group_norm_3", "group_norm", [(make((2, 6, 5)), None, True), (make((6,)), None, True), (make((6,)), None, True)],
     {"groups": 3}, fn=gn(3), rtol=1e-5, atol=1e-5)
case("group_norm_32", "group_norm", [(make((2, 64, 3, 3)), None, True), (make((64,)), None, True),
                                     (make((64,)), None, True)], {"groups": 32}, fn=gn(32), rtol=1e-5, atol=1e-5)
case("group_norm_1_odd", "group_norm", [(make((1, 4, 7, 1)), None, True), (make((4,)), None, True),
                                        (make((4,)), None, True)], {"groups": 1}, fn=gn(1), rtol=1e-5, atol=1e-5)
case("group_norm_nospatial", "group_norm", [(make((3, 4)), None, True), (make((4,)), None, True),
                                            (make((4,)), None, True)], {"groups": 2}, fn=gn(2), rtol=1e-5, atol=1e-5)
case("group_norm_noaffine", "group_norm", [(make((2, 8, 5)), None, True)], {"groups": 4, "eps": 1e-6},
     fn=gn(4, 1e-6), rtol=1e-5, atol=1e-5)
case("group_norm_bf16", "group_norm", [(make((2, 8, 3, 3), "bf16"), None, True), (make((8,), "bf16"), None, True),
                                       (make((8,), "bf16"), None, True)], {"groups": 4}, fn=gn(4))
case("group_norm_noncontig", "group_norm", [(make((2, 5, 6)), "t", True), (make((6,)), None, True),
                                            (make((6,)), None, True)], {"groups": 2}, fn=gn(2), rtol=1e-5, atol=1e-5)
case("group_norm_f64", "group_norm", [(make((2, 4, 3), "f64"), None, True), (make((4,), "f64"), None, True),
                                      (make((4,), "f64"), None, True)], {"groups": 2}, fn=gn(2))
case("group_norm_parallel_bf16", "group_norm", [(make((2, 64, 16, 17), "bf16"), None, True), (make((64,), "bf16"), None, True),
                                                (make((64,), "bf16"), None, True)], {"groups": 32}, fn=gn(32))


# ---- cross_entropy -------------------------------------------------------------------------------
def ce(reduction="mean", ignore_index=-100, ls=0.0):
    def f(z, y):
        out = F.cross_entropy(z.reshape(-1, z.shape[-1]), y.reshape(-1), ignore_index=ignore_index,
                              label_smoothing=ls, reduction=reduction)
        return out.reshape(y.shape) if reduction == "none" else out
    return f


def targets(shape, C, ignore_rows=()):
    y = torch.randint(0, C, shape)
    for r in ignore_rows:
        y.view(-1)[r] = -100
    return y


for red in ["mean", "sum", "none"]:
    for ls in [0.0, 0.1]:
        a = {"reduction": red, "label_smoothing": ls}
        case(f"ce_{red}_ls{ls}", "cross_entropy", [(make((6, 13), scale=2), None, True),
                                                   (targets((6,), 13, [1, 4]), None, False)], a, fn=ce(red, -100, ls))
case("ce_3d_logits", "cross_entropy", [(make((2, 3, 9)), None, True), (targets((2, 3), 9, [2]), None, False)],
     {"reduction": "mean"}, fn=ce())
case("ce_wide_blocks", "cross_entropy", [(make((2, 4500), scale=4), None, True), (targets((2,), 4500), None, False)],
     {"reduction": "mean", "label_smoothing": 0.05}, fn=ce("mean", -100, 0.05))
case("ce_parallel", "cross_entropy", [(make((8, 4100), scale=3), None, True), (targets((8,), 4100, [3]), None, False)],
     {"reduction": "sum"}, fn=ce("sum"))
case("ce_bf16", "cross_entropy", [(make((5, 31), "bf16", 2), None, True), (targets((5,), 31, [0]), None, False)],
     {"reduction": "mean", "label_smoothing": 0.1}, fn=ce("mean", -100, 0.1), rtol=2e-2, atol=2e-2)
case("ce_f64", "cross_entropy", [(make((4, 7), "f64"), None, True), (targets((4,), 7, [2]), None, False)],
     {"reduction": "none", "label_smoothing": 0.2}, fn=ce("none", -100, 0.2))
case("ce_noncontig", "cross_entropy", [(make((8, 11)), "s2", True), (targets((4,), 11), None, False)],
     {"reduction": "mean"}, fn=ce())
case("ce_size1_class", "cross_entropy", [(make((3, 1)), None, True), (torch.zeros(3, dtype=torch.int64), None, False)],
     {"reduction": "sum"}, fn=ce("sum"))
case("ce_custom_ignore", "cross_entropy", [(make((5, 6)), None, True), (torch.tensor([0, 5, 7, 7, 2]), None, False)],
     {"reduction": "mean", "ignore_index": 7}, fn=ce("mean", 7))
case("ce_all_ignored", "cross_entropy", [(make((3, 4)), None, False), (torch.full((3,), -100), None, False)],
     {"reduction": "mean"}, fn=ce())
case("ce_masked_vocab", "cross_entropy",
     [(torch.tensor([[0.5, -float("inf"), 1.0, -float("inf")], [2.0, 0.0, -float("inf"), 1.0]]), None, True),
      (torch.tensor([2, 3]), None, False)], {"reduction": "sum"}, fn=ce("sum"))


# ---- bitwise cross-entropy -----------------------------------------------------------------------
def bitwise_ref(ls=0.0, weighted=False):
    def f(z, bits, w=None):
        d = z.shape[-2]
        loss = F.cross_entropy(z.reshape(-1, 2).float() if z.dtype == torch.bfloat16 else z.reshape(-1, 2),
                               bits.reshape(-1).long(), reduction="none", label_smoothing=ls)
        loss = loss.reshape(bits.shape).mean(-1)  # (..., ) per-token mean over the d bits
        out = (loss * w).sum() / w.sum() if weighted else loss.mean()
        return out.to(z.dtype)
    return f


def bits(shape):
    return torch.randint(0, 2, shape)


case("bitwise_f32", "bitwise_cross_entropy", [(make((2, 5, 8, 2), scale=2), None, True), (bits((2, 5, 8)), None, False)],
     fn=bitwise_ref())
case("bitwise_ls", "bitwise_cross_entropy", [(make((3, 7, 2)), None, True), (bits((3, 7)), None, False)],
     {"label_smoothing": 0.1}, fn=bitwise_ref(0.1))
case("bitwise_weighted", "bitwise_cross_entropy",
     [(make((2, 6, 4, 2)), None, True), (bits((2, 6, 4)), None, False), (torch.rand(2, 6) + 0.1, None, False)],
     {}, fn=bitwise_ref(0.0, True))
case("bitwise_bf16", "bitwise_cross_entropy", [(make((4, 32, 2), "bf16"), None, True), (bits((4, 32)), None, False)],
     fn=bitwise_ref(), rtol=2e-2, atol=2e-2)
case("bitwise_f64", "bitwise_cross_entropy", [(make((3, 5, 2), "f64"), None, True), (bits((3, 5)), None, False)],
     fn=bitwise_ref())
case("bitwise_d1", "bitwise_cross_entropy", [(make((5, 1, 2), scale=30), None, True), (bits((5, 1)), None, False)],
     fn=bitwise_ref())
case("bit_accuracy", "bit_accuracy", [(make((3, 9, 2)), None, False), (bits((3, 9)), None, False)],
     fn=lambda z, b: (z.argmax(-1) == b).float().mean())
tie = torch.tensor([[[1.0, 1.0], [0.0, 2.0], [3.0, -1.0]]])
case("bit_accuracy_ties", "bit_accuracy", [(tie, None, False), (torch.tensor([[0, 1, 1]]), None, False)],
     fn=lambda z, b: (z.argmax(-1) == b).float().mean())


# ---- DPO (TRL 0.9 dpo_loss, loss_type="sigmoid") -------------------------------------------------
def dpo_ref(beta, ls):
    def f(pc, pr, rc, rr):
        logits = (pc - pr) - (rc - rr)
        losses = -F.logsigmoid(beta * logits) * (1 - ls) - F.logsigmoid(-beta * logits) * ls
        cr, rj = beta * (pc - rc).detach(), beta * (pr - rr).detach()
        return (losses.mean(), cr, rj, cr.mean(), rj.mean(), (cr - rj).mean(), (cr > rj).float().mean())
    return f


lp = lambda n: make((n,), scale=20) - 200
case("dpo_beta01", "dpo_sigmoid_loss", [(lp(5), None, True), (lp(5), None, True), (lp(5), None, False),
                                        (lp(5), None, False)], {"beta": 0.1}, fn=dpo_ref(0.1, 0.0))
case("dpo_ls", "dpo_sigmoid_loss", [(lp(4), None, True), (lp(4), None, True), (lp(4), None, False), (lp(4), None, False)],
     {"beta": 0.5, "label_smoothing": 0.2}, fn=dpo_ref(0.5, 0.2))
same_c, same_r = lp(3), lp(3)
case("dpo_equal_ln2", "dpo_sigmoid_loss", [(same_c.clone(), None, True), (same_r.clone(), None, True),
                                           (same_c.clone(), None, False), (same_r.clone(), None, False)],
     {"beta": 0.1}, fn=dpo_ref(0.1, 0.0))
case("dpo_large_margin", "dpo_sigmoid_loss",
     [(torch.tensor([-100.0, -9000.0]), None, True), (torch.tensor([-9000.0, -100.0]), None, True),
      (torch.tensor([-500.0, -500.0]), None, True), (torch.tensor([-500.0, -500.0]), None, True)],
     {"beta": 0.1}, fn=dpo_ref(0.1, 0.0))

os.makedirs(OUT, exist_ok=True)
save_file(tensors, os.path.join(OUT, "nn_functional.safetensors"))
with open(os.path.join(OUT, "nn_functional.json"), "w") as f:
    json.dump({"generator": "tools/gen_nn_functional_fixtures.py", "torch": torch.__version__, "cases": cases}, f,
              indent=1)
print(len(cases), "cases,", os.path.getsize(os.path.join(OUT, "nn_functional.safetensors")), "bytes")
