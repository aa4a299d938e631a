// training.cpp: VARGPT-v1.1's teacher-forced forward, loss and freeze presets; see training.h.
#include "vargpt/training.h"

#include <algorithm>

#include "infinity/self_correction.h"
#include "qwen2/qwen2.h"
#include "vt/nn/loss.h"
#include "vt/ops.h"

namespace vt::vargpt {

namespace {

// Where each generation row's span sits: the row, the position of <|image_gen_start|>, and the
// P pad slots right after it.
struct Span {
  int64_t row = 0, start = 0;
};

std::vector<Span> find_spans(const Tensor& ids_host, const GenerationTokens& tk, int64_t P) {
  const int64_t B = ids_host.size(0), T = ids_host.size(1);
  const int64_t* p = ids_host.data<int64_t>();
  std::vector<Span> spans;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t* row = p + b * T;
    int64_t starts = 0, pads = 0, at = -1;
    for (int64_t t = 0; t < T; ++t) {
      if (row[t] == tk.start) ++starts, at = t;
      pads += row[t] == tk.pad;
    }
    if (starts == 0 && pads == 0) continue;
    VT_CHECK(starts == 1, "VARGPT training: row ", b, " holds ", starts,
             " <|image_gen_start|> tokens; one <image_gen> span per row is supported");
    VT_CHECK(pads == P, "VARGPT training: row ", b, " holds ", pads, " <|image_gen_pad|> tokens, the schedule needs ",
             P, " (its tokens padded to a multiple of ", infinity::kSequencePadMultiple, ")");
    VT_CHECK(at + P < T, "VARGPT training: row ", b, ": the pad slots after <|image_gen_start|> run past the sequence");
    for (int64_t j = 1; j <= P; ++j)
      VT_CHECK(row[at + j] == tk.pad, "VARGPT training: row ", b, ": position ", at + j,
               " inside the <image_gen> span is token ", row[at + j], ", not <|image_gen_pad|>");
    VT_CHECK(at > 0, "VARGPT training: row ", b, " starts with <|image_gen_start|>; the memory needs a prompt");
    spans.push_back({b, at});
  }
  return spans;
}

}  // namespace

TrainingOutput training_forward(const Vargpt& model, const TrainingBatch& batch, const TrainingOptions& opt) {
  const infinity::Infinity& gen = *model.vargpt_gen;
  const GenerationTokens& tk = model.tokens();
  VT_CHECK(batch.input_ids.dim() == 2, "VARGPT training: input_ids must be (B, T), got ", batch.input_ids.shape().str());
  const Tensor ids = batch.input_ids.to(Device::cpu()).to(DType::I64).contiguous();
  const int64_t B = ids.size(0), T = ids.size(1), Cl = model.config().llm.hidden_size;
  const infinity::ScaleSchedule& sched = batch.schedule;
  const int64_t L = sched.total_tokens, P = sched.padded_tokens(infinity::kSequencePadMultiple);
  const std::vector<Span> spans = find_spans(ids, tk, P);
  const int64_t G = static_cast<int64_t>(spans.size());
  const Device dev = model.device();
  TrainingOutput out;
  for (const Span& s : spans) out.gen_rows.push_back(s.row);

  qwen2_vl::MultimodalInputs in{batch.input_ids.to(dev), batch.attention_mask, batch.pixel_values,
                                batch.image_grid_thw};
  Tensor embeds = model.vl->embed(in);  // (B, T, Cl), ViT rows in the <|image_pad|> slots
  Tensor cond_BD, pad_index;            // (G, C); (G P) flat positions of the pad slots
  if (G > 0) {
    const int64_t d = gen.config().codebook_dim;
    VT_CHECK(batch.gen_inputs.dim() == 3 && batch.gen_inputs.size(0) == G && batch.gen_inputs.size(1) == L - 1 &&
                 batch.gen_inputs.size(2) == d,
             "VARGPT training: gen_inputs ", batch.gen_inputs.shape().str(), ", expected (", G, ", ", L - 1, ", ", d,
             ") for ", G, " generation rows");
    VT_CHECK(batch.gen_labels.dim() == 3 && batch.gen_labels.size(0) == G && batch.gen_labels.size(1) == L &&
                 batch.gen_labels.size(2) == d,
             "VARGPT training: gen_labels ", batch.gen_labels.shape().str(), ", expected (", G, ", ", L, ", ", d, ")");
    VT_CHECK(batch.drop_condition.empty() || static_cast<int64_t>(batch.drop_condition.size()) == G,
             "VARGPT training: ", batch.drop_condition.size(), " condition-dropout flags for ", G, " generation rows");
    // Condition dropout touches the sos / AdaLN path only (Q13).
    const bool any_drop = std::find(batch.drop_condition.begin(), batch.drop_condition.end(), true) !=
                          batch.drop_condition.end();
    const Tensor c = model.sos_condition(1), u = any_drop ? model.sos_condition(1, /*unconditional=*/true) : Tensor();
    std::vector<Tensor> rows;
    for (int64_t g = 0; g < G; ++g) rows.push_back(!batch.drop_condition.empty() && batch.drop_condition[g] ? u : c);
    cond_BD = cat(rows, 0);  // (G, C)
    Tensor x = gen.embed_tokens(cond_BD, batch.gen_inputs.to(dev));  // (G, L, C)
    if (P > L) x = cat({x, zeros({G, P - L, x.size(2)}, {x.dtype(), x.device()})}, 1);  // (G, P, C)
    const Tensor e = model.image_gen_projector->forward(x);  // (G, P, Cl); pad rows carry projector(0)
    // Masked scatter as an index_select: flat position r takes text row r, or projected row B T + g P + j.
    std::vector<int64_t> index(B * T), slots;
    for (int64_t r = 0; r < B * T; ++r) index[r] = r;
    for (int64_t g = 0; g < G; ++g)
      for (int64_t j = 0; j < P; ++j) {
        const int64_t r = spans[g].row * T + spans[g].start + 1 + j;
        index[r] = B * T + g * P + j;
        slots.push_back(r);
      }
    embeds = index_select(cat({embeds.reshape({B * T, Cl}), e.reshape({G * P, Cl})}, 0), 0,
                          from_vector(index, {B * T}).to(dev))
                 .reshape({B, T, Cl});
    pad_index = from_vector(slots, {G * P}).to(dev);
  }

  // The LLM over the whole sequence: sequential positions on all three axes (Q10), causal (Q11).
  Tensor positions;
  if (opt.mrope_consistent) {
    positions = model.vl->positions(in, qwen2_vl::PositionMode::MRope).position_ids;
  } else {
    const Tensor p = qwen2::sequential_positions(B, T);
    positions = stack({p, p, p}, 0);  // (3, B, T)
  }
  Tensor key_mask;
  if (batch.attention_mask.defined() && amin(batch.attention_mask.to(Device::cpu()).to(DType::I64)).item() == 0)
    key_mask = batch.attention_mask.to(dev);
  Tensor hidden;  // (B, T, Cl)
  if (!opt.llm_block_causal || G == 0) {
    hidden = model.lm->model->forward(embeds, model.lm->rope(positions.to(dev)), key_mask);
  } else {
    // Q11 fix: causal, except that the P slots of a span see their whole scale (pad rows past the
    // schedule stay causal), and the key padding folded in.
    std::vector<uint8_t> m(static_cast<size_t>(B * T * T), 0);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < T; ++i) std::fill_n(m.begin() + (b * T + i) * T, i + 1, uint8_t(1));
    for (const Span& s : spans)
      for (int64_t k = 0; k < sched.num_scales(); ++k) {
        const int64_t a = s.start + 1 + sched.offsets[k], n = sched.tokens[k];
        for (int64_t i = a; i < a + n; ++i) std::fill_n(m.begin() + (s.row * T + i) * T + a, n, uint8_t(1));
      }
    if (key_mask.defined()) {
      const Tensor km = key_mask.to(Device::cpu()).to(DType::I64).contiguous();
      for (int64_t b = 0; b < B; ++b)
        for (int64_t j = 0; j < T; ++j)
          if (km.data<int64_t>()[b * T + j] == 0)
            for (int64_t i = 0; i < T; ++i) m[(b * T + i) * T + j] = 0;
    }
    const nn::AttentionMask mask = nn::AttentionMask::none().with_tensor(
        from_vector(m, {B, 1, T, T}).to(DType::Bool).to(dev));
    hidden = model.lm->model->forward(embeds, model.lm->rope(positions.to(dev)), Tensor(), nullptr, &mask);
  }

  // Text loss (§11). A generation row's labels are its ids with the pad slots ignored: every other
  // position counts, the prompt and padding included (Q8), unless mask_prompt_loss asks for the
  // dataset labels. A row without a span (understanding) always takes the dataset labels, as
  // upstream's plain Qwen2-VL branch does.
  const bool need_labels = opt.mask_prompt_loss || G < B;
  VT_CHECK(!need_labels || (batch.labels.defined() && batch.labels.dim() == 2 && batch.labels.size(0) == B &&
                            batch.labels.size(1) == T),
           "VARGPT training: ", opt.mask_prompt_loss ? "mask_prompt_loss" : "a row without an <image_gen> span",
           " needs dataset labels of shape (", B, ", ", T, "), got ",
           batch.labels.defined() ? batch.labels.shape().str() : std::string("none"));
  Tensor labels = batch.input_ids.to(dev).to(DType::I64);
  if (need_labels) {
    std::vector<uint8_t> use_ids(B, 0);
    if (!opt.mask_prompt_loss)
      for (const Span& s : spans) use_ids[s.row] = 1;
    const Tensor rows = from_vector(use_ids, {B, 1}).to(dev).to(DType::Bool);
    labels = where(rows, labels, batch.labels.to(dev).to(DType::I64));
  }
  labels = where(eq(batch.input_ids.to(dev), double(tk.pad)), full({B, T}, -100.0, {DType::I64, dev}), labels);
  if (opt.text_loss || opt.text_logits) {
    const Tensor logits = model.lm->logits(hidden);  // (B, T, V)
    if (opt.text_logits) out.text_logits = logits;
    out.text_loss = nn::cross_entropy(logits.narrow(1, 0, T - 1), labels.narrow(1, 1, T - 1));
  }
  if (!opt.text_loss) out.text_loss = zeros({}, {DType::F32, dev});
  out.loss = out.text_loss;
  if (G == 0) return out;

  // The decoder on the LLM's outputs at the pad slots, attending to each row's prefix.
  const Tensor X = model.image_gen_projector_out->forward(
      index_select(hidden.reshape({B * T, Cl}), 0, pad_index).reshape({G, P, Cl}));  // (G, P, C)
  std::vector<Tensor> prefix;
  const Tensor mask_host =
      batch.attention_mask.defined() ? batch.attention_mask.to(Device::cpu()).to(DType::I64).contiguous() : Tensor();
  for (const Span& s : spans) {
    if (mask_host.defined())
      for (int64_t t = 0; t < s.start; ++t)
        VT_CHECK(mask_host.data<int64_t>()[s.row * T + t] != 0, "VARGPT training: row ", s.row,
                 " has padding before <|image_gen_start|> (position ", t, "); pad on the right");
    prefix.push_back(hidden.select(0, s.row).narrow(0, 0, s.start));  // (start, Cl): before the start token (Q5)
  }
  infinity::PackedText memory = model.prefix_memory(prefix);
  if (opt.cfg_drop_ca && !batch.drop_condition.empty()) {
    std::vector<Tensor> rows;
    const std::vector<int64_t> len = memory.lengths();
    for (int64_t g = 0; g < G; ++g) {
      const bool drop = batch.drop_condition[g];
      VT_CHECK(!drop || len[g] <= gen.cfg_uncond.size(0), "VARGPT training: row ", spans[g].row, " has ", len[g],
               " memory tokens, more than cfg_uncond's ", gen.cfg_uncond.size(0), " (cfg_drop_ca)");
      rows.push_back(drop ? gen.cfg_uncond.narrow(0, 0, len[g]) : memory.rows.narrow(0, memory.cu_seqlens[g], len[g]));
    }
    memory = infinity::pack_text(rows);
  }
  const nn::RopeCosSin rope = infinity::schedule_rope(sched, gen.config().head_dim(), gen.config().rope_theta,
                                                      infinity::kSequencePadMultiple);
  Tensor x = gen.run_blocks(gen.add_level_embedding(X, sched), gen.shared_condition(cond_BD),
                            gen.cross_kv(memory.rows, memory.cu_seqlens), {rope.cos.to(dev), rope.sin.to(dev)},
                            nn::AttentionMask::block_causal(infinity::scale_lengths(sched)));
  out.gen_logits = gen.head_logits(x.narrow(1, 0, L), cond_BD);  // (G, L, 2d); row i of scale k predicts scale k
  const Tensor bits = batch.gen_labels.to(dev);
  out.image_loss = infinity::bitwise_loss(out.gen_logits, bits, sched, {opt.reweight_by_scale, 0.0});
  const int64_t d = gen.config().codebook_dim;
  out.bit_accuracy = nn::bit_accuracy(out.gen_logits.detach().view({G, L, d, 2}), bits);
  out.loss = out.text_loss + out.image_loss * opt.image_loss_weight;
  return out;
}

// ---- freeze presets (vargpt.md §12.1) -----------------------------------------------------------------
std::vector<std::string> apply_freeze_preset(Vargpt& model, int stage) {
  const std::vector<std::string> gen = {"vargpt_gen", "sos_embedding", "image_gen_projector", "image_gen_projector_out"};
  std::vector<std::string> trainable;
  switch (stage) {
    case 1: trainable = {"sos_embedding", "image_gen_projector", "image_gen_projector_out"}; break;
    case 2: trainable = {"model", "lm_head"}; break;
    case 0:
    case 3: trainable = gen; break;
    case 4:
    case 5:
      trainable = gen;
      trainable.insert(trainable.end(), {"model", "lm_head"});
      if (stage == 5) trainable.push_back("visual");
      break;
    default: VT_FAIL("VARGPT: no freeze preset for stage ", stage, " (0-5, vargpt.md §12.1)");
  }
  model.freeze("*");
  for (const std::string& p : trainable) model.unfreeze(p);
  return trainable;
}

int freeze_preset_stage(const std::string& name) {
  for (int s = 1; s <= 5; ++s)
    if (name == "stage" + std::to_string(s)) return s;
  VT_FAIL("VARGPT: unknown freeze preset '", name, "' (stage1: projectors + sos, stage2: LLM, stage3: Infinity + ",
          "projectors + sos, stage4: all but ViT and VAE, stage5: all but VAE)");
}

}  // namespace vt::vargpt
