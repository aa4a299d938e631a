#!/usr/bin/env python3
"""Writes tests/fixtures/ops_core.{safetensors,json}: the PyTorch reference for vt's core op table.

Each case names an op, its inputs (stored contiguous, then viewed the same way on both sides:
"t" = transpose the last two dims, "s2" = every second row of dim 0), parameters, the forward
output(s) and, for differentiable cases, the gradients of sum(out * gout) for a stored random gout.

    pip install torch safetensors numpy && python3 tools/gen_op_fixtures.py
"""
import json
import os

import torch
from safetensors.torch import save_file

torch.manual_seed(0)
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures")
DT = {"f32": torch.float32, "f64": torch.float64, "bf16": torch.bfloat16, "f16": torch.float16,
      "i64": torch.int64, "i32": torch.int32, "u8": torch.uint8, "bool": torch.bool}
tensors, cases = {}, []


def view(x, v):
    if v == "t":
        return x.transpose(-1, -2)
    if v == "s2":
        return x[::2]
    return x


def make(shape, dt, kind="normal"):
    if dt in ("i64", "i32", "u8"):
        return torch.randint(0 if dt == "u8" else -5, 6, shape).to(DT[dt])
    if dt == "bool":
        return torch.rand(shape) > 0.5
    if kind == "pos":
        x = torch.rand(shape, dtype=torch.float64) * 2 + 0.1
    elif kind == "ties":
        x = torch.randint(-2, 3, shape).double()
    else:
        x = torch.randn(shape, dtype=torch.float64)
    return x.to(DT[dt])


def case(name, op, inputs, args=None, grad=True, rtol=None, atol=None, fn=None):
    """inputs: list of (tensor, view, requires_grad)."""
    args = args or {}
    rec = {"name": name, "op": op, "args": args, "inputs": []}
    xs = []
    for i, (x, v, rg) in enumerate(inputs):
        key = f"{name}.in{i}"
        tensors[key] = x.detach().clone().contiguous()
        xv = view(x.clone(), v)
        if rg and x.is_floating_point() and grad:
            xv = view(x.clone().requires_grad_(), v)
            xv.retain_grad()
        xs.append(xv)
        rec["inputs"].append({"key": key, "view": v, "grad": bool(rg and x.is_floating_point() and grad)})
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
        for i, (x, r) in enumerate(zip(xs, rec["inputs"])):
            if r["grad"]:
                key = f"{name}.grad{i}"
                tensors[key] = x.grad.clone().contiguous()
                rec["grads"].append(key)
            else:
                rec["grads"].append(None)
    dt = outs[0].dtype
    rec["rtol"] = rtol if rtol is not None else {torch.float64: 1e-10, torch.float32: 1e-5}.get(dt, 1e-2)
    rec["atol"] = atol if atol is not None else {torch.float64: 1e-12, torch.float32: 1e-6}.get(dt, 1e-2)
    cases.append(rec)


FLOATS = ["f32", "f64", "bf16", "f16"]

# ---- binary elementwise, every dtype, broadcasting, non-contiguous -----------------------------
binops = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div,
          "maximum": torch.maximum, "minimum": torch.minimum}
for op, f in binops.items():
    for dt in FLOATS + ["i64", "i32"]:
        if op == "div" and dt in ("i64", "i32"):
            b = make((3, 4), dt)
            b[b == 0] = 1
            case(f"{op}_{dt}", op, [(make((3, 4), dt), None, True), (b, None, True)], fn=f)
            continue
        kind = "ties" if op in ("maximum", "minimum") else "normal"
        case(f"{op}_{dt}", op, [(make((3, 4), dt, kind), None, True), (make((3, 4), dt, kind), None, True)], fn=f)
    case(f"{op}_bcast", op, [(make((2, 1, 5), "f32"), None, True), (make((3, 1), "f32", "pos"), None, True)], fn=f)
    case(f"{op}_noncontig", op, [(make((5, 3), "f32"), "t", True), (make((6, 5), "f32", "pos"), "s2", True)], fn=f)
    case(f"{op}_empty", op, [(make((0, 3), "f32"), None, True), (make((1, 3), "f32"), None, True)], fn=f)
case("add_alpha", "add", [(make((4,), "f32"), None, True), (make((4,), "f32"), None, True)], {"alpha": 2.5},
     fn=lambda a, b: torch.add(a, b, alpha=2.5))
case("sub_alpha", "sub", [(make((4,), "f64"), None, True), (make((4,), "f64"), None, True)], {"alpha": -0.5},
     fn=lambda a, b: torch.sub(a, b, alpha=-0.5))
case("add_promote_bf16_f32", "add", [(make((3,), "bf16"), None, True), (make((3,), "f32"), None, True)], fn=torch.add)
case("add_promote_i32_f16", "add", [(make((3,), "i32"), None, False), (make((3,), "f16"), None, True)], fn=torch.add)
case("mul_zero_dim", "mul", [(make((3,), "bf16"), None, True), (make((), "f32"), None, True)], fn=torch.mul)
case("pow_f64", "pow", [(make((3, 4), "f64", "pos"), None, True), (make((3, 4), "f64"), None, True)], fn=torch.pow)
case("pow_i64", "pow", [(make((5,), "i64").abs(), None, False), (torch.tensor([0, 1, 2, 3, 2]), None, False)],
     fn=torch.pow)
case("div_i64", "div", [(torch.tensor([7, -7, 3]), None, False), (torch.tensor([2, 2, -4]), None, False)],
     fn=torch.div)
case("add_scalar", "add_scalar", [(make((2, 3), "f32"), None, True)], {"s": 1.5}, fn=lambda a: a + 1.5)
case("mul_scalar_int", "mul_scalar", [(make((2, 3), "i64"), None, False)], {"s": 0.5}, fn=lambda a: a * 0.5)
case("mul_scalar_bf16_opmath", "mul_scalar", [(make((64,), "bf16"), None, True)], {"s": 0.7123},
     fn=lambda a: a * 0.7123)
case("div_scalar_bf16", "div_scalar", [(make((2, 3), "bf16"), None, True)], {"s": 3.0}, fn=lambda a: a / 3.0)

# ---- comparisons and logic ---------------------------------------------------------------------
for op in ["eq", "ne", "lt", "le", "gt", "ge"]:
    for dt in ["f32", "bf16", "i64"]:
        case(f"{op}_{dt}", op, [(make((4, 3), dt, "ties"), None, False), (make((3,), dt, "ties"), None, False)],
             fn=getattr(torch, op))
case("logical_and", "logical_and", [(make((5,), "bool"), None, False), (make((5,), "bool"), None, False)],
     fn=torch.logical_and)

# ---- unary --------------------------------------------------------------------------------------
unops = {"neg": (torch.neg, "normal"), "abs": (torch.abs, "normal"), "sign": (torch.sign, "ties"),
         "exp": (torch.exp, "normal"), "log": (torch.log, "pos"), "sqrt": (torch.sqrt, "pos"),
         "rsqrt": (torch.rsqrt, "pos"), "sin": (torch.sin, "normal"), "cos": (torch.cos, "normal"),
         "tanh": (torch.tanh, "normal"), "sigmoid": (torch.sigmoid, "normal"), "relu": (torch.relu, "normal"),
         "square": (torch.square, "normal"), "reciprocal": (torch.reciprocal, "pos")}
for op, (f, kind) in unops.items():
    for dt in FLOATS:
        case(f"{op}_{dt}", op, [(make((3, 5), dt, kind), None, True)], fn=f)
    case(f"{op}_noncontig", op, [(make((5, 3), "f32", kind), "t", True)], fn=f)
case("exp_i64", "exp", [(make((4,), "i64"), None, False)], fn=torch.exp)
case("abs_i32", "abs", [(make((6,), "i32"), None, False)], fn=torch.abs)
specials = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e-40, 3.0])
for op in ["sign", "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "abs"]:
    case(f"{op}_special", op, [(specials.clone(), None, False)], fn=getattr(torch, op), rtol=1e-6, atol=0)
case("clamp_both", "clamp", [(make((3, 4), "f32"), None, True)], {"min": -0.5, "max": 0.7},
     fn=lambda x: torch.clamp(x, -0.5, 0.7))
case("clamp_min_bf16", "clamp", [(make((3, 4), "bf16"), None, True)], {"min": 0.0},
     fn=lambda x: torch.clamp(x, min=0.0))
case("pow_scalar", "pow_scalar", [(make((3, 4), "f32", "pos"), None, True)], {"e": 2.5}, fn=lambda x: x ** 2.5)
case("pow_scalar_2", "pow_scalar", [(make((3, 4), "f64"), None, True)], {"e": 2.0}, fn=lambda x: x ** 2.0)
case("where", "where", [(make((3, 1), "bool"), None, False), (make((3, 4), "f32"), None, True),
                        (make((4,), "f32"), None, True)], fn=torch.where)
case("masked_fill", "masked_fill", [(make((3, 4), "f32"), None, True), (make((4,), "bool"), None, False)],
     {"value": -1e9}, fn=lambda x, m: x.masked_fill(m, -1e9))
for a in ["f32", "f64", "bf16", "f16", "i64", "i32", "u8", "bool"]:
    for b in ["f32", "bf16", "f16", "i64", "i32", "bool"]:
        if a != b:
            src = make((7,), a) * (3 if a not in ("bool",) else 1) if a != "bool" else make((7,), a)
            case(f"cast_{a}_{b}", "cast", [(src, None, a in FLOATS and b in FLOATS)], {"dtype": b},
                 fn=lambda x, b=b: x.to(DT[b]))

# ---- reductions ---------------------------------------------------------------------------------
for dt in FLOATS:
    case(f"sum_all_{dt}", "sum", [(make((4, 5), dt), None, True)], {"dims": []}, fn=lambda x: x.sum())
case("sum_dims_keep", "sum", [(make((2, 3, 4), "f32"), None, True)], {"dims": [0, 2], "keepdim": True},
     fn=lambda x: x.sum((0, 2), keepdim=True))
case("sum_neg_dim", "sum", [(make((2, 3, 4), "f64"), "t", True)], {"dims": [-1]}, fn=lambda x: x.sum(-1))
case("sum_i32", "sum", [(make((3, 4), "i32"), None, False)], {"dims": [1]}, fn=lambda x: x.sum(1))
case("sum_bool", "sum", [(make((3, 4), "bool"), None, False)], {"dims": []}, fn=lambda x: x.sum())
case("sum_empty", "sum", [(make((0, 4), "f32"), None, True)], {"dims": [0]}, fn=lambda x: x.sum(0))
case("sum_large", "sum", [(make((3, 5000), "f32"), None, True)], {"dims": [1]}, fn=lambda x: x.sum(1), rtol=1e-5, atol=1e-4)
case("mean", "mean", [(make((3, 4, 5), "f32"), None, True)], {"dims": [1]}, fn=lambda x: x.mean(1))
case("mean_bf16", "mean", [(make((3, 8), "bf16"), None, True)], {"dims": [-1], "keepdim": True},
     fn=lambda x: x.mean(-1, keepdim=True))
case("var", "var", [(make((3, 6), "f64"), None, True)], {"dims": [1]}, fn=lambda x: x.var(1))
case("var_c0", "var", [(make((3, 6), "f32"), None, True)], {"dims": [0, 1], "correction": 0},
     fn=lambda x: x.var((0, 1), correction=0))
case("amax", "amax", [(make((3, 5), "f32", "ties"), None, True)], {"dims": [1]}, fn=lambda x: x.amax(1))
case("amin_keep", "amin", [(make((3, 5), "f64", "ties"), None, True)], {"dims": [0], "keepdim": True},
     fn=lambda x: x.amin(0, keepdim=True))
case("amax_nan", "amax", [(torch.tensor([[1.0, float("nan"), 2.0], [3.0, 1.0, 0.0]]), None, False)],
     {"dims": [1]}, fn=lambda x: x.amax(1))
case("max_dim", "max_dim", [(make((4, 6), "f32"), None, True)], {"dim": 1}, fn=lambda x: torch.max(x, 1))
case("min_dim_keep", "min_dim", [(make((4, 6), "f64"), None, True)], {"dim": 0, "keepdim": True},
     fn=lambda x: torch.min(x, 0, keepdim=True))
case("argmax", "argmax", [(make((4, 6), "f32", "ties"), None, False)], {"dim": 1}, fn=lambda x: x.argmax(1))
case("argmax_all", "argmax", [(make((4, 6), "bf16"), None, False)], {}, fn=lambda x: x.argmax())
case("argmin_i64", "argmin", [(make((4, 6), "i64"), None, False)], {"dim": 0}, fn=lambda x: x.argmin(0))
case("logsumexp", "logsumexp", [(make((3, 7), "f32") * 30, None, True)], {"dims": [1]},
     fn=lambda x: torch.logsumexp(x, 1))
case("logsumexp_inf", "logsumexp", [(torch.tensor([[-float("inf")] * 3, [0.0, 1.0, -float("inf")]]), None, False)],
     {"dims": [1]}, fn=lambda x: torch.logsumexp(x, 1))
case("cumsum", "cumsum", [(make((3, 5), "f32"), None, True)], {"dim": 1}, fn=lambda x: torch.cumsum(x, 1))
case("cumsum_i32", "cumsum", [(make((3, 5), "i32"), None, False)], {"dim": 0}, fn=lambda x: torch.cumsum(x, 0))
case("sort", "sort", [(make((3, 8), "f32"), None, True)], {"dim": -1}, fn=lambda x: torch.sort(x, dim=-1, stable=True))
case("sort_desc_dim0", "sort", [(make((6, 3), "f64"), None, True)], {"dim": 0, "descending": True},
     fn=lambda x: torch.sort(x, dim=0, descending=True, stable=True))
case("sort_nan", "sort", [(torch.tensor([3.0, float("nan"), -1.0, float("inf"), 2.0]), None, False)], {"dim": 0},
     fn=lambda x: torch.sort(x, dim=0, stable=True))
case("topk", "topk", [(make((3, 9), "f32"), None, True)], {"k": 4, "dim": 1}, fn=lambda x: torch.topk(x, 4, 1))
case("topk_smallest", "topk", [(make((9, 2), "f64"), None, True)], {"k": 3, "dim": 0, "largest": False},
     fn=lambda x: torch.topk(x, 3, 0, largest=False))

# ---- indexing -----------------------------------------------------------------------------------
idx = torch.tensor([2, 0, 2, 1])
case("index_select0", "index_select", [(make((3, 4), "f32"), None, True), (idx, None, False)], {"dim": 0},
     fn=lambda x, i: torch.index_select(x, 0, i))
case("index_select1_t", "index_select", [(make((5, 3), "f64"), "t", True), (idx, None, False)], {"dim": 1},
     fn=lambda x, i: torch.index_select(x, 1, i))
gi = torch.tensor([[0, 2, 1], [1, 1, 0]])
case("gather", "gather", [(make((2, 4), "f32"), None, True), (gi, None, False)], {"dim": 1},
     fn=lambda x, i: torch.gather(x, 1, i))
case("scatter_add", "scatter_add", [(make((3, 4), "f32"), None, True), (torch.tensor([[0, 1, 2, 0], [2, 2, 0, 1]]), None, False),
                                    (make((2, 4), "f32"), None, True)], {"dim": 0},
     fn=lambda x, i, s: torch.scatter_add(x, 0, i, s))
case("embedding", "embedding", [(make((6, 3), "f32"), None, True), (torch.tensor([[1, 5], [1, 0]]), None, False)],
     fn=lambda w, i: torch.nn.functional.embedding(i, w))
case("cat", "cat", [(make((2, 3), "f32"), None, True), (make((4, 3), "f32"), "s2", True)], {"dim": 0},
     fn=lambda a, b: torch.cat([a, b], 0))
case("cat_dim1_promote", "cat", [(make((2, 3), "bf16"), None, True), (make((2, 1), "f32"), None, True)], {"dim": -1},
     fn=lambda a, b: torch.cat([a, b], -1))
case("stack", "stack", [(make((2, 3), "f64"), None, True), (make((2, 3), "f64"), None, True)], {"dim": 1},
     fn=lambda a, b: torch.stack([a, b], 1))
case("split", "split", [(make((7, 2), "f32"), None, True)], {"size": 3, "dim": 0},
     fn=lambda x: torch.split(x, 3, 0))
case("chunk", "chunk", [(make((2, 7), "f32"), None, True)], {"chunks": 3, "dim": 1},
     fn=lambda x: torch.chunk(x, 3, 1))

# ---- matmul -------------------------------------------------------------------------------------
mm = [("2d", (5, 7), (7, 3), None, None), ("t", (7, 5), (3, 7), "t", "t"), ("batched", (2, 5, 7), (2, 7, 3), None, None),
      ("bcast", (2, 1, 5, 7), (3, 7, 4), None, None), ("fold", (2, 5, 7), (7, 3), None, None),
      ("vec_mat", (7,), (7, 3), None, None), ("mat_vec", (5, 7), (7,), None, None), ("dot", (7,), (7,), None, None),
      ("k0", (3, 0), (0, 2), None, None)]
for name, sa, sb, va, vb in mm:
    for dt in ["f32", "f64"] + (["bf16", "f16"] if name in ("2d", "batched") else []):
        case(f"matmul_{name}_{dt}", "matmul", [(make(sa, dt), va, True), (make(sb, dt), vb, True)], fn=torch.matmul,
             rtol=1e-4 if dt == "f32" else None, atol=1e-5 if dt == "f32" else None)

# ---- views with backward ------------------------------------------------------------------------
case("reshape", "reshape", [(make((2, 6), "f32"), "t", True)], {"shape": [3, -1]}, fn=lambda x: x.reshape(3, -1))
case("permute", "permute", [(make((2, 3, 4), "f32"), None, True)], {"dims": [2, 0, 1]}, fn=lambda x: x.permute(2, 0, 1))
case("slice_step", "slice", [(make((9, 2), "f32"), None, True)], {"dim": 0, "start": 1, "end": 8, "step": 3},
     fn=lambda x: x[1:8:3])
case("narrow", "narrow", [(make((2, 9), "f64"), None, True)], {"dim": 1, "start": 2, "length": 4},
     fn=lambda x: x.narrow(1, 2, 4))
case("expand", "expand", [(make((3, 1), "f32"), None, True)], {"shape": [2, 3, 4]}, fn=lambda x: x.expand(2, 3, 4))
case("unsqueeze_squeeze", "unsqueeze", [(make((3, 4), "f32"), None, True)], {"dim": 1}, fn=lambda x: x.unsqueeze(1))
case("flatten", "flatten", [(make((2, 3, 4), "f32"), "t", True)], {"start": 1, "end": 2}, fn=lambda x: x.flatten(1, 2))

os.makedirs(OUT, exist_ok=True)
save_file(tensors, os.path.join(OUT, "ops_core.safetensors"))
with open(os.path.join(OUT, "ops_core.json"), "w") as f:
    json.dump({"generator": "tools/gen_op_fixtures.py", "torch": torch.__version__, "cases": cases}, f, indent=1)
print(len(cases), "cases,", os.path.getsize(os.path.join(OUT, "ops_core.safetensors")), "bytes")
