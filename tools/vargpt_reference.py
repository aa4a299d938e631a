#!/usr/bin/env python3
"""A PyTorch reference of VARGPT-v1.1 (Qwen2-VL + Infinity + BSQ-VAE glue), written from
shared/spec/vargpt.md §3-§7, §10, §11, §15 (not from upstream code), f32 throughout.

The LLM and ViT are transformers' Qwen2VLForConditionalGeneration (eager attention); the Infinity
transformer pieces come from tools/infinity_reference.py, the VAE from tools/bsq_vae_reference.py.
Everything else (projectors, SOS, per-scale loop, losses) is written here. Used by
tools/gen_vargpt_fixtures.py.

Model container `Model` holds:
    hf        Qwen2VLForConditionalGeneration: params visual.*, model.*, lm_head.weight
    gen       dict of Infinity tensors (names of infinity_reference.weight_specs; `vargpt_gen.` in the ckpt)
    vae       dict of BSQ-VAE tensors (wrapped names; `vae_local.` in the checkpoint), frozen
    glue      dict: image_gen_projector.*, image_gen_projector_out.*, sos_embedding.weight
    state_dict() -> flat checkpoint dict (+ buffers vae_local.quantizer.lfq.mask and the zero_k_bias)

Data flow (spec section in brackets):
  GenPatchMerger [§4.1]       proj(x) = W2 GELU_erf(W1 x + b1) + b2     (ln_q never applied)
  SOS [§4.2]                  cond_BD   = text_proj_for_sos(text_norm(sos_embedding[gen_start]))  (1 row)
                              cond_BD_u = same on cfg_uncond[0:1]
  training [§10, §11]         f = VAE.encode(img); (inputs, labels) = BSC(f, flip masks)
                              x_BLC = [cond_BD + pos_start ; word_embed(inputs)] (521) -> pad 640 -> proj_in
                              -> replaces embeddings at the <|image_gen_pad|> slots; ViT rows fill <|image_pad|>
                              LLM (positions 0..T-1 on all 3 M-RoPE axes, causal + padding mask) -> H
                              X = proj_out(H[gen pads][:521]) + lvl_embed[scale]; memory_b = proj_out(H[b,:start_b])
                              Infinity blocks (block-causal, 2-D RoPE, AdaLN from cond_BD) -> head -> gen_logits
                              loss = CE_text(lm_head(H)[:, :-1], ids[:, 1:] with gen pads -100) + 3 * bit CE mean
  generation [§5-§7]          prefill prompt (ends with <|image_gen_start|>) with M-RoPE positions -> KV cache, H
                              memory = proj_out(H[:T-1]); uncond memory = cfg_uncond[:L]
                              per scale k: E_c/E_u (k=0: proj_in(cond_BD{,_u} + pos_start); else proj_in(word_embed(X_k)))
                                H_c = LLM(E_c, cache, positions = cache_len + arange(n_k) on 3 axes)
                                H_u = LLM(E_u, no cache, positions arange(n_k))
                                x = proj_out([H_c; H_u]) + lvl_embed[k] -> Infinity blocks (per-block KV cache)
                                l = head(head_nm(x, cond_BD_row)) / tau; l = cfg l_c + (1 - cfg) l_u
                                bits (threshold sampler with given uniforms) -> codes -> S += up(codes)
                                X_{k+1} = bilinear(S -> next side)
                              image = clamp(VAE.decode(S), -1, 1); pixels = uint8 trunc((img+1)/2*255)
"""
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bsq_vae_reference as V  # noqa: E402
import infinity_reference as R  # noqa: E402

IDS = dict(pad=280, im_start=281, im_end=282, vision_start=283, vision_end=284, vision_pad=285, image_pad=286,
           video_pad=287, gen_start=288, gen_end=289, gen_pad=290)
SIDES_256 = [(s, s) for s in (1, 2, 4, 6, 8, 12, 16)]  # 0.06M 1:1 schedule: 521 tokens, padded to 640
GRID_1M = (64, 64)  # RoPE grid: the last scale of the 1M 1:1 template (Q20)
PAD_MULT = 128


def padded_len(n):
    return (n + PAD_MULT - 1) // PAD_MULT * PAD_MULT


# ---- glue weights ---------------------------------------------------------------------------------
def glue_specs(C_inf, C_llm, gen_start_id):
    """image_gen_projector: C_inf -> C_inf -> C_llm; image_gen_projector_out: C_llm -> C_llm -> C_inf."""
    s = {}
    for name, cin, cout in (("image_gen_projector", C_inf, C_llm), ("image_gen_projector_out", C_llm, C_inf)):
        s[name + ".mlp.0.weight"] = (cin, cin)
        s[name + ".mlp.0.bias"] = (cin,)
        s[name + ".mlp.2.weight"] = (cout, cin)
        s[name + ".mlp.2.bias"] = (cout,)
        s[name + ".ln_q.weight"] = (cin,)
        s[name + ".ln_q.bias"] = (cin,)
    s["sos_embedding.weight"] = (gen_start_id + 1, C_inf)
    return s


def random_glue(C_inf, C_llm, gen_start_id, g):
    w = {}
    for name, shape in glue_specs(C_inf, C_llm, gen_start_id).items():
        if name.endswith("ln_q.weight"):
            w[name] = 1 + 0.1 * torch.randn(shape, generator=g)
        elif name.startswith("sos_embedding"):
            w[name] = torch.randn(shape, generator=g)
        elif len(shape) == 1:
            w[name] = 0.1 * torch.randn(shape, generator=g)
        else:
            w[name] = torch.randn(shape, generator=g) / math.sqrt(shape[1])
    return w


class Model:
    def __init__(self, hf, gen, gcfg, vae, vcfg, glue, ids=IDS):
        self.hf, self.gen, self.gcfg, self.vae, self.vcfg, self.glue, self.ids = hf, gen, gcfg, vae, vcfg, glue, ids

    def trainable(self):
        """checkpoint name -> tensor for every floating parameter that training may update (not vae_local,
        not the zero_k_bias buffers)."""
        out = {n: p for n, p in self.hf.named_parameters()}
        out.update({"vargpt_gen." + n: t for n, t in self.gen.items() if not n.endswith("zero_k_bias")})
        out.update(self.glue)
        return out

    def state_dict(self):
        sd = {n: p.detach() for n, p in self.hf.named_parameters()}
        sd.update({"vargpt_gen." + n: t.detach() for n, t in self.gen.items()})
        sd.update({"vae_local." + n: t.detach() for n, t in self.vae.items()})
        d = self.vcfg["d"]
        sd["vae_local.quantizer.lfq.mask"] = 2 ** torch.arange(d - 1, -1, -1, dtype=torch.int64)
        sd.update({n: t.detach() for n, t in self.glue.items()})
        return {k: v.contiguous() for k, v in sd.items()}


def projector(m, name, x):
    g = m.glue
    h = F.linear(x, g[name + ".mlp.0.weight"], g[name + ".mlp.0.bias"])
    return F.linear(F.gelu(h), g[name + ".mlp.2.weight"], g[name + ".mlp.2.bias"])  # exact erf GELU


def sos_conditions(m):
    """cond_BD (1, C) from sos_embedding[gen_start] and cond_BD_u (1, C) from cfg_uncond[0:1] (§4.2)."""
    sos = m.glue["sos_embedding.weight"][m.ids["gen_start"]][None]
    cond = R.condition(m.gen, m.gcfg, sos, [0, 1])[0]
    uncond = R.condition(m.gen, m.gcfg, m.gen["cfg_uncond"][0:1], [0, 1])[0]
    return cond, uncond


# ---- LLM helpers ------------------------------------------------------------------------------------
def text_embeddings(m, input_ids, pixel_values=None, image_grid_thw=None):
    """embed_tokens(ids) with the ViT rows scattered into the <|image_pad|> slots, in order."""
    E = m.hf.model.embed_tokens(input_ids)
    mask = input_ids == m.ids["image_pad"]
    if pixel_values is not None:
        vis = m.hf.visual(pixel_values, grid_thw=image_grid_thw)  # (N, C_llm)
        assert vis.shape[0] == int(mask.sum()), (vis.shape, int(mask.sum()))
        E = E.masked_scatter(mask[..., None].expand_as(E), vis)
    else:
        assert not mask.any()
    return E


def llm(m, embeds, position_ids, attention_mask=None, cache=None):
    """Final-norm hidden states (B, n, C_llm). position_ids (3, B, n)."""
    out = m.hf.model(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids,
                     past_key_values=cache, use_cache=cache is not None, return_dict=True)
    return out.last_hidden_state


def seq_positions(B, start, n):
    return torch.arange(start, start + n).view(1, 1, n).expand(3, B, n)


# ---- Infinity decoder --------------------------------------------------------------------------------
def cond6_of(m, cond_BD):
    C = m.gcfg["C"]
    return F.linear(F.silu(cond_BD), m.gen["shared_ada_lin.1.weight"], m.gen["shared_ada_lin.1.bias"]).view(-1, 1, 6, C)


def head(m, x, cond_BD):
    w, C = m.gen, m.gcfg["C"]
    scale, shift = F.linear(F.silu(cond_BD), w["head_nm.ada_lin.1.weight"], w["head_nm.ada_lin.1.bias"])[:, None].chunk(2, -1)
    h = F.layer_norm(x, (C,), eps=m.gcfg["eps"]) * (1 + scale) + shift
    return F.linear(h, w["head.weight"], w["head.bias"])


def level_ids(sides):
    return torch.cat([torch.full((h * w,), k) for k, (h, w) in enumerate(sides)])


def decoder_teacher(m, x, cond_BD, mem, cu, sides=SIDES_256, grid=GRID_1M):
    """Block-causal Infinity pass over all scales at once: x (B, L, C) (already projected, without
    lvl_embed) -> logits (B, L, 2d)."""
    cfg = m.gcfg
    x = x + m.gen["lvl_embed.weight"][level_ids(sides)]
    cos, sin = R.rope_tables(sides, grid, cfg["C"] // cfg["heads"])
    bias = R.block_causal_bias(R.scale_tokens(sides))
    c6 = cond6_of(m, cond_BD)
    for b in range(cfg["depth"]):
        x = R.block(m.gen, R.block_prefix(cfg, b), cfg, x, c6, cos, sin, bias, mem, cu)
    return head(m, x, cond_BD)


def self_attention_cached(w, p, cfg, x, cos, sin, cache):
    """Cos-attention of the new tokens against cache + themselves (no mask); appends post-RoPE K and V."""
    B, L, C = x.shape
    H = cfg["heads"]
    D = C // H
    qkv = F.linear(x, w[p + "mat_qkv.weight"], torch.cat([w[p + "q_bias"], w[p + "zero_k_bias"], w[p + "v_bias"]]))
    q, k, v = qkv.view(B, L, 3, H, D).permute(2, 0, 3, 1, 4).unbind(0)
    scale = w[p + "scale_mul_1H11"].reshape(1, H, 1, 1).clamp_max(math.log(100)).exp()
    q = R.apply_rope(F.normalize(q, dim=-1) * scale, cos, sin)
    k = R.apply_rope(F.normalize(k, dim=-1), cos, sin)
    if cache.get(p) is not None:
        k = torch.cat([cache[p][0], k], 2)
        v = torch.cat([cache[p][1], v], 2)
    cache[p] = (k, v)
    o = ((q @ k.transpose(-1, -2)).softmax(-1) @ v).transpose(1, 2).reshape(B, L, C)
    return F.linear(o, w[p + "proj.weight"], w[p + "proj.bias"])


def block_cached(w, p, cfg, x, cond6, cos, sin, cache, mem, cu):
    C, eps = cfg["C"], cfg["eps"]
    g1, g2, s1, s2, b1, b2 = (w[p + "ada_gss"] + cond6).unbind(2)
    ln = lambda t: F.layer_norm(t, (C,), eps=eps)
    x = x + g1 * self_attention_cached(w, p + "sa.", cfg, ln(x) * (1 + s1) + b1, cos, sin, cache)
    x = x + R.cross_attention(w, p + "ca.", cfg, F.layer_norm(x, (C,), w[p + "ca_norm.weight"], w[p + "ca_norm.bias"],
                                                              eps), mem, cu)
    h = F.linear(ln(x) * (1 + s2) + b2, w[p + "ffn.fc1.weight"], w[p + "ffn.fc1.bias"])
    h = F.linear(F.gelu(h, approximate="tanh"), w[p + "ffn.fc2.weight"], w[p + "ffn.fc2.bias"])
    return x + g2 * h


# ---- multi-scale codes ---------------------------------------------------------------------------------
def bits_to_codes(bits, d):
    """bits (B, h, w, d) {0,1} -> codes (B, d, h, w) = (2 bit - 1)/sqrt(d)."""
    return ((bits.float() * 2 - 1) / math.sqrt(d)).permute(0, 3, 1, 2)


def accumulate(S, codes):
    full = tuple(codes.shape[-2:]) == tuple(S.shape[-2:])
    return S + (codes if full else F.interpolate(codes, size=S.shape[-2:], mode="bilinear", align_corners=False))


def next_input(S, side):
    """bilinear(S -> side), raster order (B, h*w, d)."""
    x = S if tuple(side) == tuple(S.shape[-2:]) else F.interpolate(S, size=side, mode="bilinear", align_corners=False)
    return x.flatten(2).transpose(1, 2)


def teacher_inputs_from_bits(bits_list, d, full):
    """Inputs of scales 1..K-1 (B, L - 1, d) from sampled bits (no flips): what the inference loop feeds."""
    B = bits_list[0].shape[0]
    S = torch.zeros(B, d, *full)
    xs = []
    for k, bits in enumerate(bits_list[:-1]):
        S = accumulate(S, bits_to_codes(bits, d))
        xs.append(next_input(S, tuple(bits_list[k + 1].shape[1:3])))
    return torch.cat(xs, 1)


# ---- training forward (§10, §11) -----------------------------------------------------------------------
def train_forward(m, input_ids, attention_mask, inputs, labels, pixel_values=None, image_grid_thw=None,
                  sides=SIDES_256, grid=GRID_1M, lambda_img=3.0):
    """input_ids (B, T) with 640 <|image_gen_pad|> per row; inputs (B, L-1, d) teacher inputs; labels (B, L, d).
    Returns dict(text_logits (B, T, V), gen_logits (B, L, 2d), text_loss, image_loss, loss, memory list)."""
    ids = m.ids
    B, T = input_ids.shape
    L = sum(h * w for h, w in sides)
    P = padded_len(L)
    cond_BD, _ = sos_conditions(m)
    cond_BD = cond_BD.expand(B, -1)
    x_BLC = torch.cat([cond_BD[:, None] + m.gen["pos_start"],
                       F.linear(inputs, m.gen["word_embed.weight"], m.gen["word_embed.bias"])], 1)  # (B, L, C)
    x_BLC = F.pad(x_BLC, (0, 0, 0, P - L))
    gen_rows = projector(m, "image_gen_projector", x_BLC)  # (B, P, C_llm); pad rows carry proj(0)
    E = text_embeddings(m, input_ids, pixel_values, image_grid_thw)
    gmask = input_ids == ids["gen_pad"]
    assert (gmask.sum(1) == P).all(), gmask.sum(1)
    E = E.masked_scatter(gmask[..., None].expand_as(E), gen_rows)
    H = llm(m, E, seq_positions(B, 0, T), attention_mask=attention_mask)  # (B, T, C_llm)
    text_logits = m.hf.lm_head(H)
    tl = input_ids.masked_fill(gmask, -100)
    text_loss = F.cross_entropy(text_logits[:, :-1].reshape(-1, text_logits.shape[-1]), tl[:, 1:].reshape(-1),
                                ignore_index=-100)
    H_img = H[gmask].view(B, P, -1)[:, :L]
    X = projector(m, "image_gen_projector_out", H_img)
    mems, cu = [], [0]
    for b in range(B):
        start = int((input_ids[b] == ids["gen_start"]).nonzero()[0])
        mems.append(projector(m, "image_gen_projector_out", H[b, :start]))
        cu.append(cu[-1] + start)
    gen_logits = decoder_teacher(m, X, cond_BD, torch.cat(mems), cu, sides, grid)
    image_loss = F.cross_entropy(gen_logits.reshape(-1, 2), labels.reshape(-1).long())
    loss = text_loss + lambda_img * image_loss
    return dict(text_logits=text_logits, gen_logits=gen_logits, text_loss=text_loss, image_loss=image_loss, loss=loss,
                memory=mems, hidden=H)


# ---- sampling (§7) ----------------------------------------------------------------------------------------
def sample_bits(l, u, top_p):
    """l (n, 2d) guided logits, u (n, d) uniforms -> bits (n, d) bool, p1 before and after top-p (n, d)."""
    n = l.shape[0]
    z = l.view(n, -1, 2)
    p1_raw = torch.sigmoid(z[..., 1] - z[..., 0])
    one_larger = p1_raw > 0.5
    small = torch.where(one_larger, 1 - p1_raw, p1_raw)
    p1 = torch.where(small <= 1 - top_p, one_larger.float(), p1_raw)
    return u < p1, p1_raw, p1


# ---- generation loop (§5, §6) --------------------------------------------------------------------------------
@torch.no_grad()
def generate(m, input_ids, uniform, cfg=3.0, tau=0.5, top_p=0.97, pixel_values=None, image_grid_thw=None,
             sides=SIDES_256, grid=GRID_1M, redraw=None):
    """input_ids (1, T) ending with <|image_gen_start|>; uniform (1, L, d) draws in [0, 1).
    redraw: optional (margin, generator): a uniform closer than margin to p1 (before or after top-p), or whose
    bit would differ between the sampled and the forced reading while min(p0, p1) is within margin of 1 - top_p,
    is redrawn in place (so that f32 rounding elsewhere cannot flip a bit); `uniform` is modified.
    Returns dict(bits [k] (1,h,w,d) bool, logits [k] (1,n_k,2d) guided, memory (L_mem, C), latent S (1,d,H,W),
    image (1,3,H*16,W*16), pixels (1,H,W,3) uint8, position_ids (3,1,T), n_redrawn)."""
    from transformers import DynamicCache
    ids, gcfg = m.ids, m.gcfg
    d, C = gcfg["d"], gcfg["C"]
    assert input_ids.shape[0] == 1 and int(input_ids[0, -1]) == ids["gen_start"]
    T = input_ids.shape[1]
    pos, _ = m.hf.get_rope_index(input_ids, image_grid_thw, None, torch.ones_like(input_ids))
    cache = DynamicCache()
    H = llm(m, text_embeddings(m, input_ids, pixel_values, image_grid_thw), pos, cache=cache)
    mem_c = projector(m, "image_gen_projector_out", H[0, :T - 1])  # excludes the start token (Q5)
    Lm = mem_c.shape[0]
    mem_u = m.gen["cfg_uncond"][:Lm]  # raw rows (Q6, Q7)
    mem, cu = torch.cat([mem_c, mem_u]), [0, Lm, Lm + mem_u.shape[0]]
    cond_c, cond_u = sos_conditions(m)
    cond_BD = torch.cat([cond_c, cond_u])  # (2, C) rows [cond, uncond]
    c6 = cond6_of(m, cond_BD)
    cos_all, sin_all = R.rope_tables(sides, grid, C // gcfg["heads"])
    full = sides[-1]
    S = torch.zeros(1, d, *full)
    icache = {}
    bits_out, logits_out = [], []
    off, n_redrawn = 0, 0
    X_next = None
    for k, (h, w) in enumerate(sides):
        n = h * w
        if k == 0:
            E = projector(m, "image_gen_projector", cond_BD[:, None] + m.gen["pos_start"][0])  # (2, 1, C_llm)
            E_c, E_u = E[0:1], E[1:2]
        else:
            E_c = E_u = projector(m, "image_gen_projector",
                                  F.linear(X_next, m.gen["word_embed.weight"], m.gen["word_embed.bias"]))
        past = cache.get_seq_length()
        H_c = llm(m, E_c, seq_positions(1, past, n), cache=cache)  # raw cache positions, no rope_deltas (Q10)
        H_u = llm(m, E_u, seq_positions(1, 0, n))  # context-free uncond pass (Q4)
        x = projector(m, "image_gen_projector_out", torch.cat([H_c, H_u])) + m.gen["lvl_embed.weight"][k]
        cos, sin = cos_all[off:off + n], sin_all[off:off + n]
        for b in range(gcfg["depth"]):
            x = block_cached(m.gen, R.block_prefix(gcfg, b), gcfg, x, c6, cos, sin, icache, mem, cu)
        lg = head(m, x, cond_BD) / tau  # (2, n, 2d)
        l = cfg * lg[0] + (1 - cfg) * lg[1]  # (n, 2d)
        u = uniform[0, off:off + n]
        bits, p1_raw, p1 = sample_bits(l, u, top_p)
        if redraw is not None:
            margin, g = redraw
            while True:
                small = torch.minimum(p1_raw, 1 - p1_raw)
                forced = (p1_raw > 0.5).float()
                bad = ((u - p1_raw).abs() < margin) | ((u - p1).abs() < margin)
                # near the top-p threshold: both readings (sampled or forced) must give the same bit
                bad |= ((small - (1 - top_p)).abs() < margin) & ((u < p1_raw) != (u < forced))
                if not bad.any():
                    break
                n_redrawn += int(bad.sum())
                u[bad] = torch.rand(int(bad.sum()), generator=g)
            bits, p1_raw, p1 = sample_bits(l, u, top_p)
        bits = bits.view(1, h, w, d)
        bits_out.append(bits)
        logits_out.append(l[None])
        S = accumulate(S, bits_to_codes(bits, d))
        if k + 1 < len(sides):
            X_next = next_input(S, sides[k + 1])
        off += n
    img = V.decode(m.vae, m.vcfg, S)  # clamped
    pixels = ((img + 1) / 2 * 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    return dict(bits=bits_out, logits=logits_out, memory=mem_c, latent=S, image=img, pixels=pixels,
                position_ids=pos, n_redrawn=n_redrawn)
