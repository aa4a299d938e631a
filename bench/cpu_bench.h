// cpu_bench.h: what the CPU benchmark programs share: the process's memory figures from
// /proc/self/status and the reset of its high-water mark (Linux: writing 5 to clear_refs sets
// VmHWM to the current VmRSS), so a peak can be measured for one step.
#pragma once
#include <cstdint>
#include <fstream>
#include <string>

namespace vt::bench {

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
