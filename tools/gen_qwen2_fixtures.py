#!/usr/bin/env python3
"""Writes the transformers reference for models/qwen2 (tests/test_qwen2.cpp):

  tests/fixtures/qwen2_tiny_tied/{config.json,model.safetensors}    2 layers, rope_theta 1e4, tied lm_head
  tests/fixtures/qwen2_tiny_untied/{config.json,model.safetensors}  3 layers, rope_theta 1e6, own lm_head
  tests/fixtures/qwen2.safetensors  logits and greedy tokens (see `out` below for the keys)
  tests/fixtures/qwen2.json         Qwen2-VL get_rope_index cases and the generation settings used

Both models: vocab 300, hidden 64, 4 heads, 2 KV heads (GQA 2), head_dim 16, intermediate 128, f32,
eager attention. Every parameter is drawn again after construction (std 0.2, norms 1 + 0.1 N) so
that biases and norm weights are not their trivial init values and the greedy path has clear margins
(the script prints the smallest top-1/top-2 gap along each greedy run).

Run with transformers 4.46.3, the version whose Qwen2-VL code VARGPT-v1.1 embeds (its get_rope_index
fills padded slots with 1; transformers 5 fills them with 0 and counts image positions differently):

    python3 -m venv --system-site-packages /tmp/hf446
    /tmp/hf446/bin/pip install --no-deps transformers==4.46.3 tokenizers==0.20.3 huggingface-hub==0.26.5
    /tmp/hf446/bin/python tools/gen_qwen2_fixtures.py
"""
import json
import os
import types

import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import Qwen2Config, Qwen2ForCausalLM
from transformers.models.qwen2_vl.configuration_qwen2_vl import Qwen2VLConfig
from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VLForConditionalGeneration

SEED = 1234
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures")
HUB_NAMES = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"}
torch.manual_seed(SEED)
out = {}
meta = {"seed": SEED, "torch": torch.__version__, "transformers": transformers.__version__}


def tiny(tied, layers, theta):
    cfg = Qwen2Config(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      rope_theta=theta, rms_norm_eps=1e-6, tie_word_embeddings=tied, use_sliding_window=False,
                      bos_token_id=None, eos_token_id=None, pad_token_id=0, torch_dtype="float32",
                      attn_implementation="eager")
    model = Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    model.generation_config.eos_token_id = None
    model.generation_config.bos_token_id = None
    model.generation_config.pad_token_id = 0
    return model


def save(model, dirname):
    path = os.path.join(OUT, dirname)
    model.save_pretrained(path, safe_serialization=True)
    for f in os.listdir(path):  # keep only what vt reads
        if f not in ("config.json", "model.safetensors"):
            os.remove(os.path.join(path, f))
    names = set(load_file(os.path.join(path, "model.safetensors")).keys())
    for n in names:  # the hub names of qwen2_vl.md §7, nothing else
        assert n in HUB_NAMES or n.startswith("model.layers."), n
    assert ("lm_head.weight" in names) == (not model.config.tie_word_embeddings)
    print(f"{dirname}: {len(names)} tensors")


def greedy_margin(model, ids, mask, new_tokens, **kw):
    """model.generate's greedy tokens and the smallest top-1/top-2 logit gap along the way."""
    res = model.generate(ids, attention_mask=mask, max_new_tokens=new_tokens, do_sample=False,
                         output_scores=True, return_dict_in_generate=True, **kw)
    gap = min((s.topk(2, dim=-1).values[:, 0] - s.topk(2, dim=-1).values[:, 1]).min().item() for s in res.scores)
    return res.sequences[:, ids.shape[1]:], gap


def left_pad(rows, pad=0):
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, T - len(r):] = torch.tensor(r)
        mask[i, T - len(r):] = 1
    return ids, mask


@torch.no_grad()
def llm_cases(model, tag):
    # B = 1: logits of a 12-token prompt, 32 greedy tokens.
    ids = torch.randint(1, 300, (1, 12))
    out[f"{tag}.prompt"] = ids
    out[f"{tag}.logits"] = model(ids).logits.float()
    tokens, gap = greedy_margin(model, ids, torch.ones_like(ids), 32)
    out[f"{tag}.greedy"] = tokens
    print(f"{tag}: B=1 greedy min gap {gap:.4f}")

    # B = 2, left padded (lengths 10 and 6), positions as generate builds them: cumsum(mask) - 1.
    ids, mask = left_pad([torch.randint(1, 300, (10,)).tolist(), torch.randint(1, 300, (6,)).tolist()])
    pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    out[f"{tag}.batch_ids"], out[f"{tag}.batch_mask"] = ids, mask
    out[f"{tag}.batch_logits"] = model(ids, attention_mask=mask, position_ids=pos).logits.float()
    tokens, gap = greedy_margin(model, ids, mask, 32)
    out[f"{tag}.batch_greedy"] = tokens
    print(f"{tag}: batch greedy min gap {gap:.4f}")
    if tag != "tied":
        return
    # A stop token: the 9th token of row 0 (first occurrence), pad 0 after a row stops.
    row0 = tokens[0].tolist()
    eos = next(t for i, t in enumerate(row0) if i >= 8 and t not in row0[:i])
    stopped, _ = greedy_margin(model, ids, mask, 32, eos_token_id=eos, pad_token_id=0)
    out[f"{tag}.batch_greedy_eos"] = stopped
    meta["eos_token_id"] = eos
    # Greedy with HF's repetition penalty (applied to prompt and generated ids, pads included).
    pen, gap = greedy_margin(model, ids, mask, 32, repetition_penalty=1.3)
    out[f"{tag}.batch_greedy_penalty"] = pen
    meta["repetition_penalty"] = 1.3
    print(f"{tag}: eos {eos} -> {stopped.shape[1]} steps; penalty greedy min gap {gap:.4f}")


tied = tiny(True, 2, 1e4)
untied = tiny(False, 3, 1e6)
save(tied, "qwen2_tiny_tied")
save(untied, "qwen2_tiny_untied")
llm_cases(tied, "tied")
llm_cases(untied, "untied")

# ---- Qwen2-VL get_rope_index (called on a stand-in `self` that only carries the config) -----------
IMG, VID, VS, VE = 151655, 151656, 151652, 151653  # Qwen2-VL-7B-Instruct config.json
vl_cfg = Qwen2VLConfig(image_token_id=IMG, video_token_id=VID, vision_start_token_id=VS, vision_end_token_id=VE)
fake = types.SimpleNamespace(config=vl_cfg)
meta["vl"] = {"image_token_id": IMG, "video_token_id": VID, "vision_start_token_id": VS,
              "spatial_merge_size": vl_cfg.vision_config.spatial_merge_size}


def text(n):
    return torch.randint(100, 200, (n,)).tolist()


def image(thw, token=IMG):
    return [VS] + [token] * (thw[0] * thw[1] * thw[2] // 4) + [VE]


rope_cases = []


def rope_case(name, rows, images=None, videos=None, padded=False):
    if padded:
        ids, mask = left_pad(rows)
    else:
        ids, mask = torch.tensor(rows), None
    ig = torch.tensor(images) if images else None
    vg = torch.tensor(videos) if videos else None
    pos, delta = Qwen2VLForConditionalGeneration.get_rope_index(fake, ids, ig, vg, mask)
    rope_cases.append({"name": name, "input_ids": ids.tolist(), "attention_mask": None if mask is None else mask.tolist(),
                       "image_grid_thw": images or [], "video_grid_thw": videos or [],
                       "position_ids": pos.tolist(), "rope_deltas": delta.flatten().tolist()})


rope_case("spec example", [text(4) + image([1, 4, 4]) + text(3)], [[1, 4, 4]])
rope_case("two images", [text(3) + image([1, 4, 6]) + text(2) + image([1, 6, 4]) + text(4)], [[1, 4, 6], [1, 6, 4]])
rope_case("image first", [image([1, 2, 4]) + text(5)], [[1, 2, 4]])
rope_case("left padded batch", [text(2) + image([1, 2, 4]) + text(6), text(1) + image([1, 4, 4]) + text(2)],
          [[1, 2, 4], [1, 4, 4]], padded=True)
rope_case("video and image", [text(2) + image([2, 4, 4], VID) + text(1) + image([1, 4, 2]) + text(2)],
          [[1, 4, 2]], [[2, 4, 4]])
rope_case("text only, padded", [text(5), text(3)], padded=True)
rope_case("text only", [text(4)])

os.makedirs(OUT, exist_ok=True)
save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(OUT, "qwen2.safetensors"))
with open(os.path.join(OUT, "qwen2.json"), "w") as f:
    json.dump({"meta": meta, "rope_index": rope_cases}, f, indent=1)
print(json.dumps(meta))
