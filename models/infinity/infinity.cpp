// infinity.cpp: the Infinity transformer's conditioning, embeddings, block stack and head; see
// the header.
#include "infinity/infinity.h"
#include "vt/nn/block.h"

#include <cmath>

#include "vt/nn/adaln.h"
#include "vt/nn/functional.h"
#include "vt/nn/norm.h"
#include "vt/ops.h"
#include "vt/random.h"

namespace vt::infinity {

// ---- packed conditions -----------------------------------------------------------------------------
std::vector<int64_t> PackedText::lengths() const {
  std::vector<int64_t> n;
  for (size_t b = 1; b < cu_seqlens.size(); ++b) n.push_back(cu_seqlens[b] - cu_seqlens[b - 1]);
  return n;
}

PackedText pack_text(const std::vector<Tensor>& sequences) {
  VT_CHECK(!sequences.empty(), "pack_text: no sequences");
  PackedText p;
  p.cu_seqlens = {0};
  for (size_t b = 0; b < sequences.size(); ++b) {
    const Tensor& s = sequences[b];
    VT_CHECK(s.dim() == 2 && s.size(0) > 0 && s.size(1) == sequences[0].size(1), "pack_text: sample ", b,
             " has shape ", s.shape().str(), ", expected (T > 0, ", sequences[0].size(1), ")");
    p.cu_seqlens.push_back(p.cu_seqlens.back() + s.size(0));
  }
  p.rows = cat(sequences, 0);
  return p;
}

Condition concat_conditions(const Condition& a, const Condition& b) {
  Condition c;
  c.cond_BD = cat({a.cond_BD, b.cond_BD}, 0);
  c.memory = cat({a.memory, b.memory}, 0);
  c.cu_seqlens = a.cu_seqlens;
  for (size_t i = 1; i < b.cu_seqlens.size(); ++i) c.cu_seqlens.push_back(a.cu_seqlens.back() + b.cu_seqlens[i]);
  return c;
}

std::vector<int64_t> scale_lengths(const ScaleSchedule& schedule) { return schedule.tokens; }

nn::RopeCosSin schedule_rope(const ScaleSchedule& schedule, int64_t head_dim, double theta, int64_t pad_to) {
  std::vector<std::array<int64_t, 2>> grids;
  for (const ScaleHW& s : schedule.scales) grids.push_back({s.h, s.w});
  Tensor pos = nn::infinity_rope_positions(grids, schedule.rope_grid_h, schedule.rope_grid_w);  // (L, 2)
  return nn::infinity_rope_cos_sin(pos, head_dim, theta, pad_to);
}

namespace {
std::shared_ptr<nn::Module> submodule(nn::Module& parent, const std::string& name) {
  return parent.register_module(name, std::make_shared<nn::Module>());
}
}  // namespace

// ---- construction: upstream names (§12) ------------------------------------------------------------
// Parameters are drawn in upstream's order (each constructor draws its own), so a seed gives the
// same weights as before the submodules were grouped.
TextAttentivePool::TextAttentivePool(int64_t Ct, int64_t C, int64_t H, double std_init) {
  mat_q = register_parameter("mat_q", normal({1, H, C / H}, 0.0, std_init));
  mat_kv = register_module("mat_kv", std::make_shared<Linear>(Ct, 2 * C, /*bias=*/false));
  v_bias = register_parameter("v_bias", zeros({C}));
  zero_k_bias = register_buffer("zero_k_bias", zeros({C}));
  proj = register_module("proj", std::make_shared<Linear>(C, C));
}

TextProjForSos::TextProjForSos(int64_t Ct, int64_t C, int64_t H, double std_init) {
  ca = register_module("ca", std::make_shared<TextAttentivePool>(Ct, C, H, std_init));
}

TextProjForCa::TextProjForCa(int64_t Ct, int64_t C) {
  fc0 = register_module("0", std::make_shared<Linear>(Ct, C));
  fc2 = register_module("2", std::make_shared<Linear>(C, C));
}
Tensor TextProjForCa::forward(const Tensor& t) const {
  return fc2->forward(nn::gelu(fc0->forward(t), /*approximate_tanh=*/true));
}

AdaLin::AdaLin(int64_t C, int64_t out) { lin = register_module("1", std::make_shared<Linear>(C, out)); }
Tensor AdaLin::forward(const Tensor& cond_BD) const { return lin->forward(nn::silu(cond_BD)); }

HeadNorm::HeadNorm(int64_t C) { ada_lin = register_module("ada_lin", std::make_shared<AdaLin>(C, 2 * C)); }

Infinity::Infinity(InfinityConfig cfg) : cfg_(std::move(cfg)) {
  cfg_.validate();
  const int64_t C = cfg_.embed_dim, Ct = cfg_.text_channels, d = cfg_.codebook_dim, H = cfg_.num_heads;
  const double std_init = std::sqrt(1.0 / (3.0 * C));
  // Upstream: trunc-normal std 1.2, then / sqrt(Ctext).
  cfg_uncond = register_parameter("cfg_uncond", normal({cfg_.text_maxlen, Ct}, 0.0, 1.2 / std::sqrt(double(Ct))));
  pos_start = register_parameter("pos_start", normal({1, 1, C}, 0.0, std_init));
  lvl_embed = register_module("lvl_embed", std::make_shared<nn::Embedding>(cfg_.num_levels, C, DType::F32, std_init));
  word_embed = register_module("word_embed", std::make_shared<Linear>(d, C));
  text_norm = register_module("text_norm", std::make_shared<nn::RMSNorm>(Ct, cfg_.norm_eps));
  text_proj_for_sos = register_module("text_proj_for_sos", std::make_shared<TextProjForSos>(Ct, C, H, std_init));
  text_proj_for_ca = register_module("text_proj_for_ca", std::make_shared<TextProjForCa>(Ct, C));
  shared_ada_lin = register_module("shared_ada_lin", std::make_shared<AdaLin>(C, 6 * C));
  head_nm = register_module("head_nm", std::make_shared<HeadNorm>(C));
  head = register_module("head", std::make_shared<Linear>(C, 2 * d));
  auto chunks = submodule(*this, "block_chunks");
  const int64_t per = cfg_.blocks_per_chunk();
  for (int64_t c = 0; c < cfg_.block_chunks; ++c) {
    auto module = submodule(*submodule(*chunks, std::to_string(c)), "module");
    for (int64_t m = 0; m < per; ++m) {
      const int64_t b = c * per + m;
      const double dp = cfg_.depth > 1 ? cfg_.drop_path_rate * b / (cfg_.depth - 1) : 0.0;
      blocks.push_back(module->register_module(std::to_string(m), std::make_shared<Block>(cfg_, dp)));
    }
  }
}

// ---- conditioning ----------------------------------------------------------------------------------
Condition Infinity::condition(const PackedText& text) const {
  check_text(text);
  const Tensor t = text_norm->forward(text.rows);  // (ΣT, Ct)
  Condition c;
  c.cond_BD = pool(t, text);                     // (B, C)
  c.memory = text_proj_for_ca->forward(t);       // (ΣT, C)
  c.cu_seqlens = text.cu_seqlens;
  return c;
}

Tensor Infinity::condition_vector(const PackedText& text) const {
  check_text(text);
  return pool(text_norm->forward(text.rows), text);
}

void Infinity::check_text(const PackedText& text) const {
  const int64_t B = text.batch();
  VT_CHECK(B >= 1 && text.rows.dim() == 2 && text.rows.size(1) == cfg_.text_channels &&
               text.cu_seqlens.front() == 0 && text.cu_seqlens.back() == text.rows.size(0),
           "Infinity::condition: text rows ", text.rows.shape().str(), " with ", text.cu_seqlens.size(),
           " cu_seqlens entries; expected packed (ΣT, ", cfg_.text_channels, ") rows and B + 1 offsets 0..ΣT");
  for (int64_t b = 0; b < B; ++b)
    VT_CHECK(text.cu_seqlens[b + 1] > text.cu_seqlens[b], "Infinity::condition: sample ", b, " has no rows");
}

Tensor Infinity::pool(const Tensor& t, const PackedText& text) const {
  const int64_t C = cfg_.embed_dim, H = cfg_.num_heads, D = C / H, B = text.batch();
  // Attentive pooling: q (1, H, B, D) one learned query per head and sample; kv (2, 1, H, ΣT, D).
  const int64_t T = t.size(0);
  const TextAttentivePool& ca = *text_proj_for_sos->ca;
  Tensor kv = nn::linear(t, ca.mat_kv->weight, cat({ca.zero_k_bias, ca.v_bias}, 0));
  kv = kv.view({T, 2, H, D}).permute({1, 2, 0, 3}).unsqueeze(1);
  Tensor q = ca.mat_q.view({1, H, 1, D}).expand({1, H, B, D});
  std::vector<int64_t> cu_q(B + 1);
  for (int64_t b = 0; b <= B; ++b) cu_q[b] = b;
  Tensor pooled = nn::scaled_dot_product_attention(q, kv.select(0, 0), kv.select(0, 1),
                                                   nn::AttentionMask::varlen(cu_q, text.cu_seqlens));
  return ca.proj->forward(pooled.squeeze(0).transpose(0, 1).reshape({B, C}));  // (B, C)
}

PackedText Infinity::unconditional_text(const std::vector<int64_t>& lengths) const {
  std::vector<Tensor> rows;
  for (size_t b = 0; b < lengths.size(); ++b) {
    VT_CHECK(lengths[b] > 0 && lengths[b] <= cfg_uncond.size(0), "Infinity: condition ", b, " has ", lengths[b],
             " rows but the unconditional table cfg_uncond holds ", cfg_uncond.size(0),
             " (text_maxlen); shorten the condition");
    rows.push_back(cfg_uncond.narrow(0, 0, lengths[b]));
  }
  return pack_text(rows);
}

PackedText Infinity::drop_condition(const PackedText& text, double p, Generator* gen) const {
  const std::vector<int64_t> n = text.lengths();
  const std::vector<float> u = rand({static_cast<int64_t>(n.size())}, DType::F32, gen).tolist<float>();
  std::vector<Tensor> rows;
  for (size_t b = 0; b < n.size(); ++b) {
    const Tensor own = text.rows.narrow(0, text.cu_seqlens[b], n[b]);
    rows.push_back(u[b] < p ? unconditional_text({n[b]}).rows : own);
  }
  return pack_text(rows);
}

// ---- pieces of the forward ---------------------------------------------------------------------------
Tensor Infinity::embed_inputs(const Tensor& inputs) const {
  VT_CHECK(inputs.dim() == 3 && inputs.size(2) == cfg_.codebook_dim, "Infinity: teacher inputs have shape ",
           inputs.shape().str(), ", expected (B, n, d = ", cfg_.codebook_dim, ")");
  // The accumulated codes are f32; a bf16 model embeds them in its own dtype.
  return word_embed->forward(inputs.to(word_embed->weight.dtype()));
}

Tensor Infinity::embed_tokens(const Tensor& cond_BD, const Tensor& inputs) const {
  const int64_t B = cond_BD.size(0), C = cfg_.embed_dim;
  VT_CHECK(cond_BD.dim() == 2 && cond_BD.size(1) == C, "Infinity: cond_BD has shape ", cond_BD.shape().str(),
           ", expected (B, ", C, ")");
  Tensor sos = (cond_BD.unsqueeze(1) + pos_start);  // (B, 1, C)
  if (!inputs.defined()) return sos;
  VT_CHECK(inputs.size(0) == B, "Infinity: ", inputs.size(0), " teacher-input rows for ", B, " conditions");
  return cat({sos, embed_inputs(inputs)}, 1);
}

Tensor Infinity::add_level_embedding(const Tensor& x, const ScaleSchedule& schedule, int64_t first_scale) const {
  const int64_t n = x.size(1), K = schedule.num_scales();
  VT_CHECK(K <= cfg_.num_levels, "Infinity: the schedule has ", K, " scales, lvl_embed only ", cfg_.num_levels);
  VT_CHECK(first_scale >= 0 && first_scale < K, "Infinity: first scale ", first_scale, " outside the ", K,
           " scales");
  std::vector<int64_t> ids;
  for (int64_t k = first_scale; k < K && static_cast<int64_t>(ids.size()) < n; ++k)
    ids.insert(ids.end(), schedule.tokens[k], k);
  const int64_t real = static_cast<int64_t>(ids.size());
  VT_CHECK(real == n || (real < n && ids.back() == K - 1), "Infinity: ", n,
           " tokens do not end a scale of the schedule starting at scale ", first_scale, " (scales there hold ", real,
           " tokens)");
  Tensor lvl = lvl_embed->forward(from_vector(ids).to(lvl_embed->weight.device()));  // (real, C) broadcast over B
  if (real == n) return x + lvl;
  return x + cat({lvl, zeros({n - real, cfg_.embed_dim}, {lvl.dtype(), lvl.device()})}, 0);  // pad rows: none
}

Tensor Infinity::shared_condition(const Tensor& cond_BD) const {
  return shared_ada_lin->forward(cond_BD).view({cond_BD.size(0), 1, 6, cfg_.embed_dim});
}

std::vector<CrossKV> Infinity::cross_kv(const Tensor& memory, const std::vector<int64_t>& cu_seqlens) const {
  std::vector<CrossKV> kv;
  for (const auto& b : blocks) kv.push_back(b->ca->keys_values(memory, cu_seqlens));
  return kv;
}

Tensor Infinity::run_blocks(const Tensor& x, const Tensor& cond6, const std::vector<CrossKV>& ca_kv,
                            const nn::RopeCosSin& rope, const nn::AttentionMask& mask,
                            std::vector<nn::KVCache>* caches) const {
  VT_CHECK(ca_kv.size() == blocks.size(), "Infinity: ", ca_kv.size(), " cross-attention K/V for ", blocks.size(),
           " blocks");
  VT_CHECK(!caches || caches->size() == blocks.size(), "Infinity: ", caches->size(), " KV caches for ",
           blocks.size(), " blocks");
  Tensor h = x;
  for (size_t i = 0; i < blocks.size(); ++i) {
    // cond6 and the cross-attention K/V come from trainable parts (the condition, the memory):
    // they enter as `extra` so that their gradients flow out of a recomputed block.
    const Block* block = blocks[i].get();
    const std::vector<int64_t> cu = ca_kv[i].cu_seqlens;
    nn::KVCache* cache = caches ? &(*caches)[i] : nullptr;
    h = nn::run_block(*block, {gradient_checkpointing, cache != nullptr},
                      [block, rope, mask, cu, cache](const nn::ResidualStream& s, const std::vector<Tensor>& e) {
                        return nn::ResidualStream{block->forward(s.residual, e[0], {rope, mask, cache}, {e[1], e[2], cu}),
                                                  Tensor()};
                      },
                      {h, Tensor()}, {cond6, ca_kv[i].k, ca_kv[i].v})
            .residual;
  }
  return h;
}

Tensor Infinity::head_logits(const Tensor& x, const Tensor& cond_BD) const {
  const int64_t C = cfg_.embed_dim;
  // AdaLNBeforeHead: (scale, shift) from the raw cond_BD, in that order.
  std::vector<Tensor> ss = split(head_nm->ada_lin->forward(cond_BD).unsqueeze(1), C, 2);  // (B, 1, C) x 2
  return head->forward(nn::modulate(nn::layer_norm(x, {C}, {}, {}, cfg_.norm_eps), ss[1], ss[0]));
}

Tensor Infinity::forward(const Condition& cond, const Tensor& inputs, const ScaleSchedule& schedule,
                         int64_t pad_to) const {
  const int64_t B = cond.batch(), L = schedule.total_tokens;
  VT_CHECK(inputs.dim() == 3 && inputs.size(0) == B && inputs.size(1) == L - 1 &&
               inputs.size(2) == cfg_.codebook_dim,
           "Infinity::forward: teacher inputs have shape ", inputs.shape().str(), ", expected (", B, ", ", L - 1,
           ", ", cfg_.codebook_dim, ") for ", B, " conditions, a schedule of ", L, " tokens and d = ",
           cfg_.codebook_dim);
  VT_CHECK(pad_to >= 1, "Infinity::forward: pad_to ", pad_to, " must be positive");
  Tensor x = embed_tokens(cond.cond_BD, inputs);  // (B, L, C)
  const int64_t L_pad = schedule.padded_tokens(pad_to);
  if (L_pad > L) x = cat({x, zeros({B, L_pad - L, cfg_.embed_dim}, {x.dtype(), x.device()})}, 1);  // (B, L_pad, C)
  const nn::RopeCosSin rope = schedule_rope(schedule, cfg_.head_dim(), cfg_.rope_theta, pad_to);
  x = run_blocks(add_level_embedding(x, schedule), shared_condition(cond.cond_BD),
                 cross_kv(cond.memory, cond.cu_seqlens), {rope.cos.to(x.device()), rope.sin.to(x.device())},
                 nn::AttentionMask::block_causal(scale_lengths(schedule)));
  if (L_pad > L) x = x.narrow(1, 0, L);
  return head_logits(x, cond.cond_BD);  // (B, L, 2d)
}

}  // namespace vt::infinity
