#!/usr/bin/env python3
"""Writes tests/fixtures/optim.{safetensors,json}: PyTorch / Hugging Face references for vt's optimizer
stack (include/vt/optim/): AdamW, the LambdaLR schedules, global-norm clipping, and a 10-step training
run that uses all three together with an fp32 master copy of a bf16 parameter.

The training run (tests/test_optim.cpp reproduces it):
    h    = tanh(fc1(x))              fc1: Linear(6, 8) with bias      group "decay"   lr 1e-2, wd 0.1
    h    = h * scale                 scale: (8,) bf16, fp32 master    group "other"   lr 5e-3, wd 0.01,
    y    = fc2(h)                    fc2: Linear(8, 5), no bias                       betas (0.85, 0.99), eps 1e-7
    out  = head(y)                   head: Linear(5, 3), frozen (requires_grad False)
    loss = mean((out - target)^2)
  per step: zero grads, forward, backward, total = global 2-norm of the grads (in fp32),
  clip_grads_with_norm_(max_norm 0.3) (the bf16 grad is scaled in bf16, as torch does),
  master.grad = scale.grad.float(), torch.optim.AdamW(foreach=False).step(), scale = master.to(bf16)
  (round to nearest even), LambdaLR(get_cosine_schedule_with_warmup, W = ceil(0.2 * 10)).step().
Stored: initial parameters, inputs, and per step the raw gradients (before clipping), the total norm,
each group's lr, the loss and every parameter after the step.

    pip install torch transformers safetensors && python3 tools/gen_optim_fixtures.py
"""
import json
import math
import os

import torch
from safetensors.torch import save_file
from transformers.optimization import (get_constant_schedule, get_constant_schedule_with_warmup,
                                       get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures")
torch.manual_seed(0)
tensors, meta = {}, {}


def put(name, t):
    tensors[name] = t.detach().clone().contiguous()


# ---- schedules: LambdaLR multipliers over 100 steps -------------------------------------------------
def multipliers(make, steps=100):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = make(opt)
    out = []
    for _ in range(steps):  # lr of update s, read before the scheduler steps past it
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


TOTAL, RATIO = 100, 0.1
W = math.ceil(TOTAL * RATIO)  # transformers TrainingArguments.get_warmup_steps
meta["schedules"] = {
    "total": TOTAL, "warmup_ratio": RATIO, "warmup": W,
    "constant": multipliers(lambda o: get_constant_schedule(o)),
    "constant_with_warmup": multipliers(lambda o: get_constant_schedule_with_warmup(o, W)),
    "linear_with_warmup": multipliers(lambda o: get_linear_schedule_with_warmup(o, W, TOTAL)),
    "cosine_with_warmup": multipliers(lambda o: get_cosine_schedule_with_warmup(o, W, TOTAL)),
    "cosine_with_warmup_1.5_cycles": multipliers(lambda o: get_cosine_schedule_with_warmup(o, W, TOTAL, 1.5)),
}
# ceil(ratio * total) in double, quirks included: 100 * 0.07 = 7.000000000000001 -> 8.
meta["warmup_from_ratio"] = [[r, n, math.ceil(n * r)] for r, n in
                             [(0.1, 10000), (0.07, 100), (0.1, 30), (0.03, 333), (0.1, 7), (0.0, 50), (0.5, 3)]]

# ---- clip_grad_norm_ on its own ------------------------------------------------------------------------
clip_cases = []
for i, (shapes, max_norm) in enumerate([([(7, 3), (5,), (2, 2, 3)], 1.0), ([(4,), (3, 3)], 100.0)]):
    grads = [torch.randn(s) * (i + 1) for s in shapes]
    params = [torch.zeros(s, requires_grad=True) for s in shapes]
    for j, (p, g) in enumerate(zip(params, grads)):
        p.grad = g.clone()
        put(f"clip{i}.grad{j}", g)
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=False)
    for j, p in enumerate(params):
        put(f"clip{i}.clipped{j}", p.grad)
    clip_cases.append({"n": len(shapes), "max_norm": max_norm, "total_norm": norm.item()})
meta["clip"] = clip_cases

# ---- the 10-step training run ---------------------------------------------------------------------
STEPS, B, MAX_NORM, WARMUP_RATIO = 10, 16, 0.3, 0.2
fc1 = torch.nn.Linear(6, 8)
fc2 = torch.nn.Linear(8, 5, bias=False)
head = torch.nn.Linear(5, 3).requires_grad_(False)
scale = (1 + 0.3 * torch.randn(8)).to(torch.bfloat16).requires_grad_(True)
master = scale.detach().float().requires_grad_(True)
x_all = torch.randn(STEPS, B, 6)
t_all = torch.randn(STEPS, B, 3)
for k, v in {"fc1.weight": fc1.weight, "fc1.bias": fc1.bias, "scale": scale, "fc2.weight": fc2.weight,
             "head.weight": head.weight, "head.bias": head.bias, "x": x_all, "target": t_all}.items():
    put(f"init.{k}", v)

groups = [{"params": [fc1.weight, fc1.bias], "lr": 1e-2, "weight_decay": 0.1},
          {"params": [master, fc2.weight], "lr": 5e-3, "weight_decay": 0.01, "betas": (0.85, 0.99), "eps": 1e-7}]
opt = torch.optim.AdamW(groups, foreach=False)
warmup = math.ceil(STEPS * WARMUP_RATIO)
sched = get_cosine_schedule_with_warmup(opt, warmup, STEPS)
trainable = {"fc1.weight": fc1.weight, "fc1.bias": fc1.bias, "scale": scale, "fc2.weight": fc2.weight}
steps = []
for s in range(STEPS):
    for p in list(trainable.values()) + [master]:
        p.grad = None
    h = torch.tanh(fc1(x_all[s])) * scale  # f32 * bf16 -> f32
    out = head(fc2(h))
    loss = ((out - t_all[s]) ** 2).mean()
    loss.backward()
    for k, p in trainable.items():
        put(f"step{s}.grad.{k}", p.grad)
    total = torch.nn.utils.get_total_norm([p.grad.float() for p in trainable.values()], 2.0)
    torch.nn.utils.clip_grads_with_norm_(list(trainable.values()), MAX_NORM, total, foreach=False)
    master.grad = scale.grad.float()
    lrs = [g["lr"] for g in opt.param_groups]
    opt.step()
    with torch.no_grad():
        scale.copy_(master.to(torch.bfloat16))
    sched.step()
    for k, p in trainable.items():
        put(f"step{s}.{k}", p)
    put(f"step{s}.scale_master", master)
    steps.append({"loss": loss.item(), "total_norm": total.item(), "lr": lrs})
meta["train"] = {"steps": STEPS, "batch": B, "max_norm": MAX_NORM, "warmup_ratio": WARMUP_RATIO, "warmup": warmup,
                 "groups": [{"lr": 1e-2, "weight_decay": 0.1, "betas": [0.9, 0.999], "eps": 1e-8},
                            {"lr": 5e-3, "weight_decay": 0.01, "betas": [0.85, 0.99], "eps": 1e-7}],
                 "per_step": steps}

os.makedirs(OUT, exist_ok=True)
save_file(tensors, os.path.join(OUT, "optim.safetensors"))
with open(os.path.join(OUT, "optim.json"), "w") as f:
    json.dump(meta, f, indent=1)
print(f"wrote {len(tensors)} tensors, torch {torch.__version__}")
