// train/data/loader.cpp: the epoch order, the worker threads and batching (loader.h).
//
// Threading: one mutex guards the slot map and the two counters. Workers claim the next slot g while
// g < consumed + prefetch, build it without the lock, and file it under g; next() waits for slot
// `consumed`, so results arriving out of order only wait in the map. Skips are counted by the consumer,
// in slot order, which keeps the statistics deterministic too.
#include "data/loader.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>

#include "vt/error.h"

namespace vt::train {
using nlohmann::json;

// ---- sources and positions -------------------------------------------------------------------------

DataSource parse_data_source(std::string_view spec) {
  DataSource s;
  size_t pos = spec.find(',');
  s.path = std::string(spec.substr(0, pos));
  VT_CHECK(!s.path.empty(), "data source '", spec, "': no path");
  while (pos != std::string_view::npos) {
    const size_t next = spec.find(',', pos + 1);
    const std::string_view kv = spec.substr(pos + 1, next == std::string_view::npos ? next : next - pos - 1);
    const size_t eq = kv.find('=');
    VT_CHECK(eq != std::string_view::npos, "data source '", spec, "': '", kv, "' is not key=value");
    const std::string key(kv.substr(0, eq)), value(kv.substr(eq + 1));
    try {
      if (key == "kind") s.kind = parse_task_kind(value);
      else if (key == "root") s.root = value;
      else if (key == "fraction") s.fraction = std::stod(value);
      else if (key == "count") s.count = std::stoll(value);
      else VT_FAIL("unknown key '", key, "' (kind, root, fraction, count)");
    } catch (const std::logic_error& e) {  // stod/stoll
      VT_FAIL("data source '", spec, "': ", key, "='", value, "' is not a number");
    }
    pos = next;
  }
  VT_CHECK(s.fraction >= 0 && std::isfinite(s.fraction), "data source '", spec, "': fraction must be >= 0");
  return s;
}

json LoaderPosition::to_json() const {
  return {{"epoch", epoch}, {"index", index}, {"seed", seed}, {"epoch_size", epoch_size}};
}

LoaderPosition LoaderPosition::from_json(const json& j) {
  LoaderPosition p;
  auto field = [&](const char* k) -> const json& {
    VT_CHECK(j.is_object() && j.contains(k) && j[k].is_number_integer(), "data position: field \"", k,
             "\" is missing or not an integer in ", j.dump());
    return j[k];
  };
  p.epoch = field("epoch").get<int64_t>();
  p.index = field("index").get<int64_t>();
  p.seed = field("seed").get<uint64_t>();
  p.epoch_size = field("epoch_size").get<int64_t>();
  VT_CHECK(p.epoch >= 0 && p.index >= 0, "data position: negative epoch or index in ", j.dump());
  return p;
}

void LoaderPosition::save(const std::string& path) const {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    VT_CHECK(out.good(), "data position: cannot write '", tmp, "'");
    out << to_json().dump() << "\n";
    VT_CHECK(out.good(), "data position: cannot write '", tmp, "'");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  VT_CHECK(!ec, "data position: cannot rename '", tmp, "' to '", path, "': ", ec.message());
}

LoaderPosition LoaderPosition::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  VT_CHECK(in.good(), "data position: cannot open '", path, "'");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  json j = json::parse(text, nullptr, false);
  VT_CHECK(!j.is_discarded(), "data position: '", path, "' is not JSON");
  try {
    return from_json(j);
  } catch (const Error& e) {
    VT_FAIL(path, ": ", e.what());
  }
}

// ---- batching ----------------------------------------------------------------------------------------

Batch collate(const std::vector<Example>& examples, int64_t pad_token_id) {
  VT_CHECK(!examples.empty(), "collate: no examples");
  const bool pref = examples[0].kind == TaskKind::Preference;
  std::vector<const Sequence*> rows;
  Batch b;
  for (const Example& ex : examples) {
    VT_CHECK((ex.kind == TaskKind::Preference) == pref, "collate: example ", ex.id, " (", task_name(ex.kind),
             ") cannot share a batch with ", task_name(examples[0].kind), " examples");
    b.ids.push_back(ex.id);
    rows.push_back(&ex.seq);
  }
  if (pref)
    for (const Example& ex : examples) rows.push_back(&ex.rejected);

  const int64_t B = static_cast<int64_t>(rows.size());
  int64_t T = 0;
  for (const Sequence* s : rows) T = std::max<int64_t>(T, static_cast<int64_t>(s->ids.size()));
  std::vector<int64_t> ids(B * T, pad_token_id), mask(B * T, 0), labels(B * T, -100);  // (B, T)
  std::vector<float> pixels, gen;
  int64_t patch_dim = 0, gen_h = 0, gen_w = 0;
  for (int64_t r = 0; r < B; ++r) {
    const Sequence& s = *rows[r];
    const int64_t n = static_cast<int64_t>(s.ids.size());
    std::copy(s.ids.begin(), s.ids.end(), ids.begin() + r * T);
    std::copy(s.labels.begin(), s.labels.end(), labels.begin() + r * T);
    std::fill_n(mask.begin() + r * T, n, 1);
    b.tokens += n;
    if (s.pixel_values.defined()) {
      VT_CHECK(patch_dim == 0 || patch_dim == s.pixel_values.size(1), "collate: pixel rows of ", s.pixel_values.size(1),
               " and ", patch_dim, " values in one batch");
      patch_dim = s.pixel_values.size(1);
      const Tensor pv = s.pixel_values.contiguous();
      pixels.insert(pixels.end(), pv.data<float>(), pv.data<float>() + pv.numel());
      b.image_grid_thw.insert(b.image_grid_thw.end(), s.image_grid_thw.begin(), s.image_grid_thw.end());
    }
    if (s.gen_image.defined()) {
      VT_CHECK(gen_h == 0 || (gen_h == s.gen_image.size(1) && gen_w == s.gen_image.size(2)),
               "collate: generation targets of different sizes in one batch");
      gen_h = s.gen_image.size(1), gen_w = s.gen_image.size(2);
      const Tensor g = s.gen_image.contiguous();
      gen.insert(gen.end(), g.data<float>(), g.data<float>() + g.numel());
      b.gen_rows.push_back(r);
    }
  }
  b.input_ids = from_vector(ids, Shape{B, T});
  b.attention_mask = from_vector(mask, Shape{B, T});
  b.labels = from_vector(labels, Shape{B, T});
  if (patch_dim > 0) b.pixel_values = from_vector(pixels, Shape{static_cast<int64_t>(pixels.size()) / patch_dim, patch_dim});
  if (!b.gen_rows.empty())
    b.gen_images = from_vector(gen, Shape{static_cast<int64_t>(b.gen_rows.size()), 3, gen_h, gen_w});
  return b;
}

// ---- the loader ---------------------------------------------------------------------------------------

Loader::Loader(const tok::Tokenizer& tokenizer, std::vector<DataSource> sources, LoaderOptions opt)
    : builder_(tokenizer, opt.sequence), opt_(std::move(opt)), sources_(std::move(sources)) {
  VT_CHECK(!sources_.empty(), "data loader: no data sources");
  VT_CHECK(opt_.batch_size > 0, "data loader: batch_size ", opt_.batch_size, " must be positive");
  VT_CHECK(opt_.num_workers >= 0, "data loader: num_workers ", opt_.num_workers, " must be >= 0");
  if (!opt_.warn) opt_.warn = [](const std::string& m) { std::fprintf(stderr, "data: warning: %s\n", m.c_str()); };
  if (opt_.prefetch <= 0) opt_.prefetch = std::max<int64_t>(2 * opt_.batch_size, 4 * opt_.num_workers);
  pad_id_ = opt_.pad_token_id >= 0 ? opt_.pad_token_id : builder_.special_ids().endoftext;
  VT_CHECK(pad_id_ >= 0, "data loader: the tokenizer has no <|endoftext|>; set pad_token_id");

  int kinds_pref = 0, kinds_other = 0;
  std::string pref_src, other_src;
  for (const DataSource& s : sources_) {
    ReadOptions ro;
    ro.kind = s.kind, ro.root = s.root, ro.strict = opt_.strict, ro.warn = opt_.warn;
    ReadResult rr = read_records(s.path, ro);
    stats_.records += static_cast<int64_t>(rr.records.size());
    stats_.bad_records += rr.skipped;
    for (std::string& w : rr.warnings)
      if (stats_.warnings.size() < 1000) stats_.warnings.push_back(std::move(w));
    for (const Record& r : rr.records) {
      if (r.kind == TaskKind::Preference) ++kinds_pref, pref_src = r.origin;
      else ++kinds_other, other_src = r.origin;
    }
    const int64_t n = static_cast<int64_t>(rr.records.size());
    const int64_t k = s.count >= 0 ? s.count : static_cast<int64_t>(std::llround(s.fraction * static_cast<double>(n)));
    VT_CHECK(k == 0 || n > 0, "data loader: '", s.path, "' has no usable record but ", k, " examples per epoch are asked");
    per_epoch_.push_back(k);
    epoch_size_ += k;
    records_.push_back(std::move(rr.records));
  }
  VT_CHECK(kinds_pref == 0 || kinds_other == 0, "data loader: preference records (e.g. ", pref_src,
           ") cannot be batched with other kinds (e.g. ", other_src, "): the batch layouts differ");
  preference_ = kinds_pref > 0;
  VT_CHECK(epoch_size_ > 0, "data loader: the sources give no example per epoch");
  VT_CHECK(!opt_.drop_last || epoch_size_ >= opt_.batch_size, "data loader: drop_last with batch_size ",
           opt_.batch_size, " drops every batch of an epoch of ", epoch_size_, " examples");
  end_ = opt_.epochs > 0 ? opt_.epochs * epoch_size_ : std::numeric_limits<int64_t>::max();
}

Loader::~Loader() { stop_workers(); }

// Order of epoch e: per source, floor(k/n) whole passes over its records plus a seeded subset of
// k mod n of them; sources concatenated; then one Fisher-Yates shuffle keyed by (seed, e).
std::shared_ptr<const std::vector<Loader::Item>> Loader::order(int64_t epoch) const {
  std::lock_guard<std::mutex> lock(order_mu_);
  if (auto it = orders_.find(epoch); it != orders_.end()) return it->second;
  auto shuffle = [](std::vector<int64_t>& v, uint64_t key) {
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[draw_below(hash_key(key, i), i)]);
  };
  auto out = std::make_shared<std::vector<Item>>();
  out->reserve(epoch_size_);
  for (size_t s = 0; s < records_.size(); ++s) {
    const int64_t n = static_cast<int64_t>(records_[s].size()), k = per_epoch_[s];
    for (int64_t i = 0; i < k / std::max<int64_t>(n, 1) * n; ++i) out->push_back({static_cast<int32_t>(s), i % n});
    if (n == 0 || k % n == 0) continue;
    std::vector<int64_t> pick(n);
    for (int64_t i = 0; i < n; ++i) pick[i] = i;
    if (opt_.shuffle) shuffle(pick, hash_key(opt_.seed, static_cast<uint64_t>(epoch), 0x5EEDu, s));
    pick.resize(k % n);
    std::sort(pick.begin(), pick.end());
    for (int64_t i : pick) out->push_back({static_cast<int32_t>(s), i});
  }
  if (opt_.shuffle) {
    std::vector<int64_t> perm(out->size());
    for (size_t i = 0; i < perm.size(); ++i) perm[i] = static_cast<int64_t>(i);
    shuffle(perm, hash_key(opt_.seed, static_cast<uint64_t>(epoch), 0x0DE5u));
    auto shuffled = std::make_shared<std::vector<Item>>();
    shuffled->reserve(perm.size());
    for (int64_t i : perm) shuffled->push_back((*out)[i]);
    out = shuffled;
  }
  // Keep only the epochs around the one being built: the consumer and the workers never reach back.
  while (!orders_.empty() && orders_.begin()->first < epoch - 1) orders_.erase(orders_.begin());
  orders_[epoch] = out;
  return out;
}

Loader::Slot Loader::build_slot(int64_t g) const {
  const int64_t epoch = g / epoch_size_, index = g % epoch_size_;
  const Item item = (*order(epoch))[index];
  const Record& rec = records_[item.source][item.record];
  Slot s;
  s.record = &rec;
  try {
    Example ex = builder_.build(rec, hash_key(opt_.seed, static_cast<uint64_t>(epoch), static_cast<uint64_t>(index)));
    const size_t len = std::max(ex.seq.ids.size(), ex.rejected.ids.size());
    if (opt_.cutoff_len > 0 && static_cast<int64_t>(len) > opt_.cutoff_len) {
      s.too_long = true;
      s.error = "record " + rec.id + " (" + rec.origin + "): " + std::to_string(len) + " tokens exceed cutoff_len " +
                std::to_string(opt_.cutoff_len);
      return s;
    }
    s.example = std::move(ex);
  } catch (const std::exception& e) {
    s.error = e.what();
  }
  return s;
}

void Loader::worker_loop() {
  for (;;) {
    int64_t g;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return stop_ || (claimed_ < consumed_ + opt_.prefetch && claimed_ < end_); });
      if (stop_) return;
      g = claimed_++;
    }
    Slot s = build_slot(g);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
      ready_[g] = std::move(s);
    }
    ready_cv_.notify_all();
  }
}

void Loader::start_workers() {
  if (!workers_.empty() || opt_.num_workers == 0) return;
  stop_ = false;
  for (int i = 0; i < opt_.num_workers; ++i) workers_.emplace_back([this] { worker_loop(); });
}

void Loader::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
  workers_.clear();
  std::lock_guard<std::mutex> lock(mu_);
  ready_.clear();
  claimed_ = consumed_;
  stop_ = false;
}

Loader::Slot Loader::take(int64_t g) {
  if (opt_.num_workers == 0) {
    ++consumed_, claimed_ = consumed_;
    return build_slot(g);
  }
  start_workers();
  Slot s;
  {
    std::unique_lock<std::mutex> lock(mu_);
    ready_cv_.wait(lock, [&] { return ready_.count(g) > 0; });
    s = std::move(ready_[g]);
    ready_.erase(g);
    ++consumed_;
  }
  work_cv_.notify_all();
  return s;
}

void Loader::note_skip(const Slot& s, int64_t g) {
  VT_CHECK(!opt_.strict, "data: ", s.error);
  ++(s.too_long ? stats_.too_long : stats_.bad_examples);
  const Item item = (*order(g / epoch_size_))[g % epoch_size_];
  if (!warned_.insert({item.source, item.record}).second) return;
  opt_.warn(s.error);
  if (stats_.warnings.size() < 1000) stats_.warnings.push_back(s.error);
}

std::optional<Batch> Loader::next() {
  for (;;) {
    if (consumed_ >= end_) return std::nullopt;
    const int64_t epoch = consumed_ / epoch_size_;
    std::vector<Example> examples;
    while (static_cast<int64_t>(examples.size()) < opt_.batch_size && consumed_ < end_ &&
           consumed_ / epoch_size_ == epoch) {
      const int64_t g = consumed_;
      if (g % epoch_size_ == 0) epoch_good_ = 0, epoch_whole_ = true;
      Slot s = take(g);
      if (s.example) {
        ++epoch_good_;
        examples.push_back(std::move(*s.example));
      } else {
        note_skip(s, g);
      }
    }
    // An epoch read whole without one good example would make an endless run spin forever.
    VT_CHECK(!(consumed_ % epoch_size_ == 0 && epoch_whole_ && epoch_good_ == 0), "data loader: every example of epoch ",
             epoch, " was skipped (", stats_.bad_examples, " bad, ", stats_.too_long, " over cutoff_len so far)");
    if (examples.empty()) continue;
    if (opt_.drop_last && static_cast<int64_t>(examples.size()) < opt_.batch_size) continue;
    stats_.examples += static_cast<int64_t>(examples.size());
    return collate(examples, pad_id_);
  }
}

LoaderPosition Loader::position() const {
  return {consumed_ / epoch_size_, consumed_ % epoch_size_, opt_.seed, epoch_size_};
}

void Loader::restore(const LoaderPosition& pos) {
  VT_CHECK(pos.seed == opt_.seed, "data position: saved with seed ", pos.seed, ", the loader has seed ", opt_.seed);
  VT_CHECK(pos.epoch_size == epoch_size_, "data position: saved with ", pos.epoch_size,
           " examples per epoch, the loader's sources give ", epoch_size_, " (different data files or mixing?)");
  VT_CHECK(pos.index >= 0 && pos.index < epoch_size_ && pos.epoch >= 0, "data position: index ", pos.index,
           " outside the epoch of ", epoch_size_);
  stop_workers();
  std::lock_guard<std::mutex> lock(mu_);
  consumed_ = claimed_ = pos.epoch * epoch_size_ + pos.index;
  epoch_good_ = 0, epoch_whole_ = pos.index == 0;
}

DataStats Loader::stats() const { return stats_; }

}  // namespace vt::train
