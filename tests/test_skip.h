// test_skip.h: a test case that cannot run here (no GPU, no cuDNN driver shim, CUDA not built)
// says so, and the suite reports it as skipped instead of passed. VT_SKIP(why...) prints the
// reason, notes the case, and returns from it; tests/test_main.cpp then exits with
// kSkipReturnCode when nothing failed but something was skipped, and CMake gives every test that
// code as SKIP_RETURN_CODE, so CTest's summary lists the suite under "Not Run / Skipped".
#pragma once
#include <doctest/doctest.h>

namespace vt::test {

inline constexpr int kSkipReturnCode = 77;  // automake's and CTest's customary "skipped"

// Notes the running test case as skipped (tests/test_main.cpp keeps the list).
void note_skipped();

}  // namespace vt::test

#define VT_SKIP(...)                           \
  do {                                         \
    MESSAGE("SKIPPED: ", __VA_ARGS__);         \
    ::vt::test::note_skipped();                \
    return;                                    \
  } while (0)
