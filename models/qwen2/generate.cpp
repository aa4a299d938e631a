// qwen2/generate.cpp: logits processors, the sampler and the generation loop (see generate.h).
#include "qwen2/generate.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "qwen2/qwen2.h"
#include "vt/autograd.h"
#include "vt/nn/functional.h"
#include "vt/ops.h"

namespace vt::qwen2 {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

float* rows_of(Tensor& scores, const char* what) {
  VT_CHECK(scores.dim() == 2 && scores.dtype() == DType::F32 && scores.is_contiguous() && !scores.is_cuda(), what,
           ": scores must be a contiguous f32 CPU (B, V) tensor, got ", dtype_name(scores.dtype()), " ",
           scores.shape().str());
  return scores.data<float>();
}

}  // namespace

// ---- processors ----------------------------------------------------------------------------------

void apply_repetition_penalty(Tensor& scores, const std::vector<std::vector<int64_t>>& seen, double penalty) {
  float* s = rows_of(scores, "apply_repetition_penalty");
  const int64_t B = scores.size(0), V = scores.size(1);
  VT_CHECK(static_cast<int64_t>(seen.size()) == B, "apply_repetition_penalty: ", seen.size(), " id lists for ", B,
           " rows");
  VT_CHECK(penalty > 0, "apply_repetition_penalty: penalty must be > 0, got ", penalty);
  const float pen = static_cast<float>(penalty);
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int64_t> ids = seen[b];
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());  // gather-then-scatter touches each id once
    for (int64_t id : ids) {
      VT_CHECK(id >= 0 && id < V, "apply_repetition_penalty: id ", id, " outside the vocabulary of ", V);
      float& x = s[b * V + id];
      x = x < 0 ? x * pen : x / pen;
    }
  }
}

void apply_temperature(Tensor& scores, double temperature) {
  float* s = rows_of(scores, "apply_temperature");
  VT_CHECK(temperature > 0, "apply_temperature: temperature must be > 0, got ", temperature);
  const float t = static_cast<float>(temperature);
  for (int64_t i = 0; i < scores.numel(); ++i) s[i] = s[i] / t;
}

void apply_top_k(Tensor& scores, int64_t k) {
  float* s = rows_of(scores, "apply_top_k");
  const int64_t B = scores.size(0), V = scores.size(1);
  k = std::min(std::max<int64_t>(k, 1), V);  // HF: max(top_k, min_tokens_to_keep = 1), at most V
  std::vector<float> row(V);
  for (int64_t b = 0; b < B; ++b) {
    float* r = s + b * V;
    std::copy(r, r + V, row.begin());
    std::nth_element(row.begin(), row.begin() + (k - 1), row.end(), std::greater<float>());
    const float kth = row[k - 1];
    for (int64_t v = 0; v < V; ++v)
      if (r[v] < kth) r[v] = kNegInf;
  }
}

void apply_top_p(Tensor& scores, double p) {
  float* s = rows_of(scores, "apply_top_p");
  VT_CHECK(p > 0 && p <= 1, "apply_top_p: top_p must be in (0, 1], got ", p);
  const int64_t B = scores.size(0), V = scores.size(1);
  const float cut = static_cast<float>(1 - p);
  std::vector<int64_t> order(V);
  std::vector<float> prob(V);
  for (int64_t b = 0; b < B; ++b) {
    float* r = s + b * V;
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t i, int64_t j) { return r[i] < r[j]; });  // ascending
    const float top = r[order[V - 1]];
    float total = 0;  // softmax of the sorted row in f32, then its running sum
    for (int64_t i = 0; i < V; ++i) total += prob[i] = std::exp(r[order[i]] - top);
    float cum = 0;
    for (int64_t i = 0; i < V - 1; ++i) {  // the last (largest) token is always kept
      cum += prob[i] / total;
      if (cum > cut) break;
      r[order[i]] = kNegInf;
    }
  }
}

// ---- sampler -------------------------------------------------------------------------------------

Sampler::Sampler(SamplingOptions opt) : opt_(opt), gen_(opt.seed) {}

Tensor Sampler::process(const Tensor& logits, const std::vector<std::vector<int64_t>>& seen) const {
  VT_CHECK(logits.dim() == 2, "Sampler: logits must be (B, V), got ", logits.shape().str());
  Tensor scores = logits.to(Device::cpu()).to(DType::F32).contiguous().clone();
  if (opt_.repetition_penalty != 1.0) apply_repetition_penalty(scores, seen, opt_.repetition_penalty);
  if (!opt_.do_sample) return scores;
  if (opt_.temperature != 1.0) apply_temperature(scores, opt_.temperature);
  if (opt_.top_k > 0) apply_top_k(scores, opt_.top_k);
  if (opt_.top_p < 1.0) apply_top_p(scores, opt_.top_p);
  return scores;
}

std::vector<int64_t> Sampler::next(const Tensor& logits, const std::vector<std::vector<int64_t>>& seen) {
  Tensor scores = process(logits, seen);  // (B, V) f32
  const int64_t B = scores.size(0), V = scores.size(1);
  std::vector<int64_t> out(B);
  if (!opt_.do_sample) {
    const float* s = scores.data<float>();
    for (int64_t b = 0; b < B; ++b) out[b] = std::max_element(s + b * V, s + (b + 1) * V) - (s + b * V);
    return out;
  }
  // One uniform per row against the CDF (with replacement: the same law as HF's single draw).
  return multinomial(nn::softmax(scores, -1), 1, /*replacement=*/true, &gen_).tolist<int64_t>();
}

// ---- the loop ------------------------------------------------------------------------------------

GenerateResult generate(const StepFn& step, const Tensor& input_ids, const Tensor& attention_mask,
                        const GenerateOptions& opt) {
  VT_CHECK(input_ids.dim() == 2, "generate: input_ids must be (B, T), got ", input_ids.shape().str());
  const int64_t B = input_ids.size(0), T = input_ids.size(1);
  NoGradGuard no_grad;
  Tensor ids = input_ids.to(DType::I64).contiguous();
  Tensor mask = attention_mask.defined() ? ne(attention_mask, 0.0).to(DType::I64) : ones({B, T}, DType::I64);
  VT_CHECK(mask.shape() == ids.shape(), "generate: attention_mask ", mask.shape().str(), " does not match input_ids ",
           ids.shape().str());
  std::vector<std::vector<int64_t>> seen(B);  // every id of each row so far, for the repetition penalty
  const std::vector<int64_t> prompt = ids.tolist<int64_t>();
  for (int64_t b = 0; b < B; ++b) seen[b].assign(prompt.begin() + b * T, prompt.begin() + (b + 1) * T);

  Sampler sampler(opt.sampling);
  std::vector<bool> done(B, false);
  GenerateResult res;
  res.length.assign(B, 0);
  std::vector<int64_t> produced;  // (steps, B) row-major while looping
  int64_t steps = 0;
  Tensor feed = ids;  // (B, n): the whole prompt first, then one token per row
  while (steps < opt.max_new_tokens) {
    const Tensor logits = step(feed, mask);
    VT_CHECK(logits.dim() == 2 && logits.size(0) == B, "generate: the step returned logits ", logits.shape().str(),
             ", expected (", B, ", V)");
    std::vector<int64_t> next = sampler.next(logits, seen);
    for (int64_t b = 0; b < B; ++b) {
      if (done[b]) {
        next[b] = opt.pad_token_id;
      } else {
        ++res.length[b];
        if (opt.on_token) opt.on_token(b, next[b]);
        done[b] = std::find(opt.stop_tokens.begin(), opt.stop_tokens.end(), next[b]) != opt.stop_tokens.end();
      }
      seen[b].push_back(next[b]);
    }
    produced.insert(produced.end(), next.begin(), next.end());
    ++steps;
    if (std::all_of(done.begin(), done.end(), [](bool d) { return d; })) break;
    feed = from_vector(next, {B, 1});
    mask = cat({mask, ones({B, 1}, DType::I64)}, 1);  // HF grows every row's mask, stopped or not
  }
  res.tokens = from_vector(produced, {steps, B}).t().contiguous();  // (B, steps)
  return res;
}

StepFn qwen2_text_step(const Qwen2ForCausalLM& model, std::vector<nn::KVCache>& caches) {
  return [&model, &caches](const Tensor& new_ids, const Tensor& attention_mask) {
    const int64_t n = new_ids.size(1), past = caches.empty() ? 0 : caches[0].length;
    const Tensor positions = positions_from_mask(attention_mask).narrow(1, past, n).contiguous();  // (B, n)
    const bool padded = amin(attention_mask).item() == 0;
    return model.forward(new_ids, positions, padded ? attention_mask : Tensor(), &caches, /*last_only=*/true)
        .select(1, 0);  // (B, V)
  };
}

}  // namespace vt::qwen2
