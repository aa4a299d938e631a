// test_safetensors.cpp: the safetensors reader, writer and sharded checkpoints.
//
// Round trips of every dtype (with empty and 0-d tensors and metadata), the streaming writer's
// atomicity, sharded save/load, one crafted file per validation rule (each error must name the
// file and, where there is one, the tensor), and a file written by the Python safetensors library
// (tools/gen_safetensors_fixture.py) read back byte for byte.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <type_traits>

#include "vt/io/safetensors.h"

namespace fs = std::filesystem;
using namespace vt;
using namespace vt::io;

namespace {

// A fresh directory per test case, removed afterwards.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("vt_test_safetensors_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const vt::Error& e) {
    return e.what();
  }
  return "<no vt::Error thrown>";
}

std::vector<uint8_t> bytes_of(size_t n, uint8_t seed) {
  std::vector<uint8_t> b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(seed + 31 * i);
  return b;
}

// A raw file: u64 length of `header`, `header`, then `data_bytes` zero bytes.
void write_raw(const std::string& path, const std::string& header, size_t data_bytes, uint64_t claimed_len = ~0ull) {
  uint64_t n = claimed_len == ~0ull ? header.size() : claimed_len;
  std::ofstream out(path, std::ios::binary);
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>(n >> (8 * i)));
  out << header << std::string(data_bytes, '\0');
}

// memcmp without its undefined behaviour on null pointers for empty ranges.
bool same_bytes(const void* a, const void* b, size_t n) { return n == 0 || std::memcmp(a, b, n) == 0; }

std::vector<std::string> dir_listing(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

TEST_CASE("safetensors: round trip of every dtype, empty and 0-d tensors, metadata") {
  TempDir dir;
  std::string path = dir / "all.safetensors";
  struct Case { std::string name; DType dtype; std::vector<int64_t> shape; };
  std::vector<Case> cases = {
      {"f32", DType::F32, {2, 3}},  {"f64", DType::F64, {3}},      {"bf16", DType::BF16, {4, 1}},
      {"f16", DType::F16, {5}},     {"i32", DType::I32, {1, 1, 2}}, {"i64", DType::I64, {2}},
      {"u8", DType::U8, {7}},       {"bool", DType::Bool, {3}},    {"scalar", DType::F32, {}},
      {"empty", DType::F32, {0, 4}}, {"empty_i64", DType::I64, {0}}};
  std::vector<std::vector<uint8_t>> data;
  std::vector<TensorToWrite> tensors;
  for (size_t i = 0; i < cases.size(); ++i) {
    size_t numel = 1;
    for (int64_t d : cases[i].shape) numel *= size_t(d);
    data.push_back(bytes_of(numel * dtype_size(cases[i].dtype), uint8_t(i)));
  }
  for (size_t i = 0; i < cases.size(); ++i)
    tensors.push_back({cases[i].name, cases[i].dtype, cases[i].shape, data[i].data(), data[i].size()});
  std::map<std::string, std::string> meta = {{"format", "pt"}, {"step", "1200"}, {"unicode", "ü ✓"}};
  write_safetensors(path, tensors, meta);

  auto f = SafetensorsFile::open(path);
  CHECK(f->path() == path);
  CHECK(f->metadata() == meta);
  REQUIRE(f->entries().size() == cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    const TensorEntry& e = f->entries()[i];  // file order is the order written
    CHECK(e.name == cases[i].name);
    CHECK(e.dtype == cases[i].dtype);
    CHECK(e.shape == cases[i].shape);
    CHECK(e.end - e.begin == data[i].size());
    CHECK(same_bytes(f->data(e), data[i].data(), data[i].size()));
    CHECK(f->find(cases[i].name) == &e);
  }
  CHECK(f->find("missing") == nullptr);
  // The header is padded with spaces so the data section starts 8-byte aligned.
  CHECK((reinterpret_cast<uintptr_t>(f->data(f->entries()[0]))) % 8 == 0);
  CHECK(dir_listing(dir.path) == std::vector<std::string>{"all.safetensors"});  // no temp left

  // An empty file of tensors is valid too: the header alone.
  write_safetensors(dir / "none.safetensors", {});
  CHECK(SafetensorsFile::open(dir / "none.safetensors")->entries().empty());
  CHECK(fs::file_size(dir / "none.safetensors") == 16);  // 8 + "{}" padded to 8
}

TEST_CASE("safetensors: streaming writer appends in chunks and is atomic") {
  TempDir dir;
  std::string path = dir / "stream.safetensors";
  auto a = bytes_of(4 * 1000, 1), b = bytes_of(2 * 10, 2);
  {
    SafetensorsWriter w(path, {{"a", DType::F32, {1000}}, {"b", DType::BF16, {10}}});
    CHECK(w.data_bytes() == a.size() + b.size());
    CHECK(!fs::exists(path));  // nothing visible until finish()
    for (size_t off = 0; off < a.size(); off += 333) w.append(a.data() + off, std::min<size_t>(333, a.size() - off));
    w.append(b.data(), b.size());
    w.finish();
  }
  auto f = SafetensorsFile::open(path);
  CHECK(same_bytes(f->data(*f->find("a")), a.data(), a.size()));
  CHECK(same_bytes(f->data(*f->find("b")), b.data(), b.size()));

  // An abandoned or short writer leaves the earlier file untouched and no temporary behind.
  { SafetensorsWriter w(path, {{"x", DType::U8, {3}}}); w.append("ab", 2); }
  CHECK(error_of([&] { SafetensorsWriter w(path, {{"x", DType::U8, {3}}}); w.append("ab", 2); w.finish(); })
            .find(path) != std::string::npos);
  CHECK(error_of([&] { SafetensorsWriter w(path, {{"x", DType::U8, {3}}}); w.append("abcd", 4); })
            .find("overruns") != std::string::npos);
  CHECK(SafetensorsFile::open(path)->find("a") != nullptr);
  CHECK(dir_listing(dir.path) == std::vector<std::string>{"stream.safetensors"});
}

TEST_CASE("safetensors: writer rejects bad input, naming the file and tensor") {
  TempDir dir;
  std::string path = dir / "bad_write.safetensors";
  float x[4] = {1, 2, 3, 4};
  auto msg = error_of([&] { write_safetensors(path, {{"w", DType::F32, {2}, x, 8}, {"w", DType::F32, {2}, x, 8}}); });
  CHECK(msg.find(path) != std::string::npos);
  CHECK(msg.find("'w'") != std::string::npos);
  CHECK(msg.find("duplicate") != std::string::npos);
  msg = error_of([&] { write_safetensors(path, {{"w", DType::F32, {3}, x, 16}}); });
  CHECK(msg.find(path) != std::string::npos);
  CHECK(msg.find("'w'") != std::string::npos);
  CHECK(msg.find("needs 12 bytes, given 16") != std::string::npos);
  msg = error_of([&] { write_safetensors(path, {{"neg", DType::F32, {-1}, x, 0}}); });
  CHECK(msg.find("'neg'") != std::string::npos);
  msg = error_of([&] { write_safetensors(path, {{"__metadata__", DType::F32, {1}, x, 4}}); });
  CHECK(msg.find(path) != std::string::npos);
  msg = error_of([&] { write_safetensors(path, {{"null", DType::F32, {1}, nullptr, 4}}); });
  CHECK(msg.find("'null'") != std::string::npos);
  msg = error_of([&] { write_safetensors(dir / "no/such/dir/x.safetensors", {}); });
  CHECK(msg.find("no/such/dir/x.safetensors") != std::string::npos);
  CHECK(dir_listing(dir.path).empty());  // every failure removed its temporary
}

TEST_CASE("safetensors: every malformed header is a vt::Error naming file and tensor") {
  TempDir dir;
  struct Bad { std::string label, header; size_t data; std::string tensor, expect; uint64_t claimed = ~0ull; };
  const std::string ok = R"("dtype":"F32","shape":[2],"data_offsets":[0,8])";
  std::vector<Bad> cases = {
      {"past_end", "{}", 0, "", "runs past the end", 1000},
      {"absurd", "{}", 0, "", "exceeds the limit", 1ull << 62},
      {"not_json", "{\"a\":", 0, "", "not valid JSON"},
      {"not_object", "[1, 2]", 0, "", "does not start with '{'"},
      {"empty_header", "", 0, "", "does not start with '{'"},
      {"bad_utf8", "{\"\xff\":{}}", 0, "", "not valid UTF-8"},
      {"overlong_utf8", "{\"\xc0\xaf\":{}}", 0, "", "not valid UTF-8"},
      {"no_dtype", R"({"t":{"shape":[2],"data_offsets":[0,8]}})", 8, "t", "missing \"dtype\""},
      {"no_shape", R"({"t":{"dtype":"F32","data_offsets":[0,8]}})", 8, "t", "missing \"shape\""},
      {"no_offsets", R"({"t":{"dtype":"F32","shape":[2]}})", 8, "t", "missing \"data_offsets\""},
      {"entry_number", R"({"t":5})", 0, "t", "expected an object"},
      {"dtype_number", R"({"t":{"dtype":5,"shape":[2],"data_offsets":[0,8]}})", 8, "t", "expected a string"},
      {"shape_string", R"({"t":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})", 8, "t", "expected an array"},
      {"offsets_short", R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8, "t", "data_offsets"},
      {"offsets_float", R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8.0]}})", 8, "t", "data_offsets"},
      {"unknown_dtype", R"({"t":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}})", 8, "t", "unsupported dtype \"Q7\""},
      {"unsupported_dtype", R"({"t":{"dtype":"I8","shape":[8],"data_offsets":[0,8]}})", 8, "t", "unsupported dtype"},
      {"negative_dim", R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8, "t", "not a non-negative integer"},
      {"float_dim", R"({"t":{"dtype":"F32","shape":[1.5],"data_offsets":[0,8]}})", 8, "t", "not a non-negative integer"},
      {"huge_dim", R"({"t":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,8]}})", 8, "t", "non-negative"},
      {"size_mismatch", R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8, "t", "needs 12 bytes"},
      {"overflow", R"({"t":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}})", 8, "t", "overflows"},
      {"begin_gt_end", R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8, "t", "begin > end"},
      {"outside", R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", 8, "t", "exceed the data section"},
      {"overlap", "{\"a\":{" + ok + "},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "b", "overlap tensor 'a'"},
      {"hole", R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8, "t", "hole of 4 bytes"},
      {"trailing", "{\"t\":{" + ok + "}}", 12, "", "trailing bytes"},
      {"meta_number", R"({"__metadata__":{"k":1}})", 0, "", "value of 'k'"},
      {"meta_array", R"({"__metadata__":[]})", 0, "", "__metadata__ is a JSON array"},
      {"duplicate", "{\"t\":{" + ok + "},\"t\":{" + ok + "}}", 8, "", "duplicate key 't'"},
      {"duplicate_field", R"({"t":{"dtype":"F32","dtype":"F64","shape":[2],"data_offsets":[0,8]}})", 8, "t", "duplicate key 'dtype'"},
      {"duplicate_meta", R"({"__metadata__":{"k":"a","k":"b"}})", 0, "", "__metadata__ has duplicate key 'k'"},
      {"deep", "{\"t\":{\"shape\":[[[[1]]]]}}", 0, "", "nested deeper"},
  };
  for (const Bad& c : cases) {
    CAPTURE(c.label);
    std::string path = dir / ("bad_" + c.label + ".safetensors");
    write_raw(path, c.header, c.data, c.claimed);
    std::string msg = error_of([&] { SafetensorsFile::open(path); });
    CAPTURE(msg);
    CHECK(msg.find(path) != std::string::npos);
    CHECK(msg.find(c.expect) != std::string::npos);
    if (!c.tensor.empty()) CHECK(msg.find("tensor '" + c.tensor + "'") != std::string::npos);
  }

  std::string tiny = dir / "tiny.safetensors";
  std::ofstream(tiny, std::ios::binary) << "abc";
  CHECK(error_of([&] { SafetensorsFile::open(tiny); }).find("tiny.safetensors: file is 3 bytes") != std::string::npos);
  CHECK(error_of([&] { SafetensorsFile::open(dir / "absent.safetensors"); }).find("absent.safetensors") != std::string::npos);
  CHECK(error_of([&] { SafetensorsFile::open(dir.path.string()); }).find("not a regular file") != std::string::npos);

  // The in-memory parser names whatever source it is given and reads only within len.
  std::string buf(8, '\0');
  buf[0] = 2;
  buf += "{}";
  CHECK(parse_header(reinterpret_cast<const uint8_t*>(buf.data()), buf.size(), "mem").entries.empty());
  CHECK(error_of([&] { parse_header(reinterpret_cast<const uint8_t*>(buf.data()), buf.size() - 1, "mem"); })
            .find("safetensors mem: header length 2 runs past") != std::string::npos);
  // Tolerated as upstream does: unknown fields in an entry, a null __metadata__, padding spaces.
  std::string lenient = R"({"__metadata__":null,"t":{"dtype":"U8","shape":[],"data_offsets":[0,1],"extra":[1]}}   )";
  write_raw(dir / "lenient.safetensors", lenient, 1);
  CHECK(SafetensorsFile::open(dir / "lenient.safetensors")->find("t")->shape.empty());
}

TEST_CASE("safetensors: sharded checkpoint round trip and stale-file cleanup") {
  TempDir dir;
  std::vector<std::vector<uint8_t>> data;
  std::vector<TensorToWrite> tensors;
  for (int i = 0; i < 7; ++i) data.push_back(bytes_of(4 * 10 * size_t(i + 1), uint8_t(i)));
  for (int i = 0; i < 7; ++i)
    tensors.push_back({"layers." + std::to_string(i) + ".weight", DType::F32, {10, i + 1}, data[i].data(), data[i].size()});
  data.push_back(bytes_of(4, 9));  // an empty and a scalar tensor ride along
  tensors.push_back({"empty", DType::BF16, {0}, nullptr, 0});
  tensors.push_back({"scale", DType::F32, {}, data.back().data(), 4});

  write_sharded(dir.path.string(), tensors, 100, {{"format", "pt"}});
  auto files = dir_listing(dir.path);
  CHECK(std::count(files.begin(), files.end(), "model.safetensors.index.json") == 1);
  CHECK(std::count(files.begin(), files.end(), "model-00001-of-00008.safetensors") == 1);
  CHECK(files.size() == 9);  // [40] [80] [120] [160] [200] [240] [280, empty] [scale], the index

  for (const std::string& open_path : {dir.path.string(), dir / "model.safetensors.index.json"}) {
    CheckpointReader r(open_path);
    CHECK(r.path() == dir / "model.safetensors.index.json");
    CHECK(r.names().size() == tensors.size());
    CHECK(r.metadata().at("format") == "pt");
    CHECK(r.metadata().at("total_size") == "1124");
    for (size_t i = 0; i < tensors.size(); ++i) {
      CHECK(r.contains(tensors[i].name));
      const TensorEntry& e = r.entry(tensors[i].name);
      CHECK(e.shape == tensors[i].shape);
      CHECK(same_bytes(r.data(tensors[i].name), tensors[i].data, tensors[i].nbytes));
    }
    CHECK(!r.contains("nope"));
    CHECK(error_of([&] { r.entry("nope"); }).find("no tensor 'nope'") != std::string::npos);
  }

  // A second save that fits one file replaces the sharded one: no stale shards or index remain.
  write_sharded(dir.path.string(), tensors, 1 << 20);
  CHECK(dir_listing(dir.path) == std::vector<std::string>{"model.safetensors"});
  CheckpointReader single(dir.path.string());
  CHECK(single.path() == dir / "model.safetensors");
  CHECK(single.names().size() == tensors.size());
  CHECK(same_bytes(single.data("layers.3.weight"), data[3].data(), data[3].size()));
  CheckpointReader direct(dir / "model.safetensors");
  CHECK(direct.entry("scale").shape.empty());
}

static_assert(std::is_move_constructible_v<CheckpointReader>, "readers are returned by value");

TEST_CASE("safetensors: checkpoint errors name the index, shard and tensor") {
  TempDir dir;
  float x[2] = {1, 2};
  write_sharded(dir.path.string(), {{"a", DType::F32, {2}, x, 8}, {"b", DType::F32, {2}, x, 8}}, 8);
  std::string index = dir / "model.safetensors.index.json";

  auto rewrite_index = [&](const std::string& text) { std::ofstream(index, std::ios::binary) << text; };
  rewrite_index(R"({"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00001-of-00002.safetensors"}})");
  CheckpointReader r(index);
  CHECK(r.data("a") != nullptr);
  auto msg = error_of([&] { r.entry("b"); });
  CHECK(msg.find(index) != std::string::npos);
  CHECK(msg.find("'b'") != std::string::npos);
  CHECK(msg.find("model-00001-of-00002.safetensors") != std::string::npos);

  rewrite_index(R"({"weight_map":{"a":"model-00009-of-00009.safetensors"}})");
  msg = error_of([&] { CheckpointReader bad(index); });
  CHECK(msg.find(index) != std::string::npos);
  CHECK(msg.find("model-00009-of-00009.safetensors") != std::string::npos);
  CHECK(msg.find("'a'") != std::string::npos);

  rewrite_index(R"({"weight_map":{"a":"../../etc/passwd"}})");
  CHECK(error_of([&] { CheckpointReader bad(index); }).find("not a file name beside the index") != std::string::npos);
  rewrite_index(R"({"weight_map": )");
  CHECK(error_of([&] { CheckpointReader bad(index); }).find(index + ": not valid JSON") != std::string::npos);
  rewrite_index(R"({"metadata": {}})");
  CHECK(error_of([&] { CheckpointReader bad(index); }).find("weight_map") != std::string::npos);
  rewrite_index(R"({"weight_map":{"a":7}})");
  CHECK(error_of([&] { CheckpointReader bad(index); }).find("'a'") != std::string::npos);

  TempDir empty;
  CHECK(error_of([&] { CheckpointReader bad(empty.path.string()); }).find("neither model.safetensors") != std::string::npos);
}

TEST_CASE("safetensors: reads a file written by the Python safetensors library") {
  const std::string fixtures = VT_FIXTURES;
  std::ifstream in(fixtures + "/safetensors_reference.json");
  REQUIRE(in);
  nlohmann::json expected = nlohmann::json::parse(in);
  auto f = SafetensorsFile::open(fixtures + "/safetensors_reference.safetensors");

  std::map<std::string, std::string> meta = expected["metadata"];
  CHECK(f->metadata() == meta);
  CHECK(f->entries().size() == expected["tensors"].size());
  uint64_t prev_begin = 0;
  for (const TensorEntry& e : f->entries()) {  // file order is offset order
    CHECK(e.begin >= prev_begin);
    prev_begin = e.begin;
  }
  for (const auto& item : expected["tensors"].items()) {
    const std::string name = item.key();  // not a structured binding: clang 14 can't capture those
    const nlohmann::json& t = item.value();
    CAPTURE(name);
    const TensorEntry* e = f->find(name);
    REQUIRE(e != nullptr);
    CHECK(safetensors_name(e->dtype) == t["dtype"].get<std::string>());
    CHECK(e->shape == t["shape"].get<std::vector<int64_t>>());
    static const char* hex = "0123456789abcdef";
    std::string got;
    for (const uint8_t* p = f->data(*e); p != f->data(*e) + (e->end - e->begin); ++p) {
      got += hex[*p >> 4];
      got += hex[*p & 15];
    }
    CHECK(got == t["hex"].get<std::string>());
  }
  // One spot value per representation, decoded by hand.
  float f32[6];
  std::memcpy(f32, f->data(*f->find("model.f32_matrix")), sizeof f32);
  CHECK(f32[2] == 3.25f);
  uint16_t bf16[6];
  std::memcpy(bf16, f->data(*f->find("model.bf16_weight")), sizeof bf16);
  CHECK(bf16[0] == 0x3f80);  // 1.0
}

namespace {
// This process's resident set in KiB (VmRSS of /proc/self/status).
long resident_kib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}
}  // namespace

TEST_CASE("safetensors: release drops a copied tensor's mapped pages from the resident set, bytes unchanged") {
  // What Module::load relies on for a peak RSS of about one copy of the weights: once a tensor is
  // copied out, its mapped pages leave the resident set; reading them again faults the file back in.
  TempDir dir;
  const std::string path = dir / "big.safetensors";
  const size_t n = size_t(48) << 20;  // two 24 MiB tensors
  const std::vector<uint8_t> a = bytes_of(n / 2, 7), b = bytes_of(n / 2, 91);
  vt::io::write_safetensors(path, {{"a", vt::DType::U8, {int64_t(n / 2)}, a.data(), a.size()},
                                   {"b", vt::DType::U8, {int64_t(n / 2)}, b.data(), b.size()}});
  auto f = vt::io::SafetensorsFile::open(path);
  uint64_t sum = 0;
  for (const auto& e : f->entries())
    for (size_t i = 0; i < n / 2; i += 4096) sum += f->data(e)[i];  // touch every page
  const long touched = resident_kib();
  for (const auto& e : f->entries()) f->release(e);
  const long released = resident_kib();
  INFO("VmRSS touched ", touched, " KiB, after release ", released, " KiB");
  CHECK(touched - released > 40 * 1024);  // nearly all 48 MiB left; a no-op release fails here
  CHECK(same_bytes(f->data(*f->find("a")), a.data(), a.size()));
  CHECK(same_bytes(f->data(*f->find("b")), b.data(), b.size()));
  CHECK(sum > 0);
}
