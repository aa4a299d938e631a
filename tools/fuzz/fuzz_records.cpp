// fuzz_records.cpp: training data files (train/data/records.h), JSON arrays and JSONL alike (the
// reader tells them apart by content). Each input is read leniently (bad records are skipped
// with a warning) and strictly (the first bad record throws vt::Error); every record the lenient
// read keeps must pass validate_record, and the strict read may only succeed with the same records.
#include <string>

#include "data/records.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = vt::fuzz::write_input("records.jsonl", data, size);
  vt::fuzz::expect_vt_errors_only([&] {
    vt::train::ReadOptions lenient;
    const vt::train::ReadResult r = vt::train::read_records(path, lenient);
    vt::fuzz::require(r.warnings.size() == size_t(r.skipped), "one warning per skipped record");
    for (const vt::train::Record& rec : r.records) vt::train::validate_record(rec);
    vt::train::ReadOptions strict;
    strict.strict = true;
    vt::fuzz::expect_vt_errors_only([&] {
      const vt::train::ReadResult s = vt::train::read_records(path, strict);
      vt::fuzz::require(r.skipped == 0 && s.records.size() == r.records.size(),
                        "a strict read succeeds only when nothing was skipped, with the same records");
    });
  });
  return 0;
}
