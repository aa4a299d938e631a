// fuzz_util.h: what the libFuzzer targets share. Most of vt's loaders take a path (as users call
// them), so each input is written to a file in a private scratch folder (on /dev/shm when there is
// one) and loaded from there. An input may throw vt::Error: that is the expected answer to bad
// bytes. Any other exception escaping is a finding, reported here by aborting with its message.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <typeinfo>

#include "vt/error.h"

namespace vt::fuzz {

// The scratch folder of this process, made on first use and removed at exit (the name is never
// destroyed: the exit hook, registered before a static's destructor would be, runs after it).
inline const std::string& scratch_dir() {
  static const std::string* dir = [] {
    const char* base = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
    auto* d = new std::string(std::string(base) + "/vt_fuzz." + std::to_string(getpid()));
    std::filesystem::create_directories(*d);
    std::atexit([] { std::filesystem::remove_all(scratch_dir()); });
    return d;
  }();
  return *dir;
}

// Writes the input to scratch_dir()/name and returns its path.
inline std::string write_input(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = scratch_dir() + "/" + name;
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data), std::streamsize(size));
  return path;
}

#ifdef VT_FUZZ_FIXTURES
// scratch_dir()/sub holding symlinks to the named files of tests/fixtures/<fixture>, made once: a
// checkpoint directory whose other files the target writes from each input.
inline std::string fixture_dir(const std::string& sub, const std::string& fixture,
                               std::initializer_list<const char*> files) {
  const std::string d = scratch_dir() + "/" + sub;
  std::filesystem::create_directories(d);
  for (const char* f : files)
    std::filesystem::create_symlink(std::string(VT_FUZZ_FIXTURES) + "/" + fixture + "/" + f, d + "/" + f);
  return d;
}
#endif

// Runs body(); vt::Error is the expected failure, anything else aborts (a finding).
template <class F>
void expect_vt_errors_only(F&& body) {
  try {
    body();
  } catch (const vt::Error&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz: a %s escaped instead of vt::Error: %s\n", typeid(e).name(), e.what());
    std::abort();
  } catch (...) {
    std::fprintf(stderr, "fuzz: a non-std exception escaped\n");
    std::abort();
  }
}

// Aborts with `what` when an invariant the target checks does not hold.
inline void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz: invariant broken: %s\n", what);
    std::abort();
  }
}

}  // namespace vt::fuzz
