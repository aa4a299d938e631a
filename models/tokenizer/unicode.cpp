// unicode.cpp: strict UTF-8 and NFC.
//
// NFC = canonical decomposition, canonical ordering of combining marks by class (stable sort within
// each run of non-starters), then canonical composition: each mark composes with the last starter
// unless a mark of the same or higher class sits between them ("blocked"). Hangul syllables are
// decomposed and composed arithmetically (Unicode §3.12) rather than through tables.
#include "tokenizer/unicode.h"

#include <algorithm>

#include "vt/error.h"

namespace vt::unicode {
namespace {

constexpr char32_t kHangulS = 0xAC00, kHangulL = 0x1100, kHangulV = 0x1161, kHangulT = 0x11A7;
constexpr int kHangulLCount = 19, kHangulVCount = 21, kHangulTCount = 28;
constexpr int kHangulNCount = kHangulVCount * kHangulTCount, kHangulSCount = kHangulLCount * kHangulNCount;

// Returns the length of the valid sequence at s[i], or 0 when it is invalid.
inline int utf8_sequence(std::string_view s, size_t i, char32_t& cp) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c0 = b(i);
  if (c0 < 0x80) { cp = c0; return 1; }
  int n;
  char32_t min;
  if ((c0 & 0xE0) == 0xC0) { n = 2; cp = c0 & 0x1F; min = 0x80; }
  else if ((c0 & 0xF0) == 0xE0) { n = 3; cp = c0 & 0x0F; min = 0x800; }
  else if ((c0 & 0xF8) == 0xF0) { n = 4; cp = c0 & 0x07; min = 0x10000; }
  else return 0;
  if (i + n > s.size()) return 0;
  for (int k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

const tables::Decomposition* find_decomposition(char32_t c) {
  const auto* begin = tables::kDecompositions;
  const auto* end = begin + tables::kNumDecompositions;
  const auto* it = std::lower_bound(begin, end, c, [](const tables::Decomposition& d, char32_t v) { return d.cp < v; });
  return (it != end && it->cp == c) ? it : nullptr;
}

// The primary composite of (a, b), or 0 when there is none.
char32_t compose_pair(char32_t a, char32_t b) {
  if (a >= kHangulL && a < kHangulL + kHangulLCount && b >= kHangulV && b < kHangulV + kHangulVCount)
    return kHangulS + ((a - kHangulL) * kHangulVCount + (b - kHangulV)) * kHangulTCount;
  if (a >= kHangulS && a < kHangulS + kHangulSCount && (a - kHangulS) % kHangulTCount == 0 && b > kHangulT &&
      b < kHangulT + kHangulTCount)
    return a + (b - kHangulT);
  const uint64_t key = (uint64_t(a) << 21) | b;
  const auto* begin = tables::kCompositions;
  const auto* end = begin + tables::kNumCompositions;
  const auto* it = std::lower_bound(begin, end, key, [](const tables::Composition& c, uint64_t k) { return c.key < k; });
  return (it != end && it->key == key) ? it->composite : 0;
}

void decompose_into(std::u32string& out, char32_t c) {
  if (c >= kHangulS && c < kHangulS + kHangulSCount) {
    const int s = c - kHangulS;
    out.push_back(kHangulL + s / kHangulNCount);
    out.push_back(kHangulV + (s % kHangulNCount) / kHangulTCount);
    if (s % kHangulTCount) out.push_back(kHangulT + s % kHangulTCount);
    return;
  }
  if (const auto* d = find_decomposition(c)) {
    for (int k = 0; k < d->length; ++k) out.push_back(tables::kDecompositionPool[d->offset + k]);
  } else {
    out.push_back(c);
  }
}

}  // namespace

void validate_utf8(std::string_view s, const char* what) {
  char32_t cp;
  for (size_t i = 0; i < s.size();) {
    if (static_cast<unsigned char>(s[i]) < 0x80) { ++i; continue; }
    const int n = utf8_sequence(s, i, cp);
    VT_CHECK(n > 0, "tokenizer: ", what, " is not valid UTF-8: bad byte 0x", std::hex,
             int(static_cast<unsigned char>(s[i])), std::dec, " at byte offset ", i);
    i += n;
  }
}

std::u32string decode_utf8(std::string_view s, const char* what) {
  std::u32string out;
  out.reserve(s.size());
  char32_t cp;
  for (size_t i = 0; i < s.size();) {
    const int n = utf8_sequence(s, i, cp);
    VT_CHECK(n > 0, "tokenizer: ", what, " is not valid UTF-8: bad byte 0x", std::hex,
             int(static_cast<unsigned char>(s[i])), std::dec, " at byte offset ", i);
    out.push_back(cp);
    i += n;
  }
  return out;
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(char(c));
  } else if (c < 0x800) {
    out.push_back(char(0xC0 | (c >> 6)));
    out.push_back(char(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(char(0xE0 | (c >> 12)));
    out.push_back(char(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(char(0x80 | (c & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (c >> 18)));
    out.push_back(char(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(char(0x80 | (c & 0x3F)));
  }
}

std::string encode_utf8(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) append_utf8(out, c);
  return out;
}

bool is_nfc_quick(std::u32string_view s) {
  for (char32_t c : s)
    if (c >= 0x300 && (props(c) & kNfcCheck)) return false;
  return true;
}

std::u32string nfc(std::u32string_view s) {
  if (is_nfc_quick(s)) return std::u32string(s);
  std::u32string d;
  d.reserve(s.size() + 8);
  for (char32_t c : s) decompose_into(d, c);
  // Canonical ordering: stable-sort each run of non-starters by combining class.
  for (size_t i = 0; i < d.size();) {
    if (combining_class(d[i]) == 0) { ++i; continue; }
    size_t j = i;
    while (j < d.size() && combining_class(d[j]) != 0) ++j;
    std::stable_sort(d.begin() + i, d.begin() + j,
                     [](char32_t a, char32_t b) { return combining_class(a) < combining_class(b); });
    i = j;
  }
  // Canonical composition.
  std::u32string out;
  out.reserve(d.size());
  size_t starter = std::u32string::npos;  // index in `out` of the last starter
  int last_class = -1;                    // class of the last char appended after the starter
  for (char32_t c : d) {
    const int cls = combining_class(c);
    if (starter != std::u32string::npos) {
      const bool blocked = last_class != -1 && (last_class == 0 || last_class >= cls);
      if (!blocked) {
        if (char32_t comp = compose_pair(out[starter], c)) {
          out[starter] = comp;
          continue;
        }
      }
    }
    if (cls == 0) {
      starter = out.size();
      last_class = -1;
    } else {
      last_class = cls;
    }
    out.push_back(c);
  }
  return out;
}

}  // namespace vt::unicode
