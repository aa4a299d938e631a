// generate.cpp: text decoding with the hand-off, and the per-scale loop; see generate.h.
#include "vargpt/generate.h"

#include <algorithm>
#include <cmath>

#include "bsq_vae/multiscale_bsq.h"
#include "infinity/sampler.h"
#include "infinity/self_correction.h"
#include "vt/autograd.h"
#include "vt/ops.h"
#include "vt/random.h"

namespace vt::vargpt {

namespace {

// (3, B, n) int64 positions: row b counts from start[b].
Tensor chunk_positions(const std::vector<int64_t>& start, int64_t n) {
  const int64_t B = static_cast<int64_t>(start.size());
  std::vector<int64_t> p(3 * B * n);
  for (int64_t a = 0; a < 3; ++a)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < n; ++i) p[(a * B + b) * n + i] = start[b] + i;
  return from_vector(p, {3, B, n});
}

// The host key mask as a tensor, or undefined when no row has padding (the decoder is faster
// without one, and the result is the same).
Tensor key_mask_tensor(const std::vector<std::vector<uint8_t>>& mask, Device dev) {
  const int64_t B = static_cast<int64_t>(mask.size()), L = static_cast<int64_t>(mask[0].size());
  std::vector<int64_t> flat(B * L);
  bool padded = false;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < L; ++j) padded |= !(flat[b * L + j] = mask[b][j]);
  return padded ? from_vector(flat, {B, L}).to(dev) : Tensor();
}

// Runs the LLM on embeddings (B, n, Cl) with the caches, the running host mask (grown by n columns
// of `fed`) and per-row start positions. Returns the final hidden states (B, n, Cl).
// whole_chunk (Q11 fix): the chunk's tokens see each other and the cache, not causally.
Tensor llm_chunk(const Vargpt& model, const Tensor& embeds, std::vector<nn::KVCache>& caches,
                 std::vector<std::vector<uint8_t>>& mask, const std::vector<uint8_t>& fed,
                 const std::vector<int64_t>& start, bool whole_chunk = false) {
  const int64_t n = embeds.size(1);
  for (size_t b = 0; b < mask.size(); ++b) mask[b].insert(mask[b].end(), n, fed[b]);
  const Device dev = model.device();
  const nn::RopeCosSin rope = model.lm->rope(chunk_positions(start, n).to(dev));
  const Tensor keys = key_mask_tensor(mask, dev);
  if (!whole_chunk) return model.lm->model->forward(embeds, rope, keys, &caches);
  nn::AttentionMask none = nn::AttentionMask::none();
  if (keys.defined()) none = none.with_tensor(ne(keys, 0.0).view({keys.size(0), 1, 1, keys.size(1)}));
  return model.lm->model->forward(embeds, rope, Tensor(), &caches, &none);
}

}  // namespace

// ---- text ------------------------------------------------------------------------------------------------
TextResult decode_text(const Vargpt& model, const std::vector<Prompt>& prompts, const TextOptions& opt) {
  NoGradGuard no_grad;
  VT_CHECK(!prompts.empty(), "vargpt: no prompts");
  VT_CHECK(opt.max_new_tokens >= 1, "vargpt: max_new_tokens must be at least 1");
  const int64_t B = static_cast<int64_t>(prompts.size()), start_id = model.tokens().start;
  const int64_t V = model.config().llm.vocab_size;
  int64_t T = 0;
  for (size_t b = 0; b < prompts.size(); ++b) {
    VT_CHECK(!prompts[b].ids.empty(), "vargpt: prompt ", b, " is empty");
    for (int64_t id : prompts[b].ids)
      VT_CHECK(id >= 0 && id < V, "vargpt: prompt ", b, " holds token id ", id, ", outside the ", V,
               " embedding rows");
    T = std::max<int64_t>(T, static_cast<int64_t>(prompts[b].ids.size()));
  }
  // Left padding, as HF generate: each row's tokens end at column T - 1.
  std::vector<int64_t> ids(B * T, 0), mask_flat(B * T, 0);
  std::vector<Tensor> pixels;
  std::vector<qwen2_vl::GridTHW> grids;
  std::vector<std::vector<uint8_t>> mask(B);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = static_cast<int64_t>(prompts[b].ids.size());
    for (int64_t i = 0; i < n; ++i) ids[b * T + T - n + i] = prompts[b].ids[i], mask_flat[b * T + T - n + i] = 1;
    mask[b].assign(T, 0);
    std::fill(mask[b].begin() + (T - n), mask[b].end(), uint8_t(1));
    if (prompts[b].pixel_values.defined()) pixels.push_back(prompts[b].pixel_values);
    grids.insert(grids.end(), prompts[b].image_grid_thw.begin(), prompts[b].image_grid_thw.end());
  }
  const Device dev = model.device();
  qwen2_vl::MultimodalInputs in;
  in.input_ids = from_vector(ids, {B, T}).to(dev);
  in.attention_mask = from_vector(mask_flat, {B, T});
  if (!pixels.empty()) in.pixel_values = cat(pixels, 0);
  in.image_grid_thw = grids;
  const qwen2::RopeIndex pos = model.vl->positions(in, qwen2_vl::PositionMode::MRope);

  TextResult r;
  HandOff& st = r.state;
  st.caches = model.lm->make_caches();
  const Tensor hidden = model.lm->model->forward(model.vl->embed(in), model.lm->rope(pos.position_ids.to(dev)),
                                                 key_mask_tensor(mask, dev), &st.caches);  // (B, T, Cl)
  std::vector<std::vector<Tensor>> pieces(B);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = static_cast<int64_t>(prompts[b].ids.size());
    pieces[b].push_back(hidden.select(0, b).narrow(0, T - n, n));
    st.real_length.push_back(n);
    // get_rope_index's delta counts the row's padding; the shift is relative to its real tokens.
    st.mrope_shift.push_back(pos.rope_deltas[b] + (T - n));
  }
  Tensor logits = model.lm->logits(hidden, /*last_only=*/true).select(1, 0);  // (B, V)

  std::vector<qwen2::Sampler> samplers;
  for (int64_t b = 0; b < B; ++b) {
    qwen2::SamplingOptions s = opt.sampling;
    s.seed = opt.sampling.seed + static_cast<uint64_t>(b);
    samplers.emplace_back(s);
  }
  std::vector<std::vector<int64_t>> seen(B);
  for (int64_t b = 0; b < B; ++b) seen[b] = prompts[b].ids;
  r.tokens.assign(B, {});
  r.wants_image.assign(B, false);
  std::vector<uint8_t> active(B, 1);
  // A prompt that already ends with <|image_gen_start|> (a reply forced by the caller) has handed
  // off in the prefill: the start token is in the cache, its hidden state is not in the memory.
  for (int64_t b = 0; b < B; ++b)
    if (prompts[b].ids.back() == start_id) r.wants_image[b] = true, active[b] = 0;
  for (int64_t step = 0; step < opt.max_new_tokens && std::find(active.begin(), active.end(), 1) != active.end();
       ++step) {
    const bool last = step + 1 == opt.max_new_tokens;
    std::vector<int64_t> feed(B, 0);
    std::vector<uint8_t> fed(B, 0);
    for (int64_t b = 0; b < B; ++b) {
      if (!active[b]) continue;
      int64_t tok = samplers[b].next(logits.narrow(0, b, 1), {seen[b]})[0];
      const bool stop = std::find(opt.stop_tokens.begin(), opt.stop_tokens.end(), tok) != opt.stop_tokens.end();
      if (opt.force_image && (stop || last)) tok = start_id;
      r.tokens[b].push_back(tok);
      seen[b].push_back(tok);
      if (opt.on_token) opt.on_token(b, tok);
      if (tok == start_id) {
        r.wants_image[b] = true;  // fed once below, then the row hands off
      } else if (stop || last) {
        active[b] = 0;  // a text-only reply: nothing more to feed
        continue;
      }
      feed[b] = tok;
      fed[b] = 1;
    }
    if (std::find(fed.begin(), fed.end(), 1) == fed.end()) break;
    std::vector<int64_t> start(B);
    for (int64_t b = 0; b < B; ++b) start[b] = st.real_length[b] + st.mrope_shift[b];
    const Tensor h = llm_chunk(model, model.lm->model->embed(from_vector(feed, {B, 1}).to(dev)), st.caches, mask,
                               fed, start);  // (B, 1, Cl)
    for (int64_t b = 0; b < B; ++b) {
      if (!fed[b]) continue;
      pieces[b].push_back(h.select(0, b));
      ++st.real_length[b];
      if (r.wants_image[b]) active[b] = 0;
    }
    if (std::find(active.begin(), active.end(), 1) == active.end()) break;
    logits = model.lm->logits(h, true).select(1, 0);
  }
  for (int64_t b = 0; b < B; ++b) {
    Tensor all = cat(pieces[b], 0);  // (real tokens, Cl)
    // Q5: the memory holds every token before <|image_gen_start|>, not the start token itself.
    st.prefix_hidden.push_back(r.wants_image[b] ? all.narrow(0, 0, all.size(0) - 1) : all);
  }
  std::vector<int64_t> flat;
  for (const auto& row : mask) flat.insert(flat.end(), row.begin(), row.end());
  st.key_mask = from_vector(flat, {B, static_cast<int64_t>(mask[0].size())});
  return r;
}

HandOff select_rows(const HandOff& s, const std::vector<int64_t>& rows) {
  HandOff o;
  std::vector<int64_t> idx;
  for (int64_t r : rows) {
    VT_CHECK(r >= 0 && r < s.batch(), "vargpt: row ", r, " of a batch of ", s.batch());
    idx.push_back(r);
    o.prefix_hidden.push_back(s.prefix_hidden[r]);
    o.real_length.push_back(s.real_length[r]);
    o.mrope_shift.push_back(s.mrope_shift[r]);
  }
  const Tensor index = from_vector(idx, {static_cast<int64_t>(idx.size())});
  for (const nn::KVCache& c : s.caches) {
    nn::KVCache n;
    n.length = c.length;
    if (c.k_buffer.defined()) {
      n.k_buffer = index_select(c.k_buffer, 0, index.to(c.k_buffer.device()));
      n.v_buffer = index_select(c.v_buffer, 0, index.to(c.v_buffer.device()));
    }
    o.caches.push_back(n);
  }
  o.key_mask = index_select(s.key_mask, 0, index);
  return o;
}

// ---- pixels -------------------------------------------------------------------------------------------------
Tensor to_pixels(const Tensor& image, bool round) {
  VT_CHECK(image.dim() == 4 && image.size(1) == 3, "vargpt: image must be (B, 3, H, W), got ", image.shape().str());
  const Tensor x = image.detach().to(Device::cpu()).to(DType::F32).permute({0, 2, 3, 1}).contiguous();  // (B, H, W, 3)
  const float* p = x.data<float>();
  std::vector<uint8_t> out(static_cast<size_t>(x.numel()));
  for (size_t i = 0; i < out.size(); ++i) {
    // upstream: ((img + 1) / 2 * 255).to(uint8) truncates (Q14); values are clamped to [-1, 1] first
    const float v = std::clamp((p[i] + 1.0f) / 2.0f * 255.0f, 0.0f, 255.0f);
    out[i] = static_cast<uint8_t>(round ? std::nearbyint(v) : v);
  }
  return from_vector(out, x.shape());
}

// ---- the per-scale loop ----------------------------------------------------------------------------------------
ImageResult generate_image(const Vargpt& model, HandOff& st, const ImageOptions& opt) {
  NoGradGuard no_grad;
  const infinity::Infinity& gen = *model.vargpt_gen;
  const infinity::InfinityConfig& gc = gen.config();
  const int64_t B = st.batch(), d = gc.codebook_dim;
  VT_CHECK(B >= 1, "vargpt: generate_image needs at least one row");
  const infinity::ScaleSchedule schedule = model.config().schedule_for(opt.height, opt.width);
  const int64_t K = schedule.num_scales();
  VT_CHECK(K <= gc.num_levels, "vargpt: a ", opt.height, "x", opt.width, " image takes ", K,
           " scales; this model has ", gc.num_levels, " level embeddings");
  VT_CHECK(opt.tau > 0, "vargpt: tau must be positive, got ", opt.tau);
  VT_CHECK(opt.top_p >= 0 && opt.top_p <= 1 && opt.top_k >= 0, "vargpt: top_p must lie in [0, 1] and top_k be >= 0");
  VT_CHECK(opt.seeds.empty() || static_cast<int64_t>(opt.seeds.size()) == B, "vargpt: ", opt.seeds.size(),
           " seeds for ", B, " rows");
  if (opt.uniforms.defined())
    VT_CHECK(opt.uniforms.dim() == 3 && opt.uniforms.size(0) == B && opt.uniforms.size(1) == schedule.total_tokens &&
                 opt.uniforms.size(2) == d,
             "vargpt: uniforms must be (", B, ", ", schedule.total_tokens, ", ", d, "), got ",
             opt.uniforms.shape().str());
  const Device dev = model.device();
  ImageResult out;

  // Conditions (vargpt.md §4): the constant sos condition and the prefix memory for the cond rows;
  // cfg_uncond's sos row and cfg_uncond[:L] (raw rows, Q6/Q7) for the uncond rows.
  const Tensor cond_c = model.sos_condition(B), cond_u = model.sos_condition(B, /*unconditional=*/true);
  out.memory = model.prefix_memory(st.prefix_hidden);
  std::vector<Tensor> uncond_rows;
  const int64_t maxlen = gen.cfg_uncond.size(0);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t L = out.memory.cu_seqlens[b + 1] - out.memory.cu_seqlens[b];
    if (L <= maxlen) {
      uncond_rows.push_back(gen.cfg_uncond.narrow(0, 0, L));
    } else if (opt.uncond_length == UncondLength::Truncate) {
      out.warnings.push_back("row " + std::to_string(b) + ": the prompt's memory has " + std::to_string(L) +
                             " tokens, the unconditional table cfg_uncond " + std::to_string(maxlen) +
                             "; the unconditional row uses all " + std::to_string(maxlen) +
                             " (upstream's silent truncation, Q6; --uncond-len tile repeats them instead)");
      uncond_rows.push_back(gen.cfg_uncond);
    } else {
      std::vector<Tensor> reps(static_cast<size_t>((L + maxlen - 1) / maxlen), gen.cfg_uncond);
      uncond_rows.push_back(cat(reps, 0).narrow(0, 0, L));
    }
  }
  const infinity::PackedText mem_u = infinity::pack_text(uncond_rows);
  const infinity::Condition rows = infinity::concat_conditions({cond_c, out.memory.rows, out.memory.cu_seqlens},
                                                               {cond_u, mem_u.rows, mem_u.cu_seqlens});
  infinity::CachedDecoder decoder(gen, rows, schedule);
  infinity::ScaleAccumulator acc(B, d, schedule);
  std::vector<Generator> gens;
  for (int64_t b = 0; b < B; ++b) gens.emplace_back(opt.seeds.empty() ? uint64_t(b) : opt.seeds[b]);
  std::vector<nn::KVCache> uncond_caches = model.lm->make_caches();
  int64_t uncond_past = 0;

  std::vector<std::vector<uint8_t>> mask(B);
  {
    const Tensor km = st.key_mask.to(DType::I64).contiguous();
    const int64_t L = km.size(1);
    for (int64_t b = 0; b < B; ++b) mask[b].assign(km.data<int64_t>() + b * L, km.data<int64_t>() + (b + 1) * L);
  }
  const std::vector<uint8_t> all_rows(B, 1);
  Tensor X;  // (B, n_k, d): the next scale's input
  for (int64_t k = 0; k < K; ++k) {
    const int64_t n = schedule.tokens[k], h = schedule.scales[k].h, w = schedule.scales[k].w;
    Tensor E_c, E_u;  // (B, n, Cl)
    if (k == 0) {
      E_c = model.image_gen_projector->forward(gen.embed_tokens(cond_c, Tensor()));
      E_u = model.image_gen_projector->forward(gen.embed_tokens(cond_u, Tensor()));
    } else {
      E_c = E_u = model.image_gen_projector->forward(gen.embed_inputs(X));
    }
    // Conditional pass on the persistent cache, at raw cache positions (Q10; the fix adds the
    // prompt's M-RoPE shift); causal inside the chunk (Q11), or the whole chunk with the fix.
    std::vector<int64_t> start(B);
    for (int64_t b = 0; b < B; ++b) start[b] = st.real_length[b] + (opt.mrope_consistent ? st.mrope_shift[b] : 0);
    const Tensor H_c = llm_chunk(model, E_c, st.caches, mask, all_rows, start, opt.llm_block_causal);
    for (int64_t b = 0; b < B; ++b) st.real_length[b] += n;
    // Unconditional pass: no prompt, no earlier scales, positions 0..n-1 (Q4), unless the fix keeps a cache.
    const Tensor pos_u = chunk_positions(std::vector<int64_t>(B, opt.uncond_llm_cache ? uncond_past : 0), n);
    const nn::AttentionMask none = nn::AttentionMask::none();
    const Tensor H_u = model.lm->model->forward(E_u, model.lm->rope(pos_u.to(dev)), Tensor(),
                                                opt.uncond_llm_cache ? &uncond_caches : nullptr,
                                                opt.llm_block_causal ? &none : nullptr);
    uncond_past += n;

    const Tensor raw = decoder.step(model.image_gen_projector_out->forward(cat({H_c, H_u}, 0)));  // (2B, n, 2d)
    out.cond_logits.push_back(raw.narrow(0, 0, B));
    const Tensor scaled = raw.to(DType::F32) / opt.tau;
    const Tensor guided =
        infinity::cfg_combine(scaled.narrow(0, 0, B), scaled.narrow(0, B, B), opt.cfg, k, K, /*var_linear_ramp=*/false);
    const Tensor p1 = infinity::bit_probabilities(guided, opt.top_k, opt.top_p);  // (B, n, d)
    Tensor u;
    if (opt.uniforms.defined()) {
      u = opt.uniforms.narrow(1, schedule.offsets[k], n).to(DType::F32).to(p1.device());
    } else {
      std::vector<Tensor> draws;  // one Philox call per row and scale: a row's draws ignore the batch
      for (int64_t b = 0; b < B; ++b) draws.push_back(rand({n, d}, DType::F32, &gens[b]));
      u = stack(draws, 0).to(p1.device());
    }
    const Tensor bits = lt(u, p1).reshape({B, h, w, d});
    out.logits.push_back(guided);
    out.bits.push_back(bits);
    acc.add(bsq::bits_to_codes(bits), k);
    if (k + 1 < K) X = acc.next_input();
    if (opt.on_scale) opt.on_scale(k, K, h, w);
  }
  out.latent = acc.latent();
  if (opt.decode) {
    out.image = model.vae_local->decode_latent(out.latent.to(model.vae_local->encoder->parameters()[0].dtype()));
    out.pixels = to_pixels(out.image, opt.round_pixels);
  }
  st.key_mask = from_vector([&] {
    std::vector<int64_t> f;
    for (const auto& row : mask) f.insert(f.end(), row.begin(), row.end());
    return f;
  }(), {B, static_cast<int64_t>(mask[0].size())});
  return out;
}

}  // namespace vt::vargpt
