// train/data/loader.h: data files -> a deterministic, resumable stream of right-padded batches.
//
//   sources (file, kind, fraction | count) --read_records--> records (bad ones skipped and counted)
//   epoch e: order(e) = per source k_s record indices (whole copies + a seeded subset), concatenated,
//            shuffled by (seed, e)                                     -- E = Σ k_s slots per epoch
//   workers (std::thread x num_workers) claim slots g = e·E + i in order, at most `prefetch` ahead of
//            the consumer, and build Examples (decode, preprocess, tokenize); crops seeded by (seed, e, i)
//   next(): takes slots in order g = consumed, consumed + 1, ... (waiting for the one it needs), skips
//            bad or over-long ones with a counted warning, stops at batch_size examples or the epoch's
//            end, and collates them into a Batch (right padding, preference rows [chosen; rejected])
//
// Determinism: every slot's content is a pure function of (sources, options, seed, e, i) and batches
// are cut in slot order, so the batches do not depend on num_workers or thread timing. The position
// (epoch, index of the next unconsumed slot) is the whole state: restoring it gives exactly the
// batches an uninterrupted run would have given from there.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/records.h"
#include "data/sample.h"
#include "data/sequence.h"

namespace vt::train {

struct DataSource {
  std::string path;
  std::optional<TaskKind> kind;  // nullopt: detected per record
  std::string root;              // image root; empty = the file's directory (records.h)
  double fraction = 1.0;         // examples per epoch = round(fraction · records) (> 1 repeats) ...
  int64_t count = -1;            // ... or exactly `count` when >= 0
};

// "PATH[,kind=K][,root=DIR][,fraction=F][,count=N]", e.g. "data/gen.json,kind=generation,count=50000".
DataSource parse_data_source(std::string_view spec);

struct LoaderOptions {
  int64_t batch_size = 1;    // examples per batch (a preference pair is one example and two rows)
  uint64_t seed = 0;
  bool shuffle = true;       // false: sources in order, records in file order
  bool drop_last = false;    // drop an epoch's last, smaller batch
  int64_t epochs = 0;        // next() returns nullopt after this many epochs; 0 = endless
  int64_t cutoff_len = 0;    // > 0: a sequence longer than this is skipped (an error under strict)
  bool strict = false;       // any bad record, image or length throws, naming the record
  int num_workers = 2;       // builder threads; 0 builds inside next()
  int64_t prefetch = 0;      // slots built ahead of the consumer; 0 = max(2·batch_size, 4·num_workers)
  int64_t pad_token_id = -1; // -1: the tokenizer's <|endoftext|>
  SequenceOptions sequence;
  // Each skip, as "<origin> (id <id>): <reason>"; default prints "data: warning: ..." to stderr. A
  // record that fails again in a later epoch is counted again but warned about once.
  std::function<void(const std::string&)> warn;
};

// Where the stream stands: the next unconsumed slot. seed and epoch_size are checked on restore.
struct LoaderPosition {
  int64_t epoch = 0;
  int64_t index = 0;       // into the epoch's order, 0 <= index < epoch_size
  uint64_t seed = 0;
  int64_t epoch_size = 0;

  nlohmann::json to_json() const;
  static LoaderPosition from_json(const nlohmann::json& j);  // errors name a missing/mistyped field
  void save(const std::string& path) const;                  // written atomically
  static LoaderPosition load(const std::string& path);
};

struct DataStats {
  int64_t records = 0;           // records read from all sources
  int64_t bad_records = 0;       // skipped at read time (malformed JSON, shape, marker/image count)
  int64_t bad_examples = 0;      // slots skipped at build time (missing or corrupt image, ...)
  int64_t too_long = 0;          // slots skipped for cutoff_len
  int64_t examples = 0;          // examples delivered in batches
  std::vector<std::string> warnings;  // the first 1000 warnings, in order
};

// B examples -> one Batch. Preference examples give 2B rows [chosen 0..B-1; rejected 0..B-1]; other
// kinds one row each; mixing the two is an error. Images and targets follow row order.
Batch collate(const std::vector<Example>& examples, int64_t pad_token_id);

class Loader {
 public:
  // Reads every source now (an unreadable file throws, naming it); workers start at the first next().
  Loader(const tok::Tokenizer& tokenizer, std::vector<DataSource> sources, LoaderOptions opt = {});
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // The next batch, or nullopt once `epochs` epochs are done. Throws under strict (bad input) and
  // when a whole epoch yields no example.
  std::optional<Batch> next();

  LoaderPosition position() const;
  // Seeks to a saved position (stops and restarts the workers). Errors when seed or epoch size differ.
  void restore(const LoaderPosition& pos);

  int64_t epoch_size() const { return epoch_size_; }  // E: slots per epoch
  DataStats stats() const;  // call from the thread that calls next()
  const SequenceBuilder& builder() const { return builder_; }
  const std::vector<Record>& records(size_t source) const { return records_.at(source); }

 private:
  struct Item {
    int32_t source;
    int64_t record;
  };
  struct Slot {
    std::optional<Example> example;
    std::string error;  // non-empty: skip (or throw under strict)
    bool too_long = false;
    const Record* record = nullptr;
  };

  std::shared_ptr<const std::vector<Item>> order(int64_t epoch) const;
  Slot build_slot(int64_t g) const;
  void start_workers();
  void stop_workers();
  void worker_loop();
  Slot take(int64_t g);  // the built slot g (waits for a worker, or builds it inline)
  void note_skip(const Slot& s, int64_t g);

  SequenceBuilder builder_;
  LoaderOptions opt_;
  std::vector<DataSource> sources_;
  std::vector<std::vector<Record>> records_;
  std::vector<int64_t> per_epoch_;  // k_s
  int64_t epoch_size_ = 0, end_ = 0, pad_id_ = 0;
  bool preference_ = false;

  mutable std::mutex order_mu_;
  mutable std::map<int64_t, std::shared_ptr<const std::vector<Item>>> orders_;

  mutable std::mutex mu_;
  std::condition_variable work_cv_, ready_cv_;
  std::vector<std::thread> workers_;
  std::map<int64_t, Slot> ready_;
  int64_t consumed_ = 0, claimed_ = 0;
  bool stop_ = false;

  DataStats stats_;  // written by the consumer (next()) only
  int64_t epoch_good_ = 0;   // good examples so far in the current epoch
  bool epoch_whole_ = true;  // the current epoch was read from its first slot
  std::set<std::pair<int32_t, int64_t>> warned_;
};

}  // namespace vt::train
