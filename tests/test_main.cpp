// The doctest main shared by every test executable. It runs doctest as usual; when nothing failed
// but some case skipped itself (VT_SKIP, tests/test_skip.h), it lists those cases and exits with
// kSkipReturnCode, which CTest counts as "skipped", not "passed".
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "test_skip.h"

namespace {

std::string g_current_case;            // the test case now running
std::vector<std::string> g_skipped;    // the cases that called VT_SKIP, in order

// A doctest listener that only remembers which test case is running.
struct CurrentCase : doctest::IReporter {
  explicit CurrentCase(const doctest::ContextOptions&) {}
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats&) override {}
  void test_case_start(const doctest::TestCaseData& tc) override { g_current_case = tc.m_name; }
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {}
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};
REGISTER_LISTENER("vt_current_case", 1, CurrentCase);

}  // namespace

void vt::test::note_skipped() {
  // A case re-entered for each of its subcases may skip more than once: list it once.
  if (g_skipped.empty() || g_skipped.back() != g_current_case) g_skipped.push_back(g_current_case);
}

int main(int argc, char** argv) {
  doctest::Context context(argc, argv);
  const int rc = context.run();
  if (context.shouldExit() || rc != 0 || g_skipped.empty()) return rc;
  std::printf("SKIPPED %zu test case(s); the suite reports as skipped (exit %d):\n", g_skipped.size(),
              vt::test::kSkipReturnCode);
  for (const std::string& name : g_skipped) std::printf("  %s\n", name.c_str());
  return vt::test::kSkipReturnCode;
}
