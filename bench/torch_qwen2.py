#!/usr/bin/env python3
"""transformers baseline for bench/bench_qwen2.cpp: Qwen2-0.5B shapes, random weights, CPU, 2 threads.

    python3 bench/torch_qwen2.py [--dtype f32|bf16|both] [--decode 128]

Qwen2ForCausalLM with attn_implementation="eager" (hidden 896, 24 layers, 14 heads, 2 KV heads,
intermediate 4864, vocab 151936, tied), weights N(0, 0.02) in the storage dtype. Measured like the
C++ benchmark: prefill = one forward over a 512-token prompt into an empty DynamicCache with the
logits of the last position only (logits_to_keep=1); decode = N greedy single-token forwards after
that prompt, timed without the prefill. One run each (no warm-up), tokens/s, the parameter bytes,
and the peak RSS (VmHWM, reset through /proc/self/clear_refs once the weights are initialised).
"""
import argparse
import time

import torch
import transformers
from transformers import DynamicCache, Qwen2Config, Qwen2ForCausalLM

torch.set_num_threads(2)
PROMPT = 512


def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return -1


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def build(dtype):
    cfg = Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                      num_attention_heads=14, num_key_value_heads=2, rope_theta=1e6, rms_norm_eps=1e-6,
                      tie_word_embeddings=True, max_position_embeddings=32768, attn_implementation="eager")
    torch.manual_seed(0)
    with torch.device("meta"):
        model = Qwen2ForCausalLM(cfg)
    model = model.to_empty(device="cpu").to(dtype)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.fill_(1)
            else:
                p.normal_(0, 0.02)
    model.tie_weights()
    reset_peak()  # the peak from here on: weights + inference
    return model.eval()


@torch.no_grad()
def run(tag, dtype, decode_tokens):
    model = build(dtype)
    weights_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 1e6
    ids = torch.randint(0, 151643, (1, PROMPT), generator=torch.Generator().manual_seed(1))

    cache = DynamicCache()
    t0 = time.perf_counter()
    out = model(ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
    prefill_s = time.perf_counter() - t0
    print(f"qwen2_0.5b/{tag}/prefill{PROMPT}  {prefill_s:8.2f} s  tok_s={PROMPT / prefill_s:8.2f}  "
          f"weights_mb={weights_mb:.0f}  peak_rss_mb={status('VmHWM:') / 1e6:.0f}", flush=True)

    logits, cache = out.logits, out.past_key_values
    t0 = time.perf_counter()
    for i in range(decode_tokens):
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        pos = torch.tensor([[PROMPT + i]])
        out = model(nxt, past_key_values=cache, position_ids=pos, use_cache=True, logits_to_keep=1)
        logits, cache = out.logits, out.past_key_values
    decode_s = time.perf_counter() - t0
    print(f"qwen2_0.5b/{tag}/decode{decode_tokens}  {decode_s:8.2f} s  tok_s={decode_tokens / decode_s:8.2f}  "
          f"weights_mb={weights_mb:.0f}  peak_rss_mb={status('VmHWM:') / 1e6:.0f}", flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtype", default="both", choices=["f32", "bf16", "both"])
    ap.add_argument("--decode", type=int, default=128)
    a = ap.parse_args()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, threads {torch.get_num_threads()}")
    for tag, dt in (("f32", torch.float32), ("bf16", torch.bfloat16)):
        if a.dtype in (tag, "both"):
            run(tag, dt, a.decode)
