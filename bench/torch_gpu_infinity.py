#!/usr/bin/env python3
"""PyTorch baseline for bench/bench_gpu_infinity.cpp on the same GPU, and the vt-vs-torch table:
the Infinity-2B decoder with random bf16 weights generating one 512x512 image end to end.

  python3 bench/torch_gpu_infinity.py                    # "torch <key> <value> <unit> <ms> ms" lines
  python3 bench/torch_gpu_infinity.py --vt vt.txt        # also joins with bench_gpu_infinity's output
  python3 bench/torch_gpu_infinity.py --device cpu --small   # smoke test of the logic, tiny shapes
  options: --runs N (3), --text-len N (64), --seed N, --no-image

The network is tools/infinity_reference.py's (written from the spec, upstream weight names): its
condition(), rope_tables(), apply_rope() and block_prefix() are imported; its teacher-forced block
is re-written here as a KV-cached per-scale step (the reference has no cache), with
F.scaled_dot_product_attention for the self- and cross-attention (the reference's explicit softmax
is a test oracle, not a baseline). Everything below mirrors bench_gpu_infinity.cpp:

  model      Infinity-2B: depth 32, C 2048, 16 heads x 128, FFN 8192, d 32, text width 2048; weights
             drawn on the device in bf16 as N(0, 0.02), except text_norm / ca_norm (1, bias 0),
             scale_mul_1H11 (ln 4) and zero_k_bias (0)
  numerics   bf16 weights and activations (residual stream bf16), layer_norm / softmax with f32
             statistics (torch's kernels), cosine q,k normalised and rotated in f32 then bf16, head
             logits in f32 for CFG and sampling, f32 latent accumulation
  work       0.25M 1:1 schedule (10 scales 1..32, 2521 tokens, 512x512), one image with CFG = 2 rows
             [cond; uncond], one random text condition of --text-len rows (uncond = cfg_uncond[:T]),
             per-block KV cache (preallocated for the 2521 tokens), cross-attention K/V once, CFG 3
             (l = 3 l_cond - 2 l_uncond), tau 1, per-bit top-p 0.97, Bernoulli draw on the device
Rows (keys as in bench_gpu_infinity.cpp):
  generate_512         ms, median of --runs after one warm-up: condition (cond + uncond) + the cached
                       10-scale decode + sampling -> latent (1, 32, 32, 32); wall clock between
                       torch.cuda.synchronize() calls
  generate_512_tok     image tokens per second (2521 / generate_512)
  generate_512_image   ms, the same + the reference BSQ-VAE d32 decoder of bench/torch_bsq_vae.py
                       (random weights, f32, cuDNN TF32 off as vt's f32 convolutions), median of
                       --runs after one warm-up decode
When the warm-up generation takes over 10 s, each row is timed once (a note says so).
  infinity_2b_weights  GB of the decoder's parameters
  generate_512_peak    GB, torch.cuda.max_memory_allocated over the timed generations
"""
import argparse
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import infinity_reference as R  # noqa: E402
from gpu_bench import emit, join_vt, median_ms, pick_device, run_section, sync, wall_ms  # noqa: E402
import torch_bsq_vae as vae_ref  # noqa: E402  (the reference BSQ-VAE decoder; no side effects on import)

# The 1:1 template of Infinity (infinity_bsq.md §5): 0.25M takes the first 10 grids; the RoPE grid is
# the last grid of the 1M schedule (64x64).
SIDES_1x1 = [1, 2, 4, 6, 8, 12, 16, 20, 24, 32, 40, 48, 64]


# ---- weights: infinity_reference.weight_specs' names and shapes, drawn on the device ------------
def device_weights(cfg, dev, dtype, seed):
    """vt's rule (bench_gpu_infinity.cpp): N(0, 0.02) except norms (weight 1, bias 0), scale_mul
    (ln 4) and the zero_k_bias buffers (0)."""
    g = torch.Generator(device=dev).manual_seed(seed)
    w = {}
    for name, (shape, _) in R.weight_specs(cfg).items():
        if "zero_k_bias" in name:
            w[name] = torch.zeros(shape, device=dev, dtype=dtype)
        elif "norm" in name:
            w[name] = (torch.ones if name.endswith(".weight") else torch.zeros)(shape, device=dev, dtype=dtype)
        elif "scale_mul" in name:
            w[name] = torch.full(shape, math.log(4.0), device=dev, dtype=dtype)
        else:
            w[name] = torch.randn(shape, device=dev, dtype=dtype, generator=g) * 0.02
    return w


# ---- the KV-cached per-scale forward --------------------------------------------------------------
def cached_block(w, p, cfg, x, cond6, cos, sin, kc, vc, off, ca_k, ca_v):
    """R.block for the n new tokens of one scale: self-attention over the cache (no mask), cross-
    attention to the precomputed memory K/V. kc, vc: (B, H, L, D) buffers, rows < off filled."""
    B, n, C = x.shape
    H, eps = cfg["heads"], cfg["eps"]
    D = C // H
    g1, g2, s1, s2, b1, b2 = (w[p + "ada_gss"] + cond6).unbind(2)  # (B, 1, C) each
    h = F.layer_norm(x, (C,), eps=eps) * (1 + s1) + b1
    qkv = F.linear(h, w[p + "sa.mat_qkv.weight"],
                   torch.cat([w[p + "sa.q_bias"], w[p + "sa.zero_k_bias"], w[p + "sa.v_bias"]]))
    q, k, v = qkv.view(B, n, 3, H, D).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, n, D)
    scale = w[p + "sa.scale_mul_1H11"].float().reshape(1, H, 1, 1).clamp_max(math.log(100)).exp()
    q = F.normalize(q.float(), dim=-1) * scale
    k = F.normalize(k.float(), dim=-1)
    q, k = R.apply_rope(q, cos, sin).to(x.dtype), R.apply_rope(k, cos, sin).to(x.dtype)
    kc[:, :, off:off + n] = k
    vc[:, :, off:off + n] = v
    o = F.scaled_dot_product_attention(q, kc[:, :, :off + n], vc[:, :, :off + n], scale=1.0)
    x = x + g1 * F.linear(o.transpose(1, 2).reshape(B, n, C), w[p + "sa.proj.weight"], w[p + "sa.proj.bias"])
    hq = F.layer_norm(x, (C,), w[p + "ca_norm.weight"], w[p + "ca_norm.bias"], eps)
    q = F.linear(hq, w[p + "ca.mat_q.weight"], w[p + "ca.mat_q.bias"]).view(B, n, H, D).transpose(1, 2)
    o = F.scaled_dot_product_attention(q, ca_k, ca_v)  # scale 1/sqrt(D)
    x = x + F.linear(o.transpose(1, 2).reshape(B, n, C), w[p + "ca.proj.weight"], w[p + "ca.proj.bias"])
    h = F.linear(F.layer_norm(x, (C,), eps=eps) * (1 + s2) + b2, w[p + "ffn.fc1.weight"], w[p + "ffn.fc1.bias"])
    h = F.linear(F.gelu(h, approximate="tanh"), w[p + "ffn.fc2.weight"], w[p + "ffn.fc2.bias"])
    return x + g2 * h


def sample_bits(logits, top_p, gen):
    """logits (..., 2d) f32 -> bits (..., d) bool: per-bit top-p, then u < P(bit = 1)."""
    z = logits.view(*logits.shape[:-1], -1, 2)
    p1 = torch.sigmoid(z[..., 1] - z[..., 0])
    one_larger = p1 > 0.5
    if top_p > 0:
        small = torch.where(one_larger, 1 - p1, p1)
        p1 = torch.where(small <= 1 - top_p, one_larger.float(), p1)
    return torch.rand(p1.shape, generator=gen, device=p1.device) < p1


def generate(w, cfg, text, sides, cos, sin, cfg_scale, tau, top_p, seed):
    """One image with CFG (rows [cond; uncond]), scale by scale -> latent (1, d, H, W) f32 and the
    last scale's guided logits and bits."""
    dev, dt = text.device, text.dtype
    C, H, d, eps = cfg["C"], cfg["heads"], cfg["d"], cfg["eps"]
    D = C // H
    T = text.shape[0]
    cond = R.condition(w, cfg, text, [0, T])
    unc = R.condition(w, cfg, w["cfg_uncond"][:T], [0, T])
    cond_BD = torch.cat([cond[0], unc[0]])  # (2, C)
    mem = torch.stack([cond[1], unc[1]])  # (2, T, C): both memories have T rows
    B = cond_BD.shape[0]
    cond6 = F.linear(F.silu(cond_BD), w["shared_ada_lin.1.weight"], w["shared_ada_lin.1.bias"]).view(B, 1, 6, C)
    hscale, hshift = F.linear(F.silu(cond_BD), w["head_nm.ada_lin.1.weight"],
                              w["head_nm.ada_lin.1.bias"])[:, None].chunk(2, -1)
    prefixes = [R.block_prefix(cfg, b) for b in range(cfg["depth"])]
    ca = []
    for p in prefixes:
        kv = F.linear(mem, w[p + "ca.mat_kv.weight"], torch.cat([w[p + "ca.zero_k_bias"], w[p + "ca.v_bias"]]))
        ca.append(kv.view(B, T, 2, H, D).permute(2, 0, 3, 1, 4).unbind(0))  # k, v: (B, H, T, D)
    L = sum(h * h for h in sides)
    kcs = [torch.empty(B, H, L, D, device=dev, dtype=dt) for _ in prefixes]
    vcs = [torch.empty(B, H, L, D, device=dev, dtype=dt) for _ in prefixes]
    gen = torch.Generator(device=dev).manual_seed(seed)
    S = sides[-1]
    acc = torch.zeros(1, d, S, S, device=dev, dtype=torch.float32)
    inputs = None
    off = 0
    for k, s in enumerate(sides):
        n = s * s
        if k == 0:
            x = cond_BD[:, None] + w["pos_start"]  # (2, 1, C)
        else:
            x = F.linear(torch.cat([inputs, inputs]).to(dt), w["word_embed.weight"], w["word_embed.bias"])
        x = x + w["lvl_embed.weight"][k]
        c, sn = cos[off:off + n], sin[off:off + n]
        for b, p in enumerate(prefixes):
            x = cached_block(w, p, cfg, x, cond6, c, sn, kcs[b], vcs[b], off, ca[b][0], ca[b][1])
        h = F.layer_norm(x, (C,), eps=eps) * (1 + hscale) + hshift
        logits = F.linear(h, w["head.weight"], w["head.bias"]).float()  # (2, n, 2d)
        if tau != 1.0:
            logits = logits / tau
        logits = cfg_scale * logits[0:1] + (1 - cfg_scale) * logits[1:2]
        bits = sample_bits(logits, top_p, gen).view(1, s, s, d)
        codes = ((bits.float() * 2 - 1) / math.sqrt(d)).permute(0, 3, 1, 2)
        acc = acc + (codes if s == S else F.interpolate(codes, size=(S, S), mode="bilinear", align_corners=False))
        if k + 1 < len(sides):
            nx = sides[k + 1]
            m = acc if nx == S else F.interpolate(acc, size=(nx, nx), mode="bilinear", align_corners=False)
            inputs = m.flatten(2).transpose(1, 2)  # (1, n, d)
        off += n
    return acc, logits, bits


# ---- the benchmark --------------------------------------------------------------------------------
def bench(args, dev, out):
    dt = torch.bfloat16
    if args.small:
        cfg = R.config(depth=2, C=64, heads=4, d=32, Ctext=48, maxlen=16)
        sides, grid = SIDES_1x1[:3], (4, 4)
    else:
        cfg = R.config(depth=32, C=2048, heads=16, d=32, Ctext=2048, maxlen=512, block_chunks=8)
        sides, grid = SIDES_1x1[:10], (64, 64)
    text_len = min(args.text_len, cfg["maxlen"])
    L = sum(s * s for s in sides)
    cfg_scale, tau, top_p = 3.0, 1.0, 0.97
    print(f"# infinity{'_small' if args.small else '_2b'}: depth {cfg['depth']}, C {cfg['C']}, heads {cfg['heads']} x "
          f"{cfg['C'] // cfg['heads']}, ffn {cfg['ffn']}, d {cfg['d']}, text width {cfg['Ctext']}", flush=True)
    print(f"# schedule 1:1 {len(sides)} scales {sides}, {L} tokens, image {16 * sides[-1]}x{16 * sides[-1]}; rows 2 "
          f"(CFG cond + uncond), text rows {text_len}, cfg 3 (constant), tau 1, top_p 0.97, seed {args.seed}", flush=True)
    print("# numerics: bf16 weights and activations (residual stream bf16), f32 norm stats / softmax / cosine q,k + "
          "RoPE, f32 logits for CFG and sampling, f32 latent; KV-CACHED per-scale loop (preallocated caches), "
          "F.scaled_dot_product_attention, eager", flush=True)

    t0 = time.perf_counter()
    w = device_weights(cfg, dev, dt, args.seed + 100)
    n_params = sum(t.numel() for n, t in w.items() if "zero_k_bias" not in n)
    weight_bytes = sum(t.numel() * t.element_size() for n, t in w.items() if "zero_k_bias" not in n)
    sync(dev)
    print(f"# model: {n_params / 1e9:.3f}B parameters drawn on the device in {time.perf_counter() - t0:.1f} s",
          flush=True)
    g = torch.Generator(device=dev).manual_seed(args.seed + 1)
    text = torch.randn(text_len, cfg["Ctext"], device=dev, dtype=dt, generator=g)
    cos, sin = R.rope_tables([(s, s) for s in sides], grid, cfg["C"] // cfg["heads"])
    cos, sin = cos.to(dev), sin.to(dev)

    res = {}

    def gen_bits():
        res["out"] = generate(w, cfg, text, sides, cos, sin, cfg_scale, tau, top_p, args.seed)

    with torch.inference_mode():
        first = wall_ms(gen_bits, dev)
        print(f"# warm-up generation: {first:.1f} ms", flush=True)
        latent, logits, bits = res["out"]
        assert latent.shape == (1, cfg["d"], sides[-1], sides[-1]), latent.shape
        mx = logits.abs().max().item()
        print(f"# sanity: last-scale guided |logit| max {mx:.4f}, fraction of 1-bits {bits.float().mean().item():.4f}, "
              f"latent |max| {latent.abs().max().item():.4f}, latent {tuple(latent.shape)}", flush=True)
        if not math.isfinite(mx):
            print("# WARNING: non-finite logits", flush=True)
        runs = 1 if first > 10000 else args.runs  # keep the program short when generation is slow
        if runs != args.runs:
            print(f"# the warm-up took over 10 s: 1 timed run per row instead of {args.runs}", flush=True)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        ms = median_ms(gen_bits, dev, 0, runs)
        emit(out, "generate_512", ms, "ms", ms)
        emit(out, "generate_512_tok", L / (ms * 1e-3), "tok/s", ms)

        if not args.no_image:
            try:
                torch.manual_seed(0)
                with dev:
                    dec = vae_ref.Decoder().eval()
                dec = dec.to(dev)
                cudnn = torch.backends.cudnn
                tf32_default = cudnn.allow_tf32
                cudnn.allow_tf32 = False  # f32 as vt computes it
                img = {}

                def gen_image():
                    gen_bits()
                    img["x"] = dec(res["out"][0])

                try:
                    img["x"] = dec(res["out"][0])  # warm-up of the decoder alone
                    ms = median_ms(gen_image, dev, 0, runs)
                finally:
                    cudnn.allow_tf32 = tf32_default
                emit(out, "generate_512_image", ms, "ms", ms)
                print(f"# image {tuple(img['x'].shape)} {img['x'].dtype}", flush=True)
            except Exception as e:  # noqa: BLE001  (keep the other rows)
                print(f"# generate_512_image FAILED: {type(e).__name__}: {e}", flush=True)
    emit(out, "infinity_2b_weights", weight_bytes / 1e9, "GB", 0.0)
    if dev.type == "cuda":
        emit(out, "generate_512_peak", torch.cuda.max_memory_allocated(dev) / 1e9, "GB", 0.0)


# ---- the joined table ----------------------------------------------------------------------------


def join(path, out):
    join_vt(path, out, "(vt speed: > 1 means vt is faster; both sides: Infinity-2B, random bf16 weights, 512x512, "
          "10 scales, CFG batch 2, KV-cached)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vt", help="bench_gpu_infinity output to join")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--small", action="store_true", help="tiny model, 3 scales (a CPU smoke test of the logic)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--text-len", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-image", action="store_true")
    args = ap.parse_args()
    if args.runs < 1 or args.text_len < 1:
        ap.error("--runs and --text-len must be positive")
    dev = pick_device(args.device, "torch GPU Infinity baseline")
    if dev is None:
        return 0
    out = {}
    ok = run_section("infinity_2b", bench, args, dev, out)
    if args.vt:
        join(args.vt, out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
