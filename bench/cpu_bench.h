// cpu_bench.h: what the CPU benchmark programs share: their main (google benchmark on a fixed
// thread count), the process's memory figures from /proc/self/status and the reset of its
// high-water mark (Linux: writing 5 to clear_refs sets VmHWM to the current VmRSS), so a peak can
// be measured for one step.
#pragma once
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstdint>
#include <fstream>
#include <string>

namespace vt::bench {

// The body of a benchmark program's main: every registered benchmark on `threads` OpenMP threads.
inline int run_benchmarks(int argc, char** argv, int threads) {
  omp_set_num_threads(threads);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

// VmRSS: or VmHWM: (or any kB field) of this process, in bytes; -1 when absent.
inline int64_t proc_status_bytes(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) return std::stoll(line.substr(std::string(key).size() + 1)) * 1024;
  return -1;
}

// false when the kernel refuses (then VmHWM is the peak since the process started).
inline bool reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
  return f.good();
}

}  // namespace vt::bench
