// error.h: the one exception type of vt, and the VT_CHECK macro that builds its message.
//
// Every shape, dtype, device, index or file error in vt raises vt::Error. The message names the
// op (or file), the operand and the offending sizes, e.g.
//   VT_CHECK(a.size(-1) == w.size(1), "linear: input has ", a.size(-1), " features, weight expects ",
//            w.size(1));
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace vt {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace detail {
template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace vt

#define VT_CHECK(cond, ...)                                          \
  do {                                                               \
    if (!(cond)) throw ::vt::Error(::vt::detail::concat(__VA_ARGS__)); \
  } while (0)

#define VT_FAIL(...) throw ::vt::Error(::vt::detail::concat(__VA_ARGS__))
