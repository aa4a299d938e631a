#!/usr/bin/env python3
"""PyTorch baseline for bench/bench_gpu_vargpt.cpp on the same GPU, and the vt-vs-torch table:
VARGPT-v1.1 at its full shape with random bf16 weights generating one 512x512 image with CFG.

  python3 bench/torch_gpu_vargpt.py                      # "torch <key> <value> <unit> <ms> ms" lines
  python3 bench/torch_gpu_vargpt.py --vt vt.txt          # also joins with bench_gpu_vargpt's output
  python3 bench/torch_gpu_vargpt.py --device cpu --small --size 256 --runs 1   # smoke test of the logic
                                                         # (small LLM and Infinity, the d32 VAE)
  options: --runs N (3), --prompt-len N (64), --seed N, --layers N, --depth N, --size 256|512

The same loop as vargpt::decode_text + generate_image (tools/vargpt_reference.generate, on the device):
  LLM        transformers' Qwen2ForCausalLM with Qwen2-VL-7B's shapes (hidden 3584, 28 layers, 28 / 4
             heads, FFN 18944, vocab 152064, untied, rope_theta 1e6), sdpa, bf16. Its positions are 1-D:
             for a text-only prompt and the image chunks (t = h = w on all three M-RoPE axes, Q10) M-RoPE
             is the same rotation, so Qwen2 computes what Qwen2-VL would. A DynamicCache holds the prompt
             and the conditional image chunks; the unconditional pass runs without one (Q4)
  ViT        not run by text-to-image; held as one bf16 placeholder tensor of its 675M parameters so both
             sides hold the same weights
  Infinity   tools/infinity_reference.py's weights (depth 32, C 2048, 16 heads, d 32, 512 cfg_uncond rows),
             the KV-cached block of bench/torch_gpu_infinity.py (F.scaled_dot_product_attention, caches
             preallocated), bf16
  glue       image_gen_projector (C -> C -> Cl), image_gen_projector_out (Cl -> Cl -> C), GELU erf;
             sos_embedding (151658, C); cond_BD = condition(sos row), the uncond one of cfg_uncond[0:1]
  VAE        bench/torch_bsq_vae.py's d32 encoder and decoder, f32 (cuDNN TF32 off, as vt's f32 convs)
  weights    vt's rule (bench/vargpt_bench.h): std 1/sqrt(fan_in) (fan_in = numel / size(0), or the last
             dimension when size(0) is 1), norm and ln_q weights 1 + N(0, 0.1), other 1-D N(0, 0.1),
             scale_mul ln 4, zero_k_bias 0; drawn on the device
Work: a prompt of --prompt-len ids ((i * 7919) % 150000 + 1000, then <|image_gen_start|>): prefill of the
ids before the start token (logits of the last position, greedy, then the start token forced) and one
step feeding it; per scale E = image_gen_projector(k == 0 ? cond_BD + pos_start : word_embed(X_k)), the
LLM on E (cond: cache, positions past..; uncond: no cache, 0..n-1), image_gen_projector_out([H_c; H_u]) +
lvl_embed[k] -> 32 blocks -> head; logits / tau 0.5, l = 3 l_c - 2 l_u, per-bit top-p 0.97, Bernoulli
draw on the device; bits -> codes -> bilinear accumulation (f32) -> next input; the VAE decode, clamp,
uint8 pixels on the host.
Rows (keys as in bench_gpu_vargpt.cpp): vargpt_512 (ms, median of --runs after one warm-up, prompt to
pixels), vargpt_512_latent (the same without the VAE decode), vargpt_weights (GiB), vargpt_512_peak (GiB,
torch.cuda.max_memory_allocated over the timed generations, weights included).
"""
import argparse
import inspect
import json
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
import torch_bsq_vae as vae_ref  # noqa: E402
import torch_gpu_infinity as TI  # noqa: E402  (cached_block, sample_bits)
from gpu_bench import emit, join_vt, median_ms, pick_device, run_section, sync, wall_ms  # noqa: E402

SIDES = {256: [1, 2, 4, 6, 8, 12, 16], 512: [1, 2, 4, 6, 8, 12, 16, 20, 24, 32]}
GRID = (64, 64)  # the RoPE grid: the last scale of the 1M 1:1 template
CFG, TAU, TOP_P = 3.0, 0.5, 0.97
GIB = float(1 << 30)

SHAPES = {
    "full": dict(llm=dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                          num_attention_heads=28, num_key_value_heads=4),
                 vit=dict(depth=32, embed=1280, mlp_ratio=4, out=3584),
                 inf=dict(depth=32, C=2048, heads=16, d=32, Ctext=2048, maxlen=512, block_chunks=8), start=151657),
    # bench/vargpt_bench.h's small configuration (the CPU smoke test of this script)
    "small": dict(llm=dict(vocab_size=320, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                           num_attention_heads=4, num_key_value_heads=2),
                  vit=dict(depth=2, embed=32, mlp_ratio=4, out=256),
                  inf=dict(depth=4, C=256, heads=4, d=32, Ctext=256, maxlen=128, block_chunks=2), start=288),
}


def vit_params(depth, embed, mlp_ratio, out, patch=14, temporal=2, merge=2):
    """Parameters of Qwen2-VL's ViT: patch embedding, blocks (2 LayerNorms, qkv, proj, MLP), merger."""
    hid = embed * mlp_ratio
    block = 4 * embed + (3 * embed * embed + 3 * embed) + (embed * embed + embed) + 2 * embed * hid + hid + embed
    m = embed * merge * merge
    return embed * 3 * temporal * patch * patch + depth * block + 2 * embed + (m * m + m) + (out * m + out)


def draw(name, shape, dev, dtype, g):
    """vt's rule (randomize_weights in bench/vargpt_bench.h)."""
    shape = tuple(shape)
    if "zero_k_bias" in name:
        return torch.zeros(shape, device=dev, dtype=dtype)
    if "scale_mul_1H11" in name:
        return torch.full(shape, math.log(4.0), device=dev, dtype=dtype)
    x = torch.randn(shape, device=dev, dtype=torch.float32, generator=g)
    if len(shape) == 1 and name.endswith("weight") and ("norm" in name or "ln_q" in name):
        return (1 + 0.1 * x).to(dtype)
    if len(shape) <= 1:
        return (0.1 * x).to(dtype)
    fan_in = shape[-1] if shape[0] == 1 else math.prod(shape) // shape[0]
    return (x / math.sqrt(fan_in)).to(dtype)


def redraw_module(mod, dev, g, prefix=""):
    with torch.no_grad():
        for name, p in mod.named_parameters():
            p.copy_(draw(prefix + name, p.shape, dev, p.dtype, g))


def build(args, dev):
    from transformers import Qwen2Config, Qwen2ForCausalLM
    sh = SHAPES["small" if args.small else "full"]
    dt = torch.bfloat16 if not args.small else torch.float32
    llm_shape = dict(sh["llm"])
    if args.layers > 0:
        llm_shape["num_hidden_layers"] = args.layers
    inf = dict(sh["inf"])
    if args.depth > 0:
        inf["depth"] = args.depth
        if inf["depth"] % inf["block_chunks"]:
            inf["block_chunks"] = 1
    config = Qwen2Config(**llm_shape, max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=1e6,
                         tie_word_embeddings=False, use_sliding_window=False, hidden_act="silu",
                         attn_implementation="sdpa")
    g = torch.Generator(device=dev).manual_seed(args.seed + 100)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dt)  # build directly in bf16 (no 30 GB f32 copy)
    try:
        with dev:
            llm = Qwen2ForCausalLM(config)
    finally:
        torch.set_default_dtype(old)
    llm = llm.to(device=dev, dtype=dt).eval()
    redraw_module(llm, dev, g)
    cfg = R.config(**inf)
    gen = {n: draw(n, shape, dev, dt, g) for n, (shape, _) in R.weight_specs(cfg).items()}
    C, Cl, start = cfg["C"], config.hidden_size, sh["start"]
    glue = {}
    for name, cin, cout in (("image_gen_projector", C, Cl), ("image_gen_projector_out", Cl, C)):
        for leaf, shape in ((".mlp.0.weight", (cin, cin)), (".mlp.0.bias", (cin,)), (".mlp.2.weight", (cout, cin)),
                            (".mlp.2.bias", (cout,)), (".ln_q.weight", (cin,)), (".ln_q.bias", (cin,))):
            glue[name + leaf] = draw(name + leaf, shape, dev, dt, g)
    glue["sos_embedding.weight"] = draw("sos_embedding.weight", (start + 1, C), dev, dt, g)
    vit = torch.empty(vit_params(**sh["vit"]), device=dev, dtype=dt)  # placeholder: held, never run
    with dev:
        dec, enc = vae_ref.Decoder().eval(), vae_ref.Encoder().eval()
    dec, enc = dec.to(dev), enc.to(dev)
    redraw_module(dec, dev, g, "decoder.")
    redraw_module(enc, dev, g, "encoder.")
    weight_bytes = sum(p.numel() * p.element_size() for p in llm.parameters())
    weight_bytes += sum(t.numel() * t.element_size() for t in list(gen.values()) + list(glue.values()) + [vit])
    weight_bytes += sum(p.numel() * p.element_size() for m in (dec, enc) for p in m.parameters())
    return dict(llm=llm, cfg=cfg, gen=gen, glue=glue, vit=vit, dec=dec, enc=enc, start=start, dt=dt,
                weight_bytes=weight_bytes, config=config)


def projector(m, name, x):
    g = m["glue"]
    h = F.linear(x, g[name + ".mlp.0.weight"], g[name + ".mlp.0.bias"])
    return F.linear(F.gelu(h), g[name + ".mlp.2.weight"], g[name + ".mlp.2.bias"])  # GELU erf


def llm_runner(llm):
    """(embeds (1, n, Cl), first position, cache or None) -> final hidden states; transformers 4.x
    names the cache `past_key_values`, 5.x `cache`."""
    params = inspect.signature(llm.model.forward).parameters
    cache_kw = "cache" if "cache" in params else "past_key_values"

    def run(embeds, start, cache):
        n = embeds.shape[1]
        pos = torch.arange(start, start + n, device=embeds.device)[None]
        kw = {cache_kw: cache, "use_cache": True} if cache is not None else {"use_cache": False}
        return llm.model(inputs_embeds=embeds, position_ids=pos, **kw).last_hidden_state

    return run


def generate(m, ids, sides, seed, decode=True, laps=None):
    """One image: prefill + hand-off, the per-scale loop with CFG, the VAE decode -> (pixels, bits, logits)."""
    from transformers import DynamicCache
    llm, w, cfg, dt = m["llm"], m["gen"], m["cfg"], m["dt"]
    run = m.setdefault("run", llm_runner(llm))
    dev = ids.device
    lap = laps if laps is not None else (lambda what: None)
    C, H, d, eps = cfg["C"], cfg["heads"], cfg["d"], cfg["eps"]
    D = C // H
    cache = DynamicCache()
    T = ids.shape[1] - 1  # the ids before <|image_gen_start|>
    hidden = run(llm.model.embed_tokens(ids[:, :T]), 0, cache)  # (1, T, Cl)
    _ = llm.lm_head(hidden[:, -1:]).argmax(-1)  # the prefill's next token; the start token is forced
    run(llm.model.embed_tokens(ids[:, T:]), T, cache)  # the hand-off: <|image_gen_start|> fed once
    past = T + 1
    lap("prefill + hand-off")
    mem_c = projector(m, "image_gen_projector_out", hidden[0])  # (T, C): excludes the start token (Q5)
    mem = torch.stack([mem_c, w["cfg_uncond"][:T]])  # (2, T, C): uncond = raw cfg_uncond rows (Q6, Q7)
    sos = m["glue"]["sos_embedding.weight"][m["start"]][None]
    cond_BD = torch.cat([R.condition(w, cfg, sos, [0, 1])[0], R.condition(w, cfg, w["cfg_uncond"][0:1], [0, 1])[0]])
    B = 2
    cond6 = F.linear(F.silu(cond_BD), w["shared_ada_lin.1.weight"], w["shared_ada_lin.1.bias"]).view(B, 1, 6, C)
    hscale, hshift = F.linear(F.silu(cond_BD), w["head_nm.ada_lin.1.weight"],
                              w["head_nm.ada_lin.1.bias"])[:, None].chunk(2, -1)
    prefixes = [R.block_prefix(cfg, b) for b in range(cfg["depth"])]
    ca = []
    for p in prefixes:
        kv = F.linear(mem, w[p + "ca.mat_kv.weight"], torch.cat([w[p + "ca.zero_k_bias"], w[p + "ca.v_bias"]]))
        ca.append(kv.view(B, T, 2, H, D).permute(2, 0, 3, 1, 4).unbind(0))  # k, v: (B, H, T, D)
    L = sum(s * s for s in sides)
    kcs = [torch.empty(B, H, L, D, device=dev, dtype=dt) for _ in prefixes]
    vcs = [torch.empty(B, H, L, D, device=dev, dtype=dt) for _ in prefixes]
    cos, sin = R.rope_tables([(s, s) for s in sides], GRID, D)
    cos, sin = cos.to(dev), sin.to(dev)
    gen = torch.Generator(device=dev).manual_seed(seed)
    S = sides[-1]
    acc = torch.zeros(1, d, S, S, device=dev, dtype=torch.float32)
    inputs, off = None, 0
    for k, s in enumerate(sides):
        n = s * s
        if k == 0:
            E = projector(m, "image_gen_projector", cond_BD[:, None] + w["pos_start"][0])  # (2, 1, Cl)
            E_c, E_u = E[0:1], E[1:2]
        else:
            E_c = E_u = projector(m, "image_gen_projector", F.linear(inputs.to(dt), w["word_embed.weight"],
                                                                      w["word_embed.bias"]))
        H_c = run(E_c, past, cache)  # raw cache positions (Q10)
        H_u = run(E_u, 0, None)  # context-free (Q4)
        past += n
        x = projector(m, "image_gen_projector_out", torch.cat([H_c, H_u])) + w["lvl_embed.weight"][k]
        c, sn = cos[off:off + n], sin[off:off + n]
        for b, p in enumerate(prefixes):
            x = TI.cached_block(w, p, cfg, x, cond6, c, sn, kcs[b], vcs[b], off, ca[b][0], ca[b][1])
        h = F.layer_norm(x, (C,), eps=eps) * (1 + hscale) + hshift
        logits = F.linear(h, w["head.weight"], w["head.bias"]).float() / TAU  # (2, n, 2d)
        logits = CFG * logits[0:1] + (1 - CFG) * logits[1:2]
        bits = TI.sample_bits(logits, TOP_P, gen).view(1, s, s, d)
        codes = ((bits.float() * 2 - 1) / math.sqrt(d)).permute(0, 3, 1, 2)
        acc = acc + (codes if s == S else F.interpolate(codes, size=(S, S), mode="bilinear", align_corners=False))
        if k + 1 < len(sides):
            nx = sides[k + 1]
            mm = acc if nx == S else F.interpolate(acc, size=(nx, nx), mode="bilinear", align_corners=False)
            inputs = mm.flatten(2).transpose(1, 2)  # (1, n, d)
        off += n
        lap(f"scale {k} ({s}²)")
    pixels = None
    if decode:
        img = m["dec"](acc).clamp(-1, 1)
        pixels = ((img + 1) / 2 * 255).to(torch.uint8).permute(0, 2, 3, 1).cpu()
        lap("VAE decode + pixels")
    return pixels, bits, logits


def bench(args, dev, out):
    import transformers
    t0 = time.perf_counter()
    m = build(args, dev)
    sync(dev)
    cfg, config = m["cfg"], m["config"]
    print(f"# vargpt {'small' if args.small else 'full'}: transformers {transformers.__version__}, LLM "
          f"{config.hidden_size} x {config.num_hidden_layers} layers, Infinity C {cfg['C']} depth {cfg['depth']}, "
          f"{m['weight_bytes'] / GIB:.2f} GiB of weights ({m['dt']}, VAE f32), built on {dev} in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    sides = SIDES[args.size]
    if args.small:  # the tiny tokenizer's t2i prompt, as bench_gpu_vargpt --config small
        ids = json.load(open(os.path.join(HERE, "..", "tests", "fixtures", "vargpt_tiny", "reference.json")))["t2i"]["ids"]
    else:
        ids = [(i * 7919) % 150000 + 1000 for i in range(args.prompt_len - 1)] + [m["start"]]
    ids = torch.tensor([ids], device=dev)
    cudnn = torch.backends.cudnn
    tf32 = cudnn.allow_tf32
    cudnn.allow_tf32 = False  # f32 convolutions as vt computes them
    res = {}
    try:
        with torch.inference_mode():
            first = wall_ms(lambda: res.update(o=generate(m, ids, sides, args.seed)), dev)
            pixels, bits, logits = res["o"]
            mx = logits.abs().max().item()
            print(f"# warm-up generation {first:.1f} ms; sanity: last-scale guided |logit| max {mx:.3f}, fraction of "
                  f"1-bits {bits.float().mean().item():.3f}, pixels {tuple(pixels.shape)}", flush=True)
            runs = 1 if first > 20000 else args.runs
            if dev.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(dev)
            ms = median_ms(lambda: res.update(o=generate(m, ids, sides, args.seed)), dev, 0, runs)
            emit(out, f"vargpt_{args.size}", ms, "ms", ms)
            ms = median_ms(lambda: generate(m, ids, sides, args.seed, decode=False), dev, 0, runs)
            emit(out, f"vargpt_{args.size}_latent", ms, "ms", ms)
            emit(out, "vargpt_weights", m["weight_bytes"] / GIB, "GiB", 0.0)
            if dev.type == "cuda":
                emit(out, f"vargpt_{args.size}_peak", torch.cuda.max_memory_allocated(dev) / GIB, "GiB", 0.0)
            phases, t = [], [time.perf_counter()]

            def lap(what):
                sync(dev)
                now = time.perf_counter()
                phases.append(f"{what} {1e3 * (now - t[0]):.1f}")
                t[0] = now

            sync(dev)
            t[0] = time.perf_counter()
            generate(m, ids, sides, args.seed, laps=lap)
            print("# phases (ms): " + ", ".join(phases), flush=True)
    finally:
        cudnn.allow_tf32 = tf32


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vt", help="bench_gpu_vargpt output to join")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--small", action="store_true", help="the small LLM and Infinity of bench_gpu_vargpt --config "
                    "small, the VAE still d32: a CPU smoke test of the logic, not a comparison")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layers", type=int, default=-1)
    ap.add_argument("--depth", type=int, default=-1)
    ap.add_argument("--size", type=int, default=512, choices=[256, 512])
    ap.add_argument("--config", default=None, help="ignored (bench_gpu_vargpt's option)")
    args = ap.parse_args()
    if args.runs < 1 or not 2 <= args.prompt_len <= 512:
        ap.error("--runs >= 1, --prompt-len in 2..512")
    dev = pick_device(args.device, "torch GPU VARGPT baseline")
    if dev is None:
        return 0
    out = {}
    ok = run_section("vargpt", bench, args, dev, out)
    if args.vt:
        join_vt(args.vt, out, "(vt speed: > 1 means vt is faster; both sides: VARGPT-v1.1 full shape, random "
                    "bf16 weights, VAE f32, one image with CFG; goals: vt vargpt_512 <= 500 ms, vargpt_512_peak <= 22 GiB)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
