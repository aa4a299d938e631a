// train/data/sequence.h: a Record -> an Example: tokenized ChatML, labels, and the images routed to
// the ViT or to the generation target in token order (vargpt.md §3, §10 step 1, §11).
//
//   record turns with markers, images (paths, decoded here or handed in)
//     markers in text order -> roles: <image> = ViT input, <image_gen> = generation target
//     ViT images:    [Q17 NEAREST cap] -> min side 28 -> qwen2_vl::preprocess -> pixel_values (Σ, 1176),
//                    grid (1, gh, gw), N = gh·gw / merge²
//     target images: [Q17 NEAREST cap] -> min side 28 -> Lanczos shorter side round(1.125 res)
//                    -> RandomCrop(res) -> x·2-1 -> gen_image (3, res, res)
//     text:          <image> -> IMG(N), <image_gen> -> <|image_gen_start|> P x <|image_gen_pad|>
//                    <|image_gen_end|>, P = schedule_for_image(res, res).padded_tokens(128)
//                    (640 at 256², 2560 at 512²); ChatML via tok::apply_chat_template
//     ids:           the prompt part and each assistant turn ("{content}<|im_end|>\n") are encoded
//                    separately, as LLaMA-Factory encodes per message; labels = ids on assistant
//                    turns, -100 elsewhere and at the <|image_gen_pad|> slots
//     check:         the vision_start / image_gen_start ids, scanned in order, match the roles
//
// A preference record gives two Sequences sharing the prompt: chosen = prompt images + chosen's,
// rejected = prompt images + rejected's (images = [prompt..., chosen..., rejected...]).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/image_ops.h"
#include "data/records.h"
#include "data/sample.h"
#include "qwen2_vl/image_processor.h"
#include "tokenizer/bpe.h"
#include "vargpt/vargpt.h"

namespace vt::train {

struct SequenceOptions {
  qwen2_vl::ImageProcessorConfig vit;  // ViT preprocessing (the checkpoint's preprocessor_config.json)
  GenTargetOptions gen;                // gen.size = the stage's resolution ("gen_size"), crop mode
  bool nearest_cap = true;             // Q17: NEAREST cap before everything (false = --no-nearest-cap)
  int64_t cap_pixels = 512 * 512;      // LLaMA-Factory's image_resolution
  std::string default_system = "You are a helpful assistant.";
  int64_t gen_pads = 0;  // P of an <image_gen> span; 0: schedule_for_image(gen.size).padded_tokens(128)
                         // (a model with vt_gen_sides passes its own schedule's count)
};

// The token ids the builder writes and checks, read off the tokenizer.
struct SpecialIds {
  int32_t im_end = -1, vision_start = -1, image_pad = -1, endoftext = -1;
  vargpt::GenerationTokens gen;  // <|image_gen_start|>, <|image_gen_end|>, <|image_gen_pad|>
};

class SequenceBuilder {
 public:
  // The tokenizer must outlive the builder and hold <|im_start|>, <|im_end|>, <|vision_start|>,
  // <|image_pad|> and the three generation tokens (an error names a missing one); gen.size must be
  // an Infinity image size (schedule_for_image).
  SequenceBuilder(const tok::Tokenizer& tokenizer, SequenceOptions opt = {});

  // Opens and decodes the record's images (resolve_image) and builds the example. `seed` draws the
  // random crops (image k of the record uses hash_key(seed, k)). Errors name the record id and the
  // reason (missing or corrupt image, marker/image mismatch, a tokenizer that split a special token).
  Example build(const Record& record, uint64_t seed) const;
  // The same with the images already decoded, in record.images order.
  Example build(const Record& record, const std::vector<RgbImage>& images, uint64_t seed) const;

  int64_t gen_pads() const { return gen_pads_; }  // P
  const SpecialIds& special_ids() const { return ids_; }
  const SequenceOptions& options() const { return opt_; }
  const tok::Tokenizer& tokenizer() const { return tok_; }

 private:
  // One sequence: `turns` (user/assistant alternating), `images` in marker order, `slots` their
  // indices in the record (for the crop seed).
  Sequence build_sequence(const std::string& system, const std::vector<const Turn*>& turns,
                          const std::vector<const RgbImage*>& images, const std::vector<int64_t>& slots,
                          uint64_t seed) const;

  const tok::Tokenizer& tok_;
  SequenceOptions opt_;
  SpecialIds ids_;
  int64_t gen_pads_ = 0;
};

}  // namespace vt::train
