// qwen2/rope_index.cpp: get_rope_index (see rope_index.h), written over plain vectors: the input
// is a few thousand ids, and the upstream loop structure stays visible.
#include "qwen2/rope_index.h"

#include <algorithm>

#include "vt/ops.h"

namespace vt::qwen2 {
namespace {

using Grid = std::array<int64_t, 3>;

// Index of the first `token` in ids[from, end), or ids.size() + 1 (upstream's "not found").
size_t find_from(const std::vector<int64_t>& ids, int64_t token, size_t from) {
  auto it = std::find(ids.begin() + std::min(from, ids.size()), ids.end(), token);
  return it == ids.end() ? ids.size() + 1 : static_cast<size_t>(it - ids.begin());
}

}  // namespace

RopeIndex get_rope_index(const Tensor& input_ids, const std::vector<Grid>& image_grid_thw,
                         const std::vector<Grid>& video_grid_thw, const Tensor& attention_mask,
                         const RopeIndexTokens& tk) {
  VT_CHECK(input_ids.dim() == 2, "get_rope_index: input_ids must be (B, L), got ", input_ids.shape().str());
  const int64_t B = input_ids.size(0), L = input_ids.size(1);
  const std::vector<int64_t> all_ids = input_ids.to(DType::I64).contiguous().tolist<int64_t>();
  std::vector<int64_t> mask(B * L, 1);
  if (attention_mask.defined()) {
    VT_CHECK(attention_mask.shape() == input_ids.shape(), "get_rope_index: attention_mask ",
             attention_mask.shape().str(), " does not match input_ids ", input_ids.shape().str());
    mask = ne(attention_mask, 0.0).to(DType::I64).contiguous().tolist<int64_t>();
  }
  std::vector<int64_t> pos(3 * B * L, 1);  // (3, B, L); padded slots keep 1
  RopeIndex out;
  const bool text_only = image_grid_thw.empty() && video_grid_thw.empty();
  size_t image_index = 0, video_index = 0;  // grids are consumed across the batch

  for (int64_t b = 0; b < B; ++b) {
    std::vector<int64_t> ids;  // the row's real tokens
    std::vector<int64_t> where;  // their columns
    for (int64_t j = 0; j < L; ++j)
      if (mask[b * L + j]) ids.push_back(all_ids[b * L + j]), where.push_back(j);
    const size_t n = ids.size();
    std::vector<std::array<int64_t, 3>> rows;  // (t, h, w) per real token
    rows.reserve(n);
    int64_t next = 0;  // max position so far + 1
    auto text_run = [&](size_t len) {
      for (size_t i = 0; i < len; ++i) rows.push_back({next + int64_t(i), next + int64_t(i), next + int64_t(i)});
      next += static_cast<int64_t>(len);
    };

    if (text_only) {
      text_run(n);
    } else {
      int64_t images = 0, videos = 0;  // vision_start followed by an image / video token
      for (size_t i = 0; i + 1 < n; ++i) {
        if (ids[i] != tk.vision_start_token_id) continue;
        images += ids[i + 1] == tk.image_token_id;
        videos += ids[i + 1] == tk.video_token_id;
      }
      size_t st = 0;
      const int64_t vision_inputs = images + videos;  // images / videos count down as they are placed
      for (int64_t k = 0; k < vision_inputs; ++k) {
        const size_t ed_image = images > 0 ? find_from(ids, tk.image_token_id, st) : n + 1;
        const size_t ed_video = videos > 0 ? find_from(ids, tk.video_token_id, st) : n + 1;
        Grid g;
        size_t ed;
        if (ed_image < ed_video) {
          VT_CHECK(image_index < image_grid_thw.size(), "get_rope_index: row ", b, " has more images than the ",
                   image_grid_thw.size(), " entries of image_grid_thw");
          g = image_grid_thw[image_index++];
          --images;
          ed = ed_image;
        } else {
          VT_CHECK(video_index < video_grid_thw.size(), "get_rope_index: row ", b, " has more videos than the ",
                   video_grid_thw.size(), " entries of video_grid_thw");
          g = video_grid_thw[video_index++];
          --videos;
          ed = ed_video;
        }
        VT_CHECK(ed <= n, "get_rope_index: row ", b, " has a <|vision_start|> but no image/video token after it");
        const int64_t gt = g[0], gh = g[1] / tk.spatial_merge_size, gw = g[2] / tk.spatial_merge_size;
        VT_CHECK(ed + size_t(gt * gh * gw) <= n, "get_rope_index: row ", b, ": an image of merged grid (", gt,
                 ", ", gh, ", ", gw, ") needs ", gt * gh * gw, " tokens from offset ", ed, " but the row has ", n);
        text_run(ed - st);
        const int64_t base = next;  // = st_idx + text_len upstream
        int64_t top = base - 1;
        for (int64_t t = 0; t < gt; ++t)
          for (int64_t h = 0; h < gh; ++h)
            for (int64_t w = 0; w < gw; ++w) {
              rows.push_back({base + t, base + h, base + w});
              top = std::max({top, base + t, base + h, base + w});
            }
        next = top + 1;
        st = ed + static_cast<size_t>(gt * gh * gw);
      }
      if (st < n) text_run(n - st);
    }

    int64_t max_pos = -1;
    for (size_t i = 0; i < n; ++i)
      for (int a = 0; a < 3; ++a) {
        pos[(a * B + b) * L + where[i]] = rows[i][a];
        max_pos = std::max(max_pos, rows[i][a]);
      }
    // Upstream's text branch takes the max over the whole row, padded 1s included.
    if (text_only && n < size_t(L)) max_pos = std::max<int64_t>(max_pos, 1);
    out.rope_deltas.push_back(max_pos + 1 - L);
  }
  out.position_ids = from_vector(pos, {3, B, L});
  return out;
}

Tensor decode_positions(const std::vector<int64_t>& rope_deltas, int64_t cache_len, int64_t n) {
  const int64_t B = static_cast<int64_t>(rope_deltas.size());
  std::vector<int64_t> pos(3 * B * n);
  for (int64_t a = 0; a < 3; ++a)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < n; ++i) pos[(a * B + b) * n + i] = cache_len + i + rope_deltas[b];
  return from_vector(pos, {3, B, n});
}

}  // namespace vt::qwen2
