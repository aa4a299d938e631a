#!/usr/bin/env python3
"""PyTorch baselines for bench/bench_gpu_models.cpp on the same GPU, and the vt-vs-torch table.

  python3 bench/torch_gpu_models.py                 # "torch <key> <value> <unit> <ms> ms" lines
  python3 bench/torch_gpu_models.py --vt vt.txt     # also joins with bench_gpu_models' output
  python3 bench/torch_gpu_models.py --device cpu --small   # smoke test of the logic, tiny shapes
  options: --only qwen2|vae, --prompt N, --decode N, --layers N

Rows (keys as in bench_gpu_models.cpp):
  qwen2_7b_prefill   transformers Qwen2ForCausalLM, Qwen2-VL-7B's LLM shapes (hidden 3584, 28 layers,
                     28 heads, 4 KV heads, intermediate 18944, vocab 152064, untied, rope_theta 1e6),
                     bf16 random init on the GPU, attn_implementation="sdpa"; tok/s over one forward of
                     2048 random ids with use_cache=True and logits_to_keep=1 (1-D positions, HF's
                     own; vt feeds M-RoPE t = h = w positions, the same rotation)
  qwen2_7b_decode    tok/s over 128 greedy single-token steps feeding past_key_values (manual loop,
                     argmax on the GPU), after the prompt; ms = the whole loop
  qwen2_7b_weights   GB of parameters; qwen2_7b_peak: GB of torch.cuda.max_memory_allocated over
                     prefill + decode (weights included); qwen2_7b_peak_x: that / weights
  vae_decode_512     the reference decoder of bench/torch_bsq_vae.py (Infinity BSQ-VAE d32) at
                     512x512: random bits on the device -> bits_to_latent (device) -> decoder ->
                     clamp, f32 with cuDNN TF32 OFF (vt's f32 convolutions use no TF32)
  vae_decoder_512    the decoder + clamp alone from a device latent, f32, TF32 off
  vae_decoder_512_tf32  the same with torch's default (cuDNN TF32 on): torch only
  vae_decoder_512_bf16  the decoder and latent in bf16
Every time is wall clock between torch.cuda.synchronize() calls; the VAE rows are the median of 5
after 2 warm-ups; the LLM is one warm-up prefill + 8 decode steps, then one timed prefill and one
timed decode loop.
"""
import argparse
import inspect
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu_bench import emit, median_ms, pick_device, print_table, read_vt, run_section, sync, wall_ms  # noqa: E402
import torch_bsq_vae as ref  # noqa: E402  (the reference BSQ-VAE network; no side effects on import)


# ---- Qwen2-7B ------------------------------------------------------------------------------------

def bench_qwen2(args, dev, out):
    try:
        import transformers
        from transformers import Qwen2Config, Qwen2ForCausalLM
    except Exception as e:  # noqa: BLE001
        print(f"# transformers missing: qwen2 baseline skipped ({type(e).__name__}: {e})", flush=True)
        return
    if args.small:
        shape = dict(vocab_size=1024, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2)
    else:
        shape = dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944,
                     num_hidden_layers=args.layers, num_attention_heads=28, num_key_value_heads=4)
    config = Qwen2Config(**shape, max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=1e6,
                         tie_word_embeddings=False, use_sliding_window=False, hidden_act="silu",
                         attn_implementation="sdpa")
    prompt, steps = args.prompt, args.decode
    print(f"# qwen2_7b: transformers {transformers.__version__}, layers {config.num_hidden_layers}, "
          f"prompt {prompt}, decode {steps}, sdpa, bf16", flush=True)

    t0 = time.perf_counter()
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # build directly in bf16 (no 30 GB f32 copy)
    try:
        with dev:
            model = Qwen2ForCausalLM(config)
    finally:
        torch.set_default_dtype(old)
    model = model.to(device=dev, dtype=torch.bfloat16).eval()
    sync(dev)
    print(f"# qwen2_7b: model built on {dev} in {time.perf_counter() - t0:.1f} s", flush=True)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())

    g = torch.Generator(device=dev).manual_seed(1)
    ids = torch.randint(0, min(151643, config.vocab_size), (1, prompt), device=dev, generator=g)

    # transformers 5.x names the KV cache `cache` (in and out; `past_key_values` is deprecated),
    # 4.x `past_key_values`; logits_to_keep was num_logits_to_keep before 4.50.
    params = inspect.signature(model.forward).parameters
    cache_kw = "cache" if "cache" in params else "past_key_values"
    keep = {}
    for name in ("logits_to_keep", "num_logits_to_keep"):
        if name in params:
            keep = {name: 1}
            break
    print(f"# qwen2_7b: cache argument `{cache_kw}`, {keep or 'full logits (no logits_to_keep)'}", flush=True)

    def cache_of(o):
        c = getattr(o, "cache", None)
        return c if c is not None else o.past_key_values

    def prefill():
        o = model(input_ids=ids, use_cache=True, **keep)
        return o.logits[:, -1, :], cache_of(o)

    def decode(logits, past, n):
        for _ in range(n):
            nxt = logits.argmax(-1, keepdim=True)  # (1, 1)
            o = model(input_ids=nxt, use_cache=True, **{cache_kw: past}, **keep)
            logits, past = o.logits[:, -1, :], cache_of(o)
        return logits, past

    with torch.inference_mode():
        logits, past = prefill()  # warm-up
        decode(logits, past, min(8, steps))
        del logits, past
        sync(dev)
        if dev.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(dev)

        res = {}
        ms = wall_ms(lambda: res.update(pf=prefill()), dev)
        emit(out, "qwen2_7b_prefill", prompt / (ms * 1e-3), "tok/s", ms)
        logits, past = res.pop("pf")
        ms = wall_ms(lambda: res.update(dec=decode(logits, past, steps)), dev)
        emit(out, "qwen2_7b_decode", steps / (ms * 1e-3), "tok/s", ms)
        last, past = res.pop("dec")
        emit(out, "qwen2_7b_weights", weight_bytes / 1e9, "GB", 0.0)
        if dev.type == "cuda":
            peak = torch.cuda.max_memory_allocated(dev)
            emit(out, "qwen2_7b_peak", peak / 1e9, "GB", 0.0)
            emit(out, "qwen2_7b_peak_x", peak / weight_bytes, "x_weights", 0.0)
        length = past.get_seq_length() if hasattr(past, "get_seq_length") else -1
        print(f"# qwen2_7b: last greedy id {int(last.argmax(-1).item())}, cache length {length}", flush=True)
    del model, past, last, logits
    if dev.type == "cuda":
        torch.cuda.empty_cache()


# ---- BSQ-VAE d32 decoder -------------------------------------------------------------------------

def bench_vae(args, dev, out):
    side = 64 if args.small else 512  # --small: a 4x4 latent (the smoke test, not a benchmark)
    sides = [1, 2, 4] if args.small else ref.SIDES[side]
    tag = f"vae_decode_{side}"
    torch.manual_seed(0)
    with dev:
        dec = ref.Decoder().eval()
    dec = dec.to(dev)
    g = torch.Generator(device=dev).manual_seed(1)
    bits = [torch.rand(1, s, s, ref.D, device=dev, generator=g) > 0.5 for s in sides]
    print(f"# vae: {side}x{side}, {len(sides)} scales to {sides[-1]}x{sides[-1]}", flush=True)
    iters = (1, 2) if args.small else (2, 5)
    cudnn = torch.backends.cudnn
    tf32_default = cudnn.allow_tf32
    with torch.inference_mode():
        try:
            cudnn.allow_tf32 = False  # f32 as vt computes it
            img = dec(ref.bits_to_latent(bits))
            assert img.shape == (1, 3, side, side), img.shape
            ms = median_ms(lambda: dec(ref.bits_to_latent(bits)), dev, *iters)
            emit(out, tag, ms, "ms", ms)
            latent = ref.bits_to_latent(bits)
            ms = median_ms(lambda: dec(latent), dev, *iters)
            emit(out, f"vae_decoder_{side}", ms, "ms", ms)
            cudnn.allow_tf32 = True
            ms = median_ms(lambda: dec(latent), dev, *iters)
            emit(out, f"vae_decoder_{side}_tf32", ms, "ms", ms)
        finally:
            cudnn.allow_tf32 = tf32_default
        dec16, latent16 = dec.to(torch.bfloat16), latent.to(torch.bfloat16)
        ms = median_ms(lambda: dec16(latent16), dev, *iters)
        emit(out, f"vae_decoder_{side}_bf16", ms, "ms", ms)
    del dec, dec16, bits, latent, latent16
    if dev.type == "cuda":
        torch.cuda.empty_cache()


# ---- the joined table ----------------------------------------------------------------------------



def join(path, out):
    print_table(read_vt(path), out, "(vt speed: > 1 means vt is faster; the qwen2 rows: vt M-RoPE positions, HF 1-D)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vt", help="bench_gpu_models output to join")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--small", action="store_true", help="tiny shapes (a CPU smoke test of the logic)")
    ap.add_argument("--only", choices=["qwen2", "vae"])
    ap.add_argument("--prompt", type=int)
    ap.add_argument("--decode", type=int)
    ap.add_argument("--layers", type=int, default=28)
    args = ap.parse_args()
    if args.prompt is None:
        args.prompt = 16 if args.small else 2048
    if args.decode is None:
        args.decode = 4 if args.small else 128
    dev = pick_device(args.device, "torch GPU model baselines")
    if dev is None:
        return 0
    out = {}
    ok = True
    # The VAE first: it is short, so a run cut off by a timeout still reports it.
    if args.only in (None, "vae"):
        ok &= run_section("vae", bench_vae, args, dev, out)
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    if args.only in (None, "qwen2"):
        ok &= run_section("qwen2_7b", bench_qwen2, args, dev, out)
    if args.vt:
        join(args.vt, out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
