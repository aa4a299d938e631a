// train/report_draw.cpp: the pictures of the run report (report.h): a 5x7 bitmap font, a line
// rasteriser, loss_curves.png, samples.png, and the sample grids a training run draws. Split from
// report.cpp (REPORT.md) to keep each file one idea.
#include "report.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "vt/error.h"

namespace vt::train {

using nlohmann::json;
namespace fs = std::filesystem;
using shapes::Image;

namespace {

// ---- drawing ------------------------------------------------------------------------------------------

constexpr Rgb kInk{40, 40, 40}, kAxis{150, 150, 150}, kPanelFrame{215, 215, 215}, kMissing{90, 90, 90};

// 5x7 glyphs, one byte per row from the top, bit 4 the leftmost column. Any other character draws '?'.
// g, p, q and y hang 2 rows below the baseline (kDescender): a line of text is 9 rows tall.
struct Glyph {
  char c;
  uint8_t rows[7];
};
constexpr Glyph kFont[] = {
    {' ', {0, 0, 0, 0, 0, 0, 0}},         {'0', {14, 17, 19, 21, 25, 17, 14}}, {'1', {4, 12, 4, 4, 4, 4, 14}},
    {'2', {14, 17, 1, 2, 4, 8, 31}},      {'3', {31, 2, 4, 2, 1, 17, 14}},     {'4', {2, 6, 10, 18, 31, 2, 2}},
    {'5', {31, 16, 30, 1, 1, 17, 14}},    {'6', {6, 8, 16, 30, 17, 17, 14}},   {'7', {31, 1, 2, 4, 8, 8, 8}},
    {'8', {14, 17, 17, 14, 17, 17, 14}},  {'9', {14, 17, 17, 15, 1, 2, 12}},   {'A', {14, 17, 17, 17, 31, 17, 17}},
    {'B', {30, 17, 17, 30, 17, 17, 30}},  {'C', {14, 17, 16, 16, 16, 17, 14}}, {'D', {28, 18, 17, 17, 17, 18, 28}},
    {'E', {31, 16, 16, 30, 16, 16, 31}},  {'F', {31, 16, 16, 30, 16, 16, 16}}, {'G', {14, 17, 16, 23, 17, 17, 15}},
    {'H', {17, 17, 17, 31, 17, 17, 17}},  {'I', {14, 4, 4, 4, 4, 4, 14}},      {'J', {7, 2, 2, 2, 2, 18, 12}},
    {'K', {17, 18, 20, 24, 20, 18, 17}},  {'L', {16, 16, 16, 16, 16, 16, 31}}, {'M', {17, 27, 21, 21, 17, 17, 17}},
    {'N', {17, 17, 25, 21, 19, 17, 17}},  {'O', {14, 17, 17, 17, 17, 17, 14}}, {'P', {30, 17, 17, 30, 16, 16, 16}},
    {'Q', {14, 17, 17, 17, 21, 18, 13}},  {'R', {30, 17, 17, 30, 20, 18, 17}}, {'S', {15, 16, 16, 14, 1, 1, 30}},
    {'T', {31, 4, 4, 4, 4, 4, 4}},        {'U', {17, 17, 17, 17, 17, 17, 14}}, {'V', {17, 17, 17, 17, 17, 10, 4}},
    {'W', {17, 17, 17, 21, 21, 21, 10}},  {'X', {17, 17, 10, 4, 10, 17, 17}},  {'Y', {17, 17, 17, 10, 4, 4, 4}},
    {'Z', {31, 1, 2, 4, 8, 16, 31}},      {'a', {0, 0, 14, 1, 15, 17, 15}},    {'b', {16, 16, 22, 25, 17, 17, 30}},
    {'c', {0, 0, 14, 16, 16, 17, 14}},    {'d', {1, 1, 13, 19, 17, 17, 15}},   {'e', {0, 0, 14, 17, 31, 16, 14}},
    {'f', {6, 9, 8, 28, 8, 8, 8}},        {'g', {15, 17, 17, 15, 1, 17, 14}},   {'h', {16, 16, 22, 25, 17, 17, 17}},
    {'i', {4, 0, 12, 4, 4, 4, 14}},       {'j', {2, 0, 6, 2, 2, 18, 12}},      {'k', {16, 16, 18, 20, 24, 20, 18}},
    {'l', {12, 4, 4, 4, 4, 4, 14}},       {'m', {0, 0, 26, 21, 21, 17, 17}},   {'n', {0, 0, 22, 25, 17, 17, 17}},
    {'o', {0, 0, 14, 17, 17, 17, 14}},    {'p', {30, 17, 17, 30, 16, 16, 16}},   {'q', {15, 17, 17, 15, 1, 1, 1}},
    {'r', {0, 0, 22, 25, 16, 16, 16}},    {'s', {0, 0, 14, 16, 14, 1, 30}},    {'t', {8, 8, 28, 8, 8, 9, 6}},
    {'u', {0, 0, 17, 17, 17, 19, 13}},    {'v', {0, 0, 17, 17, 17, 10, 4}},    {'w', {0, 0, 17, 17, 21, 21, 10}},
    {'x', {0, 0, 17, 10, 4, 10, 17}},     {'y', {17, 17, 17, 15, 1, 17, 14}},    {'z', {0, 0, 31, 2, 4, 8, 31}},
    {'.', {0, 0, 0, 0, 0, 12, 12}},       {',', {0, 0, 0, 0, 12, 4, 8}},       {'-', {0, 0, 0, 31, 0, 0, 0}},
    {'+', {0, 4, 4, 31, 4, 4, 0}},        {'/', {0, 1, 2, 4, 8, 16, 0}},       {':', {0, 12, 12, 0, 12, 12, 0}},
    {'(', {2, 4, 8, 8, 8, 4, 2}},         {')', {8, 4, 2, 2, 2, 4, 8}},        {'_', {0, 0, 0, 0, 0, 0, 31}},
    {'%', {24, 25, 2, 4, 8, 19, 3}},      {'=', {0, 0, 31, 0, 31, 0, 0}},      {'\'', {12, 4, 8, 0, 0, 0, 0}},
    {'?', {14, 17, 1, 2, 4, 0, 4}},       {'!', {4, 4, 4, 4, 4, 0, 4}},        {';', {0, 12, 12, 0, 12, 4, 8}},       {'<', {2, 4, 8, 16, 8, 4, 2}},
    {'>', {8, 4, 2, 1, 2, 4, 8}},         {'|', {4, 4, 4, 4, 4, 4, 4}},        {'#', {10, 10, 31, 10, 31, 10, 10}},
    {'*', {0, 4, 21, 14, 21, 4, 0}},      {'"', {10, 10, 0, 0, 0, 0, 0}},      {'[', {14, 8, 8, 8, 8, 8, 14}},
    {']', {14, 2, 2, 2, 2, 2, 14}},
};

const uint8_t* glyph(char c) {
  static const std::array<const uint8_t*, 128> table = [] {
    std::array<const uint8_t*, 128> t{};
    for (const Glyph& g : kFont) t[size_t(uint8_t(g.c))] = g.rows;
    return t;
  }();
  const uint8_t u = uint8_t(c);
  return u < 128 && table[u] ? table[u] : table[size_t('?')];
}

constexpr int kAdvance = 6;    // 5 columns and a 1-column gap, per scale unit
constexpr int kDescender = 2;  // rows below the baseline of g, p, q, y

int text_width(std::string_view s, int scale) { return s.empty() ? 0 : int(s.size()) * kAdvance * scale - scale; }

void put(Image& im, int x, int y, Rgb c) {
  if (x < 0 || y < 0 || x >= im.width || y >= im.height) return;
  uint8_t* p = im.px(x, y);
  p[0] = c.r, p[1] = c.g, p[2] = c.b;
}

void fill(Image& im, Rect r, Rgb c) {
  for (int y = r.y0; y < r.y1; ++y)
    for (int x = r.x0; x < r.x1; ++x) put(im, x, y, c);
}

// A border `w` pixels wide just inside r.
void frame(Image& im, Rect r, int w, Rgb c) {
  fill(im, {r.x0, r.y0, r.x1, r.y0 + w}, c);
  fill(im, {r.x0, r.y1 - w, r.x1, r.y1}, c);
  fill(im, {r.x0, r.y0, r.x0 + w, r.y1}, c);
  fill(im, {r.x1 - w, r.y0, r.x1, r.y1}, c);
}

void draw_text(Image& im, int x, int y, std::string_view s, Rgb c, int scale) {
  for (char ch : s) {
    const uint8_t* rows = glyph(ch);
    const int y0 = y + (std::string_view("gpqy").find(ch) != std::string_view::npos ? kDescender * scale : 0);
    for (int gy = 0; gy < 7; ++gy)
      for (int gx = 0; gx < 5; ++gx)
        if (rows[gy] & (16 >> gx)) fill(im, {x + gx * scale, y0 + gy * scale, x + (gx + 1) * scale, y0 + (gy + 1) * scale}, c);
    x += kAdvance * scale;
  }
}

// Bresenham from (x0, y0) to (x1, y1) with a 2x2 brush, kept inside `clip`.
void draw_line(Image& im, int x0, int y0, int x1, int y1, Rgb c, Rect clip) {
  const int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
  for (int err = dx + dy;;) {
    for (int by = 0; by < 2; ++by)
      for (int bx = 0; bx < 2; ++bx) {
        const int x = x0 + bx, y = y0 + by;
        if (x >= clip.x0 && x < clip.x1 && y >= clip.y0 && y < clip.y1) put(im, x, y, c);
      }
    if (x0 == x1 && y0 == y1) break;
    const int e2 = 2 * err;
    if (e2 >= dy) err += dy, x0 += sx;
    if (e2 <= dx) err += dx, y0 += sy;
  }
}

// `src` resized into r by nearest neighbour.
void blit(Image& dst, const Image& src, Rect r) {
  const int w = r.x1 - r.x0, h = r.y1 - r.y0;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const uint8_t* s = src.px(x * src.width / w, y * src.height / h);
      put(dst, r.x0 + x, r.y0 + y, {s[0], s[1], s[2]});
    }
}

// Greedy word wrap into lines of at most `width` characters; a longer word is cut.
std::vector<std::string> wrap(const std::string& text, size_t width) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  for (std::string word; in >> word;) {
    while (word.size() > width) {
      if (!line.empty()) lines.push_back(line), line.clear();
      lines.push_back(word.substr(0, width));
      word = word.substr(width);
    }
    if (line.empty()) line = word;
    else if (line.size() + 1 + word.size() <= width) line += " " + word;
    else lines.push_back(line), line = word;
  }
  if (!line.empty()) lines.push_back(line);
  return lines;
}

// A caption under an image, `width` pixels wide: 2x when it fits in two lines, else 1x in up to
// three, the last cut with "..".
void draw_caption(Image& im, int x, int y, const std::string& text, int width) {
  std::vector<std::string> lines = wrap(text, size_t(width / (2 * kAdvance)));
  int scale = 2;
  if (lines.size() > 2) {
    scale = 1;
    lines = wrap(text, size_t(width / kAdvance));
    if (lines.size() > 3) {
      lines.resize(3);
      std::string& last = lines.back();
      last = last.substr(0, std::min(last.size(), size_t(width / kAdvance) - 2)) + "..";
    }
  }
  for (size_t k = 0; k < lines.size(); ++k) draw_text(im, x, y + int(k) * 10 * scale, lines[k], kInk, scale);
}

std::string format(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

}  // namespace

// ---- loss curves -------------------------------------------------------------------------------------------

LossCurvesLayout::LossCurvesLayout(int n) : panels(n) {
  cols = std::clamp(n, 1, kMaxColumns);
  rows = std::max(1, (n + cols - 1) / cols);
}
int LossCurvesLayout::width() const { return 2 * kMargin + cols * kPanelWidth + (cols - 1) * kMargin; }
int LossCurvesLayout::height() const { return 2 * kMargin + kHeader + rows * kPanelHeight + (rows - 1) * kMargin; }
Rect LossCurvesLayout::panel(int i) const {
  const int x = kMargin + (i % cols) * (kPanelWidth + kMargin), y = kMargin + kHeader + (i / cols) * (kPanelHeight + kMargin);
  return {x, y, x + kPanelWidth, y + kPanelHeight};
}
Rect LossCurvesLayout::plot(int i) const {
  const Rect p = panel(i);
  return {p.x0 + 58, p.y0 + 42, p.x1 - 58, p.y1 - 26};  // room for tick labels left, right and below
}

namespace {

void draw_panel(Image& im, const StagePlot& s, Rect panel, Rect plot) {
  frame(im, panel, 1, kPanelFrame);
  const int max_title = (panel.x1 - panel.x0 - 12) / (2 * kAdvance);
  draw_text(im, panel.x0 + 6, panel.y0 + 6, s.stage.substr(0, size_t(max_title)), kInk, 2);
  frame(im, {plot.x0 - 1, plot.y0 - 1, plot.x1 + 1, plot.y1 + 1}, 1, kAxis);
  if (s.curves.empty()) {
    const std::string msg = "no log";
    draw_text(im, (plot.x0 + plot.x1 - text_width(msg, 1)) / 2, (plot.y0 + plot.y1) / 2 - 3, msg, kAxis, 1);
    return;
  }
  // Ranges: x over every curve, y per axis. Values map into the plot inset by 3 px, so the extreme
  // points are not hidden by the frame; the tick labels name the data's own min and max.
  double x_lo = INFINITY, x_hi = -INFINITY, y_lo[2] = {INFINITY, INFINITY}, y_hi[2] = {-INFINITY, -INFINITY};
  int on_axis[2] = {0, 0}, last_curve_on[2] = {0, 0};
  for (size_t k = 0; k < s.curves.size(); ++k) {
    const Curve& c = s.curves[k];
    const int a = c.axis ? 1 : 0;
    ++on_axis[a], last_curve_on[a] = int(k);
    for (const auto& [x, y] : c.points) {
      x_lo = std::min(x_lo, x), x_hi = std::max(x_hi, x);
      y_lo[a] = std::min(y_lo[a], y), y_hi[a] = std::max(y_hi[a], y);
    }
  }
  const int inset = 3;
  auto map = [](double v, double lo, double hi, int p0, int p1) {  // lo -> p0, hi -> p1
    if (!(hi > lo)) return (p0 + p1) / 2;
    return p0 + int(std::lround((v - lo) / (hi - lo) * double(p1 - p0)));
  };
  auto px = [&](double x) { return map(x, x_lo, x_hi, plot.x0 + inset, plot.x1 - 2 - inset); };
  auto py = [&](double y, int a) { return map(y, y_lo[a], y_hi[a], plot.y1 - 2 - inset, plot.y0 + inset); };

  for (int a = 0; a < 2; ++a) {  // tick marks and min/max labels; a single curve's axis takes its colour
    if (!on_axis[a]) continue;
    const Rgb c = on_axis[a] == 1 ? kCurveColors[last_curve_on[a] % 4] : kInk;
    for (const double v : {y_lo[a], y_hi[a]}) {
      const int y = py(v, a);
      const std::string label = format("%.3g", v);
      if (a == 0) {
        fill(im, {plot.x0 - 5, y, plot.x0 - 1, y + 1}, kAxis);
        draw_text(im, plot.x0 - 7 - text_width(label, 1), y - 3, label, c, 1);
      } else {
        fill(im, {plot.x1 + 1, y, plot.x1 + 5, y + 1}, kAxis);
        draw_text(im, plot.x1 + 7, y - 3, label, c, 1);
      }
      if (!(y_hi[a] > y_lo[a])) break;  // a flat curve: one label
    }
  }
  const std::string lo = format("%.0f", x_lo), hi = format("%.0f", x_hi);
  if (x_hi > x_lo) {
    draw_text(im, plot.x0, plot.y1 + 5, lo, kInk, 1);
    draw_text(im, plot.x1 - text_width(hi, 1), plot.y1 + 5, hi, kInk, 1);
  } else {  // one step: drawn in the middle
    draw_text(im, px(x_lo) - text_width(lo, 1) / 2, plot.y1 + 5, lo, kInk, 1);
  }
  draw_text(im, (plot.x0 + plot.x1 - text_width("step", 1)) / 2, plot.y1 + 14, "step", kAxis, 1);

  int lx = panel.x0 + 6;  // the legend, above the plot: swatch, then the key ("(right)" for axis 1)
  for (size_t k = 0; k < s.curves.size(); ++k) {
    const Curve& c = s.curves[k];
    const Rgb col = kCurveColors[k % 4];
    fill(im, {lx, panel.y0 + 29, lx + 12, panel.y0 + 32}, col);
    const std::string label = c.key + (c.axis ? " (right)" : "");
    draw_text(im, lx + 16, panel.y0 + 27, label, kInk, 1);
    lx += 16 + text_width(label, 1) + 12;
  }
  for (size_t k = 0; k < s.curves.size(); ++k) {  // the curves last, so they stay on top
    const Curve& c = s.curves[k];
    const int a = c.axis ? 1 : 0;
    const Rgb col = kCurveColors[k % 4];
    if (c.points.size() == 1) {
      const int x = px(c.points[0].first), y = py(c.points[0].second, a);
      fill(im, {x - 1, y - 1, x + 3, y + 3}, col);
      continue;
    }
    for (size_t i = 1; i < c.points.size(); ++i)
      draw_line(im, px(c.points[i - 1].first), py(c.points[i - 1].second, a), px(c.points[i].first),
                py(c.points[i].second, a), col, plot);
  }
}

}  // namespace

Image draw_loss_curves(const std::vector<StagePlot>& stages) {
  const LossCurvesLayout L(int(stages.size()));
  Image im(L.width(), L.height());
  fill(im, {0, 0, im.width, im.height}, kBackground);
  const std::string title = stages.empty() ? "no training logs" : "training logs: value against optimizer step";
  draw_text(im, LossCurvesLayout::kMargin, LossCurvesLayout::kMargin, title, kInk, 2);
  for (int i = 0; i < int(stages.size()); ++i) draw_panel(im, stages[size_t(i)], L.panel(i), L.plot(i));
  return im;
}

// ---- samples -------------------------------------------------------------------------------------------------

SamplesLayout::SamplesLayout(int n) : count(n) {
  cols = std::clamp(n, 1, kMaxColumns);
  rows = std::max(1, (n + cols - 1) / cols);
}
int SamplesLayout::width() const { return 2 * kMargin + cols * kCellWidth + (cols - 1) * kGapX; }
int SamplesLayout::height() const { return 2 * kMargin + kHeader + rows * kCellHeight + (rows - 1) * kGapY; }
Rect SamplesLayout::generated(int i) const {
  const int x = kMargin + (i % cols) * (kCellWidth + kGapX), y = kMargin + kHeader + (i / cols) * (kCellHeight + kGapY);
  return {x, y, x + kFrame, y + kFrame};
}
Rect SamplesLayout::truth(int i) const {
  const Rect g = generated(i);
  return {g.x1 + kPairGap, g.y0, g.x1 + kPairGap + kFrame, g.y1};
}

Image draw_samples(const std::vector<Sample>& samples, const std::string& title) {
  using L = SamplesLayout;
  const L layout(int(samples.size()));
  Image im(layout.width(), layout.height());
  fill(im, {0, 0, im.width, im.height}, kBackground);
  draw_text(im, L::kMargin, L::kMargin, title, kInk, 2);
  draw_text(im, L::kMargin, L::kMargin + 22,
            samples.empty() ? "no generated images found"
                            : "left: generated (border green: judged correct, red: wrong); right: ground truth",
            kAxis, 1);
  auto try_read = [](const std::string& path) -> std::optional<Image> {
    if (path.empty() || !fs::is_regular_file(path)) return std::nullopt;
    try {
      return shapes::read_image(path);
    } catch (const vt::Error&) {
      return std::nullopt;
    }
  };
  for (int i = 0; i < int(samples.size()); ++i) {
    const Sample& s = samples[size_t(i)];
    const Rect g = layout.generated(i), t = layout.truth(i);
    const Rect g_in{g.x0 + L::kBorder, g.y0 + L::kBorder, g.x1 - L::kBorder, g.y1 - L::kBorder};
    const Rect t_in{t.x0 + L::kBorder, t.y0 + L::kBorder, t.x1 - L::kBorder, t.y1 - L::kBorder};
    frame(im, g, L::kBorder, !s.correct ? kUnjudgedBorder : *s.correct ? kCorrectBorder : kWrongBorder);
    if (const auto img = try_read(s.image_path); img && img->width > 0 && img->height > 0) {
      blit(im, *img, g_in);
    } else {
      fill(im, g_in, kMissing);
      draw_text(im, g_in.x0 + (L::kImage - text_width("missing", 1)) / 2, g_in.y0 + L::kImage / 2 - 3, "missing",
                kBackground, 1);
    }
    frame(im, t, L::kBorder, kPanelFrame);
    if (const auto img = try_read(s.truth_path); img && img->width > 0 && img->height > 0) blit(im, *img, t_in);
    draw_caption(im, g.x0, g.y1 + 4, s.prompt, L::kCellWidth);
  }
  return im;
}

// ---- the sample grid of a training run -------------------------------------------------------------------

SampleGridLayout::SampleGridLayout(int n, int side) : count(n) {
  VT_CHECK(side >= 1, "sample grid: image side ", side, " must be positive");
  cols = std::clamp(n, 1, kMaxColumns);
  rows = std::max(1, (n + cols - 1) / cols);
  shown = side < 128 ? side * ((128 + side - 1) / side) : std::min(side, 256);
}
int SampleGridLayout::cell_width() const { return std::max(shown + 2 * kBorder, kMinCellWidth); }
int SampleGridLayout::width() const { return 2 * kMargin + cols * cell_width() + (cols - 1) * kGapX; }
int SampleGridLayout::height() const {
  return 2 * kMargin + kHeader + rows * (shown + 2 * kBorder + 4 + kCaption) + (rows - 1) * kGapY;
}
Rect SampleGridLayout::image(int i) const {
  const int x = kMargin + (i % cols) * (cell_width() + kGapX) + kBorder;
  const int y = kMargin + kHeader + (i / cols) * (shown + 2 * kBorder + 4 + kCaption + kGapY) + kBorder;
  return {x, y, x + shown, y + shown};
}

Image draw_sample_grid(const std::vector<Image>& images, const std::vector<std::string>& captions,
                       const std::string& title) {
  VT_CHECK(!images.empty() && captions.size() == images.size(), "sample grid: ", images.size(), " images and ",
           captions.size(), " captions (need the same number, at least one)");
  const int side = images[0].width;
  for (size_t i = 0; i < images.size(); ++i)
    VT_CHECK(images[i].width == side && images[i].height == side, "sample grid: image ", i, " is ", images[i].width,
             "x", images[i].height, ", expected ", side, "x", side, " as image 0");
  const SampleGridLayout L(int(images.size()), side);
  Image im(L.width(), L.height());
  fill(im, {0, 0, im.width, im.height}, kBackground);
  draw_text(im, SampleGridLayout::kMargin, SampleGridLayout::kMargin, title, kInk, 2);
  for (int i = 0; i < int(images.size()); ++i) {
    const Rect r = L.image(i);
    const int b = SampleGridLayout::kBorder;
    frame(im, {r.x0 - b, r.y0 - b, r.x1 + b, r.y1 + b}, b, kUnjudgedBorder);
    blit(im, images[size_t(i)], r);
    draw_caption(im, r.x0 - b, r.y1 + b + 4, captions[size_t(i)], L.cell_width());
  }
  return im;
}

}  // namespace vt::train
