// options.cpp: see options.h.
#include "options.h"

#include <omp.h>

#include <cstdlib>

#include "vt/error.h"

namespace vargpt {

std::string Options::required(const std::string& key) const {
  auto it = values.find(key);
  VT_CHECK(it != values.end() && !it->second.empty(), "missing required option --", key, "\n", usage);
  return it->second;
}

std::string Options::value_or(const std::string& key, const std::string& fallback) const {
  auto it = values.find(key);
  return it == values.end() ? fallback : it->second;
}

long long Options::integer(const std::string& key, long long fallback) const {
  auto it = values.find(key);
  if (it == values.end()) return fallback;
  char* end = nullptr;
  long long v = std::strtoll(it->second.c_str(), &end, 10);
  VT_CHECK(end && *end == '\0' && !it->second.empty(), "--", key, " expects an integer, got '", it->second, "'");
  return v;
}

double Options::real(const std::string& key, double fallback) const {
  auto it = values.find(key);
  if (it == values.end()) return fallback;
  char* end = nullptr;
  double v = std::strtod(it->second.c_str(), &end);
  VT_CHECK(end && *end == '\0' && !it->second.empty(), "--", key, " expects a number, got '", it->second, "'");
  return v;
}

std::vector<std::string> Options::all(const std::string& key) const {
  auto it = lists.find(key);
  return it == lists.end() ? std::vector<std::string>{} : it->second;
}

Options parse_options(int argc, char** argv, int first, const std::set<std::string>& allowed,
                      const std::set<std::string>& flags, const char* usage) {
  Options out;
  out.usage = usage;
  for (int i = first; i < argc; ++i) {
    std::string key = argv[i];
    VT_CHECK(key.rfind("--", 0) == 0, "unexpected argument '", key, "' (options start with --)\n", usage);
    key = key.substr(2);
    VT_CHECK(allowed.count(key) || flags.count(key), "unknown option --", key, "\n", usage);
    if (flags.count(key)) {
      out.values[key] = std::string("set");  // a std::string, not a literal: dodges a GCC 12 -Wrestrict false positive
      continue;
    }
    VT_CHECK(i + 1 < argc, "option --", key, " needs a value");
    out.values[key] = argv[++i];
    out.lists[key].push_back(out.values[key]);
  }
  return out;
}

void set_threads(const Options& o) {
  long long n = o.integer("threads", 0);
  VT_CHECK(n >= 0 && n <= 1024, "--threads must be in [0, 1024]");
  if (n > 0) omp_set_num_threads(int(n));
}

}  // namespace vargpt
