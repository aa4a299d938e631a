// ZeRO-3 per block (optim/zero.h, nn/block.h) over MPI, run under
//   mpirun --oversubscribe --allow-run-as-root -np N test_zero3_mpi
// (or alone: world 1). The model is a residual MLP: x (B, 5) --w_in--> (B, 6) --4 blocks--> --w_out,
// b_out--> (B, 3), MSE. Block k: h + tanh(h w1ᵀ + b1) w2ᵀ, block 1 scaled by a frozen gain (6,).
// Trainable: rest 51 elements (w_in, w_out, b_out), 91 per block (w1, b1, w2); two AdamW groups
// (weights with decay, biases without), so every block is two units; no count divides by 2, 3 or 4.
// Every block runs through nn::run_block; the blocks are handed to ZeRO as ZeroBlock::of(block).
//
//   equivalence  ZeRO-3 per block, A in {1, 2}, activation checkpointing on and off (ZeRO-3
//                recomputes either way), prefetch on and off, equals ZeRO-0 on the same ranks and
//                one process with N·A micro-batches (AdamW, clip 0.5) BIT FOR BIT after 3 steps:
//                parameters, master / exp_avg / exp_avg_sq of the owned segments, the reduced
//                gradient. A checkpoint it saves consolidates to the one-process optimizer's state,
//                and loads into a fresh per-block optimizer (same bits after one more step each).
//   peak         gathered parameter bytes over a step (counted by the optimizer, buffers in flight
//                included) never exceed rest + 2 x largest block (rest + 1 block without prefetch)
//                and stay below the whole model; after the step nothing is gathered.
//   traffic      the elements one step sends (the process group's ring count): blocks 3Ψ_b (gather
//                in forward, again in backward, reduce-scatter), the rest 2Ψ_r, plus the flags and
//                the norm, exactly; gather-all on the same model sends 2Ψ.
#include <algorithm>
#include <cmath>
#include <memory>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "vt/autograd.h"
#include "mpi_check.h"
#include "vt/dist/process_group.h"
#include "vt/nn/block.h"
#include "vt/nn/module.h"
#include "vt/ops.h"
#include "vt/optim/adamw.h"
#include "vt/optim/clip.h"
#include "vt/optim/zero.h"
#include "vt/philox.h"

using namespace vt;

namespace {

constexpr int64_t kMicro = 2, kBlocks = 4;
constexpr double kMaxNorm = 0.5, kLr = 1e-2;

struct Block : nn::Module {
  Tensor w1, b1, w2, gain;  // w1 (7, 6), b1 (7,), w2 (6, 7); gain (6,) frozen, block 1 only
  Block(int k, Generator& gen) {
    w1 = register_parameter("w1", randn({7, 6}, DType::F32, &gen) * 0.4);
    b1 = register_parameter("b1", randn({7}, DType::F32, &gen) * 0.1);
    w2 = register_parameter("w2", randn({6, 7}, DType::F32, &gen) * 0.4);
    if (k == 1) gain = register_parameter("gain", randn({6}, DType::F32, &gen) * 0.2 + 1.0, /*requires_grad=*/false);
  }
  // h (B, 6) -> (B, 6)
  Tensor forward(const Tensor& h) const {
    Tensor d = matmul(tanh(matmul(h, w1.t()) + b1), w2.t());
    return h + (gain.defined() ? d * gain : d);
  }
};

struct Model : nn::Module {
  Tensor w_in, w_out, b_out;  // (6, 5), (3, 6), (3,)
  std::vector<std::shared_ptr<Block>> blocks;
  bool checkpointing = false;
  Model() {
    Generator gen(42);
    w_in = register_parameter("w_in", randn({6, 5}, DType::F32, &gen) * 0.4);
    for (int k = 0; k < kBlocks; ++k)
      blocks.push_back(register_module("blocks." + std::to_string(k), std::make_shared<Block>(k, gen)));
    w_out = register_parameter("w_out", randn({3, 6}, DType::F32, &gen) * 0.4);
    b_out = register_parameter("b_out", randn({3}, DType::F32, &gen) * 0.1);
  }
  std::vector<optim::ParamGroupSpec> groups() {
    std::vector<optim::ParamGroupSpec> g(2);
    g[0].name = "decay", g[1].name = "no_decay";
    g[0].options.lr = g[1].options.lr = kLr;
    g[0].options.weight_decay = 0.1, g[1].options.weight_decay = 0;
    for (const auto& [name, p] : named_parameters()) {  // the frozen gain too: ZeRO must skip it
      auto& spec = g[p.dim() == 1 ? 1 : 0];
      spec.params.push_back(p);
      spec.names.push_back(name);
    }
    return g;
  }
  std::vector<optim::ZeroBlock> zero_blocks() const {
    std::vector<optim::ZeroBlock> out;
    for (const auto& b : blocks) out.push_back(optim::ZeroBlock::of(*b));
    return out;
  }
  // (B, 5) -> scalar MSE against (B, 3)
  Tensor loss(const Tensor& x, const Tensor& t) const {
    nn::ResidualStream h{matmul(x, w_in.t()), Tensor()};
    for (const auto& b : blocks) {
      const Block* block = b.get();
      h = nn::run_block(*block, {checkpointing, false},
                        [block](const nn::ResidualStream& s, const std::vector<Tensor>&) {
                          return nn::ResidualStream{block->forward(s.residual), Tensor()};
                        }, h);
    }
    return mean(square(matmul(h.residual, w_out.t()) + b_out - t));
  }
};

std::pair<Tensor, Tensor> batch(int64_t step, int64_t k) {
  Generator gen(1000 * static_cast<uint64_t>(step) + static_cast<uint64_t>(k) + 7);
  return {randn({kMicro, 5}, DType::F32, &gen), randn({kMicro, 3}, DType::F32, &gen)};
}

bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.numel() != b.numel() || a.dtype() != b.dtype()) return false;
  const Tensor x = a.contiguous(), y = b.contiguous();
  return std::memcmp(x.raw_data(), y.raw_data(), x.nbytes()) == 0;
}

// A group's global flat buffer (K,) restricted to segments, end to end.
Tensor over(const Tensor& flat, const std::vector<std::pair<int64_t, int64_t>>& segments) {
  std::vector<Tensor> parts;
  for (const auto& [b, e] : segments) parts.push_back(flat.narrow(0, b, e - b));
  return parts.empty() ? flat.narrow(0, 0, 0) : cat(parts, 0);
}

// One process, K micro-batches per step, loss / K, clip, AdamW: the trainer's algorithm.
struct Reference {
  Model model;
  std::unique_ptr<optim::AdamW> opt;
  std::vector<Tensor> last_grads;  // per group, flat, before clipping
  Reference() { opt = std::make_unique<optim::AdamW>(model.groups()); }
  void run(int64_t first, int64_t steps, int64_t K) {
    for (int64_t s = first; s < first + steps; ++s) {
      for (int64_t k = 0; k < K; ++k) {
        auto [x, t] = batch(s, k);
        (model.loss(x, t) * (1.0 / static_cast<double>(K))).backward();
      }
      last_grads.clear();
      for (const optim::ParamGroup& g : opt->groups()) {
        std::vector<Tensor> v;
        for (const Tensor& p : g.params)
          if (p.requires_grad()) v.push_back(p.grad().contiguous().view({-1}));
        last_grads.push_back(cat(v, 0));
      }
      optim::clip_grad_norm_(model.parameters(true), kMaxNorm);
      opt->step();
      opt->zero_grad();
    }
  }
};

void run_zero(optim::ZeroOptimizer& zero, Model& m, int64_t first, int64_t steps, int64_t A,
              std::vector<Tensor>* grads = nullptr) {
  const int64_t N = zero.process_group().size(), r = zero.process_group().rank();
  for (int64_t s = first; s < first + steps; ++s) {
    zero.prepare_forward();
    for (int64_t a = 0; a < A; ++a) {
      auto [x, t] = batch(s, a * N + r);
      (m.loss(x, t) * (1.0 / static_cast<double>(A * N))).backward();
      zero.reduce_gradients();
    }
    if (grads) {
      grads->clear();
      for (size_t g = 0; g < zero.layout().size(); ++g) grads->push_back(zero.reduced_gradient(g).clone());
    }
    zero.clip_grad_norm(kMaxNorm);
    zero.step();
    zero.zero_grad();
  }
}

void compare(optim::ZeroOptimizer& zero, Model& m, Reference& ref, const std::string& what) {
  zero.gather_parameters();
  const auto mine = m.named_parameters(), theirs = ref.model.named_parameters();
  for (size_t i = 0; i < mine.size(); ++i)
    EXPECT(same_bits(mine[i].second.detach(), theirs[i].second.detach()), what, ": parameter ", mine[i].first);
  zero.release_parameters();
  for (size_t g = 0; g < zero.layout().size(); ++g) {
    const auto& L = zero.layout()[g];
    const optim::ParamGroup& inner = zero.inner().groups()[g];
    const optim::ParamGroup& full = ref.opt->groups()[g];
    EXPECT(same_bits(inner.master, over(full.master, L.owned)), what, ": master of ", L.name);
    EXPECT(same_bits(inner.exp_avg, over(full.exp_avg, L.owned)), what, ": exp_avg of ", L.name);
    EXPECT(same_bits(inner.exp_avg_sq, over(full.exp_avg_sq, L.owned)), what, ": exp_avg_sq of ", L.name);
  }
}

void equivalence(const std::shared_ptr<dist::ProcessGroup>& pg) {
  const int64_t N = pg->size();
  for (int64_t A : {1, 2}) {
    Reference ref;
    ref.run(0, 3, N * A);
    for (int stage : {0, 3}) {
      for (int variant = 0; variant < (stage == 3 ? 3 : 1); ++variant) {
        // variant 0: checkpointing off; 1: on; 2: off and no prefetch
        const std::string what = detail::concat("N=", N, " A=", A, " stage ", stage, stage == 3 ? " per block" : "",
                                                variant == 1 ? " checkpointing" : "", variant == 2 ? " no prefetch" : "");
        Model m;
        m.checkpointing = variant == 1;
        optim::ZeroOptions zo;
        zo.stage = stage;
        zo.bucket_elements = 5;  // several buckets per unit
        if (stage == 3) zo.blocks = m.zero_blocks(), zo.prefetch = variant != 2;
        auto zero = std::make_unique<optim::ZeroOptimizer>(m.groups(), pg, zo);
        for (const auto& L : zero->layout()) {
          int64_t block_units = 0;
          for (const auto& u : L.units) block_units += u.block >= 0;
          EXPECT(block_units == (stage == 3 ? kBlocks : 0), what, ": group ", L.name, " has ", block_units, " block units");
        }
        std::vector<Tensor> grads;
        run_zero(*zero, m, 0, 3, A, &grads);
        for (size_t g = 0; g < grads.size(); ++g) {
          const auto& L = zero->layout()[g];
          const auto segments = stage == 0 ? std::vector<std::pair<int64_t, int64_t>>{{0, L.numel}} : L.owned;
          EXPECT(same_bits(grads[g], over(ref.last_grads[g], segments)), what, ": reduced gradient of ", L.name);
        }
        compare(*zero, m, ref, what);
        if (stage != 3 || variant != 0) continue;

        // Its checkpoint: consolidated, the one-process optimizer's state; loaded into a fresh
        // per-block optimizer, one more step gives what one more step of this one gives.
        const std::string dir = detail::concat("zero3_blocks_ckpt_np", N, "_A", A);
        if (pg->rank() == 0) std::filesystem::remove_all(dir), std::filesystem::create_directories(dir);
        pg->barrier();
        zero->save_shard(dir);
        pg->barrier();
        if (pg->rank() == 0) {
          const auto state = optim::ZeroOptimizer::consolidate_shards(dir);
          for (size_t g = 0; g < 2; ++g) {
            const optim::ParamGroup& full = ref.opt->groups()[g];
            const std::string name = zero->layout()[g].name;
            EXPECT(same_bits(state.at(name + ".master"), full.master), what, ": consolidated master of ", name);
            EXPECT(same_bits(state.at(name + ".exp_avg_sq"), full.exp_avg_sq), what, ": consolidated v of ", name);
          }
        }
        run_zero(*zero, m, 3, 1, A);
        zero->gather_parameters();
        std::vector<Tensor> continued;
        for (const Tensor& p : m.parameters()) continued.push_back(p.detach().clone());
        zero.reset();  // its hooks go with it
        Model m2;
        optim::ZeroOptions zo2 = zo;
        zo2.blocks = m2.zero_blocks();
        optim::ZeroOptimizer resumed(m2.groups(), pg, zo2);
        resumed.load_shards(dir);
        run_zero(resumed, m2, 3, 1, A);
        resumed.gather_parameters();
        for (size_t i = 0; i < continued.size(); ++i)
          EXPECT(same_bits(continued[i], m2.parameters()[i].detach()), what, ": resumed parameter ",
                 m2.named_parameters()[i].first);
        resumed.release_parameters();
      }
    }
  }
}

void peak(const std::shared_ptr<dist::ProcessGroup>& pg) {
  for (bool prefetch : {true, false}) {
    Model m;
    optim::ZeroOptions zo;
    zo.stage = 3;
    zo.blocks = m.zero_blocks();
    zo.prefetch = prefetch;
    optim::ZeroOptimizer zero(m.groups(), pg, zo);
    int64_t rest = 0, block = 0, total = 0;  // bytes when gathered: the rest, the largest block, all
    std::vector<int64_t> per_block(kBlocks, 0);
    for (const auto& L : zero.layout())
      for (const auto& u : L.units) {
        (u.block < 0 ? rest : per_block[u.block]) += 4 * u.padded;
        total += 4 * u.padded;
      }
    for (int64_t b : per_block) block = std::max(block, b);
    EXPECT(zero.gathered_bytes() == 0, "gathered between steps: ", zero.gathered_bytes());
    testing::check_layout_bytes(zero, detail::concat("per block, prefetch ", prefetch));
    zero.reset_peak_gathered_bytes();
    run_zero(zero, m, 0, 2, 2);
    const int64_t bound = rest + (prefetch ? 2 : 1) * block;
    EXPECT(zero.peak_gathered_bytes() <= bound && zero.peak_gathered_bytes() < total, "prefetch ", prefetch,
           ": peak gathered ", zero.peak_gathered_bytes(), " B, bound rest ", rest, " + ", prefetch ? 2 : 1, " x block ",
           block, " = ", bound, " B, whole model ", total, " B");
    EXPECT(zero.gathered_bytes() == 0, "gathered after the step: ", zero.gathered_bytes());
    if (testing::g_rank == 0)
      std::printf("N=%d prefetch %d: peak gathered %lld B (rest %lld + %s x block %lld = %lld; whole model %lld)\n",
                  pg->size(), prefetch, (long long)zero.peak_gathered_bytes(), (long long)rest, prefetch ? "2" : "1",
                  (long long)block, (long long)bound, (long long)total);
  }
}

void traffic(const std::shared_ptr<dist::ProcessGroup>& pg) {
  const int64_t N = pg->size();
  if (N == 1) return;  // world 1 sends nothing
  for (bool per_block : {true, false}) {
    Model m;
    optim::ZeroOptions zo;
    zo.stage = 3;
    if (per_block) zo.blocks = m.zero_blocks();
    optim::ZeroOptimizer zero(m.groups(), pg, zo);
    int64_t psi_blocks = 0, psi_rest = 0, flags = 0;  // padded elements
    for (const auto& L : zero.layout()) {
      for (const auto& u : L.units) (u.block < 0 ? psi_rest : psi_blocks) += u.padded;
      flags += static_cast<int64_t>(L.params.size());
    }
    run_zero(zero, m, 0, 1, 1);  // warm up (nothing is cached, but the counts start clean)
    pg->reset_stats();
    run_zero(zero, m, 1, 1, 1);
    // Ring units (dist/process_group.h): a gather or reduce-scatter of Ψ sends (N-1)/N·Ψ.
    const int64_t scalars = 2 * flags * (N - 1) / N + 2 * 1 * (N - 1) / N;  // the grad flags, Σg²
    const int64_t want = (3 * psi_blocks + 2 * psi_rest) / N * (N - 1) + scalars;
    const int64_t got = pg->stats().elements_sent;
    EXPECT(got == want, per_block ? "per block" : "gather-all", ": one step sent ", got, " elements, expected ", want,
           " = (N-1)/N (3 x ", psi_blocks, " + 2 x ", psi_rest, ") + ", scalars);
    if (testing::g_rank == 0)
      std::printf("N=%lld %s: one step sends %lld elements: (N-1)/N x (%s) + %lld scalars, Ψ = %lld\n", (long long)N,
                  per_block ? "per block" : "gather-all", (long long)got,
                  detail::concat("3 x ", psi_blocks, " + 2 x ", psi_rest).c_str(), (long long)scalars,
                  (long long)(psi_blocks + psi_rest));
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "all";
  return testing::run_on_ranks("test_zero3_mpi", mode, [&](const std::shared_ptr<dist::ProcessGroup>& pg) {
    if (mode == "all" || mode == "equivalence") equivalence(pg);
    if (mode == "all" || mode == "peak") peak(pg);
    if (mode == "all" || mode == "traffic") traffic(pg);
  });
}
