// bench_zero_comm: bytes each rank sends per optimizer step under ZeRO-0/1/2/3, against the
// formulas of training.md §9.1 (2Ψ, 2Ψ, 2Ψ, 3Ψ elements in the large-N limit; for N ranks the ring
// algorithms send (N-1)/N of that). CPU, MPI:
//   mpirun --oversubscribe --allow-run-as-root -np 4 build-cpu/bench_zero_comm [PSI] [STEPS]
// The parameters are three f32 tensors of PSI elements in all (not divisible by N); their gradients
// are set directly (no forward), so the step is reduce -> clip -> AdamW -> gather and nothing else.
// Counts come from the process group's traffic accounting (dist/process_group.h: the elements a ring
// implementation sends), which includes the small all-reduces (the has-gradient flags, Σg²).
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "vt/autograd.h"
#include "vt/dist/process_group.h"
#include "vt/ops.h"
#include "vt/optim/zero.h"
#include "vt/philox.h"

using namespace vt;

int main(int argc, char** argv) {
  const int64_t psi = argc > 1 ? std::atoll(argv[1]) : 1000003;
  const int steps = argc > 2 ? std::atoi(argv[2]) : 3;
  std::shared_ptr<dist::ProcessGroup> pg = dist::init_process_group();
  const int64_t N = pg->size();
  if (pg->rank() == 0)
    std::printf("ZeRO traffic per rank and optimizer step: Ψ = %lld f32 parameters, N = %lld ranks (%s), %d steps\n"
                "stage  sent elements  / Ψ     formula (ring, N ranks)       / Ψ     ms/step  model-state B/rank\n",
                (long long)psi, (long long)N, pg->backend().c_str(), steps);
  for (int stage = 0; stage <= 3; ++stage) {
    Generator gen(1);
    const int64_t a = psi / 2, b = psi / 3, c = psi - a - b;
    std::vector<Tensor> params = {randn({a}, DType::F32, &gen), randn({b}, DType::F32, &gen), randn({c}, DType::F32, &gen)};
    for (Tensor& p : params) p.requires_grad_(true);
    optim::ParamGroupSpec spec;
    spec.params = params;
    optim::ZeroOptions zo;
    zo.stage = stage;
    zo.bucket_elements = 1 << 16;  // stages 2-3: N·65536 elements of bucket
    optim::ZeroOptimizer zero({spec}, pg, zo);
    double seconds = 0;
    int64_t sent = 0;
    for (int s = 0; s < steps; ++s) {
      pg->barrier();
      pg->reset_stats();
      const auto t0 = std::chrono::steady_clock::now();
      zero.gather_parameters();
      for (const Tensor& p : params) p.set_grad(randn(p.shape(), DType::F32, &gen) * 1e-3);
      zero.reduce_gradients();
      zero.clip_grad_norm(1.0);
      zero.step();
      zero.zero_grad();
      seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      sent = pg->stats().elements_sent;
    }
    const double ring = static_cast<double>(N - 1) / static_cast<double>(N);
    const double formula = (stage == 3 ? 3.0 : 2.0) * ring * static_cast<double>(psi);
    const char* name[] = {"2Ψ (RS+AG of grads)", "2Ψ (RS grads, AG params)", "2Ψ (RS grads, AG params)",
                          "3Ψ (AG fwd, AG bwd, RS)"};
    if (pg->rank() == 0)
      std::printf("%5d  %13lld  %5.3f   %-24s %9.0f  %5.3f  %7.2f  %lld\n", stage, (long long)sent,
                  static_cast<double>(sent) / psi, name[stage], formula, formula / psi, 1e3 * seconds / steps,
                  (long long)zero.model_state_bytes().total());
  }
  if (pg->rank() == 0)
    std::printf("Stage 3 here gathers the whole arena once before the forward and keeps it through the backward:\n"
                "one all-gather instead of the formula's two, so 2Ψ·(N-1)/N instead of 3Ψ·(N-1)/N (optim/zero.h).\n");
  return 0;
}
