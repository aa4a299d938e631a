#!/usr/bin/env python3
"""Fixtures for tests/test_infinity.cpp from the spec-written reference tools/infinity_reference.py.

Writes tests/fixtures/infinity.safetensors (f32 unless stated) holding
  * the tiny transformer's random weights under the upstream names (§12): depth 2, C 64, 4 heads,
    d 16, text width 48, 16 cfg_uncond rows, block_chunks 1;
  * `ref.text` (14, 48) packed condition rows of two samples of 5 and 9 rows, `ref.cu_seqlens` (i64);
  * `ref.cond_BD` (2, 64), `ref.memory` (14, 64): the conditioning path;
  * `ref.uncond_cond_BD` (2, 64): cond_BD of the unconditional rows cfg_uncond[:5], cfg_uncond[:9];
  * `sc.f` (2, 16, 16, 16) a latent, `sc.flip.<k>` (2, h_k, w_k, 16) u8 flip masks (one flip
    probability per scale drawn from {0, 0.01, ..., 0.30}), `sc.inputs` (2, 520, 16) and
    `sc.labels` (2, 521, 16) u8: bitwise self-correction with requantisation on the 0.06M (256px)
    1:1 schedule 1, 2, 4, 6, 8, 12, 16 (RoPE grid 64x64);
  * `ref.logits` (2, 521, 32): teacher-forced logits of sc.inputs;
  * `ref.loss` and `ref.loss_reweighted` (0-d): the uniform bit mean and Infinity's per-scale weights.
"""
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import infinity_reference as R  # noqa: E402

SIDES = [(s, s) for s in (1, 2, 4, 6, 8, 12, 16)]
GRID = (64, 64)


def main():
    g = torch.Generator().manual_seed(0)
    cfg = R.config(depth=2, C=64, heads=4, d=16, Ctext=48, maxlen=16)
    w = R.random_weights(cfg, g)
    lengths = [5, 9]
    text = torch.randn(sum(lengths), cfg["Ctext"], generator=g)
    cu = [0, lengths[0], lengths[0] + lengths[1]]
    cond = R.condition(w, cfg, text, cu)
    uncond_rows = torch.cat([w["cfg_uncond"][:n] for n in lengths])
    uncond = R.condition(w, cfg, uncond_rows, cu)

    B, d = 2, cfg["d"]
    f = torch.randn(B, d, 16, 16, generator=g)
    flips = []
    for h, wd in SIDES:
        p = torch.randint(0, 31, (1,), generator=g).item() * 0.01
        flips.append(torch.rand(B, h, wd, d, generator=g) < p)
    inputs, labels = R.self_correction(f, SIDES, flips)
    with torch.no_grad():
        logits = R.forward(w, cfg, cond, inputs, SIDES, GRID)
    loss = R.bitwise_loss(logits, labels, SIDES)
    loss_rw = R.bitwise_loss(logits, labels, SIDES, reweight=True)

    out = {k: v.contiguous() for k, v in w.items()}
    out["ref.text"] = text
    out["ref.cu_seqlens"] = torch.tensor(cu, dtype=torch.int64)
    out["ref.cond_BD"], out["ref.memory"] = cond[0].detach(), cond[1].detach()
    out["ref.uncond_cond_BD"] = uncond[0].detach()
    out["sc.f"] = f
    for k, m in enumerate(flips):
        out[f"sc.flip.{k}"] = m.to(torch.uint8)
    out["sc.inputs"] = inputs.contiguous()
    out["sc.labels"] = labels.to(torch.uint8).contiguous()
    out["ref.logits"] = logits.contiguous()
    out["ref.loss"] = loss.reshape(())
    out["ref.loss_reweighted"] = loss_rw.reshape(())
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                        "infinity.safetensors")
    save_file(out, path)
    print(f"wrote {path} ({os.path.getsize(path) / 1e6:.2f} MB); loss {loss.item():.6f}, "
          f"reweighted {loss_rw.item():.6f}, flips per scale "
          f"{[round(m.float().mean().item(), 3) for m in flips]}")


if __name__ == "__main__":
    main()
