// tasks.cpp: sampling generation samples, violations, edits and questions (see tasks.h).
#include "shapeworld/tasks.h"

#include <algorithm>

#include "shapeworld/language.h"
#include "vt/error.h"

namespace vt::shapes {

static SizeClass random_size(Rng& rng) { return rng.chance(0.5f) ? SizeClass::small : SizeClass::large; }

static int random_color(Shape s, const SplitContext& ctx, Rng& rng, int avoid = -1) {
  for (;;) {
    int c = rng.below(kNumColors);
    if (c != avoid && ctx.allowed(s, c)) return c;
  }
}

static Shape random_shape(Rng& rng, int avoid = -1) {
  for (;;) {
    int s = rng.below(kNumShapes);
    if (s != avoid) return Shape(s);
  }
}

// A (shape, colour) pair: in the test split, held out with probability 1/2.
static std::pair<Shape, int> prompted_pair(const SplitContext& ctx, Rng& rng, int avoid_shape = -1, int avoid_color = -1) {
  if (!ctx.train && rng.chance(0.5f)) {
    for (int t = 0; t < 16; ++t) {
      Shape s = random_shape(rng, avoid_shape);
      int c = ctx.heldout.color_of_shape[int(s)];
      if (c != avoid_color) return {s, c};
    }
  }
  Shape s = random_shape(rng, avoid_shape);
  return {s, random_color(s, ctx, rng, avoid_color)};
}

static GenSample try_sample(Tag tag, const SplitContext& ctx, Rng& rng, int attempt, bool& ok) {
  GenSample g;
  g.meta.tag = tag;
  g.scene.size = ctx.size;
  g.scene.background = sample_background(rng, ctx.noise_sigma, ctx.plain);
  ok = true;
  // After many failed placements, shrink everything: small objects always fit.
  auto size = [&]() { return attempt > 20 ? SizeClass::small : random_size(rng); };
  auto add = [&](Shape s, int c) { ok = ok && place_object(g.scene, make_object(s, c, size(), ctx.size, rng, ctx.object_scale), rng); };
  switch (tag) {
    case Tag::single_object: {
      Shape s = random_shape(rng);
      g.meta.include.push_back({s, 1, -1, {}});
      add(s, random_color(s, ctx, rng));
      break;
    }
    case Tag::two_object: {
      Shape a = random_shape(rng), b = random_shape(rng, int(a));
      g.meta.include = {{a, 1, -1, {}}, {b, 1, -1, {}}};
      add(a, random_color(a, ctx, rng));
      add(b, random_color(b, ctx, rng));
      break;
    }
    case Tag::counting: {
      Shape s = random_shape(rng);
      int n = 2 + rng.below(3);
      g.meta.include.push_back({s, n, -1, {}});
      g.meta.exclude.push_back({s, n + 1, -1, {}});
      for (int i = 0; i < n; ++i) add(s, random_color(s, ctx, rng));
      break;
    }
    case Tag::colors: {
      auto [s, c] = prompted_pair(ctx, rng);
      g.meta.include.push_back({s, 1, c, {}});
      add(s, c);
      break;
    }
    case Tag::color_attr: {
      auto [a, ca] = prompted_pair(ctx, rng);
      auto [b, cb] = prompted_pair(ctx, rng, int(a), ca);
      g.meta.include = {{a, 1, ca, {}}, {b, 1, cb, {}}};
      add(a, ca);
      add(b, cb);
      break;
    }
    case Tag::position: {
      Shape ref = random_shape(rng), sub = random_shape(rng, int(ref));
      Relation rel = Relation(rng.below(kNumRelations));
      g.meta.include = {{ref, 1, -1, {}}, {sub, 1, -1, std::make_pair(rel, 0)}};
      add(ref, random_color(ref, ctx, rng));
      if (!ok) break;
      Object o = make_object(sub, random_color(sub, ctx, rng), size(), ctx.size, rng, ctx.object_scale);
      float gap = object_gap(ctx.size), lo = o.r + gap, hi = float(ctx.size) - o.r - gap;
      ok = false;
      for (int t = 0; t < 400 && !ok; ++t) {
        o.cx = rng.uniform(lo, hi);
        o.cy = rng.uniform(lo, hi);
        ok = fits(g.scene, o) && clearly(o, g.scene.objects[0], rel);
      }
      if (ok) g.scene.objects.push_back(o);
      break;
    }
  }
  for (const Requirement& r : g.meta.include)
    if (r.color >= 0 && ctx.heldout.contains(r.shape, r.color)) g.heldout = true;
  g.meta.prompt = geneval_phrase(g.meta);
  return g;
}

GenSample sample_generation(Tag tag, const SplitContext& ctx, Rng& rng) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    bool ok = false;
    GenSample g = try_sample(tag, ctx, rng, attempt, ok);
    if (ok) return g;
  }
  VT_FAIL("shapeworld: cannot place the objects of a ", tag_name(tag), " scene at size ", ctx.size);
}

const char* violation_name(Violation v) {
  static const char* const names[] = {"shape", "missing", "count", "color", "position"};
  return names[int(v)];
}

Failure expected_failure(Violation v) {
  switch (v) {
    case Violation::wrong_shape:
    case Violation::missing_object: return Failure::missing;
    case Violation::wrong_count: return Failure::count;
    case Violation::wrong_color: return Failure::color;
    default: return Failure::position;
  }
}

bool violation_applies(Tag tag, Violation v) {
  switch (v) {
    case Violation::missing_object: return true;
    case Violation::wrong_shape: return tag != Tag::counting;
    case Violation::wrong_count: return tag == Tag::counting;
    case Violation::wrong_color: return tag == Tag::colors || tag == Tag::color_attr;
    case Violation::wrong_position: return tag == Tag::position;
  }
  return false;
}

Violation pick_violation(Tag tag, Rng& rng) {
  switch (tag) {
    case Tag::counting: return Violation::wrong_count;
    case Tag::colors:
    case Tag::color_attr: return Violation::wrong_color;
    case Tag::position: return Violation::wrong_position;
    default: return rng.chance(0.5f) ? Violation::wrong_shape : Violation::missing_object;
  }
}

std::optional<Scene> violate(const GenSample& g, Violation v, const SplitContext& ctx, Rng& rng) {
  if (!violation_applies(g.meta.tag, v)) return std::nullopt;
  Scene s = g.scene;
  const std::vector<Requirement>& inc = g.meta.include;
  switch (v) {
    case Violation::missing_object: {
      Shape gone = inc[size_t(rng.below(int(inc.size())))].shape;
      std::erase_if(s.objects, [&](const Object& o) { return o.shape == gone; });
      return s;
    }
    case Violation::wrong_shape: {
      // Every class the prompt names occurs once; turn one object into a kind the prompt lacks.
      size_t i = size_t(rng.below(int(s.objects.size())));
      Object& o = s.objects[i];
      for (int t = 0; t < 64; ++t) {
        Shape k = random_shape(rng);
        bool named = std::any_of(inc.begin(), inc.end(), [&](const Requirement& r) { return r.shape == k; });
        if (!named && ctx.allowed(k, o.color)) {
          o.shape = k;
          return s;
        }
      }
      return std::nullopt;
    }
    case Violation::wrong_count: {
      int n = inc[0].count;
      if (rng.chance(0.5f)) {
        Object extra = make_object(inc[0].shape, random_color(inc[0].shape, ctx, rng), SizeClass::small, ctx.size, rng, ctx.object_scale);
        if (place_object(s, extra, rng)) return s;
      }
      if (n < 2) return std::nullopt;
      s.objects.erase(s.objects.begin() + rng.below(int(s.objects.size())));
      return s;
    }
    case Violation::wrong_color: {
      // color_attr: swap the two colours (a binding error) when the swapped pairs are allowed,
      // otherwise recolour one object; colors: recolour the single object.
      if (g.meta.tag == Tag::color_attr && rng.chance(0.5f)) {
        Object &a = s.objects[0], &b = s.objects[1];
        if (ctx.allowed(a.shape, b.color) && ctx.allowed(b.shape, a.color)) {
          std::swap(a.color, b.color);
          return s;
        }
      }
      Object& o = s.objects[size_t(rng.below(int(s.objects.size())))];
      o.color = random_color(o.shape, ctx, rng, o.color);
      return s;
    }
    case Violation::wrong_position: {
      // Mirroring the scene across the relation's axis reverses the relation, keeps the gap
      // between the objects and keeps them inside the margin.
      Relation rel = inc[1].position->first;
      bool horizontal = rel == Relation::left_of || rel == Relation::right_of;
      for (Object& o : s.objects) (horizontal ? o.cx : o.cy) = float(s.size) - (horizontal ? o.cx : o.cy);
      return s;
    }
  }
  return std::nullopt;
}

const char* edit_op_name(EditOp op) {
  static const char* const names[] = {"recolor", "remove", "add", "move"};
  return names[int(op)];
}

EditOp parse_edit_op(std::string_view name, std::string_view what) {
  for (int i = 0; i < 4; ++i)
    if (name == edit_op_name(EditOp(i))) return EditOp(i);
  VT_FAIL(what, ": unknown edit op '", name, "' (expected recolor, remove, add or move)");
}

// Objects nobody else in the scene shares (colour, shape) with: an instruction can name them.
static std::vector<int> referable(const Scene& s) {
  std::vector<int> out;
  for (size_t i = 0; i < s.objects.size(); ++i) {
    int same = 0;
    for (const Object& o : s.objects) same += o.shape == s.objects[i].shape && o.color == s.objects[i].color;
    if (same == 1) out.push_back(int(i));
  }
  return out;
}

static std::string the(const Object& o) { return std::string("the ") + color_name(o.color) + " " + shape_name(o.shape); }

std::optional<EditSpec> sample_edit(const Scene& source, const SplitContext& ctx, Rng& rng) {
  std::vector<int> refs = referable(source);
  int first = rng.below(4);
  for (int k = 0; k < 4; ++k) {
    EditSpec e;
    e.op = EditOp((first + k) % 4);
    e.target = source;
    if (e.op != EditOp::add) {
      if (refs.empty()) continue;
      e.object = refs[size_t(rng.below(int(refs.size())))];
    }
    const Object* o = e.object >= 0 ? &source.objects[size_t(e.object)] : nullptr;
    switch (e.op) {
      case EditOp::recolor:
        e.new_color = random_color(o->shape, ctx, rng, o->color);
        e.target.objects[size_t(e.object)].color = e.new_color;
        e.instruction = "Change the color of " + the(*o) + " to " + color_name(e.new_color) + ".";
        return e;
      case EditOp::remove:
        if (source.objects.size() < 2) continue;
        e.target.objects.erase(e.target.objects.begin() + e.object);
        e.instruction = "Remove " + the(*o) + ".";
        return e;
      case EditOp::add: {
        Shape s = random_shape(rng);
        SizeClass sz = random_size(rng);
        if (!place_object(e.target, make_object(s, random_color(s, ctx, rng), sz, ctx.size, rng, ctx.object_scale), rng)) continue;
        e.added = e.target.objects.back();
        e.instruction = "Add " + noun_phrase(s, e.added.color, 1, &sz) + ".";
        return e;
      }
      case EditOp::move: {
        int d0 = rng.below(4);
        for (int t = 0; t < 4 * 8; ++t) {
          Relation dir = Relation((d0 + t / 8) % 4);
          float dist = rng.uniform(0.2f, 0.4f) * float(ctx.size);
          Object moved = *o;
          if (dir == Relation::left_of) moved.cx -= dist;
          if (dir == Relation::right_of) moved.cx += dist;
          if (dir == Relation::above) moved.cy -= dist;
          if (dir == Relation::below) moved.cy += dist;
          if (!fits(source, moved, e.object)) continue;
          e.direction = dir;
          e.target.objects[size_t(e.object)] = moved;
          static const char* const words[] = {"to the left", "to the right", "up", "down"};
          e.instruction = "Move " + the(*o) + " " + words[int(dir)] + ".";
          return e;
        }
        continue;
      }
    }
  }
  return std::nullopt;
}

std::vector<Question> sample_questions(const Scene& scene, const SplitContext& ctx, int pope_type, Rng& rng) {
  std::vector<Question> qs;
  const auto& objs = scene.objects;
  if (objs.empty()) return qs;
  // Count: all objects, or one kind.
  if (rng.chance(0.5f)) {
    qs.push_back({"count", "How many objects are there in the image?", std::to_string(objs.size()), ""});
  } else {
    Shape s = objs[size_t(rng.below(int(objs.size())))].shape;
    int n = int(std::count_if(objs.begin(), objs.end(), [&](const Object& o) { return o.shape == s; }));
    qs.push_back({"count", std::string("How many ") + shape_plural(s) + " are there in the image?", std::to_string(n), ""});
  }
  // Colour of a kind that occurs once.
  std::vector<int> unique_kind;
  for (size_t i = 0; i < objs.size(); ++i)
    if (std::count_if(objs.begin(), objs.end(), [&](const Object& o) { return o.shape == objs[i].shape; }) == 1)
      unique_kind.push_back(int(i));
  if (!unique_kind.empty()) {
    const Object& o = objs[size_t(unique_kind[size_t(rng.below(int(unique_kind.size())))])];
    qs.push_back({"color", std::string("What color is the ") + shape_name(o.shape) + "?", color_name(o.color), ""});
  }
  // Existence, POPE style: one present pair and one absent pair of the requested negative type.
  auto present = [&](int c, int s) {
    return std::any_of(objs.begin(), objs.end(), [&](const Object& o) { return o.color == c && int(o.shape) == s; });
  };
  auto exist_q = [](int c, int s) { return std::string("Is there a ") + color_name(c) + " " + shape_name(Shape(s)) + " in the image?"; };
  const std::string type = kPopeTypes[pope_type];
  const Object& pos = objs[size_t(rng.below(int(objs.size())))];
  qs.push_back({"exist", exist_q(pos.color, int(pos.shape)), "Yes", type});
  std::pair<int, int> neg{-1, -1};
  if (pope_type == 1) {
    for (auto [c, s] : ctx.popular)
      if (!present(c, s) && ctx.allowed(Shape(s), c)) { neg = {c, s}; break; }
  } else if (pope_type == 2) {
    // Adversarial: a present kind in a wrong colour, preferring a colour another object has, so
    // only the binding of colour to shape tells yes from no.
    std::vector<std::pair<int, int>> cands, fallback;
    for (const Object& o : objs)
      for (int c = 0; c < kNumColors; ++c) {
        if (present(c, int(o.shape)) || !ctx.allowed(o.shape, c)) continue;
        bool elsewhere = std::any_of(objs.begin(), objs.end(), [&](const Object& p) { return p.color == c; });
        (elsewhere ? cands : fallback).push_back({c, int(o.shape)});
      }
    if (cands.empty()) cands = fallback;
    if (!cands.empty()) neg = cands[size_t(rng.below(int(cands.size())))];
  }
  while (neg.first < 0) {  // random, and the fallback of the others
    int s = rng.below(kNumShapes), c = rng.below(kNumColors);
    if (!present(c, s) && ctx.allowed(Shape(s), c)) neg = {c, s};
  }
  qs.push_back({"exist", exist_q(neg.first, neg.second), "No", type});
  // Position between two nameable objects in a clear relation.
  std::vector<int> refs = referable(scene);
  for (size_t t = 0; t < refs.size() * refs.size() && refs.size() >= 2; ++t) {
    const Object& a = objs[size_t(refs[size_t(rng.below(int(refs.size())))])];
    const Object& b = objs[size_t(refs[size_t(rng.below(int(refs.size())))])];
    if (&a == &b) continue;
    int rel = -1;
    for (int r = 0; r < kNumRelations; ++r)
      if (clearly(a, b, Relation(r))) rel = r;
    if (rel < 0) continue;
    static const char* const answers[] = {"To the left.", "To the right.", "Above.", "Below."};
    qs.push_back({"position", "Where is " + the(a) + " relative to " + the(b) + "?", answers[rel], ""});
    break;
  }
  static const char* const describe[] = {"Describe the image.", "What objects are in this image?",
                                         "Describe the objects in this picture."};
  qs.push_back({"describe", describe[rng.below(3)], describe_scene(scene), ""});
  return qs;
}

}  // namespace vt::shapes
