// train/data/sequence.cpp: Record -> Example (sequence.h).
//
// Why the ids are encoded per segment: LLaMA-Factory encodes the prompt part ("<|im_start|>system ...
// <|im_start|>assistant\n") and each reply ("{content}<|im_end|>\n") as separate strings and
// concatenates the ids; the labels are exactly the reply segments. Encoding the whole rendered text at
// once differs only when a reply starts with whitespace that BPE would merge with the "\n" before it,
// and then upstream's split is the one the weights saw. The segments are cut out of the rendered
// template itself (renders of growing prefixes of the conversation), so the text is tok's ChatML.
#include "data/sequence.h"

#include <utility>

#include "infinity/scale_schedule.h"
#include "tokenizer/chat_template.h"
#include "vt/error.h"

namespace vt::train {
namespace {

enum class Role { Vit, Gen };

int32_t need_token(const tok::Tokenizer& t, const char* text) {
  const int32_t id = t.find_token(text);
  VT_CHECK(id >= 0, "data: the tokenizer has no ", text, " token; the VARGPT-v1.1 data pipeline needs the Qwen2-VL ",
           "tokenizer with the three generation tokens added (<|image_gen_start|>, <|image_gen_end|>, <|image_gen_pad|>)");
  return id;
}

// Roles of the markers of `text`, in order.
void marker_roles(std::string_view text, std::vector<Role>& roles) {
  for (size_t pos = 0;;) {
    const size_t v = text.find(kImageMarker, pos), g = text.find(kImageGenMarker, pos);
    if (v == std::string_view::npos && g == std::string_view::npos) return;
    if (v < g) roles.push_back(Role::Vit), pos = v + kImageMarker.size();
    else roles.push_back(Role::Gen), pos = g + kImageGenMarker.size();
  }
}

RgbImage regularize(const RgbImage& im, const SequenceOptions& opt) {
  return regularize_min_side(opt.nearest_cap ? cap_pixels_nearest(im, opt.cap_pixels) : im);
}

}  // namespace

SequenceBuilder::SequenceBuilder(const tok::Tokenizer& tokenizer, SequenceOptions opt)
    : tok_(tokenizer), opt_(std::move(opt)) {
  (void)need_token(tok_, "<|im_start|>");
  ids_.im_end = need_token(tok_, "<|im_end|>");
  ids_.vision_start = need_token(tok_, "<|vision_start|>");
  ids_.image_pad = need_token(tok_, "<|image_pad|>");
  ids_.endoftext = tok_.find_token("<|endoftext|>");
  ids_.gen.start = need_token(tok_, "<|image_gen_start|>");
  ids_.gen.end = need_token(tok_, "<|image_gen_end|>");
  ids_.gen.pad = need_token(tok_, "<|image_gen_pad|>");
  gen_pads_ = opt_.gen_pads > 0 ? opt_.gen_pads
                                : infinity::schedule_for_image(opt_.gen.size, opt_.gen.size)
                                      .padded_tokens(infinity::kSequencePadMultiple);
}

Example SequenceBuilder::build(const Record& record, uint64_t seed) const {
  std::vector<RgbImage> images;
  images.reserve(record.images.size());
  for (size_t k = 0; k < record.images.size(); ++k) {
    try {
      images.push_back(qwen2_vl::load_image(resolve_image(record, record.images[k])));
    } catch (const Error& e) {
      VT_FAIL("record ", record.id, " (", record.origin, "): image ", k, ": ", e.what());
    }
  }
  return build(record, images, seed);
}

Example SequenceBuilder::build(const Record& record, const std::vector<RgbImage>& images, uint64_t seed) const {
  try {
    validate_record(record);
    VT_CHECK(images.size() == record.images.size(), images.size(), " decoded images for ", record.images.size(), " paths");
    Example ex;
    ex.id = record.id;
    ex.kind = record.kind;
    std::vector<const Turn*> turns;
    for (const Turn& t : record.turns) turns.push_back(&t);
    // Images are consumed in marker order: the prompt's first, then the reply's.
    size_t prompt_images = 0;
    for (const Turn& t : record.turns)
      prompt_images += count_marker(t.text, kImageMarker) + count_marker(t.text, kImageGenMarker);
    auto take = [&](size_t first, size_t n, std::vector<const RgbImage*>& ims, std::vector<int64_t>& slots) {
      for (size_t k = first; k < first + n; ++k) ims.push_back(&images[k]), slots.push_back(static_cast<int64_t>(k));
    };
    std::vector<const RgbImage*> ims;
    std::vector<int64_t> slots;
    take(0, prompt_images, ims, slots);
    if (record.kind != TaskKind::Preference) {
      ex.seq = build_sequence(record.system, turns, ims, slots, seed);
      return ex;
    }
    const size_t nc = count_marker(record.chosen.text, kImageMarker) + count_marker(record.chosen.text, kImageGenMarker);
    const size_t nr = images.size() - prompt_images - nc;
    std::vector<const RgbImage*> ims_r = ims;
    std::vector<int64_t> slots_r = slots;
    take(prompt_images, nc, ims, slots);
    take(prompt_images + nc, nr, ims_r, slots_r);
    turns.push_back(&record.chosen);
    ex.seq = build_sequence(record.system, turns, ims, slots, seed);
    turns.back() = &record.rejected;
    ex.rejected = build_sequence(record.system, turns, ims_r, slots_r, seed);
    return ex;
  } catch (const Error& e) {
    VT_FAIL("record ", record.id, " (", record.origin, "): ", e.what());
  }
}

Sequence SequenceBuilder::build_sequence(const std::string& system, const std::vector<const Turn*>& turns,
                                         const std::vector<const RgbImage*>& images, const std::vector<int64_t>& slots,
                                         uint64_t seed) const {
  std::vector<Role> roles;
  for (const Turn* t : turns) marker_roles(t->text, roles);
  VT_CHECK(roles.size() == images.size(), roles.size(), " image markers for ", images.size(), " images");

  // ---- images: the ViT inputs through the Qwen2-VL processor, the target through its transform
  Sequence seq;
  std::vector<RgbImage> vit;
  for (size_t k = 0; k < roles.size(); ++k) {
    if (roles[k] == Role::Vit) {
      vit.push_back(regularize(*images[k], opt_));
    } else {
      seq.gen_image = gen_target_transform(regularize(*images[k], opt_), opt_.gen, hash_key(seed, slots[k]));
    }
  }
  std::vector<int64_t> vit_tokens;  // N per ViT image
  if (!vit.empty()) {
    qwen2_vl::ProcessedImages p = qwen2_vl::preprocess(vit, opt_.vit);
    seq.pixel_values = p.pixel_values;
    seq.image_grid_thw = qwen2_vl::grid_rows(p.image_grid_thw);
    const int64_t merge = opt_.vit.merge_size * opt_.vit.merge_size;
    for (const auto& g : seq.image_grid_thw) vit_tokens.push_back(g[0] * g[1] * g[2] / merge);
  }

  // ---- messages with the markers expanded
  std::vector<tok::ChatMessage> msgs;
  if (!system.empty()) msgs.push_back({"system", {tok::ChatPart::of_text(system)}});
  const size_t first_turn = msgs.size();
  size_t vit_k = 0;
  const std::string gen_span = tok::image_gen_span(static_cast<int>(gen_pads_));
  for (const Turn* t : turns) {
    tok::ChatMessage m{t->role, {}};
    std::string_view text = t->text;
    for (size_t pos = 0;;) {
      const size_t v = text.find(kImageMarker, pos), g = text.find(kImageGenMarker, pos);
      const size_t at = std::min(v, g);
      if (at == std::string_view::npos) {
        if (pos < text.size()) m.content.push_back(tok::ChatPart::of_text(std::string(text.substr(pos))));
        break;
      }
      if (at > pos) m.content.push_back(tok::ChatPart::of_text(std::string(text.substr(pos, at - pos))));
      if (v < g) {
        m.content.push_back(tok::ChatPart::of_image(static_cast<int>(vit_tokens[vit_k++])));
        pos = v + kImageMarker.size();
      } else {
        m.content.push_back(tok::ChatPart::of_text(gen_span));
        pos = g + kImageGenMarker.size();
      }
    }
    msgs.push_back(std::move(m));
  }

  // ---- segments: [prompt][reply][prompt][reply]...; replies are labelled
  std::string done;  // text already encoded
  auto append = [&](const std::string& text, bool labelled) {
    VT_CHECK(text.compare(0, done.size(), done) == 0, "chat template: a rendered prefix does not extend the previous one");
    for (int32_t id : tok_.encode(std::string_view(text).substr(done.size()))) {
      seq.ids.push_back(id);
      seq.labels.push_back(labelled && id != ids_.gen.pad ? id : -100);
    }
    done = text;
  };
  for (size_t i = first_turn; i < msgs.size(); ++i) {
    if (msgs[i].role != "assistant") continue;
    std::span<const tok::ChatMessage> head(msgs.data(), i);
    append(tok::apply_chat_template(head, /*add_generation_prompt=*/true, opt_.default_system), false);
    append(tok::apply_chat_template(std::span<const tok::ChatMessage>(msgs.data(), i + 1), false, opt_.default_system),
           true);
  }
  const std::string whole = tok::apply_chat_template(msgs, msgs.back().role != "assistant", opt_.default_system);
  if (whole.size() > done.size()) append(whole, false);

  // ---- the tokenizer must have kept every special token whole, and the routing must be the markers'
  std::vector<Role> scanned;
  int64_t image_pads = 0, gen_pads = 0;
  for (int64_t id : seq.ids) {
    if (id == ids_.vision_start) scanned.push_back(Role::Vit);
    else if (id == ids_.gen.start) scanned.push_back(Role::Gen);
    else if (id == ids_.image_pad) ++image_pads;
    else if (id == ids_.gen.pad) ++gen_pads;
  }
  int64_t want_image_pads = 0, n_gen = 0;
  for (int64_t n : vit_tokens) want_image_pads += n;
  for (Role r : roles) n_gen += r == Role::Gen;
  VT_CHECK(scanned == roles && image_pads == want_image_pads && gen_pads == n_gen * gen_pads_,
           "the encoded ids hold ", scanned.size(), " image spans, ", image_pads, " <|image_pad|> and ", gen_pads,
           " <|image_gen_pad|> for ", roles.size(), " markers, ", want_image_pads, " and ", n_gen * gen_pads_,
           " expected (does the text contain special tokens literally?)");
  return seq;
}

}  // namespace vt::train
