#!/usr/bin/env python3
"""Fixture for the `vargpt chat` end-to-end test (tests/cli/chat_cli.sh): a tiny random
Qwen2-VL checkpoint directory that the command loads like a real one, and what transformers
answers to a prompt with an image.

Writes tests/fixtures/chat_tiny/:
  config.json, model.safetensors      Qwen2VLForConditionalGeneration (vision depth 1, width 32;
                                      LLM 2 layers, width 32, GQA 4/2, vocab 288), hub tensor names
                                      (visual.*, model.*, lm_head.weight)
  preprocessor_config.json            Qwen2VLImageProcessor with small min/max pixels
  tokenizer.json                      the real Qwen2 tokenizer cut down to its first 280 regular
                                      tokens and the merges among them, plus the special tokens
                                      renumbered from 280 (needs third_party/qwen2/tokenizer.json,
                                      fetched by scripts/setup.sh)
  image.png                           a 70x98 picture (resized by the processor to 56x84 -> 6 tokens)
  expected.json                       {"prompt", "ids": the 24 greedy new ids, "text": their decode}
  expected_ids.txt                    the ids as `vargpt chat --print-ids` prints them
The prompt is rendered with the ChatML template by hand (the same string vargpt renders), the image
goes through the HF (PIL) processor, and model.generate(do_sample=False) gives the ids.
"""
import json
import os

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil as Qwen2VLImageProcessor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests/fixtures/chat_tiny")
os.makedirs(OUT, exist_ok=True)
torch.manual_seed(0)

# ---- tokenizer: the real one, cut down ----------------------------------------------------------
KEEP, SPECIAL_BASE, VOCAB = 280, 280, 288
j = json.load(open(os.path.join(ROOT, "third_party/qwen2/tokenizer.json")))
vocab = {t: i for t, i in j["model"]["vocab"].items() if i < KEEP}
merges = []
for m in j["model"]["merges"]:
    a, b = m if isinstance(m, list) else m.split(" ")
    if a in vocab and b in vocab and a + b in vocab:
        merges.append([a, b])
j["model"]["vocab"], j["model"]["merges"] = vocab, merges
names = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
         "<|image_pad|>", "<|video_pad|>"]
added = {a["content"]: a for a in j["added_tokens"]}
j["added_tokens"] = [dict(added[n], id=SPECIAL_BASE + k) for k, n in enumerate(names)]
ids = {n: SPECIAL_BASE + k for k, n in enumerate(names)}
with open(os.path.join(OUT, "tokenizer.json"), "w") as f:
    json.dump(j, f, ensure_ascii=False)
tok = Tokenizer.from_file(os.path.join(OUT, "tokenizer.json"))

# ---- model --------------------------------------------------------------------------------------
cfg = Qwen2VLConfig(
    text_config=dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=10000.0,
                     max_position_embeddings=512, tie_word_embeddings=False,
                     rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]},
                     eos_token_id=ids["<|im_end|>"], bos_token_id=ids["<|endoftext|>"]),
    vision_config=dict(depth=1, embed_dim=32, num_heads=2, mlp_ratio=2, hidden_size=32, in_chans=3,
                       patch_size=14, temporal_patch_size=2, spatial_merge_size=2),
    image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
    vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    tie_word_embeddings=False)
model = Qwen2VLForConditionalGeneration(cfg).eval().float()
with torch.no_grad():  # larger random weights than the init, so that the greedy path is not flat
    for n, p in model.named_parameters():
        if p.dim() > 1:
            p.normal_(0, 0.2)
model.save_pretrained(OUT, safe_serialization=True)
# transformers 5 saves language_model/visual under model.; rename to the hub's names.
sd = load_file(os.path.join(OUT, "model.safetensors"))
ren = {}
for k, v in sd.items():
    k2 = k.replace("model.language_model.", "model.").replace("model.visual.", "visual.")
    ren[k2] = v.contiguous()
save_file(ren, os.path.join(OUT, "model.safetensors"), metadata={"format": "pt"})

# ---- image and processor ------------------------------------------------------------------------
y, x = np.mgrid[0:70, 0:98]
img = np.stack([(x * 2.5) % 256, (y * 3.5) % 256, ((x + y) * 1.5) % 256], -1).astype(np.uint8)
img[20:50, 30:60] = [200, 40, 40]
Image.fromarray(img).save(os.path.join(OUT, "image.png"))
proc = Qwen2VLImageProcessor(min_pixels=28 * 28, max_pixels=28 * 28 * 6)
proc.save_pretrained(OUT)
px = proc(images=[Image.open(os.path.join(OUT, "image.png")).convert("RGB")], return_tensors="pt")
grid = px["image_grid_thw"]
n_pad = int(grid.prod()) // 4

prompt_text = "What is in the picture?"
rendered = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|>"
            + "<|image_pad|>" * n_pad + "<|vision_end|>" + prompt_text + "<|im_end|>\n<|im_start|>assistant\n")
input_ids = torch.tensor([tok.encode(rendered).ids])
with torch.no_grad():
    # transformers 5 needs mm_token_type_ids (1 at image pads) to build the M-RoPE positions.
    out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                         mm_token_type_ids=(input_ids == ids["<|image_pad|>"]).long(),
                         pixel_values=px["pixel_values"], image_grid_thw=grid, do_sample=False,
                         max_new_tokens=24, eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
                         pad_token_id=ids["<|endoftext|>"])
new = out[0, input_ids.shape[1]:].tolist()
stop = [i for i, t in enumerate(new) if t in (ids["<|im_end|>"], ids["<|endoftext|>"])]
if stop:
    new = new[: stop[0] + 1]
json.dump({"prompt": prompt_text, "n_image_pad": n_pad, "grid_thw": grid[0].tolist(), "ids": new,
           "text": tok.decode([t for t in new if t < SPECIAL_BASE])},
          open(os.path.join(OUT, "expected.json"), "w"), indent=1)
with open(os.path.join(OUT, "expected_ids.txt"), "w") as f:  # for the shell test
    f.write("ids: " + " ".join(map(str, new)) + "\n")
print("image tokens", n_pad, "new ids", new)
print("files:", {f: os.path.getsize(os.path.join(OUT, f)) for f in sorted(os.listdir(OUT))})
