// safetensors.cpp: header parsing and validation, the mmap'd reader, the streaming atomic writer,
// and sharded checkpoints. The format and the validation rules are described in
// include/vt/io/safetensors.h; this file reads top to bottom in that order.
//
// The parser treats its input as hostile: every length is checked against the buffer before use,
// sizes are multiplied with overflow checks, and JSON nesting deeper than a valid header can have
// is refused while parsing, so no input can read out of bounds, overflow, or exhaust the stack.
// tools/fuzz/fuzz_safetensors.cpp exercises parse_header under ASan/UBSan.
#include "vt/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace vt::io {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // upstream's MAX_HEADER_SIZE

// Errors read "safetensors <file>: tensor '<name>': <what>".
template <class... Args>
[[noreturn]] void fail_file(const std::string& source, const Args&... args) {
  VT_FAIL("safetensors ", source, ": ", args...);
}
template <class... Args>
[[noreturn]] void fail_tensor(const std::string& source, const std::string& name, const Args&... args) {
  VT_FAIL("safetensors ", source, ": tensor '", name, "': ", args...);
}

std::string errno_text() { return std::strerror(errno); }

// Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF.
// Returns the offset of the first bad byte, or len when the whole buffer is valid.
size_t utf8_invalid_at(const uint8_t* s, size_t len) {
  size_t i = 0;
  while (i < len) {
    uint8_t c = s[i];
    size_t n;
    uint32_t cp, min;
    if (c < 0x80) { ++i; continue; }
    if ((c & 0xE0) == 0xC0) { n = 1; cp = c & 0x1F; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { n = 2; cp = c & 0x0F; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { n = 3; cp = c & 0x07; min = 0x10000; }
    else return i;
    if (len - i <= n) return i;
    for (size_t k = 1; k <= n; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += n + 1;
  }
  return len;
}
bool valid_utf8(const std::string& s) {
  return utf8_invalid_at(reinterpret_cast<const uint8_t*>(s.data()), s.size()) == s.size();
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << ']';
  return os.str();
}

// numel * dtype size, or false on overflow.
bool tensor_nbytes(const std::vector<int64_t>& shape, DType dtype, uint64_t& out) {
  uint64_t n = 1;
  for (int64_t d : shape)
    if (d < 0 || __builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return false;
  return !__builtin_mul_overflow(n, static_cast<uint64_t>(dtype_size(dtype)), &out);
}

// A JSON number that is a non-negative integer, as u64.
bool as_u64(const json& j, uint64_t& out) {
  if (j.is_number_unsigned()) { out = j.get<uint64_t>(); return true; }
  if (j.is_number_integer() && j.get<int64_t>() >= 0) { out = static_cast<uint64_t>(j.get<int64_t>()); return true; }
  return false;
}

TensorEntry parse_entry(const std::string& source, const std::string& name, const json& j) {
  if (!j.is_object()) fail_tensor(source, name, "entry is a JSON ", j.type_name(), ", expected an object");
  auto dt = j.find("dtype"), sh = j.find("shape"), off = j.find("data_offsets");
  if (dt == j.end()) fail_tensor(source, name, "missing \"dtype\"");
  if (sh == j.end()) fail_tensor(source, name, "missing \"shape\"");
  if (off == j.end()) fail_tensor(source, name, "missing \"data_offsets\"");

  TensorEntry e{name, DType::F32, {}, 0, 0};
  if (!dt->is_string()) fail_tensor(source, name, "\"dtype\" is a JSON ", dt->type_name(), ", expected a string");
  const auto& dts = dt->get_ref<const std::string&>();
  if (!dtype_from_safetensors(dts, e.dtype)) fail_tensor(source, name, "unsupported dtype \"", dts, "\"");

  if (!sh->is_array()) fail_tensor(source, name, "\"shape\" is a JSON ", sh->type_name(), ", expected an array");
  for (const json& d : *sh) {
    uint64_t v;
    if (!as_u64(d, v) || v > uint64_t(std::numeric_limits<int64_t>::max()))
      fail_tensor(source, name, "shape element ", d.dump(), " is not a non-negative integer");
    e.shape.push_back(static_cast<int64_t>(v));
  }

  if (!off->is_array() || off->size() != 2 || !as_u64((*off)[0], e.begin) || !as_u64((*off)[1], e.end))
    fail_tensor(source, name, "\"data_offsets\" is ", off->dump(), ", expected [begin, end] of non-negative integers");
  if (e.begin > e.end) fail_tensor(source, name, "data_offsets [", e.begin, ", ", e.end, "] has begin > end");

  uint64_t nbytes;
  if (!tensor_nbytes(e.shape, e.dtype, nbytes))
    fail_tensor(source, name, "shape ", shape_text(e.shape), " of ", dts, " overflows 64-bit byte count");
  if (nbytes != e.end - e.begin)
    fail_tensor(source, name, "shape ", shape_text(e.shape), " of ", dts, " needs ", nbytes,
                " bytes but data_offsets [", e.begin, ", ", e.end, "] span ", e.end - e.begin);
  return e;
}

}  // namespace

SafetensorsHeader parse_header(const uint8_t* buf, size_t len, const std::string& source) {
  if (len < 8) fail_file(source, "file is ", len, " bytes, shorter than the 8-byte header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | buf[i];
  if (n > kMaxHeaderBytes) fail_file(source, "header length ", n, " exceeds the limit of ", kMaxHeaderBytes, " bytes");
  if (n > len - 8) fail_file(source, "header length ", n, " runs past the end of the ", len, "-byte file");

  const uint8_t* text = buf + 8;
  if (n == 0 || text[0] != '{') fail_file(source, "header does not start with '{'");
  if (size_t bad = utf8_invalid_at(text, n); bad != n) fail_file(source, "header is not valid UTF-8 (byte ", bad, ")");

  // Parse with a callback that refuses duplicate keys in any object (nlohmann would keep the last
  // silently) and containers nested deeper than a valid header has (root object > entry object >
  // shape array), which also bounds the parser's memory on hostile input.
  std::vector<std::set<std::string>> keys;  // one set per open object
  std::string entry;                        // the top-level key being parsed
  auto guard = [&](int depth, json::parse_event_t event, json& parsed) {
    using E = json::parse_event_t;
    if ((event == E::object_start || event == E::array_start) && depth > 2)
      fail_file(source, "header JSON is nested deeper than a safetensors header can be");
    if (event == E::object_start) keys.emplace_back();
    if (event == E::object_end && !keys.empty()) keys.pop_back();
    if (event == E::key && !keys.empty()) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (depth == 1) entry = key;
      if (!keys.back().insert(key).second) {
        if (depth == 1) fail_file(source, "duplicate key '", key, "' in header");
        if (entry == "__metadata__") fail_file(source, "__metadata__ has duplicate key '", key, "'");
        fail_tensor(source, entry, "duplicate key '", key, "'");
      }
    }
    return true;
  };
  json root;
  try {
    root = json::parse(text, text + n, guard);
  } catch (const json::exception& ex) {
    fail_file(source, "header is not valid JSON: ", ex.what());
  }
  if (!root.is_object()) fail_file(source, "header is a JSON ", root.type_name(), ", expected an object");

  SafetensorsHeader h;
  h.header_bytes = n;
  h.data_offset = 8 + n;
  h.data_bytes = len - h.data_offset;
  for (auto it = root.begin(); it != root.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (it->is_null()) continue;  // upstream's Option<HashMap> accepts null
      if (!it->is_object()) fail_file(source, "__metadata__ is a JSON ", it->type_name(), ", expected an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) fail_file(source, "__metadata__ value of '", m.key(), "' is a JSON ", m->type_name(), ", expected a string");
        h.metadata.emplace(m.key(), m->get<std::string>());
      }
      continue;
    }
    TensorEntry e = parse_entry(source, it.key(), *it);
    if (e.end > h.data_bytes)
      fail_tensor(source, e.name, "data_offsets [", e.begin, ", ", e.end, "] exceed the data section of ", h.data_bytes, " bytes");
    h.entries.push_back(std::move(e));
  }

  // Sorted by offset, the tensors must tile [0, data_bytes) exactly.
  std::sort(h.entries.begin(), h.entries.end(), [](const TensorEntry& a, const TensorEntry& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  uint64_t covered = 0;
  const TensorEntry* prev = nullptr;
  for (const TensorEntry& e : h.entries) {
    if (e.begin < covered)
      fail_tensor(source, e.name, "data_offsets [", e.begin, ", ", e.end, "] overlap tensor '", prev->name, "'");
    if (e.begin > covered)
      fail_tensor(source, e.name, "hole of ", e.begin - covered, " bytes before its data at ", e.begin,
                  " (tensors must be contiguous)");
    covered = e.end;
    prev = &e;
  }
  if (covered != h.data_bytes)
    fail_file(source, "tensors cover ", covered, " bytes of the ", h.data_bytes, "-byte data section (trailing bytes)");
  return h;
}

// ---- SafetensorsFile ---------------------------------------------------------------------------

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail_file(path, "cannot open: ", errno_text());
  struct stat st {};
  if (::fstat(fd, &st) != 0) { std::string why = errno_text(); ::close(fd); fail_file(path, "cannot stat: ", why); }
  if (!S_ISREG(st.st_mode)) { ::close(fd); fail_file(path, "not a regular file"); }
  f->size_ = static_cast<size_t>(st.st_size);
  if (f->size_ < 8) { ::close(fd); fail_file(path, "file is ", f->size_, " bytes, shorter than the 8-byte header length"); }
  void* p = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
  std::string why = p == MAP_FAILED ? errno_text() : "";
  ::close(fd);  // the mapping keeps the file alive
  if (p == MAP_FAILED) fail_file(path, "mmap failed: ", why);
  f->base_ = static_cast<const uint8_t*>(p);
  f->header_ = parse_header(f->base_, f->size_, path);  // on throw, ~SafetensorsFile unmaps
  for (size_t i = 0; i < f->header_.entries.size(); ++i) f->index_.emplace(f->header_.entries[i].name, i);
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (base_) ::munmap(const_cast<uint8_t*>(base_), size_);
}

void SafetensorsFile::release(const TensorEntry& e) const {
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(data(e)), end = begin + (e.end - e.begin);
  const uintptr_t lo = (begin + page - 1) / page * page, hi = end / page * page;  // whole pages inside
  if (hi > lo) ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);   // advisory: no error path
}

const TensorEntry* SafetensorsFile::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &header_.entries[it->second];
}

// ---- writing -----------------------------------------------------------------------------------

namespace {

// The header JSON for tensors laid out contiguously in the given order, padded with spaces to a
// multiple of 8 bytes so the data section starts aligned. Returns the data section size in total.
std::string build_header(const std::string& path, const std::vector<TensorSpec>& tensors,
                         const std::map<std::string, std::string>& metadata, uint64_t& total) {
  nlohmann::ordered_json root = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    auto& m = root["__metadata__"] = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) {
      if (!valid_utf8(k) || !valid_utf8(v)) fail_file(path, "__metadata__ entry '", k, "' is not valid UTF-8");
      m[k] = v;
    }
  }
  total = 0;
  for (const TensorSpec& t : tensors) {
    if (t.name == "__metadata__") fail_file(path, "a tensor cannot be named __metadata__");
    if (!valid_utf8(t.name)) fail_file(path, "tensor name '", t.name, "' is not valid UTF-8");
    if (root.contains(t.name)) fail_tensor(path, t.name, "duplicate tensor name");
    for (int64_t d : t.shape)
      if (d < 0) fail_tensor(path, t.name, "negative dimension in shape ", shape_text(t.shape));
    uint64_t nbytes, end;
    if (!tensor_nbytes(t.shape, t.dtype, nbytes) || __builtin_add_overflow(total, nbytes, &end))
      fail_tensor(path, t.name, "shape ", shape_text(t.shape), " overflows 64-bit byte count");
    root[t.name] = {{"dtype", safetensors_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {total, end}}};
    total = end;
  }
  std::string text = root.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

void fsync_parent_dir(const std::string& path) {
  fs::path dir = fs::path(path).parent_path();
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) { ::fsync(fd); ::close(fd); }  // best effort: makes the rename itself durable
}

}  // namespace

SafetensorsWriter::SafetensorsWriter(const std::string& path, const std::vector<TensorSpec>& tensors,
                                     const std::map<std::string, std::string>& metadata)
    : path_(path), tmp_path_(path + ".tmp." + std::to_string(::getpid())) {
  std::string header = build_header(path, tensors, metadata, data_bytes_);
  fd_ = ::open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail_file(path, "cannot create ", tmp_path_, ": ", errno_text());
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(uint64_t(header.size()) >> (8 * i));
  try {
    write_all(len, 8);
    write_all(header.data(), header.size());
  } catch (...) {
    abandon();
    throw;
  }
}

SafetensorsWriter::~SafetensorsWriter() {
  if (!finished_) abandon();
}

void SafetensorsWriter::abandon() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  ::unlink(tmp_path_.c_str());
}

void SafetensorsWriter::write_all(const void* bytes, size_t nbytes) {
  VT_CHECK(fd_ >= 0, "safetensors ", path_, ": writer used after finish() or a failure");
  const char* p = static_cast<const char*>(bytes);
  while (nbytes > 0) {
    ssize_t w = ::write(fd_, p, std::min<size_t>(nbytes, size_t(1) << 30));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      std::string why = w < 0 ? errno_text() : "wrote 0 bytes";
      abandon();
      fail_file(path_, "write to ", tmp_path_, " failed: ", why);
    }
    p += w;
    nbytes -= static_cast<size_t>(w);
  }
}

void SafetensorsWriter::append(const void* bytes, size_t nbytes) {
  if (nbytes > data_bytes_ - written_) {
    abandon();
    fail_file(path_, "appending ", nbytes, " bytes overruns the data section (", written_, " of ", data_bytes_, " written)");
  }
  write_all(bytes, nbytes);
  written_ += nbytes;
}

void SafetensorsWriter::finish() {
  if (written_ != data_bytes_) {
    abandon();
    fail_file(path_, "finished after ", written_, " of ", data_bytes_, " data bytes");
  }
  VT_CHECK(fd_ >= 0, "safetensors ", path_, ": finish() called twice");
  if (::fsync(fd_) != 0) { std::string why = errno_text(); abandon(); fail_file(path_, "fsync failed: ", why); }
  int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) { std::string why = errno_text(); abandon(); fail_file(path_, "close failed: ", why); }
  if (::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    std::string why = errno_text();
    abandon();
    fail_file(path_, "rename from ", tmp_path_, " failed: ", why);
  }
  finished_ = true;
  fsync_parent_dir(path_);
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<TensorSpec> specs;
  specs.reserve(tensors.size());
  for (const TensorToWrite& t : tensors) specs.push_back({t.name, t.dtype, t.shape});
  for (const TensorToWrite& t : tensors) {  // before any file is created
    uint64_t nbytes = 0;
    if (!tensor_nbytes(t.shape, t.dtype, nbytes)) continue;  // the writer names the bad shape
    if (nbytes != t.nbytes)
      fail_tensor(path, t.name, "shape ", shape_text(t.shape), " of ", safetensors_name(t.dtype), " needs ",
                  nbytes, " bytes, given ", t.nbytes);
    if (nbytes > 0 && t.data == nullptr) fail_tensor(path, t.name, "data is null");
  }
  SafetensorsWriter w(path, specs, metadata);  // validates names and shapes
  for (const TensorToWrite& t : tensors) w.append(t.data, t.nbytes);
  w.finish();
}

// ---- sharded checkpoints -----------------------------------------------------------------------

namespace {

constexpr const char* kSingleName = "model.safetensors";
constexpr const char* kIndexName = "model.safetensors.index.json";

std::string shard_name(size_t i, size_t n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i, n);
  return buf;
}

// model-<digits>-of-<digits>.safetensors, the pattern write_sharded produces.
bool is_shard_name(const std::string& s) {
  const std::string pre = "model-", mid = "-of-", suf = ".safetensors";
  if (s.size() <= pre.size() + suf.size() || s.compare(0, pre.size(), pre) != 0 ||
      s.compare(s.size() - suf.size(), suf.size(), suf) != 0)
    return false;
  std::string core = s.substr(pre.size(), s.size() - pre.size() - suf.size());
  size_t m = core.find(mid);
  if (m == std::string::npos || m == 0 || m + mid.size() == core.size()) return false;
  auto digits = [](std::string_view d) { return std::all_of(d.begin(), d.end(), [](char c) { return c >= '0' && c <= '9'; }); };
  return digits(std::string_view(core).substr(0, m)) && digits(std::string_view(core).substr(m + mid.size()));
}

void write_text_atomically(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) VT_FAIL("checkpoint ", path, ": cannot create ", tmp, ": ", errno_text());
  size_t done = 0;
  while (done < text.size()) {
    ssize_t w = ::write(fd, text.data() + done, text.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    done += static_cast<size_t>(w);
  }
  bool ok = done == text.size() && ::fsync(fd) == 0;
  ok = (::close(fd) == 0) && ok;
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string why = errno_text();
    ::unlink(tmp.c_str());
    VT_FAIL("checkpoint ", path, ": writing failed: ", why);
  }
  fsync_parent_dir(path);
}

}  // namespace

void write_sharded(const std::string& dir, const std::vector<TensorToWrite>& tensors, uint64_t max_shard_bytes,
                   const std::map<std::string, std::string>& metadata) {
  VT_CHECK(max_shard_bytes > 0, "checkpoint ", dir, ": max_shard_bytes must be positive");
  std::error_code ec;
  fs::create_directories(dir, ec);
  VT_CHECK(!ec, "checkpoint ", dir, ": cannot create directory: ", ec.message());

  // Greedy split in order: a shard closes when the next tensor would push it past the limit.
  std::vector<std::vector<TensorToWrite>> shards(1);
  uint64_t in_shard = 0, total = 0;
  for (const TensorToWrite& t : tensors) {
    if (!shards.back().empty() && t.nbytes > max_shard_bytes - std::min(in_shard, max_shard_bytes)) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(t);
    in_shard += t.nbytes;
    total += t.nbytes;
  }

  std::set<std::string> written;
  const fs::path root(dir);
  if (shards.size() == 1) {
    write_safetensors((root / kSingleName).string(), shards[0], metadata);
    written.insert(kSingleName);
  } else {
    std::set<std::string> names;  // duplicates across shards would make the weight map ambiguous
    for (const TensorToWrite& t : tensors)
      VT_CHECK(names.insert(t.name).second, "checkpoint ", dir, ": duplicate tensor name '", t.name, "'");
    json index = {{"metadata", json::object()}, {"weight_map", json::object()}};
    for (const auto& [k, v] : metadata) index["metadata"][k] = v;
    index["metadata"]["total_size"] = total;
    for (size_t i = 0; i < shards.size(); ++i) {
      std::string name = shard_name(i + 1, shards.size());
      write_safetensors((root / name).string(), shards[i], metadata);
      written.insert(name);
      for (const TensorToWrite& t : shards[i]) index["weight_map"][t.name] = name;
    }
    write_text_atomically((root / kIndexName).string(), index.dump(2) + "\n");
    written.insert(kIndexName);
  }

  // Remove what an earlier save left behind, now that the new checkpoint is complete.
  for (const auto& de : fs::directory_iterator(root, ec)) {
    std::string name = de.path().filename().string();
    bool ours = name == kSingleName || name == kIndexName || is_shard_name(name);
    if (ours && !written.count(name)) fs::remove(de.path(), ec);
  }
}

CheckpointReader::CheckpointReader(const std::string& path) {
  fs::path p(path);
  std::error_code ec;
  if (fs::is_directory(p, ec)) {
    if (fs::exists(p / kSingleName, ec)) p /= kSingleName;
    else if (fs::exists(p / kIndexName, ec)) p /= kIndexName;
    else VT_FAIL("checkpoint ", path, ": directory has neither ", kSingleName, " nor ", kIndexName);
  }
  path_ = p.string();

  if (p.extension() != ".json") {  // a single .safetensors file
    shards_.push_back(SafetensorsFile::open(path_));
    shard_paths_.push_back(path_);
    metadata_ = shards_[0]->metadata();
    for (const TensorEntry& e : shards_[0]->entries()) shard_of_.emplace(e.name, 0);
    return;
  }

  std::ifstream in(path_, std::ios::binary);
  VT_CHECK(in, "checkpoint index ", path_, ": cannot open");
  json index;
  try {
    index = json::parse(in);
  } catch (const json::exception& ex) {
    VT_FAIL("checkpoint index ", path_, ": not valid JSON: ", ex.what());
  }
  VT_CHECK(index.is_object(), "checkpoint index ", path_, ": expected a JSON object");
  auto wm = index.find("weight_map");
  VT_CHECK(wm != index.end() && wm->is_object(), "checkpoint index ", path_, ": missing \"weight_map\" object");
  if (auto md = index.find("metadata"); md != index.end() && !md->is_null()) {
    VT_CHECK(md->is_object(), "checkpoint index ", path_, ": \"metadata\" is not an object");
    for (auto it = md->begin(); it != md->end(); ++it)
      metadata_[it.key()] = it->is_string() ? it->get<std::string>() : it->dump();
  }

  std::map<std::string, size_t> shard_ids;
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    VT_CHECK(it->is_string(), "checkpoint index ", path_, ": weight_map entry for '", it.key(), "' is not a string");
    const std::string& file = it->get_ref<const std::string&>();
    // Shards live beside the index: refuse absolute paths and "..", which could point anywhere.
    fs::path rel(file);
    bool escapes = file.empty() || rel.is_absolute() ||
                   std::any_of(rel.begin(), rel.end(), [](const fs::path& c) { return c == ".."; });
    VT_CHECK(!escapes, "checkpoint index ", path_, ": shard '", file, "' for tensor '", it.key(), "' is not a file name beside the index");
    auto [sid, fresh] = shard_ids.emplace(file, shard_paths_.size());
    if (fresh) {
      std::string shard_path = (p.parent_path() / rel).string();
      VT_CHECK(fs::is_regular_file(shard_path, ec), "checkpoint index ", path_, ": shard ", shard_path,
               " (holding tensor '", it.key(), "') does not exist");
      shard_paths_.push_back(shard_path);
      shards_.emplace_back();
    }
    shard_of_.emplace(it.key(), sid->second);
  }
}

std::vector<std::string> CheckpointReader::names() const {
  std::vector<std::string> out;
  out.reserve(shard_of_.size());
  for (const auto& kv : shard_of_) out.push_back(kv.first);
  return out;
}

bool CheckpointReader::contains(std::string_view name) const { return shard_of_.find(name) != shard_of_.end(); }

CheckpointReader::Located CheckpointReader::locate(std::string_view name) {
  auto it = shard_of_.find(name);
  VT_CHECK(it != shard_of_.end(), "checkpoint ", path_, ": no tensor '", name, "'");
  const SafetensorsFile* file;
  {
    std::lock_guard<std::mutex> lock(*mutex_);
    auto& shard = shards_[it->second];
    if (!shard) shard = SafetensorsFile::open(shard_paths_[it->second]);
    file = shard.get();  // shards are never replaced once open, so the pointer outlives the lock
  }
  const TensorEntry* e = file->find(name);
  VT_CHECK(e, "checkpoint index ", path_, ": tensor '", name, "' is listed in the weight map but absent from shard ",
           file->path());
  return {file, e};
}

const TensorEntry& CheckpointReader::entry(std::string_view name) { return *locate(name).entry; }

const uint8_t* CheckpointReader::data(std::string_view name) {
  Located l = locate(name);
  return l.file->data(*l.entry);
}

void CheckpointReader::release(std::string_view name) {
  Located l = locate(name);
  l.file->release(*l.entry);
}

}  // namespace vt::io
