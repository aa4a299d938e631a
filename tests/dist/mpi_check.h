// mpi_check.h: the checks of the MPI test programs (test_zero_mpi, test_zero3_mpi,
// test_dpo_ref_mpi). doctest cannot run one test body on N ranks, so each program counts failed
// EXPECTs per rank and ends with `verdict`, which sums them over the ranks: the job passes only when
// every rank passes. check_layout_bytes is the ZeRO memory check both ZeRO programs make.
#pragma once
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "vt/dist/process_group.h"
#include "vt/error.h"
#include "vt/optim/zero.h"
#include "vt/tensor.h"

namespace vt::testing {

inline int g_failures = 0;  // failed checks on this rank
inline int g_rank = 0;      // set after init_process_group, for the messages

// Returns the exit status: 0 when no rank failed a check, else 1; rank 0 prints the verdict.
inline int verdict(const std::shared_ptr<dist::ProcessGroup>& pg, const char* program, const std::string& mode) {
  Tensor f = from_vector(std::vector<int32_t>{g_failures});
  if (pg->size() > 1) pg->all_reduce(f);
  const int total = f.tolist<int32_t>()[0];
  if (pg->rank() == 0)
    std::printf("%s %s on %d rank(s): %s (%d failed checks)\n", program, mode.c_str(), pg->size(),
                total == 0 ? "passed" : "FAILED", total);
  return total == 0 ? 0 : 1;
}

// The main of every MPI test program: joins the job (timeout VT_DIST_TIMEOUT_S or 600), runs `body`
// on this rank, aborts the whole job when it throws, and returns the verdict over all ranks.
inline int run_on_ranks(const char* program, const std::string& mode,
                        const std::function<void(const std::shared_ptr<dist::ProcessGroup>&)>& body) {
  std::shared_ptr<dist::ProcessGroup> pg;
  try {
    dist::InitOptions io;
    io.timeout_s = -1;
    pg = dist::init_process_group(io);
    g_rank = pg->rank();
    body(pg);
  } catch (const std::exception& e) {
    dist::abort_job(pg.get(), e.what(), 3);
  }
  return verdict(pg, program, mode);
}

}  // namespace vt::testing

#define EXPECT(cond, ...)                                                                              \
  do {                                                                                                 \
    if (!(cond)) {                                                                                     \
      ++::vt::testing::g_failures;                                                                     \
      std::fprintf(stderr, "rank %d: FAILED %s:%d: %s: %s\n", ::vt::testing::g_rank, __FILE__, __LINE__, \
                   #cond, ::vt::detail::concat(__VA_ARGS__).c_str());                                  \
    }                                                                                                  \
  } while (0)

namespace vt::testing {

// The bytes memory_report calls "this layout" for the run's stage equal the bytes the optimizer holds
// (nothing gathered), field by field, and the report prints that total on the run's line.
inline void check_layout_bytes(const optim::ZeroOptimizer& zero, const std::string& what) {
  const optim::ModelStateBytes got = zero.model_state_bytes(), want = zero.layout_bytes(zero.stage());
  EXPECT(got.params == want.params && got.grads == want.grads && got.optimizer == want.optimizer &&
             got.bucket == want.bucket && got.frozen == want.frozen,
         what, ": held params ", got.params, " grads ", got.grads, " optimizer ", got.optimizer, " bucket ", got.bucket,
         " frozen ", got.frozen, "; layout_bytes ", want.params, ", ", want.grads, ", ", want.optimizer, ", ",
         want.bucket, ", ", want.frozen);
  const std::string report = zero.memory_report();
  const std::string run_line = report.substr(0, report.find("  <- this run"));
  EXPECT(run_line.size() < report.size() &&
             run_line.find(detail::concat("this layout ", got.total(), " B"), run_line.rfind('\n') + 1) != std::string::npos,
         what, ": the report's line for this run does not say 'this layout ", got.total(), " B':\n", report);
}

}  // namespace vt::testing
