// qwen2_vl.cpp: the Qwen2-VL assembly; see qwen2_vl.h.
#include "qwen2_vl/qwen2_vl.h"

#include <filesystem>

#include "vt/io/safetensors.h"
#include "vt/ops.h"

namespace vt::qwen2_vl {

Qwen2VLForConditionalGeneration::Qwen2VLForConditionalGeneration(const qwen2::Qwen2Config& llm_cfg,
                                                                 const VisionConfig& vision_cfg, DType dtype) {
  VT_CHECK(llm_cfg.image_token_id >= 0 && llm_cfg.vision_start_token_id >= 0,
           "Qwen2VLForConditionalGeneration: the config has no image_token_id / vision_start_token_id (model_type ",
           llm_cfg.model_type, ")");
  VT_CHECK(vision_cfg.hidden_size == llm_cfg.hidden_size, "Qwen2VLForConditionalGeneration: the vision merger outputs ",
           vision_cfg.hidden_size, " features, the LLM is ", llm_cfg.hidden_size, " wide");
  visual = register_module("visual", std::make_shared<VisionTransformer>(vision_cfg, dtype));
  lm = std::make_shared<qwen2::Qwen2ForCausalLM>(llm_cfg, dtype);
  register_module("model", lm->model);
  if (lm->lm_head) register_module("lm_head", lm->lm_head);
  tokens_.image_token_id = llm_cfg.image_token_id;
  tokens_.video_token_id = llm_cfg.video_token_id;
  tokens_.vision_start_token_id = llm_cfg.vision_start_token_id;
  tokens_.spatial_merge_size = vision_cfg.spatial_merge_size;
}

std::vector<std::string> Qwen2VLForConditionalGeneration::default_skip_prefixes() {
  return {"vargpt_gen.", "vae_local.", "image_gen_projector.", "image_gen_projector_out.", "sos_embedding."};
}

std::shared_ptr<Qwen2VLForConditionalGeneration> Qwen2VLForConditionalGeneration::from_pretrained(
    const std::string& dir, std::optional<DType> dtype, std::vector<std::string> skip_prefixes) {
  const qwen2::Qwen2Config cfg = qwen2::Qwen2Config::load(dir);
  const VisionConfig vision = VisionConfig::from_file(dir);
  {  // sizes against the checkpoint's headers, before anything is allocated
    const std::string source = std::filesystem::is_directory(dir) ? dir + "/config.json" : dir;
    io::CheckpointReader reader(dir);
    cfg.check_checkpoint(reader, source);
    vision.check_checkpoint(reader, source);
  }
  auto m = std::make_shared<Qwen2VLForConditionalGeneration>(cfg, vision, dtype.value_or(cfg.dtype));
  // Load non-strictly, then be strict ourselves: nothing missing, nothing unexpected outside the
  // skipped prefixes (shape mismatches already fail inside load()).
  const nn::LoadResult r = m->load(dir, /*strict=*/false);
  std::string problems;
  for (const std::string& name : r.missing) problems += "\n  missing: " + name;
  for (const std::string& name : r.unexpected) {
    bool skipped = false;
    for (const std::string& p : skip_prefixes) skipped |= name.rfind(p, 0) == 0;
    if (!skipped) problems += "\n  unexpected: " + name;
  }
  VT_CHECK(problems.empty(), "Qwen2-VL checkpoint ", dir, " does not match the model:", problems);
  m->eval();
  return m;
}

Tensor Qwen2VLForConditionalGeneration::embed(const MultimodalInputs& in) const {
  VT_CHECK(in.input_ids.dim() == 2, "Qwen2-VL: input_ids must be (B, L), got ", in.input_ids.shape().str());
  const Tensor text = lm->model->embed(in.input_ids);  // (B, L, C)
  const int64_t B = text.size(0), L = text.size(1), C = text.size(2);
  // Host copy of the ids to find the image slots (row-major over the batch).
  const Tensor ids = in.input_ids.to(Device::cpu()).to(DType::I64).contiguous();
  const int64_t* p = ids.data<int64_t>();
  std::vector<int64_t> slots;
  for (int64_t r = 0; r < B * L; ++r)
    if (p[r] == tokens_.image_token_id) slots.push_back(r);
  int64_t n_images = 0;  // merged embeddings: t·h·w / merge² per image
  if (in.pixel_values.defined())
    for (const GridTHW& g : in.image_grid_thw) n_images += g[0] * g[1] * g[2] / (tokens_.spatial_merge_size * tokens_.spatial_merge_size);
  VT_CHECK(int64_t(slots.size()) == n_images, "Qwen2-VL: the prompt has ", slots.size(),
           " <|image_pad|> tokens but the ", in.image_grid_thw.size(), " image(s) give ", n_images,
           " embeddings (each image needs t·h·w/4 pads; one image per <|vision_start|> run)");
  if (n_images == 0) return text;
  const Tensor image = visual->forward(in.pixel_values.to(text.device()), in.image_grid_thw).to(text.dtype());  // (N, C)
  // index r < B·L picks text row r, index B·L + k picks image row k.
  std::vector<int64_t> index(B * L);
  for (int64_t r = 0; r < B * L; ++r) index[r] = r;
  for (size_t k = 0; k < slots.size(); ++k) index[slots[k]] = B * L + int64_t(k);
  const Tensor idx = from_blob(index.data(), {B * L}, DType::I64).to(text.device());
  return index_select(cat({text.reshape({B * L, C}), image}, 0), 0, idx).reshape({B, L, C});
}

qwen2::RopeIndex Qwen2VLForConditionalGeneration::positions(const MultimodalInputs& in, PositionMode mode) const {
  const int64_t B = in.input_ids.size(0), L = in.input_ids.size(1);
  if (mode == PositionMode::MRope) {
    const Tensor ids = in.input_ids.to(Device::cpu());
    const Tensor mask = in.attention_mask.defined() ? in.attention_mask.to(Device::cpu()) : Tensor();
    return qwen2::get_rope_index(ids, in.image_grid_thw, {}, mask, tokens_);
  }
  // Sequential: HF generate's cumsum(mask) - 1 (0..L-1 without padding) on all three axes.
  const Tensor pos = in.attention_mask.defined() ? qwen2::positions_from_mask(in.attention_mask.to(Device::cpu()))
                                                 : qwen2::sequential_positions(B, L);
  qwen2::RopeIndex r;
  r.position_ids = stack({pos, pos, pos}, 0);  // (3, B, L)
  const Tensor last = amax(pos, {1}).to(DType::I64).contiguous();
  for (int64_t b = 0; b < B; ++b) r.rope_deltas.push_back(last.data<int64_t>()[b] + 1 - L);
  return r;
}

Tensor Qwen2VLForConditionalGeneration::forward(const MultimodalInputs& in, PositionMode mode, bool last_only,
                                                std::vector<nn::KVCache>* caches,
                                                std::vector<int64_t>* rope_deltas) const {
  const Tensor h0 = embed(in);
  const qwen2::RopeIndex pos = positions(in, mode);
  if (rope_deltas) *rope_deltas = pos.rope_deltas;
  Tensor key_mask;
  if (in.attention_mask.defined() && amin(in.attention_mask.to(Device::cpu()).to(DType::I64)).item() == 0)
    key_mask = in.attention_mask.to(h0.device());
  const Tensor h = lm->model->forward(h0, lm->rope(pos.position_ids.to(h0.device())), key_mask, caches);
  return lm->logits(h, last_only);
}

qwen2::StepFn Qwen2VLForConditionalGeneration::step_fn(const MultimodalInputs& prompt, std::vector<nn::KVCache>& caches,
                                                       PositionMode mode) const {
  auto deltas = std::make_shared<std::vector<int64_t>>();
  return [this, prompt, &caches, mode, deltas](const Tensor& new_ids, const Tensor& attention_mask) -> Tensor {
    const Device dev = lm->model->embed_tokens.device();
    const bool padded = amin(attention_mask.to(Device::cpu()).to(DType::I64)).item() == 0;
    if (caches.empty() || caches[0].length == 0) {
      caches.assign(config().num_hidden_layers, nn::KVCache{});
      MultimodalInputs in = prompt;
      in.input_ids = new_ids.to(dev);
      in.attention_mask = attention_mask;
      return forward(in, mode, /*last_only=*/true, &caches, deltas.get()).select(1, 0);  // (B, V)
    }
    const int64_t past = caches[0].length, n = new_ids.size(1);
    const Tensor pos = qwen2::decode_positions(*deltas, past, n);  // (3, B, n)
    const Tensor h = lm->model->forward(lm->model->embed(new_ids.to(dev)), lm->rope(pos.to(dev)),
                                        padded ? attention_mask.to(dev) : Tensor(), &caches);
    return lm->logits(h, true).select(1, 0);
  };
}

}  // namespace vt::qwen2_vl
