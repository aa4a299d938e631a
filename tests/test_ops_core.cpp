// Every case of the core op table against PyTorch: forward outputs and gradients, on the CPU.
// (The CUDA backend runs the same table in tests/test_cuda_ops.cpp.)
#include "op_table.h"

using namespace vt;

TEST_CASE("core ops match PyTorch on the CPU (forward and backward)") {
  const auto& fx = test::load_fixture("ops_core");
  REQUIRE(fx.cases.size() > 200);
  int failed = 0;
  for (auto& c : fx.cases) {
    auto fails = test::run_case(c, fx, Device::cpu());
    for (auto& f : fails) MESSAGE(f);
    failed += !fails.empty();
  }
  CHECK(failed == 0);
}

TEST_CASE("every op of the fixture has an entry in the op table") {
  const auto& fx = test::load_fixture("ops_core");
  for (auto& c : fx.cases) CHECK_MESSAGE(test::op_table().count(c["op"]), c["op"]);
}
