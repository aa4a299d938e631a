// qwen2/generate.h: the sampler and the autoregressive loop, written once for every decoder that
// produces next-token logits (Qwen2 text, Qwen2-VL with images, VARGPT's text turns).
//
// Sampler: logits (B, V) -> one token per row, with HF generate's processors in HF's order:
//   repetition penalty -> (sampling only:) temperature -> top-k -> top-p -> softmax -> multinomial
// and greedy = argmax (first maximum on ties, as torch.argmax) after the repetition penalty. All
// processing is in f32 (HF casts the logits to float). Draws come from vt's Philox Generator
// (vt::multinomial), so a seed reproduces a run on any machine; the streams differ from torch's.
//
// Loop: the caller's StepFn runs the model on the new ids of every row and returns the logits of
// their last position. Step 0 feeds the whole (left-padded) prompt; each later step feeds the one
// token chosen per row, with the attention mask grown by a 1 for every row, as HF does. A row stops
// after emitting one of its stop tokens and emits pad_token_id afterwards (still fed to the model,
// never seen by unfinished rows); the loop ends when every row has stopped or after max_new_tokens.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "vt/nn/attention.h"
#include "vt/random.h"
#include "vt/tensor.h"

namespace vt::qwen2 {

class Qwen2ForCausalLM;

struct SamplingOptions {
  bool do_sample = false;           // false: greedy
  double temperature = 1.0;         // sampling only; > 0
  int64_t top_k = 0;                // 0: off
  double top_p = 1.0;               // 1: off
  double repetition_penalty = 1.0;  // 1: off; applies to greedy too, as in HF
  uint64_t seed = Generator::kDefaultSeed;
};

// ---- the logits processors (scores: (B, V) f32 contiguous, modified in place) -------------------
// HF RepetitionPenaltyLogitsProcessor: for every id in seen[b] (prompt, padding and generated ids),
// score < 0 ? score * penalty : score / penalty, once per distinct id.
void apply_repetition_penalty(Tensor& scores, const std::vector<std::vector<int64_t>>& seen, double penalty);
void apply_temperature(Tensor& scores, double temperature);  // scores / temperature
// HF TopKLogitsWarper: scores below the k-th largest become -inf (ties with it are kept).
void apply_top_k(Tensor& scores, int64_t k);
// HF TopPLogitsWarper: sort ascending, drop the tokens whose cumulative softmax mass is <= 1 - p
// (the smallest ones), always keeping the largest.
void apply_top_p(Tensor& scores, double p);

class Sampler {
 public:
  explicit Sampler(SamplingOptions opt = {});
  // logits: (B, V) any float dtype; seen: the ids each row has so far (for the repetition penalty).
  std::vector<int64_t> next(const Tensor& logits, const std::vector<std::vector<int64_t>>& seen);
  // The processed f32 scores (B, V) that next() samples from (-inf for filtered tokens).
  Tensor process(const Tensor& logits, const std::vector<std::vector<int64_t>>& seen) const;
  const SamplingOptions& options() const { return opt_; }

 private:
  SamplingOptions opt_;
  Generator gen_;
};

// ---- the loop ------------------------------------------------------------------------------------
// new_ids: (B, n) int64 to feed; attention_mask: (B, past + n) int64, the whole mask so far.
// Returns the logits of the last of the n positions, (B, V).
using StepFn = std::function<Tensor(const Tensor& new_ids, const Tensor& attention_mask)>;
// Called as each token is produced, for each row that had not stopped (the stop token included).
using TokenCallback = std::function<void(int64_t row, int64_t token)>;

struct GenerateOptions {
  int64_t max_new_tokens = 32;
  std::vector<int64_t> stop_tokens;  // any of them ends a row
  int64_t pad_token_id = 0;
  SamplingOptions sampling;
  TokenCallback on_token;
};

struct GenerateResult {
  Tensor tokens;                // (B, steps) int64: the new tokens, pad after a row's stop token
  std::vector<int64_t> length;  // per row: tokens up to and including its stop token
};

// input_ids: (B, T) int, left-padded; attention_mask: (B, T) (nonzero = token) or undefined.
GenerateResult generate(const StepFn& step, const Tensor& input_ids, const Tensor& attention_mask,
                        const GenerateOptions& opt);

// The text StepFn of a Qwen2 LM: positions cumsum(mask) - 1 (HF generate's), a key-padding mask
// only when some row is padded, and `caches` (one per layer, empty at the start) kept in between.
StepFn qwen2_text_step(const Qwen2ForCausalLM& model, std::vector<nn::KVCache>& caches);

}  // namespace vt::qwen2
