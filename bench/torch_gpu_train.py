#!/usr/bin/env python3
"""PyTorch baseline for bench/bench_gpu_train.cpp on the same GPU, and the vt-vs-torch table: one
training step of a Qwen2-0.5B-shaped causal LM (qwen2_sft) and of Infinity-2B at 256x256
(infinity_gen), random bf16 weights, model FLOPs utilisation and tokens per second.

  python3 bench/torch_gpu_train.py                     # "torch <key> <value> <unit> <ms> ms" lines
  python3 bench/torch_gpu_train.py --vt vt.txt         # also joins with bench_gpu_train's output
  python3 bench/torch_gpu_train.py --device cpu --tiny # smoke test of the logic at bench_gpu_train's
                                                       # --tiny shapes (not a comparison)
  options as bench_gpu_train: --only qwen2_sft|infinity_gen, --steps N (10), --warmup N (2), --batch N (4),
  --seq N (1024), --gen-batch N (8), --text-len N (64), --layers N, --depth N, --seed N, --lr X, --peak-tflops X

Precision setup, chosen to equal vt's (train/trainer.cpp): bf16 parameters, activations and gradients
(the model is built in bf16; no torch.autocast, which would keep fp32 parameters and cast each matmul),
the loss in f32, and an fp32 master copy: after backward and clip_grad_norm_(1.0) on the bf16
gradients, the gradients are copied into fp32 buffers, torch.optim.AdamW (fused=True on CUDA; constant lr 1e-5, 3e-4
with --tiny, as bench_gpu_train; betas 0.9 / 0.95, eps 1e-8, weight decay 0.1) updates the fp32 masters, and the bf16 parameters are
rewritten from them (torch._foreach_copy_, round to nearest even), as vt's AdamW does in one kernel.

  qwen2_sft     transformers' Qwen2ForCausalLM from a Qwen2Config (hidden 896, 24 layers, 14 / 2 heads,
                FFN 4864, vocab 151936, tie_word_embeddings, rope_theta 1e6), attn_implementation
                "sdpa", use_cache False; model(input_ids=ids, labels=ids).loss (transformers shifts the
                labels and computes the CE on f32 logits); one fixed batch of random ids
  infinity_gen  tools/infinity_reference.py's weights and condition() (Infinity's own text path, text
                width 2048), its teacher-forced forward re-written here with F.scaled_dot_product_attention:
                the block-causal mask of the 0.06M 1:1 schedule (7 scales, 521 tokens) as a bool mask,
                cross-attention to each sample's --text-len memory rows; cosine q, k normalised and
                rotated in f32 then cast to bf16 (as vt's cosine_attention); bitwise CE on f32 logits
                (the mean over tokens and bits); random teacher inputs (2b - 1) / sqrt(d) and target bits.
                cfg_uncond and the zero_k_bias buffers are not trained (vt freezes cfg_uncond).
Weights: vt's rule (bench/vargpt_bench.h, torch_gpu_vargpt.draw), drawn on the device. Model FLOPs per
step, the peak table and the rows are bench_gpu_train.cpp's (see its header): K_step (ms), K_tok
(tok/s), K_tflops (TFLOP/s), K_mfu (%), K_peak (GiB, torch.cuda.max_memory_allocated from just before the
warm-up), for K = qwen2_sft, infinity_gen.
"""
import argparse
import math
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import infinity_reference as R  # noqa: E402
from gpu_bench import emit, join_vt, pick_device, run_section, sync, wall_ms  # noqa: E402
from torch_gpu_vargpt import draw, redraw_module  # noqa: E402  (vt's random-weight rule)

GIB = float(1 << 30)
SIDES_256 = [1, 2, 4, 6, 8, 12, 16]  # the 0.06M 1:1 schedule (256x256)
ROPE_GRID = (64, 64)  # the last grid of the 1M 1:1 template


def peak_tflops(name, override):
    """Dense bf16 peak in TFLOP/s (datasheet, no sparsity); 0 when unknown."""
    if override > 0:
        return override
    if "H100" in name:
        return 756 if "PCIe" in name else 835 if "NVL" in name else 989
    return 989 if "H200" in name else 0


class MasterAdamW:
    """bf16 parameters with an fp32 master copy (see the module docstring)."""

    def __init__(self, params, dev, lr):
        self.params = params
        self.master = [p.detach().float().clone() for p in params]
        for m in self.master:
            m.grad = torch.zeros_like(m)
        self.opt = torch.optim.AdamW(self.master, lr=lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1,
                                     fused=dev.type == "cuda")

    def step(self):
        torch._foreach_copy_([m.grad for m in self.master], [p.grad for p in self.params])
        self.opt.step()
        with torch.no_grad():
            torch._foreach_copy_(self.params, self.master)

    def zero_grad(self):
        for p in self.params:
            p.grad = None


def time_steps(dev, args, loss_fn, params, opt):
    """--warmup untimed steps, --steps timed (the very first step gives the first loss), then one more
    phase by phase; as bench_gpu_train.cpp's time_steps."""
    r = {}

    def step():
        loss = loss_fn()
        if "first" not in r:
            r["first"] = loss.item()
        loss.backward()
        r["norm"] = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad()
        r["loss"] = loss.detach()

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    for _ in range(args.warmup):
        step()
    ms = sorted(wall_ms(step, dev) for _ in range(args.steps))
    r["last"] = r["loss"].item()
    r["peak"] = torch.cuda.max_memory_allocated(dev) / GIB if dev.type == "cuda" else -1
    r["ms"] = ms[len(ms) // 2]
    st = {}
    fwd = wall_ms(lambda: st.update(loss=loss_fn()), dev)
    bwd = wall_ms(lambda: st["loss"].backward(), dev)
    clip = wall_ms(lambda: st.update(norm=torch.nn.utils.clip_grad_norm_(params, 1.0)), dev)
    upd = wall_ms(lambda: (opt.step(), opt.zero_grad()), dev)
    r["norm"] = float(st["norm"])
    r["phases"] = f"forward {fwd:.1f}, backward {bwd:.1f}, clip {clip:.1f}, AdamW {upd:.1f}"
    return r


def report_rows(out, key, t, tokens, flops, peak):
    ms = t["ms"]
    tflops = flops / (ms * 1e-3) / 1e12
    emit(out, f"{key}_step", ms, "ms", ms)
    emit(out, f"{key}_tok", tokens / (ms * 1e-3), "tok/s", ms)
    emit(out, f"{key}_tflops", tflops, "TFLOP/s", ms)
    if peak > 0:
        emit(out, f"{key}_mfu", 100 * tflops / peak, "%", ms)
    if t["peak"] >= 0:
        emit(out, f"{key}_peak", t["peak"], "GiB", 0.0)
    print(f"# {key}: loss {t['first']:.4f} at the first step, {t['last']:.4f} after the timed steps; gradient norm "
          f"{t['norm']:.4f} (before clipping, the last step)", flush=True)
    print(f"# {key}: one more step, phase by phase (ms): {t['phases']}", flush=True)
    # The batch is fixed, so a working step lowers the loss: a broken one fails the section (run_section).
    if not math.isfinite(t["last"]):
        raise RuntimeError(f"{key}: the loss is not finite after the timed steps")
    if not t["last"] < t["first"]:
        raise RuntimeError(f"{key}: the loss did not fall on its fixed batch ({t['first']} -> {t['last']})")


# ---- qwen2_sft --------------------------------------------------------------------------------------------
def qwen2_sft(args, dev, peak, out):
    from transformers import Qwen2Config, Qwen2ForCausalLM
    shape = (dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2) if args.tiny else
             dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                  num_attention_heads=14, num_key_value_heads=2))
    if args.layers > 0:
        shape["num_hidden_layers"] = args.layers
    config = Qwen2Config(**shape, max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=1e6,
                         tie_word_embeddings=True, use_sliding_window=False, hidden_act="silu", use_cache=False,
                         attn_implementation="sdpa")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # built in bf16 (the rotary inv_freq stays f32: .float())
    try:
        with dev:
            model = Qwen2ForCausalLM(config)
    finally:
        torch.set_default_dtype(old)
    g = torch.Generator(device=dev).manual_seed(args.seed + 100)
    redraw_module(model, dev, g)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]  # the tied embedding once
    opt = MasterAdamW(params, dev, args.lr)
    B, T, L = args.batch, args.seq, config.num_hidden_layers
    N = sum(p.numel() for p in params)
    D = config.hidden_size // config.num_attention_heads
    flops = 6 * N * B * T + 6 * L * T * (config.num_attention_heads * D) * B * T
    print(f"# qwen2_sft: hidden {config.hidden_size}, {L} layers, {config.num_attention_heads} / "
          f"{config.num_key_value_heads} heads of {D}, FFN {config.intermediate_size}, vocab {config.vocab_size} "
          f"(tied); {N / 1e6:.2f}M parameters; batch {B} x {T} tokens; {flops:.4g} model FLOPs per step",
          flush=True)
    ids = torch.randint(0, config.vocab_size, (B, T), generator=torch.Generator().manual_seed(args.seed + 1)).to(dev)

    def loss_fn():
        return model(input_ids=ids, labels=ids, use_cache=False).loss

    report_rows(out, "qwen2_sft", time_steps(dev, args, loss_fn, params, opt), B * T, flops, peak)


# ---- infinity_gen -----------------------------------------------------------------------------------------
def train_block(w, p, cfg, x, cond6, cos, sin, mask, mem):
    """R.block with F.scaled_dot_product_attention: x (B, L, C), mem (B, Tm, C) -> (B, L, C)."""
    B, L, C = x.shape
    H, eps = cfg["heads"], cfg["eps"]
    D = C // H
    Tm = mem.shape[1]
    g1, g2, s1, s2, b1, b2 = (w[p + "ada_gss"] + cond6).unbind(2)  # (B, 1, C) each
    h = F.layer_norm(x, (C,), eps=eps) * (1 + s1) + b1
    qkv = F.linear(h, w[p + "sa.mat_qkv.weight"],
                   torch.cat([w[p + "sa.q_bias"], w[p + "sa.zero_k_bias"], w[p + "sa.v_bias"]]))
    q, k, v = qkv.view(B, L, 3, H, D).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, L, D)
    scale = w[p + "sa.scale_mul_1H11"].float().reshape(1, H, 1, 1).clamp_max(math.log(100)).exp()
    q = F.normalize(q.float(), dim=-1) * scale
    k = F.normalize(k.float(), dim=-1)
    q, k = R.apply_rope(q, cos, sin).to(x.dtype), R.apply_rope(k, cos, sin).to(x.dtype)
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)
    x = x + g1 * F.linear(o.transpose(1, 2).reshape(B, L, C), w[p + "sa.proj.weight"], w[p + "sa.proj.bias"])
    hq = F.layer_norm(x, (C,), w[p + "ca_norm.weight"], w[p + "ca_norm.bias"], eps)
    q = F.linear(hq, w[p + "ca.mat_q.weight"], w[p + "ca.mat_q.bias"]).view(B, L, H, D).transpose(1, 2)
    kv = F.linear(mem, w[p + "ca.mat_kv.weight"], torch.cat([w[p + "ca.zero_k_bias"], w[p + "ca.v_bias"]]))
    ck, cv = kv.view(B, Tm, 2, H, D).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, Tm, D)
    o = F.scaled_dot_product_attention(q, ck, cv)  # scale 1/sqrt(D)
    x = x + F.linear(o.transpose(1, 2).reshape(B, L, C), w[p + "ca.proj.weight"], w[p + "ca.proj.bias"])
    h = F.linear(F.layer_norm(x, (C,), eps=eps) * (1 + s2) + b2, w[p + "ffn.fc1.weight"], w[p + "ffn.fc1.bias"])
    h = F.linear(F.gelu(h, approximate="tanh"), w[p + "ffn.fc2.weight"], w[p + "ffn.fc2.bias"])
    return x + g2 * h


def infinity_gen(args, dev, peak, out):
    dt = torch.bfloat16
    if args.tiny:  # InfinityConfig::tiny()
        cfg = R.config(depth=2, C=64, heads=4, d=16, Ctext=48, maxlen=16)
    else:  # InfinityConfig::infinity_2b()
        cfg = R.config(depth=32, C=2048, heads=16, d=32, Ctext=2048, maxlen=512, block_chunks=8)
    if args.depth > 0:
        cfg = R.config(**{**{k: cfg[k] for k in ("C", "heads", "d", "Ctext", "maxlen")}, "depth": args.depth,
                          "block_chunks": cfg["block_chunks"] if args.depth % cfg["block_chunks"] == 0 else 1})
    B, Tm = args.gen_batch, args.text_len
    C, H, d, Ct, Fh, depth = cfg["C"], cfg["heads"], cfg["d"], cfg["Ctext"], cfg["ffn"], cfg["depth"]
    sides = [(s, s) for s in SIDES_256]
    tokens = R.scale_tokens(sides)
    L = sum(tokens)
    g = torch.Generator(device=dev).manual_seed(args.seed + 100)
    w = {n: draw(n, shape, dev, dt, g) for n, (shape, _) in R.weight_specs(cfg).items()}
    params = [t for n, t in w.items() if "zero_k_bias" not in n and n != "cfg_uncond"]
    for t in params:
        t.requires_grad_(True)
    opt = MasterAdamW(params, dev, args.lr)
    P, seen = 0, 0
    for n in tokens:
        seen += n
        P += n * seen
    per_token = depth * (6 * C * C + 2 * C * Fh) + 3 * d * C
    per_memory_row = depth * 2 * C * C + 3 * Ct * C + C * C
    flops = 6 * B * (L * per_token + Tm * per_memory_row + 9 * C * C) + 12 * B * depth * C * (P + L * Tm)
    n_params = sum(t.numel() for t in params)
    print(f"# infinity_gen: depth {depth}, C {C}, {H} heads, FFN {Fh}, d {d}, text width {Ct}; {n_params / 1e6:.2f}M "
          f"trainable parameters; 256x256 (0.06M 1:1, {len(sides)} scales, {L} tokens, {P} block-causal pairs), batch "
          f"{B}, {Tm} text rows each; {flops:.4g} model FLOPs per step", flush=True)

    gd = torch.Generator(device=dev).manual_seed(args.seed + 1)
    text = torch.randn(B * Tm, Ct, device=dev, dtype=dt, generator=gd)
    cu = [b * Tm for b in range(B + 1)]
    inputs = ((torch.rand(B, L - 1, d, device=dev, generator=gd) < 0.5).to(dt) * 2 - 1) / math.sqrt(d)
    labels = (torch.rand(B, L, d, device=dev, generator=gd) < 0.5).long()
    cos, sin = R.rope_tables(sides, ROPE_GRID, C // H)
    cos, sin = cos.to(dev), sin.to(dev)
    scale_of = torch.cat([torch.full((n,), k) for k, n in enumerate(tokens)]).to(dev)
    mask = scale_of[:, None] >= scale_of[None, :]  # (L, L) bool, True = attend: block-causal
    prefixes = [R.block_prefix(cfg, b) for b in range(depth)]

    def loss_fn():
        cond_BD, mem, _ = R.condition(w, cfg, text, cu)  # (B, C), (B Tm, C)
        x = torch.cat([cond_BD[:, None] + w["pos_start"],
                       F.linear(inputs, w["word_embed.weight"], w["word_embed.bias"])], dim=1)  # (B, L, C)
        x = x + w["lvl_embed.weight"][scale_of]
        cond6 = F.linear(F.silu(cond_BD), w["shared_ada_lin.1.weight"], w["shared_ada_lin.1.bias"]).view(B, 1, 6, C)
        mem = mem.view(B, Tm, C)
        for p in prefixes:
            x = train_block(w, p, cfg, x, cond6, cos, sin, mask, mem)
        hscale, hshift = F.linear(F.silu(cond_BD), w["head_nm.ada_lin.1.weight"],
                                  w["head_nm.ada_lin.1.bias"])[:, None].chunk(2, -1)
        h = F.layer_norm(x, (C,), eps=cfg["eps"]) * (1 + hscale) + hshift
        logits = F.linear(h, w["head.weight"], w["head.bias"])  # (B, L, 2d)
        return F.cross_entropy(logits.float().view(-1, 2), labels.view(-1))

    report_rows(out, "infinity_gen", time_steps(dev, args, loss_fn, params, opt), B * L, flops, peak)


def gemm_ceiling(dev):
    g = torch.Generator(device=dev).manual_seed(7)
    a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16, generator=g)
    b = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16, generator=g)
    a @ b
    ms = sorted(wall_ms(lambda: [a @ b for _ in range(5)], dev) / 5 for _ in range(5))
    print(f"# GEMM ceiling: an 8192^3 bf16 matmul runs at {2 * 8192 ** 3 / (ms[2] * 1e-3) / 1e12:.1f} TFLOP/s on "
          "this card through torch", flush=True)


def positive(text):
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vt", help="bench_gpu_train output to join")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="bench_gpu_train --tiny's shapes: a smoke test of the logic")
    ap.add_argument("--only", choices=["qwen2_sft", "infinity_gen"])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=positive, default=None)
    ap.add_argument("--seq", type=positive, default=None)
    ap.add_argument("--gen-batch", type=positive, default=None)
    ap.add_argument("--text-len", type=positive, default=None)
    ap.add_argument("--layers", type=int, default=-1)
    ap.add_argument("--depth", type=int, default=-1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--peak-tflops", type=float, default=0)
    ap.add_argument("--lr", type=float, default=0)
    args = ap.parse_args()
    # --tiny: small shapes and batches, and a larger lr (flags given still win), as bench_gpu_train
    args.lr = args.lr if args.lr > 0 else 3e-4 if args.tiny else 1e-5
    args.batch = args.batch or (2 if args.tiny else 4)
    args.seq = args.seq or (64 if args.tiny else 1024)
    args.gen_batch = args.gen_batch or (2 if args.tiny else 8)
    args.text_len = args.text_len or (8 if args.tiny else 64)
    if args.steps < 1 or args.warmup < 0 or args.warmup + args.steps < 2 or args.seq < 2:
        ap.error("--steps >= 1, --warmup >= 0, 2 steps at least, --seq >= 2")
    dev = pick_device(args.device, "torch GPU training baseline")
    if dev is None:
        return 0
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else str(dev)
    peak = peak_tflops(name, args.peak_tflops)
    print(f"# device: {name}; dense bf16 peak {f'{peak:.0f} TFLOP/s' if peak else 'unknown (no MFU rows)'}; "
          f"{'tiny' if args.tiny else 'full'} shapes, {args.warmup} warm-up + {args.steps} timed steps, lr {args.lr:.4g}",
          flush=True)
    if dev.type == "cuda":
        run_section("gemm_ceiling", gemm_ceiling, dev)
    out = {}
    ok = True
    for key, fn in (("qwen2_sft", qwen2_sft), ("infinity_gen", infinity_gen)):
        if args.only and args.only != key:
            continue
        ok = run_section(key, fn, args, dev, peak, out) and ok
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    if args.vt:
        join_vt(args.vt, out, "(vt speed: > 1 means vt is faster; both sides: one training step, random "
                    "bf16 weights, bf16 gradients, fp32 AdamW master weights, clip 1.0; MFU goal >= 50%)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
