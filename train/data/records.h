// train/data/records.h: reading the training data files into records: text and image paths, no
// decoding (docs/data_formats.md).
//
//   file (JSON array, or JSON lines: one object per line)
//     --parse--> objects --normalise roles/keys--> Record{id, kind, system, turns, chosen, rejected,
//                                                          images (as written), root, data_dir}
//     --check markers--> <image> + <image_gen> markers == images, the kind's shape (a bad record is
//                        skipped with a counted warning, or an error under strict)
//
// Four kinds, detected per record unless stated: preference (has "chosen" and "rejected"), editing
// (<image> in a user turn and <image_gen> in a reply), generation (<image_gen> only), understanding
// (no <image_gen>). Roles: from/role keys with human|user, gpt|assistant, system; value/content keys
// (content may be an OpenAI list of {"type": "text"|"image"} parts); "messages" is an alias of
// "conversations".
//
// Image paths: absolute paths are kept; a relative one is looked up under `root` first, then under
// the data file's directory (root defaults to that directory). ShapeWorld writes paths relative to the
// dataset directory DIR while its JSON sits in DIR/train, so pass root = DIR there. Resolution happens
// when the image is opened (resolve_image), so reading a file of millions of records stats nothing.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "data/sample.h"

namespace vt::train {

inline constexpr std::string_view kImageMarker = "<image>";
inline constexpr std::string_view kImageGenMarker = "<image_gen>";

struct Turn {
  std::string role;  // "user" or "assistant" ("system" only in Record::system)
  std::string text;  // with <image> / <image_gen> markers
};

struct Record {
  std::string id;      // the record's "id" (string or number), else "<file name>:<line>"
  std::string origin;  // "<file path>:<line>" (JSON lines) or "<file path>[<index>]" (JSON array)
  TaskKind kind = TaskKind::Understanding;
  std::string system;        // a top-level "system" or a first system turn; empty = the default prompt
  std::vector<Turn> turns;   // user / assistant alternating, user first; preference: the prompt turns
  Turn chosen, rejected;     // preference only (role "assistant")
  std::vector<std::string> images;  // as written; routed in marker order (vargpt.md §3)
  std::string root;          // first directory a relative image path is looked up in
  std::string data_dir;      // the data file's directory (second place)
};

// Parses a kind name: "understanding", "generation", "editing", "preference" (error listing them).
TaskKind parse_task_kind(std::string_view name);

// Count of non-overlapping occurrences of `marker` in `text`.
int64_t count_marker(std::string_view text, std::string_view marker);

// The path an image of the record is opened from: absolute as is; otherwise root/p when it exists,
// else data_dir/p when it exists, else root/p (opening it then fails with a message naming it).
std::string resolve_image(const Record& record, const std::string& path);

struct ReadOptions {
  std::optional<TaskKind> kind;  // stated kind: a record of another shape is bad; nullopt = detect
  std::string root;              // empty = the data file's directory
  bool strict = false;           // a bad record or malformed line throws instead of being skipped
  // Called with "<origin> (id <id>): <reason>" for each skipped record or line (may be empty).
  std::function<void(const std::string&)> warn;
};

struct ReadResult {
  std::vector<Record> records;
  int64_t skipped = 0;                // bad records and malformed lines
  std::vector<std::string> warnings;  // one per skip, in file order
};

// Reads one file. A missing or unreadable file always throws, naming it. A JSON array that does not
// parse is re-read line by line when it has one record per line (as ShapeWorld writes), so one broken
// line costs one record; otherwise the error names the file, line and column.
ReadResult read_records(const std::string& path, const ReadOptions& opt = {});

// Record-level validation used by read_records: the kind's shape and the marker/image count. Throws
// vt::Error with the reason (without the origin).
void validate_record(const Record& record);

}  // namespace vt::train
