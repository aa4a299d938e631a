// bench_zero_comm: bytes each rank sends per optimizer step under ZeRO-0/1/2/3, against the
// formulas of training.md §9.1 (2Ψ, 2Ψ, 2Ψ, 3Ψ elements in the large-N limit; for N ranks the ring
// algorithms send (N-1)/N of that). CPU, MPI:
//   mpirun --oversubscribe --allow-run-as-root -np 4 build-cpu/bench_zero_comm [PSI] [STEPS]
// The model: PSI f32 parameters in all (not divisible by N), a rest of PSI/8 (two tensors) and 8
// blocks of one tensor each, run through nn::run_block as a model does; the forward is a scalar
// chain h = Σ rest·c, h += Σ w_k·c per block, so the step is the communication, AdamW and a few
// passes over Ψ. Stage 3 runs twice: gather-all (no blocks) and per block (ZeroOptions::blocks,
// prefetch on): blocks gathered in forward, again in backward, reduce-scattered (3Ψ_b), the rest
// gathered once and reduce-scattered (2Ψ_r). Counts come from the process group's traffic
// accounting (dist/process_group.h: the elements a ring implementation sends), which includes the
// small all-reduces (the has-gradient flags, Σg²).
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "vt/autograd.h"
#include "vt/dist/process_group.h"
#include "vt/nn/block.h"
#include "vt/nn/module.h"
#include "vt/ops.h"
#include "vt/optim/zero.h"
#include "vt/philox.h"

using namespace vt;

namespace {

constexpr int kBlocks = 8;
constexpr double kScale = 1e-6;  // keeps h small; every parameter's gradient is kScale

struct Block : nn::Module {
  Tensor w;  // (n,)
  Block(int64_t n, Generator& gen) { w = register_parameter("w", randn({n}, DType::F32, &gen)); }
};

struct Model : nn::Module {
  Tensor a, b;  // the rest: (ra,), (rb,)
  std::vector<std::shared_ptr<Block>> blocks;
  explicit Model(int64_t psi) {
    Generator gen(1);
    const int64_t rest = psi / 8, per_block = (psi - rest) / kBlocks;
    a = register_parameter("a", randn({rest / 2}, DType::F32, &gen));
    b = register_parameter("b", randn({rest - rest / 2}, DType::F32, &gen));
    for (int k = 0; k < kBlocks; ++k) {
      const int64_t n = k + 1 < kBlocks ? per_block : psi - rest - per_block * (kBlocks - 1);
      blocks.push_back(register_module("blocks." + std::to_string(k), std::make_shared<Block>(n, gen)));
    }
  }
  Tensor loss() const {
    nn::ResidualStream h{(sum(a) + sum(b)) * kScale, Tensor()};
    for (const auto& blk : blocks) {
      const Block* block = blk.get();
      h = nn::run_block(*block, {false, false},
                        [block](const nn::ResidualStream& s, const std::vector<Tensor>&) {
                          return nn::ResidualStream{s.residual + sum(block->w) * kScale, Tensor()};
                        }, h);
    }
    return h.residual;
  }
};

}  // namespace

int main(int argc, char** argv) {
  const int64_t psi = argc > 1 ? std::atoll(argv[1]) : 1000003;
  const int steps = argc > 2 ? std::atoi(argv[2]) : 3;
  std::shared_ptr<dist::ProcessGroup> pg = dist::init_process_group();
  const int64_t N = pg->size();
  const double ring = static_cast<double>(N - 1) / static_cast<double>(N);
  if (pg->rank() == 0)
    std::printf("ZeRO traffic per rank and optimizer step: Ψ = %lld f32 parameters (rest Ψ/8, %d blocks), N = %lld "
                "ranks (%s), %d steps\n"
                "stage     sent elements  / Ψ     formula (ring, N ranks)             / Ψ     ms/step  model-state "
                "B/rank  peak gathered B\n",
                (long long)psi, kBlocks, (long long)N, pg->backend().c_str(), steps);
  for (int row = 0; row <= 4; ++row) {
    const int stage = row < 4 ? row : 3;
    const bool per_block = row == 4;
    Model model(psi);
    optim::ParamGroupSpec spec;
    spec.params = model.parameters();
    optim::ZeroOptions zo;
    zo.stage = stage;
    zo.bucket_elements = 1 << 16;  // stages 2-3: N·65536 elements of bucket
    if (per_block)
      for (const auto& b : model.blocks) zo.blocks.push_back(optim::ZeroBlock::of(*b));
    optim::ZeroOptimizer zero({spec}, pg, zo);
    const int64_t held = zero.model_state_bytes().total();  // between steps
    int64_t psi_rest = 0;
    for (const auto& u : zero.layout()[0].units) psi_rest += u.block < 0 ? u.numel : 0;
    double seconds = 0;
    int64_t sent = 0;
    for (int s = 0; s < steps; ++s) {
      pg->barrier();
      pg->reset_stats();
      zero.reset_peak_gathered_bytes();
      const auto t0 = std::chrono::steady_clock::now();
      zero.prepare_forward();
      model.loss().backward();
      zero.reduce_gradients();
      zero.clip_grad_norm(1.0);
      zero.step();
      zero.zero_grad();
      seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      sent = pg->stats().elements_sent;
    }
    // Per block: blocks 3Ψ_b, the rest 2Ψ_r; gather-all and stages 0-2: 2Ψ.
    const double formula = per_block ? ring * (3.0 * static_cast<double>(psi - psi_rest) + 2.0 * psi_rest)
                                     : 2.0 * ring * static_cast<double>(psi);
    const char* name[] = {"2Ψ (RS+AG of grads)", "2Ψ (RS grads, AG params)", "2Ψ (RS grads, AG params)",
                          "2Ψ (AG once, RS)", "3Ψ_b + 2Ψ_r (AG fwd, AG bwd, RS)"};
    if (pg->rank() == 0)
      std::printf("%-8s  %13lld  %5.3f   %-32s %9.0f  %5.3f  %7.2f  %18lld  %15lld\n",
                  per_block ? "3 block" : stage == 3 ? "3 all" : std::to_string(stage).c_str(), (long long)sent,
                  static_cast<double>(sent) / psi, name[row], formula, formula / psi, 1e3 * seconds / steps,
                  (long long)held, (long long)zero.peak_gathered_bytes());
  }
  return 0;
}
