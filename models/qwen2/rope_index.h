// qwen2/rope_index.h: Qwen2-VL's 3-D M-RoPE position ids (qwen2_vl.md §5.2), the algorithm of
// transformers 4.46 `Qwen2VLForConditionalGeneration.get_rope_index`, which VARGPT-v1.1 embeds.
//
// Per row, over the tokens whose attention_mask is 1:
//   - a text run gets st + arange(L) on all three axes, st = (max position so far) + 1, or 0;
//   - the image (or video) tokens that follow a <|vision_start|> get (i_t, i_h, i_w) + st + L, where
//     (T', H', W') = (t, h / merge, w / merge) is the merged grid of the next image_grid_thw entry and
//     i runs over it in raster order (t outer, then h, then w): an image advances the position by
//     max(T', H', W'), not by its token count;
//   - padded slots get 1; rope_deltas = max position + 1 - (full row length, padding included).
// Decoding with a KV cache then uses position cache_len + rope_deltas on all three axes.
// Without any grid (pure text) the positions are cumsum(mask) - 1 (1 at padding), and the deltas
// are max + 1 - L, as upstream's text branch.
//
// Quirks kept from upstream: the images of a row are counted by the vision_start tokens followed
// by an image token, the grids are consumed in order across the whole batch, and each image's
// tokens are found by searching for the next image token from the current offset.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "vt/tensor.h"

namespace vt::qwen2 {

struct RopeIndexTokens {
  int64_t image_token_id = 151655;
  int64_t video_token_id = 151656;
  int64_t vision_start_token_id = 151652;
  int64_t spatial_merge_size = 2;
};

struct RopeIndex {
  Tensor position_ids;             // (3, B, L) int64
  std::vector<int64_t> rope_deltas;  // (B)
};

// input_ids: (B, L) int; image_grid_thw / video_grid_thw: (t, h, w) per image / video in patches,
// in order of appearance across the batch; attention_mask: (B, L) (nonzero = token) or undefined.
RopeIndex get_rope_index(const Tensor& input_ids, const std::vector<std::array<int64_t, 3>>& image_grid_thw,
                         const std::vector<std::array<int64_t, 3>>& video_grid_thw = {},
                         const Tensor& attention_mask = Tensor(), const RopeIndexTokens& tokens = {});

// Decode-time positions (3, B, n) for n new tokens after `cache_len` cached ones:
// cache_len + i + rope_deltas[b] on every axis.
Tensor decode_positions(const std::vector<int64_t>& rope_deltas, int64_t cache_len, int64_t n = 1);

}  // namespace vt::qwen2
