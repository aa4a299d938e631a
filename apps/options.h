// options.h: the `--key value` option parsing every vargpt subcommand shares.
//
// An Options object holds the parsed options of one command line; `usage` is appended to every
// error so that a mistyped option prints what the command accepts.
#pragma once
#include <map>
#include <set>
#include <string>
#include <vector>

namespace vargpt {

struct Options {
  std::map<std::string, std::string> values;  // flags map to "set"; a repeated key keeps the last
  std::map<std::string, std::vector<std::string>> lists;  // every value of each key, in order
  const char* usage = "";

  bool has(const std::string& key) const { return values.count(key) != 0; }
  std::string required(const std::string& key) const;
  std::string value_or(const std::string& key, const std::string& fallback) const;
  long long integer(const std::string& key, long long fallback) const;
  double real(const std::string& key, double fallback) const;
  std::vector<std::string> all(const std::string& key) const;  // empty when absent
};

// Parses argv[first..argc) as --key value pairs; keys in `flags` take no value. Unknown keys,
// stray arguments and missing values are errors naming the argument.
Options parse_options(int argc, char** argv, int first, const std::set<std::string>& allowed,
                      const std::set<std::string>& flags, const char* usage);

// --threads N (0: OpenMP's default).
void set_threads(const Options& o);

}  // namespace vargpt
