// bench_tokenizer: Qwen2 byte-level BPE encoding throughput, one thread, on the parity corpus
// (tests/fixtures/tokenizer/corpus.bin: ~1.1 MB in many scripts, code, emoji, whitespace runs),
// each document encoded on its own. The issue-5 row "tokenizer MB/s against Hugging Face
// tokenizers"; the baseline is bench/hf_tokenizer.py (same corpus, same vocabulary, one thread):
//   ./build/bench_tokenizer && python3 bench/hf_tokenizer.py
// Rows: encode_cold (a fresh tokenizer, empty word cache), encode_warm (the cache filled by a
// previous pass), decode (ids -> text). Needs third_party/qwen2/tokenizer.json (scripts/setup.sh).
#include <benchmark/benchmark.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tokenizer/bpe.h"

namespace {

const std::string kRoot = VT_SOURCE_DIR;

std::vector<std::string> corpus() {
  std::ifstream f(kRoot + "/tests/fixtures/tokenizer/corpus.bin", std::ios::binary);
  const std::string blob((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (blob.compare(0, 8, "VTTOKFX1") != 0) return {};
  size_t pos = 8;
  auto u32 = [&] {
    uint32_t v;
    std::memcpy(&v, blob.data() + pos, 4);
    pos += 4;
    return v;
  };
  std::vector<std::string> docs(u32());
  for (auto& d : docs) {
    const uint32_t n_bytes = u32(), n_ids = u32();
    ++pos;  // roundtrip flag
    d = blob.substr(pos, n_bytes);
    pos += n_bytes;
    for (uint32_t i = 0; i < n_ids; ++i)
      while (uint8_t(blob[pos++]) & 0x80) {
      }
  }
  return docs;
}

size_t total_bytes(const std::vector<std::string>& docs) {
  size_t n = 0;
  for (const auto& d : docs) n += d.size();
  return n;
}

const std::string kVocab = kRoot + "/third_party/qwen2/tokenizer.json";

void BM_encode_cold(benchmark::State& state) {
  const auto docs = corpus();
  for (auto _ : state) {
    state.PauseTiming();
    auto tok = vt::tok::Tokenizer::from_file(kVocab);
    state.ResumeTiming();
    size_t ids = 0;
    for (const auto& d : docs) ids += tok.encode(d).size();
    benchmark::DoNotOptimize(ids);
  }
  state.SetBytesProcessed(int64_t(state.iterations() * total_bytes(docs)));
}

void BM_encode_warm(benchmark::State& state) {
  const auto docs = corpus();
  auto tok = vt::tok::Tokenizer::from_file(kVocab);
  for (const auto& d : docs) tok.encode(d);
  for (auto _ : state) {
    size_t ids = 0;
    for (const auto& d : docs) ids += tok.encode(d).size();
    benchmark::DoNotOptimize(ids);
  }
  state.SetBytesProcessed(int64_t(state.iterations() * total_bytes(docs)));
}

void BM_decode(benchmark::State& state) {
  const auto docs = corpus();
  auto tok = vt::tok::Tokenizer::from_file(kVocab);
  std::vector<std::vector<int32_t>> ids;
  for (const auto& d : docs) ids.push_back(tok.encode(d));
  for (auto _ : state) {
    size_t n = 0;
    for (const auto& i : ids) n += tok.decode(i).size();
    benchmark::DoNotOptimize(n);
  }
  state.SetBytesProcessed(int64_t(state.iterations() * total_bytes(docs)));
}

BENCHMARK(BM_encode_cold)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_encode_warm)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_decode)->Unit(benchmark::kMillisecond)->MinTime(2.0);

}  // namespace

BENCHMARK_MAIN();
