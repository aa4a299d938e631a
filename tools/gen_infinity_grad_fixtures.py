#!/usr/bin/env python3
"""Reference gradients for tests/test_infinity.cpp, from the spec-written reference
tools/infinity_reference.py and the tiny model of tests/fixtures/infinity.safetensors (written by
tools/gen_infinity_fixtures.py; read here, not redrawn, so both files describe one model).

Writes tests/fixtures/infinity_grads.safetensors (f32) holding `grad.<name>` for every trainable
weight, that is all but cfg_uncond (used only by unconditional rows) and the zero_k_bias buffers
(upstream keeps them zero and never trains them): the gradient of `ref.loss` (the uniform bit
mean of the teacher-forced logits of sc.inputs against sc.labels), through the conditioning path
and the transformer, in f64 and stored as f32; and `ref.accuracy`, `ref.last_scale_accuracy`
(0-d): the fraction of bits whose larger logit of the pair (bit 0 on a tie) is the label, over all
scales and over the last.
"""
import os
import sys

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import infinity_reference as R  # noqa: E402

SIDES = [(s, s) for s in (1, 2, 4, 6, 8, 12, 16)]
GRID = (64, 64)


def main():
    fixtures = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
    fx = load_file(os.path.join(fixtures, "infinity.safetensors"))
    cfg = R.config(depth=2, C=64, heads=4, d=16, Ctext=48, maxlen=16)
    w = {k: fx[k].double().requires_grad_() for k in R.weight_specs(cfg)}
    cu = fx["ref.cu_seqlens"].tolist()
    cond = R.condition(w, cfg, fx["ref.text"].double(), cu)
    logits = R.forward(w, cfg, cond, fx["sc.inputs"].double(), SIDES, GRID)
    loss = R.bitwise_loss(logits, fx["sc.labels"].bool(), SIDES)
    assert abs(loss.item() - fx["ref.loss"].item()) < 1e-5 * fx["ref.loss"].item(), "the fixture's loss moved"
    loss.backward()
    trainable = [k for k in w if k != "cfg_uncond" and not k.endswith("zero_k_bias")]
    out = {f"grad.{k}": w[k].grad.float().contiguous() for k in trainable}
    assert w["cfg_uncond"].grad is None
    B, L, _ = logits.shape
    z = logits.detach().view(B, L, -1, 2)
    hit = ((z[..., 1] > z[..., 0]) == fx["sc.labels"].bool()).double()  # (B, L, d)
    last = SIDES[-1][0] * SIDES[-1][1]
    out["ref.accuracy"] = hit.mean().float().reshape(())
    out["ref.last_scale_accuracy"] = hit[:, L - last:].mean().float().reshape(())
    path = os.path.join(fixtures, "infinity_grads.safetensors")
    save_file(out, path)
    print(f"wrote {path} ({os.path.getsize(path) / 1e6:.2f} MB); loss {loss.item():.6f}, "
          f"{len(out) - 2} gradients; accuracy {out['ref.accuracy'].item():.4f}, "
          f"last scale {out['ref.last_scale_accuracy'].item():.4f}")


if __name__ == "__main__":
    main()
