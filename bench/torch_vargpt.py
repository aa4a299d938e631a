#!/usr/bin/env python3
"""PyTorch baseline for bench/bench_vargpt.cpp: VARGPT-v1.1 generating one 256x256 image on the CPU,
f32, 2 threads, with the spec-written reference loop tools/vargpt_reference.py (transformers'
Qwen2VLForConditionalGeneration for the LLM, the reference Infinity blocks with a KV cache, the
reference BSQ-VAE decoder), from the same checkpoint directories as vt.

    python3 bench/torch_vargpt.py [--configs tiny,small] [--small-dir DIR] [--runs 5]
                                  [--attn sdpa|eager] [--vt bench_vargpt.json ...] [--profile]

Configurations: tiny = tests/fixtures/vargpt_tiny; small = the random checkpoint bench_vargpt writes
(`bench_vargpt --make-small DIR`, or its first small run). The model is read back from the files:
LLM and ViT into transformers (config from config.json), vargpt_gen.* and the glue as tensor dicts,
vae_local.* renamed to the reference's wrapped conv/norm names when the file holds vt's plain ones.

Case (as bench_vargpt): the tiny fixture's t2i prompt (92 ids ending with <|image_gen_start|>),
vargpt_reference.generate at 256x256 (the 0.06M schedule, 7 scales, 521 tokens; CFG 3, tau 0.5,
top-p 0.97): prefill with M-RoPE positions, per scale a cached conditional LLM pass and a context-free
unconditional one, the Infinity blocks on both rows, sampling against uniforms drawn inside the timed
step, the VAE decode to pixels. Median wall and process CPU time of --runs after one warm-up.
transformers' attention is "sdpa" (its default) unless --attn eager (the fixture generator's choice).

With --vt FILE (bench_vargpt's --benchmark_out JSON, one or more), the vt rows are joined:
ratio vt/torch of the wall time (goal <= 0.5) and of the process CPU time (the steadier number on a
shared machine; run with OMP_WAIT_POLICY=passive there), and vt's peak RSS over its weight bytes
(goal <= 1.15). --profile instead times one generation per config by parts of the loop (the LLM
passes, projectors, Infinity blocks and head, the VAE decode, the rest), wrapping the reference's
functions, for comparison with `bench_vargpt --profile`.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))
import bsq_vae_reference as V  # noqa: E402
import infinity_reference as R  # noqa: E402
import vargpt_reference as VG  # noqa: E402

TINY = os.path.join(ROOT, "tests", "fixtures", "vargpt_tiny")
CFG, TAU, TOP_P = 3.0, 0.5, 0.97


def read_state_dict(d):
    index = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(index):
        files = sorted(set(json.load(open(index))["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    sd = {}
    for f in files:
        sd.update(load_file(os.path.join(d, f)))
    return sd


def hf_config(c, attn):
    from transformers import Qwen2VLConfig
    llm_keys = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "rms_norm_eps", "rope_theta", "max_position_embeddings", "tie_word_embeddings")
    vis = dict(c["vision_config"])
    vis["in_channels"] = vis.pop("in_chans", 3)
    vis.pop("hidden_act", None)
    return Qwen2VLConfig(**{k: c[k] for k in llm_keys}, rope_scaling={"type": "mrope",
                         "mrope_section": c["rope_scaling"]["mrope_section"]}, vision_config=vis,
                         image_token_id=c["image_token_id"], video_token_id=c["video_token_id"],
                         vision_start_token_id=c["vision_start_token_id"], vision_end_token_id=c["vision_end_token_id"],
                         vision_token_id=c["vision_token_id"], bos_token_id=c["bos_token_id"],
                         eos_token_id=c["eos_token_id"], pad_token_id=c["pad_token_id"], attention_dropout=0.0,
                         attn_implementation=attn)


def infinity_config(gen):
    C, d = gen["word_embed.weight"].shape
    maxlen, Ct = gen["cfg_uncond"].shape
    blocks = [k.split(".") for k in gen if k.startswith("block_chunks.")]
    chunks = 1 + max(int(b[1]) for b in blocks)
    per = 1 + max(int(b[3]) for b in blocks)
    H = gen["block_chunks.0.module.0.sa.scale_mul_1H11"].numel()
    return R.config(depth=chunks * per, C=C, heads=H, d=d, Ctext=Ct, maxlen=maxlen, block_chunks=chunks,
                    levels=gen["lvl_embed.weight"].shape[0])


def vae_config(vae):
    def w(name):
        return vae.get(name + ".conv.weight", vae.get(name + ".weight"))
    base = w("encoder.conv_in").shape[0]
    levels = 1 + max(int(k.split(".")[2]) for k in vae if k.startswith("encoder.down."))
    nres = 1 + max(int(k.split(".")[4]) for k in vae if k.startswith("encoder.down.0.block."))
    mult = [w(f"encoder.down.{i}.block.0.conv1").shape[0] // base for i in range(levels)]
    return V.config(base, mult, nres, w("decoder.conv_in").shape[1])


def wrapped_vae(vae, vcfg):
    """vt writes the VAE's plain names (conv1.weight); the reference reads upstream's wrapped ones."""
    out = dict(vae)
    for name, kind, _ in V.spec_names(vcfg):
        for leaf in ("weight", "bias"):
            plain, wrapped = f"{name}.{leaf}", f"{name}.{kind}.{leaf}"
            if plain in out and wrapped not in out:
                out[wrapped] = out.pop(plain)
    return out


def load_model(d, attn):
    from transformers import Qwen2VLForConditionalGeneration
    c = json.load(open(os.path.join(d, "config.json")))
    sd = read_state_dict(d)
    hf = Qwen2VLForConditionalGeneration(hf_config(c, attn)).float().eval()
    hf_sd = {k: v for k, v in sd.items() if k.startswith(("visual.", "model.", "lm_head."))}
    hf.load_state_dict(hf_sd, strict=True)
    gen = {k[len("vargpt_gen."):]: v for k, v in sd.items() if k.startswith("vargpt_gen.")}
    for k in [k for k in gen if k.endswith("sa.q_bias")]:  # the zero_k_bias buffers, when not saved
        gen.setdefault(k.replace("q_bias", "zero_k_bias"), torch.zeros_like(gen[k]))
    for k in [k for k in gen if k.endswith("ca.v_bias")]:
        gen.setdefault(k.replace("v_bias", "zero_k_bias"), torch.zeros_like(gen[k]))
    gcfg = infinity_config(gen)
    vae = {k[len("vae_local."):]: v for k, v in sd.items() if k.startswith("vae_local.") and not k.endswith("lfq.mask")}
    vcfg = vae_config(vae)
    vae = wrapped_vae(vae, vcfg)
    glue = {k: v for k, v in sd.items() if k.startswith(("image_gen_projector", "sos_embedding."))}
    tok = c["special_tokens"]
    ids = dict(VG.IDS, gen_start=tok["image_gen_start_token_id"], gen_end=tok["image_gen_end_token_id"],
               gen_pad=tok["image_gen_pad_token_id"])
    weight_bytes = sum(v.numel() * v.element_size() for v in sd.values())
    return VG.Model(hf, gen, gcfg, vae, vcfg, glue, ids), weight_bytes


def profiled(parts):
    """Wraps the reference's pieces so that each call adds its wall and process CPU seconds to parts[key]."""
    def wrap(mod, fn_name, key):
        fn = getattr(mod, fn_name)

        def timed(*a, **k):
            t, c = time.perf_counter(), time.process_time()
            try:
                return fn(*a, **k)
            finally:
                w, cc = parts.get(key, (0.0, 0.0))
                parts[key] = (w + time.perf_counter() - t, cc + time.process_time() - c)
        setattr(mod, fn_name, timed)
    wrap(VG, "llm", "LLM passes (prefill + 2 per scale)")
    wrap(VG, "projector", "projectors")
    wrap(VG, "block_cached", "Infinity blocks")
    wrap(VG, "head", "Infinity head")
    wrap(V, "decode", "VAE decode")


def bench(name, d, args):
    t0 = time.perf_counter()
    m, weight_bytes = load_model(d, args.attn)
    load_s = time.perf_counter() - t0
    ids = torch.tensor([json.load(open(os.path.join(TINY, "reference.json")))["t2i"]["ids"]])
    L = sum(h * w for h, w in VG.SIDES_256)
    g = torch.Generator().manual_seed(0)

    def step():
        u = torch.rand(1, L, m.gcfg["d"], generator=g)
        return VG.generate(m, ids, u, CFG, TAU, TOP_P)

    out = step()  # warm-up
    if args.profile:
        parts = {}
        profiled(parts)
        t, c = time.perf_counter(), time.process_time()
        step()
        total = (time.perf_counter() - t, time.process_time() - c)
        for k, (w, cc) in list(parts.items()) + [("other (conditions, sampling, accumulation)",
                                                   (total[0] - sum(v[0] for v in parts.values()),
                                                    total[1] - sum(v[1] for v in parts.values()))),
                                                  ("total", total)]:
            print(f"  {name:5s} {k:44s} {w * 1e3:9.1f} ms wall {cc * 1e3:9.1f} ms cpu")
        return None
    wall, cpu = [], []
    for _ in range(args.runs):
        t, c = time.perf_counter(), time.process_time()
        out = step()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    w, c = statistics.median(wall) * 1e3, statistics.median(cpu) * 1e3
    ones = torch.cat([b.reshape(-1) for b in out["bits"]]).float().mean().item()
    print(f"vargpt/{name}/256/cfg3  {w:9.1f} ms wall {c:9.1f} ms cpu  (torch, {args.attn}; weights "
          f"{weight_bytes / 1e6:.1f} MB, loaded in {load_s:.1f} s; 1-bits {ones:.3f}, pixels "
          f"{tuple(out['pixels'].shape)})", flush=True)
    return w, c


def read_vt(paths):
    rows = {}
    for p in paths:
        try:
            for b in json.load(open(p))["benchmarks"]:
                if b.get("run_type", "iteration") == "iteration" or b.get("aggregate_name") == "median":
                    # "vargpt/tiny/256/cfg3/min_time:3.000/process_time/real_time" -> "vargpt/tiny/256/cfg3"
                    rows["/".join(b.get("run_name", b["name"]).split("/")[:4])] = b
        except (OSError, ValueError, KeyError) as e:
            print(f"(could not read vt results {p}: {e})")
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default="tiny,small")
    ap.add_argument("--small-dir", default=os.path.join(ROOT, "build", "vargpt_small"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    ap.add_argument("--profile", action="store_true", help="one generation, time per part of the loop")
    ap.add_argument("--vt", nargs="*", default=[], help="bench_vargpt --benchmark_out JSON files to join")
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    dirs = {"tiny": TINY, "small": args.small_dir}
    torch_ms = {}
    with torch.inference_mode():
        for name in args.configs.split(","):
            if not os.path.exists(os.path.join(dirs[name], "config.json")):
                print(f"vargpt/{name}: no checkpoint at {dirs[name]} (bench_vargpt --make-small DIR writes it)")
                continue
            r = bench(name, dirs[name], args)
            if r is not None:
                torch_ms[name] = r
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    print(f"(torch process peak RSS over all configs: {rss:.0f} MB)")
    vt = read_vt(args.vt)
    for name, (t, tc) in torch_ms.items():
        row = vt.get(f"vargpt/{name}/256/cfg3")
        if not row:
            continue
        unit = {"ms": 1.0, "us": 1e-3, "ns": 1e-6, "s": 1e3}[row.get("time_unit", "ms")]
        v, vc = row["real_time"] * unit, row["cpu_time"] * unit
        print(f"vargpt/{name}: wall vt {v:.1f} ms, torch {t:.1f} ms, ratio vt/torch {v / t:.3f} (goal <= 0.5); "
              f"process CPU vt {vc:.1f} ms, torch {tc:.1f} ms, ratio {vc / tc:.3f}; vt peak RSS {row['peak_rss_mb']:.1f} MB = {row['rss_x_weights']:.2f} x weights "
              f"{row['weights_mb']:.1f} MB (goal <= 1.15), {row['added_x_weights']:.2f} x over the "
              f"{row['base_rss_mb']:.1f} MB before loading")


if __name__ == "__main__":
    main()
