// safetensors.h: reading and writing the safetensors format, alone and as a sharded checkpoint.
//
// Format (huggingface/safetensors): 8 bytes little-endian u64 N, then N bytes of UTF-8 JSON, then
// the data section. The JSON object maps each tensor name to
//   {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}
// with offsets relative to the first byte after the header, plus an optional "__metadata__"
// object of string -> string. Tensors are little-endian and row-major.
//
// Validation follows upstream's reader, which is stricter than the format's prose:
//   - the header is at most 100 MB, starts with '{', is valid UTF-8 and valid JSON;
//   - sorted by offset, the tensors tile the data section exactly: the first starts at 0, each
//     starts where the previous ends, the last ends at the end of the file. A hole between two
//     tensors or trailing bytes after the last are errors (upstream: InvalidOffset and
//     MetadataIncompleteBuffer), as are overlaps;
//   - numel * dtype size == end - begin, computed without overflow.
// vt adds: a duplicate key in any object of the header is an error (upstream rejects a repeated
// field of an entry but keeps the last of two same-named tensors or metadata keys silently), and
// dtypes vt has no DType for (I8, U16, F8_*, ...) are errors naming the tensor. Unknown fields inside a tensor entry are ignored, as upstream does.
// Every failure is a vt::Error naming the file and, where there is one, the tensor.
//
// Alignment: the header is padded with spaces so the data section starts 8-byte aligned in the
// file (and the mapping is page-aligned), but a tensor is only element-aligned if the writer laid
// tensors out that way; Python's writer sorts by descending dtype size, vt's writer keeps the
// caller's order. Readers that need alignment check `data(e)` themselves.
//
// Ownership: SafetensorsFile owns a read-only MAP_PRIVATE mapping of the whole file; pointers from
// data() live as long as the object. A file truncated by another process while mapped makes reads
// fault (SIGBUS); nothing in user space can prevent that.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "vt/dtype.h"

namespace vt::io {

// One tensor of a safetensors header. begin/end are byte offsets into the data section.
struct TensorEntry {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;  // () for a 0-d scalar
  uint64_t begin, end;
};

// A parsed, validated header. `entries` are sorted by begin offset (file order).
struct SafetensorsHeader {
  std::map<std::string, std::string> metadata;
  std::vector<TensorEntry> entries;
  uint64_t header_bytes = 0;  // N
  uint64_t data_offset = 0;   // 8 + N: where the data section starts in the file
  uint64_t data_bytes = 0;    // size of the data section
};

// Parses and validates the header of a whole safetensors file held in buf[0, len). `source` names
// the file in error messages. Never reads outside [buf, buf + len).
SafetensorsHeader parse_header(const uint8_t* buf, size_t len, const std::string& source);

class SafetensorsFile {
 public:
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const SafetensorsHeader& header() const { return header_; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  const std::vector<TensorEntry>& entries() const { return header_.entries; }  // in file order
  const TensorEntry* find(std::string_view name) const;  // nullptr when absent
  // First byte of the tensor's data (element alignment not guaranteed, see above).
  const uint8_t* data(const TensorEntry& e) const { return base_ + header_.data_offset + e.begin; }
  // Drops the mapped pages that lie wholly inside the tensor's bytes from this process's resident
  // set (madvise MADV_DONTNEED; the file itself is untouched and a later read faults them back in).
  // A loader that has copied a tensor out calls it, so that loading costs the weights once, not twice.
  void release(const TensorEntry& e) const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  SafetensorsHeader header_;
  std::map<std::string, size_t, std::less<>> index_;  // name -> position in entries
};

// ---- writing ------------------------------------------------------------------------------------

struct TensorSpec {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
};

struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;  // nbytes of little-endian, row-major elements
  size_t nbytes;
};

// Streams one safetensors file to disk: the header goes out at construction, then the caller
// appends the data section in spec order, in chunks of any size (a tensor may be copied from the
// GPU piece by piece), then finish() checks the byte count, fsyncs and renames the temporary
// `path.tmp.<pid>` over `path`. Destroying an unfinished writer removes the temporary file, so a
// failure part-way leaves any previous `path` untouched.
class SafetensorsWriter {
 public:
  SafetensorsWriter(const std::string& path, const std::vector<TensorSpec>& tensors,
                    const std::map<std::string, std::string>& metadata = {});
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  void append(const void* bytes, size_t nbytes);
  void finish();
  uint64_t data_bytes() const { return data_bytes_; }  // what the data section must total

 private:
  void write_all(const void* bytes, size_t nbytes);
  void abandon() noexcept;
  std::string path_, tmp_path_;
  int fd_ = -1;
  uint64_t data_bytes_ = 0, written_ = 0;
  bool finished_ = false;
};

// Writes the tensors, contiguous in the given order, atomically. Holds no copy of the data.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// ---- sharded checkpoints (Hugging Face layout) -------------------------------------------------

// Opens `model.safetensors`, a directory holding `model.safetensors` (preferred, as transformers
// does) or `model.safetensors.index.json`, or an index file given directly. Index format:
//   {"metadata": {"total_size": 123, ...}, "weight_map": {"tensor.name": "model-00001-of-00002.safetensors"}}
// Shards are parsed lazily on the first access to one of their tensors; their existence is checked
// at construction. Safe to call from several threads; movable, not copyable.
class CheckpointReader {
 public:
  explicit CheckpointReader(const std::string& path);

  std::vector<std::string> names() const;  // sorted
  bool contains(std::string_view name) const;
  const TensorEntry& entry(std::string_view name);
  const uint8_t* data(std::string_view name);
  void release(std::string_view name);  // SafetensorsFile::release of the tensor's shard
  // The single file's __metadata__, or the index's "metadata" with non-string values as JSON text.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return path_; }  // the .safetensors or index file opened

 private:
  struct Located {
    const SafetensorsFile* file;
    const TensorEntry* entry;
  };
  Located locate(std::string_view name);
  std::string path_;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, size_t, std::less<>> shard_of_;  // tensor name -> index into shards_
  std::vector<std::string> shard_paths_;
  std::vector<std::shared_ptr<SafetensorsFile>> shards_;  // null until first used
  std::unique_ptr<std::mutex> mutex_ = std::make_unique<std::mutex>();  // keeps the reader movable
};

// Splits the tensors, in order, into shards of at most max_shard_bytes of data (a tensor larger
// than that gets a shard of its own) written as dir/model-0000i-of-0000N.safetensors plus
// dir/model.safetensors.index.json; when everything fits in one shard, writes dir/model.safetensors
// alone, as transformers' save_pretrained does. `metadata` goes into every shard's header and the
// index's "metadata" (beside "total_size"). Each file is written atomically, the index last; then
// checkpoint files of an earlier save in `dir` that this one did not write are removed, so a
// reader never picks up a stale model.safetensors or shard.
void write_sharded(const std::string& dir, const std::vector<TensorToWrite>& tensors,
                   uint64_t max_shard_bytes, const std::map<std::string, std::string>& metadata = {});

}  // namespace vt::io
