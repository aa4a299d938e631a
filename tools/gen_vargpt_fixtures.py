#!/usr/bin/env python3
"""Writes tests/fixtures/vargpt_tiny/: a tiny random VARGPT-v1.1 checkpoint directory and reference outputs
from the spec-written reference tools/vargpt_reference.py (f32 throughout, deterministic).

    pip install torch safetensors numpy "transformers==4.46.3" "pillow<13" tokenizers
    python3 tools/gen_vargpt_fixtures.py

Tiny config: LLM vocab 320, hidden 64, FFN 128, 2 layers, 4 heads / 2 KV heads, M-RoPE [2,3,3], theta 1e6;
ViT depth 2, width 32, 4 heads, merger -> 64; Infinity depth 2, C 64, 4 heads, d 16, text width 64,
cfg_uncond 128 rows, block_chunks 2; BSQ-VAE base 32, ch_mult (1,1,1,1,1), 1 res block, d 16 (16x down);
256x256 images: schedule 1,2,4,6,8,12,16 (521 tokens, 640 <|image_gen_pad|> slots), RoPE grid 64x64.
Special ids: 280 <|endoftext|> (pad), 281 <|im_start|>, 282 <|im_end|>, 283 <|vision_start|>, 284 <|vision_end|>,
285 <|vision_pad|>, 286 <|image_pad|>, 287 <|video_pad|>, 288 <|image_gen_start|>, 289 <|image_gen_end|>,
290 <|image_gen_pad|>.

Files (each < 2 MB, asserted):
  config.json                       transformers-4.46 VARGPT layout (model_type vargpt_qwen2_vl, LLM fields at the
                                    top level, rope_scaling {type, rope_type: default, mrope_section}, vision_config,
                                    special_tokens {image_gen_start(_token_id), image_gen_end.., image_gen_pad..})
  tokenizer.json                    chat_tiny's tokenizer + added specials 288/289/290
  preprocessor_config.json          Qwen2-VL image processor, min_pixels 784, max_pixels 4704
  model-00001-of-00002.safetensors  visual.*, model.*, lm_head.weight, vargpt_gen.*, image_gen_projector*.*,
                                    sos_embedding.weight (f32)
  model-00002-of-00002.safetensors  vae_local.* (wrapped conv/norm names, f32) + vae_local.quantizer.lfq.mask [16] i64
  model.safetensors.index.json      {"metadata": {"total_size"}, "weight_map"}
  edit_source.png                   the 64x60 RGB source image of the editing cases (-> grid 1x4x4, 4 image tokens)
  reference.safetensors             (f32 unless stated)
    train.input_ids (2,T) i64, train.attention_mask (2,T) i64 (right padding with 280)
    train.pixel_values (16,1176), train.image_grid_thw (1,3) i64   (the source image, sample 1)
    train.target_image (2,256,256,3) u8: image = u8/255*2-1 (f32), NCHW (B,3,256,256) for the VAE
    train.latent (2,16,16,16)        VAE encoder output of the target images
    train.flip_mask.{k} (2,h_k,w_k,16) u8, k = 0..6  BSC flip masks (one p_k in {0,..,0.30} per scale)
    train.labels (2,521,16) u8, train.inputs (2,520,16)  BSC (requant) labels and teacher inputs
    train.text_logit_positions (N,2) i64 (b,t) of every position whose id is not <|image_gen_pad|> (pads included)
    train.text_logits_rows (N,320)   lm_head logits at those positions
    train.gen_logits (2,521,32), train.text_loss, train.image_loss, train.loss (0-d)
    train.memory_len (2) i64         cross-attention memory length per sample (= index of <|image_gen_start|>)
    t2i.input_ids (1,T) i64, t2i.position_ids (3,1,T) i64 (prefill M-RoPE), t2i.uniform (1,521,16) (bit j of
        token i of the concatenated scales; draws near a decision boundary already redrawn)
    t2i.bits.{k} (1,h_k,w_k,16) u8, t2i.logits.{k} (1,n_k,32) (guided, tau-scaled), t2i.memory (T-1,64),
    t2i.latent (1,16,16,16), t2i.pixels (1,256,256,3) u8
    edit.*: the same plus edit.pixel_values (16,1176), edit.image_grid_thw (1,3) i64
  grads.safetensors                 d loss / d p for every trainable floating parameter (checkpoint names, no vae_local,
                                    no buffers); zeros where no gradient flows
  reference.json                    texts, rendered prompts, ids, hyper-parameters (BSC flip probabilities), notes
  t2i.png, edit.png                 the generated pixels (RGB)
"""
import json
import math
import os
import shutil
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bsq_vae_reference as V  # noqa: E402
import infinity_reference as R  # noqa: E402
import vargpt_reference as VG  # noqa: E402

ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "tests", "fixtures", "vargpt_tiny")
CHAT_TINY = os.path.join(ROOT, "tests", "fixtures", "chat_tiny")
MAX_BYTES = 2_000_000
IDS = VG.IDS
SIDES = VG.SIDES_256
L_TOK = sum(h * w for h, w in SIDES)  # 521
N_GEN_PAD = VG.padded_len(L_TOK)  # 640
MIN_PIXELS, MAX_PIXELS = 28 * 28, 28 * 28 * 6
CFG, TAU, TOP_P = 3.0, 0.5, 0.97
SYSTEM = "You are a helpful assistant."
LLM = dict(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
           num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=1e6, max_position_embeddings=4096)
VISION = dict(depth=2, embed_dim=32, mlp_ratio=4, num_heads=4, in_chans=3, hidden_size=64, patch_size=14,
              spatial_merge_size=2, temporal_patch_size=2)
GEN_TOKENS = {"image_gen_start": "<|image_gen_start|>", "image_gen_start_token_id": 288,
              "image_gen_end": "<|image_gen_end|>", "image_gen_end_token_id": 289,
              "image_gen_pad": "<|image_gen_pad|>", "image_gen_pad_token_id": 290}


# ---- text -----------------------------------------------------------------------------------------
def render(user, assistant_prefix="", assistant_full=None):
    s = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    if assistant_full is not None:
        return s + assistant_full + "<|im_end|>\n"
    return s + assistant_prefix


def img_tokens(n):
    return "<|vision_start|>" + "<|image_pad|>" * n + "<|vision_end|>"


def image_gen_span():
    return "<|image_gen_start|>" + "<|image_gen_pad|>" * N_GEN_PAD + "<|image_gen_end|>"


def write_tokenizer():
    j = json.load(open(os.path.join(CHAT_TINY, "tokenizer.json")))
    base = dict(j["added_tokens"][0])
    for k, name in enumerate(["<|image_gen_start|>", "<|image_gen_end|>", "<|image_gen_pad|>"]):
        j["added_tokens"].append(dict(base, id=288 + k, content=name))
    path = os.path.join(OUT, "tokenizer.json")
    with open(path, "w") as f:
        json.dump(j, f, ensure_ascii=False)
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(path)
    for name, i in [("<|endoftext|>", 280), ("<|image_gen_start|>", 288), ("<|image_gen_end|>", 289),
                    ("<|image_gen_pad|>", 290)]:
        assert tok.token_to_id(name) == i
    return tok


def encode(tok, text):
    return tok.encode(text, add_special_tokens=False).ids


# ---- images -----------------------------------------------------------------------------------------
def source_image():
    """64x60 RGB: gradient, a disc, a bar, noise (smart_resize -> 56x56 -> grid 1x4x4)."""
    rng = np.random.default_rng(7)
    h, w = 60, 64
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([255 * x / (w - 1), 255 * y / (h - 1), 128 + 90 * np.sin((x - y) / 6)], -1)
    img[(y - 25) ** 2 + (x - 35) ** 2 < 15 ** 2] = [220, 60, 40]
    img[40:50, 8:30] = [30, 60, 200]
    img += rng.normal(0, 10, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def target_image(kind):
    """Smooth 256x256 pictures (u8): 0 = red circle above a blue square; 1 = soft watercolour blobs."""
    n = 256
    y, x = np.mgrid[0:n, 0:n].astype(np.float64) / (n - 1)
    if kind == 0:
        img = np.stack([0.85 - 0.2 * y, 0.85 - 0.1 * x, 0.7 + 0.2 * y], -1)
        circ = np.clip((0.16 - np.sqrt((x - 0.5) ** 2 + (y - 0.28) ** 2)) / 0.02, 0, 1)[..., None]
        sq = (np.clip((0.17 - np.abs(x - 0.5)) / 0.02, 0, 1) * np.clip((0.17 - np.abs(y - 0.72)) / 0.02, 0, 1))[..., None]
        img = img * (1 - circ) + circ * np.array([0.85, 0.12, 0.1])
        img = img * (1 - sq) + sq * np.array([0.1, 0.2, 0.8])
    else:
        img = np.stack([0.6 + 0.3 * np.sin(5 * x + 2 * y), 0.5 + 0.3 * np.sin(3 * y - 4 * x + 1),
                        0.55 + 0.35 * np.cos(6 * x * y + 0.5)], -1)
        img = img + 0.15 * np.exp(-((x - 0.3) ** 2 + (y - 0.6) ** 2) / 0.02)[..., None] * np.array([1.0, -0.5, -0.5])
    return np.clip(np.rint(255 * img), 0, 255).astype(np.uint8)


def u8_to_image(u8):
    """(B, H, W, 3) u8 -> (B, 3, H, W) f32 in [-1, 1]: u8/255*2-1."""
    return (u8.float() / 255 * 2 - 1).permute(0, 3, 1, 2).contiguous()


def processor():
    from transformers import Qwen2VLImageProcessor
    return Qwen2VLImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)


# ---- model --------------------------------------------------------------------------------------------
def build_model():
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration
    vis = dict(VISION)
    vis["in_channels"] = vis.pop("in_chans")
    hcfg = Qwen2VLConfig(**LLM, tie_word_embeddings=False, rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
                         vision_config=vis, image_token_id=IDS["image_pad"], video_token_id=IDS["video_pad"],
                         vision_start_token_id=IDS["vision_start"], vision_end_token_id=IDS["vision_end"],
                         vision_token_id=IDS["vision_pad"], bos_token_id=280, eos_token_id=282, pad_token_id=280,
                         attention_dropout=0.0, attn_implementation="eager")
    torch.manual_seed(0)
    hf = Qwen2VLForConditionalGeneration(hcfg).float().eval()
    # HF builds embed_tokens with padding_idx = pad_token_id (280), which zeroes that row's gradient. The
    # reference gives the plain gradient of the loss (the row is an ordinary input embedding of the padding).
    hf.model.embed_tokens.padding_idx = None
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # non-trivial norms and biases; weights ~ 1/sqrt(fan_in) so activations are O(1)
        for name, p in hf.named_parameters():
            if p.dim() == 1 and ("norm" in name or name.endswith("ln_q.weight")):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif name == "model.embed_tokens.weight":
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel()))
    gcfg = R.config(depth=2, C=64, heads=4, d=16, Ctext=64, maxlen=128, block_chunks=2)
    gen = R.random_weights(gcfg, torch.Generator().manual_seed(2))
    vcfg = V.config(32, (1, 1, 1, 1, 1), 1, 16)
    vae = V.random_weights(vcfg, torch.Generator().manual_seed(3))
    glue = VG.random_glue(64, 64, IDS["gen_start"], torch.Generator().manual_seed(4))
    return VG.Model(hf, gen, gcfg, vae, vcfg, glue), hcfg


def config_json():
    c = {"architectures": ["VARGPTQwen2VLForConditionalGeneration"], "model_type": "vargpt_qwen2_vl",
         "hidden_act": "silu", **LLM, "tie_word_embeddings": False, "attention_dropout": 0.0,
         "rope_scaling": {"type": "default", "rope_type": "default", "mrope_section": [2, 3, 3]},
         "image_token_id": IDS["image_pad"], "video_token_id": IDS["video_pad"],
         "vision_start_token_id": IDS["vision_start"], "vision_end_token_id": IDS["vision_end"],
         "vision_token_id": IDS["vision_pad"], "bos_token_id": 280, "eos_token_id": 282, "pad_token_id": 280,
         "torch_dtype": "float32", "use_cache": True, "use_sliding_window": False, "sliding_window": 4096,
         "max_window_layers": 2, "transformers_version": "4.46.3",
         "vision_config": dict(VISION, hidden_act="quick_gelu"), "special_tokens": GEN_TOKENS}
    return c


def write_checkpoint(m):
    sd = m.state_dict()
    shard2 = {k: v for k, v in sd.items() if k.startswith("vae_local.")}
    shard1 = {k: v for k, v in sd.items() if k not in shard2}
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    weight_map, total = {}, 0
    for name, part in zip(names, (shard1, shard2)):
        save_file(part, os.path.join(OUT, name), metadata={"format": "pt"})
        for k, v in part.items():
            weight_map[k] = name
            total += v.numel() * v.element_size()
    with open(os.path.join(OUT, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
    return sd


# ---- cases --------------------------------------------------------------------------------------------
def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)  # byte-identical outputs (multi-threaded CPU backward accumulates in varying order)
    tok = write_tokenizer()
    m, hcfg = build_model()
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(config_json(), f, indent=2)
    pre = json.load(open(os.path.join(CHAT_TINY, "preprocessor_config.json")))
    pre.update(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    with open(os.path.join(OUT, "preprocessor_config.json"), "w") as f:
        json.dump(pre, f, indent=2)
    sd = write_checkpoint(m)

    # source image -> ViT inputs (through the saved PNG, as an application would read it)
    src_path = os.path.join(OUT, "edit_source.png")
    Image.fromarray(source_image()).save(src_path)
    px = processor()(images=[Image.open(src_path).convert("RGB")], return_tensors="pt")
    pixel_values, grid = px["pixel_values"].float().contiguous(), px["image_grid_thw"].long().contiguous()
    assert grid.tolist() == [[1, 4, 4]], grid
    n_img = int(grid.prod()) // 4
    ref, meta = {}, {"hyper": {"cfg": CFG, "tau": TAU, "top_p": TOP_P, "lambda_image_loss": 3.0,
                               "scales": [list(s) for s in SIDES], "rope_grid": list(VG.GRID_1M),
                               "image_gen_pad_count": N_GEN_PAD, "image_tokens_per_source": n_img,
                               "min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS, "system": SYSTEM,
                               "bsc_flip_probabilities": None}, "ids": IDS}

    # ---- training case ------------------------------------------------------------------------------
    u0 = "Please create a painting of a red circle above a blue square."
    a0 = "Here's a rendered painting of a red circle above a blue square." + image_gen_span()
    u1 = "Transform this image " + img_tokens(n_img) + " to match the style of a watercolor"
    a1 = "The output image is: " + image_gen_span()
    texts = [render(u0, assistant_full=a0), render(u1, assistant_full=a1)]
    seqs = [encode(tok, t) for t in texts]
    for s in seqs:
        assert s.count(IDS["gen_pad"]) == N_GEN_PAD and s.count(IDS["gen_start"]) == 1
    T = max(len(s) for s in seqs)
    input_ids = torch.full((2, T), IDS["pad"], dtype=torch.int64)
    attention_mask = torch.zeros(2, T, dtype=torch.int64)
    for b, s in enumerate(seqs):
        input_ids[b, :len(s)] = torch.tensor(s)
        attention_mask[b, :len(s)] = 1
    targets_u8 = torch.from_numpy(np.stack([target_image(0), target_image(1)]))
    with torch.no_grad():
        latent = V.encode(m.vae, m.vcfg, u8_to_image(targets_u8))
    g = torch.Generator().manual_seed(5)
    flips, probs = [], []
    for h, w in SIDES:
        p = torch.randint(0, 31, (1,), generator=g).item() * 0.01
        probs.append(p)
        flips.append(torch.rand(2, h, w, 16, generator=g) < p)
    meta["hyper"]["bsc_flip_probabilities"] = probs
    inputs, labels = R.self_correction(latent, SIDES, flips)
    params = m.trainable()
    for p in params.values():
        p.requires_grad_(True)
        p.grad = None
    out = VG.train_forward(m, input_ids, attention_mask, inputs, labels, pixel_values, grid)
    out["loss"].backward()
    grads = {n: (p.grad if p.grad is not None else torch.zeros_like(p)).detach().contiguous()
             for n, p in params.items()}
    for p in params.values():
        p.requires_grad_(False)
    pos = (input_ids != IDS["gen_pad"]).nonzero()
    ref.update({"train.input_ids": input_ids, "train.attention_mask": attention_mask,
                "train.pixel_values": pixel_values, "train.image_grid_thw": grid,
                "train.target_image": targets_u8.contiguous(), "train.latent": latent.contiguous(),
                "train.labels": labels.to(torch.uint8).contiguous(), "train.inputs": inputs.contiguous(),
                "train.text_logit_positions": pos.contiguous(),
                "train.text_logits_rows": out["text_logits"][pos[:, 0], pos[:, 1]].detach().contiguous(),
                "train.gen_logits": out["gen_logits"].detach().contiguous(),
                "train.text_loss": out["text_loss"].detach().reshape(()),
                "train.image_loss": out["image_loss"].detach().reshape(()),
                "train.loss": out["loss"].detach().reshape(()),
                "train.memory_len": torch.tensor([x.shape[0] for x in out["memory"]], dtype=torch.int64)})
    for k, f in enumerate(flips):
        ref[f"train.flip_mask.{k}"] = f.to(torch.uint8).contiguous()
    meta["train"] = {"user": [u0, u1.replace(img_tokens(n_img), "<image>")],
                     "assistant": ["Here's a rendered painting of a red circle above a blue square.<image_gen>",
                                   "The output image is: <image_gen>"],
                     "rendered": texts, "lengths": [len(s) for s in seqs], "T": T,
                     "text_loss": out["text_loss"].item(), "image_loss": out["image_loss"].item(),
                     "loss": out["loss"].item()}
    print(f"train: T {T}, lengths {[len(s) for s in seqs]}, text {out['text_loss'].item():.5f} "
          f"image {out['image_loss'].item():.5f} loss {out['loss'].item():.5f}, flips p {probs}")

    # ---- generation cases ----------------------------------------------------------------------------
    cases = {
        "t2i": dict(user="Please create a painting of a red circle.", prefix="Here's a painting.<|image_gen_start|>",
                    pv=None, grid=None, seed=6),
        "edit": dict(user="Transform this image " + img_tokens(n_img) + " to match the style of a watercolor",
                     prefix="The output image is: <|image_gen_start|>", pv=pixel_values, grid=grid, seed=7),
    }
    gen_out = {}
    for name, c in cases.items():
        text = render(c["user"], c["prefix"])
        ids = torch.tensor([encode(tok, text)])
        gu = torch.Generator().manual_seed(c["seed"])
        uniform = torch.rand(1, L_TOK, 16, generator=gu)
        r = VG.generate(m, ids, uniform, CFG, TAU, TOP_P, c["pv"], c["grid"], redraw=(2e-3, gu))
        gen_out[name] = (ids, r, c)
        ref[f"{name}.input_ids"] = ids
        ref[f"{name}.position_ids"] = r["position_ids"].long().contiguous()
        ref[f"{name}.uniform"] = uniform.contiguous()
        for k, (b, l) in enumerate(zip(r["bits"], r["logits"])):
            ref[f"{name}.bits.{k}"] = b.to(torch.uint8).contiguous()
            ref[f"{name}.logits.{k}"] = l.contiguous()
        ref[f"{name}.memory"] = r["memory"].contiguous()
        ref[f"{name}.latent"] = r["latent"].contiguous()
        ref[f"{name}.pixels"] = r["pixels"].contiguous()
        if c["pv"] is not None:
            ref[f"{name}.pixel_values"], ref[f"{name}.image_grid_thw"] = c["pv"].clone(), c["grid"].clone()
        Image.fromarray(r["pixels"][0].numpy()).save(os.path.join(OUT, f"{name}.png"))
        l_all = torch.cat([l[0] for l in r["logits"]])
        z = l_all.view(-1, 16, 2)
        p1 = torch.sigmoid(z[..., 1] - z[..., 0])
        stoch = (torch.minimum(p1, 1 - p1) > 0.03).float().mean().item()
        ones = torch.cat([b.reshape(-1) for b in r["bits"]]).float().mean().item()
        meta[name] = {"user": c["user"].replace(img_tokens(n_img), "<image>"), "rendered": text,
                      "ids": ids[0].tolist(), "T": ids.shape[1], "memory_len": r["memory"].shape[0],
                      "uniform_seed": c["seed"], "uniforms_redrawn": r["n_redrawn"],
                      "fraction_stochastic_bits": stoch, "fraction_one_bits": ones}
        print(f"{name}: T {ids.shape[1]}, memory {r['memory'].shape[0]} rows, stochastic bits {stoch:.3f}, "
              f"ones {ones:.3f}, redrawn uniforms {r['n_redrawn']}, pixels mean {r['pixels'].float().mean():.1f} "
              f"std {r['pixels'].float().std():.1f}, position_ids max {int(r['position_ids'].max())}")
    meta["train"]["ids"] = input_ids.tolist()
    meta["notes"] = [
        "image = u8/255*2-1 in f32, NCHW, for train.target_image",
        "training LLM: positions 0..T-1 on all 3 M-RoPE axes; causal mask AND attention_mask on keys (a padding "
        "query sees the real keys before it, not itself); text CE counts every non-<|image_gen_pad|> target, "
        "padding included (Q8)",
        "grads: plain gradient of train.loss; HF's embed_tokens padding_idx (= pad_token_id 280, which would zero "
        "row 280's gradient) was disabled; zeros where no gradient flows (ln_q, cfg_uncond, text_proj_for_ca, "
        "text_proj_for_sos.ca.mat_q: softmax over one key)",
        "generation: uniforms within 2e-3 of a decision boundary were redrawn before storing (see "
        "vargpt_reference.generate), so bits are robust to f32 rounding; pixels are truncated and may differ by 1 "
        "level from another implementation",
        "generation prefill covers the whole prompt including <|image_gen_start|> with get_rope_index positions; "
        "memory = image_gen_projector_out of the first T-1 final hidden states",
    ]
    meta["train"]["lengths"] = [len(s) for s in seqs]

    # ---- files ----------------------------------------------------------------------------------------
    save_file(ref, os.path.join(OUT, "reference.safetensors"))
    gpath = os.path.join(OUT, "grads.safetensors")
    save_file(grads, gpath)
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(meta, f, indent=1, ensure_ascii=False)
    sizes = {f: os.path.getsize(os.path.join(OUT, f)) for f in sorted(os.listdir(OUT))}
    for f, s in sizes.items():
        print(f"  {f}: {s} bytes")
        assert s < MAX_BYTES, f"{f} is {s} bytes (limit {MAX_BYTES})"

    # ---- sanity checks ----------------------------------------------------------------------------------
    sanity(m, gen_out, tok)


def sanity(m, gen_out, tok):
    """(1) KV-cached per-scale loop at cfg 1 == block-causal teacher-forced pass on the same sampled bits
    (t2i, whose prefill positions are sequential). (2) Tokenizer round trip of the rendered prompts."""
    ids, r, c = gen_out["t2i"]
    g = torch.Generator().manual_seed(11)
    uniform = torch.rand(1, L_TOK, 16, generator=g)
    r1 = VG.generate(m, ids, uniform, cfg=1.0, tau=1.0, top_p=TOP_P)
    inputs = VG.teacher_inputs_from_bits(r1["bits"], 16, SIDES[-1])
    seq = torch.cat([ids, torch.full((1, N_GEN_PAD), IDS["gen_pad"]), torch.tensor([[IDS["gen_end"]]])], 1)
    labels = torch.cat([b.reshape(1, -1, 16) for b in r1["bits"]], 1)
    with torch.no_grad():
        tf = VG.train_forward(m, seq, torch.ones_like(seq), inputs, labels)
    cached = torch.cat(r1["logits"], 1)
    err = (tf["gen_logits"] - cached).abs().max().item()
    merr = (tf["memory"][0] - r1["memory"]).abs().max().item()
    print(f"sanity: cached loop vs teacher-forced logits max |diff| {err:.2e} (scale {cached.abs().max():.2f}), "
          f"memory {merr:.2e}")
    assert err < 1e-4 and merr < 1e-5
    for name in ("t2i", "edit"):
        ids_, r_, c_ = gen_out[name]
        assert tok.decode(ids_[0].tolist(), skip_special_tokens=False) == render(c_["user"], c_["prefix"])


if __name__ == "__main__":
    main()
