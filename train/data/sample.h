// train/data/sample.h: what the data pipeline hands the training stages: tokenized sequences with
// their images decoded and preprocessed, and right-padded batches of them.
//
//   record (JSON, docs/data_formats.md) --sequence builder--> Example: ids, labels, ViT images,
//   generation targets --Loader (shuffled by seed, worker threads)--> Batch (B rows, right-padded)
//
// The vision span of an understanding image and the <image_gen> span of a generation target are
// expanded in the ids; images are routed in token order (vargpt.md §3): each <|vision_start|>
// consumes the next image for the ViT, each <|image_gen_start|> the next one as a target.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "qwen2_vl/vision.h"
#include "vt/tensor.h"

namespace vt::train {

enum class TaskKind { Understanding, Generation, Editing, Preference };
const char* task_name(TaskKind k);

// One tokenized sequence.
struct Sequence {
  std::vector<int64_t> ids;     // ChatML, IMG(N) and <image_gen> spans expanded
  std::vector<int64_t> labels;  // dataset labels: the assistant turns' tokens (their <|im_end|> and
                                // "\n" included, LLaMA-Factory's rule), -100 elsewhere; the pad slots
                                // of an <image_gen> span are -100
  Tensor pixel_values;          // (Σ t h w, 1176) f32: the ViT images in order, or undefined
  std::vector<qwen2_vl::GridTHW> image_grid_thw;
  Tensor gen_image;             // (3, H, W) f32 in [-1, 1]: the target of the <image_gen> span, or undefined
};

struct Example {
  std::string id;
  TaskKind kind = TaskKind::Understanding;
  Sequence seq;       // preference: the chosen response
  Sequence rejected;  // preference only: the rejected response (same prompt)
};

// Right-padded rows. For preference batches the rows are [chosen of pair 0..N-1; rejected of pair
// 0..N-1] (2N rows, chosen first, as LLaMA-Factory lays them out).
struct Batch {
  std::vector<std::string> ids;      // example ids, one per example
  Tensor input_ids;                  // (B, T) int64, right-padded with pad_token_id
  Tensor attention_mask;             // (B, T) int64
  Tensor labels;                     // (B, T) int64, -100 on padding
  Tensor pixel_values;               // (Σ, 1176) f32 or undefined; images of all rows in row order
  std::vector<qwen2_vl::GridTHW> image_grid_thw;
  Tensor gen_images;                 // (G, 3, H, W) f32: targets of the rows holding a span, in row order
  std::vector<int64_t> gen_rows;     // (G) the row of each target
  int64_t tokens = 0;                // non-padding tokens in the batch (throughput)
};

}  // namespace vt::train
