// language.cpp: phrases, templates and answer normalisation (see language.h).
#include "shapeworld/language.h"

#include <algorithm>
#include <cctype>

#include "vt/error.h"

namespace vt::shapes {

static const char* const kNumberWords[21] = {"zero",    "one",     "two",      "three",    "four",
                                             "five",    "six",     "seven",    "eight",    "nine",
                                             "ten",     "eleven",  "twelve",   "thirteen", "fourteen",
                                             "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
                                             "twenty"};

std::string number_word(int n) { return n >= 0 && n <= 20 ? kNumberWords[n] : std::to_string(n); }

std::string noun_phrase(Shape s, int color, int count, const SizeClass* size) {
  std::string out = count == 1 ? "a" : number_word(count);
  if (size) out += std::string(" ") + size_name(*size);
  if (color >= 0) out += std::string(" ") + color_name(color);
  out += " ";
  out += count == 1 ? shape_name(s) : shape_plural(s);
  return out;
}

std::string geneval_phrase(const GenEvalMeta& m) {
  VT_CHECK(!m.include.empty(), "geneval_phrase: metadata has no include");
  const Requirement& a = m.include[0];
  switch (m.tag) {
    case Tag::single_object:
    case Tag::colors:
    case Tag::counting: return noun_phrase(a.shape, a.color, a.count);
    case Tag::two_object:
    case Tag::color_attr: {
      VT_CHECK(m.include.size() == 2, "geneval_phrase: ", tag_name(m.tag), " needs two includes");
      const Requirement& b = m.include[1];
      return noun_phrase(a.shape, a.color, a.count) + " and " + noun_phrase(b.shape, b.color, b.count);
    }
    case Tag::position: {
      VT_CHECK(m.include.size() == 2 && m.include[1].position, "geneval_phrase: position needs include 1 placed");
      const Requirement& b = m.include[1];
      Relation rel = b.position->first;
      const char* words = rel == Relation::left_of    ? " to the left of "
                          : rel == Relation::right_of ? " to the right of "
                          : rel == Relation::above    ? " above "
                                                      : " below ";
      return noun_phrase(b.shape, b.color, b.count) + words + noun_phrase(a.shape, a.color, a.count);
    }
  }
  return {};
}

std::string t2i_prompt(const std::string& phrase, int template_index) {
  switch (((template_index % kNumPromptTemplates) + kNumPromptTemplates) % kNumPromptTemplates) {
    case 0: return "Can you depict a scene of " + phrase + "?";
    case 1: return "Please create a painting of " + phrase + ".";
    default: return "Please generate a designed image of " + phrase + ".";
  }
}

std::string t2i_reply(const std::string& phrase) { return "Here's a rendered painting of " + phrase + ".<image_gen>"; }

std::string describe_scene(const Scene& scene) {
  std::vector<const Object*> objs;
  for (const Object& o : scene.objects) objs.push_back(&o);
  std::stable_sort(objs.begin(), objs.end(), [](const Object* a, const Object* b) { return a->cx < b->cx; });
  if (objs.empty()) return "The image shows no objects, only the background.";
  std::string out = "The image shows ";
  for (size_t i = 0; i < objs.size(); ++i) {
    if (i > 0) out += i + 1 == objs.size() ? " and " : ", ";
    out += noun_phrase(objs[i]->shape, objs[i]->color, 1, &objs[i]->size);
  }
  return out + ".";
}

std::vector<std::string> words_of(std::string_view text) {
  std::vector<std::string> out;
  std::string cur;
  for (char ch : text) {
    if (std::isalnum(static_cast<unsigned char>(ch))) {
      cur += char(std::tolower(static_cast<unsigned char>(ch)));
    } else if (!cur.empty()) {
      out.push_back(cur);
      cur.clear();
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

static int word_number(const std::string& w) {
  if (!w.empty() && std::all_of(w.begin(), w.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
    return w.size() <= 6 ? std::stoi(w) : -1;
  for (int i = 0; i <= 20; ++i)
    if (w == kNumberWords[i]) return i;
  return -1;
}

static int word_color(const std::string& w) {
  for (int i = 0; i < kNumColors; ++i)
    if (w == palette()[i].name) return i;
  if (w == "violet" || w == "magenta" || w == "purplish") return 5;
  if (w == "teal" || w == "turquoise" || w == "aqua") return 3;
  return -1;
}

static int word_shape(const std::string& w) {
  for (int i = 0; i < kNumShapes; ++i)
    if (w == shape_name(Shape(i)) || w == shape_plural(Shape(i))) return i;
  if (w == "plus" || w == "pluses") return int(Shape::cross);
  return -1;
}

int normalize_count(std::string_view text) {
  for (const std::string& w : words_of(text))
    if (int n = word_number(w); n >= 0) return n;
  return -1;
}

int normalize_color(std::string_view text) {
  for (const std::string& w : words_of(text))
    if (int c = word_color(w); c >= 0) return c;
  return -1;
}

int normalize_yes_no(std::string_view text) {
  for (const std::string& w : words_of(text)) {
    if (w == "yes") return 1;
    if (w == "no" || w == "not") return 0;
  }
  return -1;
}

int normalize_relation(std::string_view text) {
  for (const std::string& w : words_of(text)) {
    if (w == "left") return int(Relation::left_of);
    if (w == "right") return int(Relation::right_of);
    if (w == "above" || w == "top" || w == "up" || w == "over") return int(Relation::above);
    if (w == "below" || w == "under" || w == "beneath" || w == "bottom" || w == "down") return int(Relation::below);
  }
  return -1;
}

ObjectCounts parse_description(std::string_view text) {
  ObjectCounts out;
  std::vector<std::string> w = words_of(text);
  for (size_t i = 0; i < w.size(); ++i) {
    int shape = word_shape(w[i]);
    if (shape < 0) continue;
    int color = -1, count = -1;
    for (size_t k = 1; k <= 3 && k <= i; ++k) {
      const std::string& prev = w[i - k];
      if (word_shape(prev) >= 0) break;  // that word belongs to the previous object
      if (color < 0) color = word_color(prev);
      if (count < 0) count = word_number(prev);
    }
    out[{color, shape}] += count < 0 ? 1 : count;
  }
  return out;
}

ObjectCounts count_objects(const Scene& scene) {
  ObjectCounts out;
  for (const Object& o : scene.objects) out[{o.color, int(o.shape)}] += 1;
  return out;
}

}  // namespace vt::shapes
