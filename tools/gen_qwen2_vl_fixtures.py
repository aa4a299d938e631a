#!/usr/bin/env python3
"""Writes the Qwen2-VL fixtures read by tests/test_qwen2_vl_vision.cpp (and the LLM / assembly tests).

(a) tests/fixtures/qwen2_vl/  preprocessing, against transformers' PIL image processor
    (Qwen2VLImageProcessorPil, the "slow" processor) with min_pixels 3136, max_pixels 6272:
      img0.png .. img4.png      small synthetic RGB images (gradients + shapes + noise); img4 is RGBA
      preprocess.safetensors    for each image i:
        img{i}.resized   (h, w, 3) uint8  PIL Image.resize((w, h), BICUBIC) of the RGB image
        img{i}.pixels    (N_i, 1176) f32  the processor's pixel_values for that image alone
        img{i}.grid      (3) int64        its image_grid_thw row
        all.grid   (5, 3) int64        one processor call on all five images (its pixel_values are the
                                        per-image ones concatenated, asserted here)
      preprocess.json           {"min_pixels", "max_pixels", "images": [{"file", "height", "width",
                                  "resized_height", "resized_width"}]} and smart_resize cases
                                  [{"h", "w", "min", "max", "out": [h, w] or "error"}]

(b) tests/fixtures/qwen2_vl_tiny/  a tiny random Qwen2VLForConditionalGeneration, saved with the hub tensor
    names (visual.*, model.embed_tokens.weight, model.layers.*, model.norm.weight, lm_head.weight), f32:
      config.json, model.safetensors     (save_pretrained, keys renamed to the hub form when needed)
      reference.safetensors:
        pixel_values   (40, 1176) f32   pixel values of img3 (grid 1x4x4) then img0 (grid 1x4x6)
        image_grid_thw (2, 3) int64     [[1, 4, 4], [1, 4, 6]]
        vision.out     (10, 64) f32     model.visual(pixel_values, image_grid_thw) merged output (pooler_output)
        vision.hidden  (40, 32) f32     the last block's output before the merger
        input_ids      (1, T) int64     text, <vision_start> <image_pad> x4 <vision_end>, text,
                                         <vision_start> <image_pad> x6 <vision_end>, text
        logits         (1, T, 300) f32  full model forward on input_ids (no cache)
        position_ids   (3, 1, T) int64  get_rope_index; rope_deltas (1, 1) int64
        generated      (1, 32) int64    model.generate(do_sample=False, max_new_tokens=32), new tokens only;
                                         eos_token_id is None so exactly 32 tokens are produced
      Token ids: image_token_id 290, video_token_id 291, vision_start 292, vision_end 293, vision_token 294.

    pip install torch transformers "pillow<13" safetensors && python3 tools/gen_qwen2_vl_fixtures.py

Pillow is pinned below 13 (fixtures written with 12.2.0): up to 12.x ImagingResample always runs the
horizontal pass first; 13.0 picks the pass order by a size heuristic, which changes some pixels by a
few levels when an image shrinks vertically (e.g. img3, 70x42 -> 56x56).
"""
import json
import math
import os

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
PRE = os.path.join(HERE, "..", "tests", "fixtures", "qwen2_vl")
TINY = os.path.join(HERE, "..", "tests", "fixtures", "qwen2_vl_tiny")
MIN_PIXELS, MAX_PIXELS = 56 * 56, 28 * 28 * 8


def synthetic(h, w, seed, alpha=False):
    """Gradient background, a disc, a rectangle, a diagonal stripe and noise: real-looking edges."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([255 * x / max(w - 1, 1), 255 * y / max(h - 1, 1), 128 + 100 * np.sin((x + y) / 7)], -1)
    cy, cx, r = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w, 0.25 * min(h, w)
    img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.integers(0, 256, 3)
    y0, x0 = int(0.1 * h), int(0.6 * w)
    img[y0:y0 + h // 4, x0:x0 + w // 5] = rng.integers(0, 256, 3)
    img[np.abs(x - 1.3 * y - 5) < 2] = [250, 250, 20]
    img += rng.normal(0, 12, img.shape)
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    if alpha:
        a = np.clip(255 * (0.2 + x / w), 0, 255).astype(np.uint8)[..., None]
        a[: h // 3] = 255
        a[h // 3: h // 3 + 3] = 0
        img = np.concatenate([img, a], -1)
    return img


# (h, w): mild resize; a 2.4x downscale (max_pixels clamp); an upscale (min_pixels clamp);
# round-half-to-even (70/28 = 2.5 -> 2, 42/28 = 1.5 -> 2); an RGBA image composited on white.
SIZES = [(50, 90), (200, 150), (30, 40), (70, 42), (60, 33)]


def smart_resize_ref(h, w, factor=28, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS):
    """transformers 4.46 smart_resize (VARGPT's copy): errors for sides < factor and aspect > 200."""
    if h < factor or w < factor:
        raise ValueError("too small")
    if max(h, w) / min(h, w) > 200:
        raise ValueError("aspect")
    hb, wb = round(h / factor) * factor, round(w / factor) * factor
    if hb * wb > max_pixels:
        beta = math.sqrt(h * w / max_pixels)
        hb, wb = max(factor, math.floor(h / beta / factor) * factor), max(factor, math.floor(w / beta / factor) * factor)
    elif hb * wb < min_pixels:
        beta = math.sqrt(min_pixels / (h * w))
        hb, wb = math.ceil(h * beta / factor) * factor, math.ceil(w * beta / factor) * factor
    return hb, wb


def processor():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    return Qwen2VLImageProcessorPil(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)


def to_rgb(pil):
    if pil.mode == "RGBA":  # transformers' convert_to_rgb: alpha composite onto white
        bg = Image.new("RGBA", pil.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, pil).convert("RGB")
    return pil.convert("RGB")


def preprocessing():
    import PIL
    assert int(PIL.__version__.split(".")[0]) < 13, f"Pillow {PIL.__version__}: install pillow<13 (see the docstring)"
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as hf_smart_resize
    os.makedirs(PRE, exist_ok=True)
    proc = processor()
    tensors, meta = {}, {"min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS, "images": []}
    pils = []
    for i, (h, w) in enumerate(SIZES):
        arr = synthetic(h, w, seed=10 + i, alpha=(i == 4))
        path = os.path.join(PRE, f"img{i}.png")
        Image.fromarray(arr).save(path, optimize=True)
        pil = Image.open(path)
        pil.load()
        pils.append(pil)
        rh, rw = smart_resize_ref(h, w)
        resized = np.asarray(to_rgb(pil).resize((rw, rh), Image.BICUBIC))
        out = proc(images=[pil], return_tensors="pt")
        assert tuple(out["image_grid_thw"][0].tolist()) == (1, rh // 14, rw // 14), (out["image_grid_thw"], rh, rw)
        tensors[f"img{i}.resized"] = torch.from_numpy(resized.copy())
        tensors[f"img{i}.pixels"] = out["pixel_values"].float().contiguous()
        tensors[f"img{i}.grid"] = out["image_grid_thw"][0].long().contiguous()
        meta["images"].append({"file": f"img{i}.png", "height": h, "width": w, "resized_height": rh,
                               "resized_width": rw})
    out = proc(images=pils, return_tensors="pt")
    # several images = the per-image rows concatenated (checked here, so the fixture keeps only the grid)
    assert torch.equal(out["pixel_values"].float(), torch.cat([tensors[f"img{i}.pixels"] for i in range(len(SIZES))]))
    tensors["all.grid"] = out["image_grid_thw"].long().contiguous()
    cases = []
    for (h, w, mn, mx) in [(512, 512, 3136, 12845056), (1000, 750, 3136, 12845056), (70, 42, 3136, 6272),
                           (42, 70, 3136, 6272), (98, 154, 3136, 12845056), (126, 126, 3136, 12845056),
                           (30, 40, 3136, 6272), (200, 150, 3136, 6272), (28, 28, 3136, 1003520),
                           (4000, 3000, 3136, 1003520), (28, 5000, 3136, 12845056), (28, 5600, 3136, 12845056),
                           (28, 5601, 3136, 12845056), (27, 100, 3136, 12845056), (100, 20, 3136, 12845056),
                           (1080, 1920, 3136, 3211264), (14 * 3, 14 * 5, 56 * 56, 28 * 28 * 1280)]:
        try:
            o = list(smart_resize_ref(h, w, 28, mn, mx))
            assert o == list(hf_smart_resize(h, w, 28, mn, mx)), (h, w, o)
        except ValueError:
            o = "error"
        cases.append({"h": h, "w": w, "min": mn, "max": mx, "out": o})
    meta["smart_resize"] = cases
    save_file(tensors, os.path.join(PRE, "preprocess.safetensors"))
    with open(os.path.join(PRE, "preprocess.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return tensors


# ---- (b) the tiny model --------------------------------------------------------------------------
IMAGE, VIDEO, VSTART, VEND, VTOKEN = 290, 291, 292, 293, 294


def tiny_model():
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration
    cfg = Qwen2VLConfig(
        text_config=dict(vocab_size=300, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=128, rms_norm_eps=1e-6,
                         max_position_embeddings=512, tie_word_embeddings=False,
                         rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
                         rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}, rope_theta=1e6,
                         eos_token_id=None, bos_token_id=None, pad_token_id=0),
        vision_config=dict(depth=2, embed_dim=32, num_heads=4, mlp_ratio=4, hidden_size=64, in_channels=3,
                           patch_size=14, temporal_patch_size=2, spatial_merge_size=2),
        image_token_id=IMAGE, video_token_id=VIDEO, vision_start_token_id=VSTART, vision_end_token_id=VEND,
        vision_token_id=VTOKEN, tie_word_embeddings=False, eos_token_id=None, bos_token_id=None, pad_token_id=0)
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(cfg).float().eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # non-trivial norms and biases; weights large enough to matter
        for name, p in model.named_parameters():
            if p.dim() == 1 and "norm" in name or name.endswith("ln_q.weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))
    return model


def hub_name(k):
    for a, b in [("model.visual.", "visual."), ("model.language_model.", "model.")]:
        if k.startswith(a):
            return b + k[len(a):]
    return k


def full_model(pre):
    os.makedirs(TINY, exist_ok=True)
    model = tiny_model()
    model.save_pretrained(TINY, safe_serialization=True)
    path = os.path.join(TINY, "model.safetensors")
    sd = {hub_name(k): v.contiguous() for k, v in load_file(path).items()}
    assert "visual.patch_embed.proj.weight" in sd and "model.embed_tokens.weight" in sd and "lm_head.weight" in sd, sorted(sd)
    save_file(sd, path, metadata={"format": "pt"})
    pixels = torch.cat([pre["img3.pixels"], pre["img0.pixels"]])
    grid = torch.stack([pre["img3.grid"], pre["img0.grid"]])
    ref = {}
    with torch.no_grad():
        vo = model.model.visual(pixels, grid_thw=grid)
        ref["vision.out"] = vo.pooler_output.contiguous()
        ref["vision.hidden"] = vo.last_hidden_state.contiguous()
        n = [int(t * h * w) // 4 for t, h, w in grid.tolist()]
        ids = [5, 17, 42, VSTART] + [IMAGE] * n[0] + [VEND, 7, 99, 100, 3, VSTART] + [IMAGE] * n[1] + [VEND, 11, 12, 250]
        input_ids = torch.tensor([ids])
        mm = (input_ids == IMAGE).int()
        pos, deltas = model.model.get_rope_index(input_ids, mm, image_grid_thw=grid)
        logits = model(input_ids=input_ids, pixel_values=pixels, image_grid_thw=grid, mm_token_type_ids=mm).logits
        gen = model.generate(input_ids=input_ids, pixel_values=pixels, image_grid_thw=grid, mm_token_type_ids=mm,
                             do_sample=False,
                             max_new_tokens=32, eos_token_id=None, pad_token_id=0)
    ref.update({"input_ids": input_ids, "pixel_values": pixels.contiguous(), "image_grid_thw": grid.contiguous(),
                "logits": logits.float().contiguous(), "position_ids": pos.long().contiguous(),
                "rope_deltas": deltas.long().reshape(1, 1).contiguous(),
                "generated": gen[:, input_ids.shape[1]:].long().contiguous()})
    assert ref["generated"].shape == (1, 32), ref["generated"].shape
    save_file(ref, os.path.join(TINY, "reference.safetensors"))


if __name__ == "__main__":
    pre = preprocessing()
    full_model(pre)
    for d in (PRE, TINY):
        for f in sorted(os.listdir(d)):
            print(f"{os.path.join(d, f)}: {os.path.getsize(os.path.join(d, f))} bytes")
