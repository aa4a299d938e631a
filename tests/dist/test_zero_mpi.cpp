// ZeRO over MPI (optim/zero.h, dist/process_group.h), run under
//   mpirun --oversubscribe --allow-run-as-root -np N test_zero_mpi MODE [DIR]
// (or alone: world 1). The model is a 3-layer MLP whose first layer is frozen; its trainable
// parameters (59 elements: 49 with weight decay, 10 biases without) divide by none of 2, 3, 4.
//
//   equivalence   for stages 0-3 and accumulation A in {1, 2}: N ranks x micro-batch 2 equal one rank
//                 with N·A micro-batches of 2 (the single-process trainer's algorithm: loss / (N·A),
//                 backward per micro-batch, clip_grad_norm_ 0.5, AdamW) BIT FOR BIT: the reduced
//                 gradient of every owned element, master / m / v and the parameters
//                 after 3 steps on every rank (the global norm to 1e-14 relative, and exactly in fp32,
//                 the precision clipping uses). The fixed-order MPI reductions make this exact; with
//                 native MPI_Allreduce order (native_reductions) the parameters agree to 2e-6 (the
//                 order of the fp32 sums differs, lr 1e-2). One rank with one micro-batch of 2·N·A
//                 agrees to 2e-5 (the batch sum inside the GEMMs runs in another order). Per-rank model
//                 state bytes equal the formulas of zero.h for the padded Ψ.
//   save DIR      3 steps of ZeRO-2 on this N (A = 4/N), shards written to DIR
//   resume DIR    load DIR (any N, as ZeRO-3 here), 3 more steps; equals the uninterrupted 6-step
//                 single-process run bit for bit
//   fail          rank 1 throws during step 2 -> abort_job (the launcher's exit names it)
//   exit          rank N-1 _Exits during step 2 without a word
//   stuck         rank 1 sleeps 60 s during step 2; the others' collectives time out (VT_DIST_TIMEOUT_S)
//   devices       check_unique_devices with ranks 0 and 1 on one device; detect_launch disagreements
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <thread>

#include "vt/autograd.h"
#include "mpi_check.h"
#include "vt/dist/process_group.h"
#include "vt/ops.h"
#include "vt/optim/adamw.h"
#include "vt/optim/clip.h"
#include "vt/optim/zero.h"
#include "vt/philox.h"

using namespace vt;

namespace {

constexpr int64_t kMicro = 2;  // samples per micro-batch
constexpr double kMaxNorm = 0.5, kLr = 1e-2;

struct Model {
  Tensor w0, w1, b1, w2, b2;  // w0 (4, 4) frozen; w1 (7, 4), b1 (7,), w2 (3, 7), b2 (3,)
  Model() {
    Generator gen(42);
    w0 = randn({4, 4}, DType::F32, &gen) * 0.5;
    w1 = randn({7, 4}, DType::F32, &gen) * 0.5;
    b1 = randn({7}, DType::F32, &gen) * 0.1;
    w2 = randn({3, 7}, DType::F32, &gen) * 0.5;
    b2 = randn({3}, DType::F32, &gen) * 0.1;
    for (Tensor* t : {&w1, &b1, &w2, &b2}) t->requires_grad_(true);
  }
  std::vector<optim::ParamGroupSpec> groups() const {
    std::vector<optim::ParamGroupSpec> g(2);
    g[0].params = {w0, w1, w2};  // w0 is frozen: skipped, no state
    g[0].names = {"w0", "w1", "w2"};
    g[0].name = "decay";
    g[0].options.lr = kLr;
    g[0].options.weight_decay = 0.1;
    g[1].params = {b1, b2};
    g[1].names = {"b1", "b2"};
    g[1].name = "no_decay";
    g[1].options.lr = kLr;
    g[1].options.weight_decay = 0;
    return g;
  }
  std::vector<Tensor> trainable() const { return {w1, w2, b1, b2}; }
  // (B, 4) -> scalar MSE against (B, 3)
  Tensor loss(const Tensor& x, const Tensor& t) const {
    Tensor h = tanh(matmul(x, w0.t()));
    h = tanh(matmul(h, w1.t()) + b1);
    Tensor y = matmul(h, w2.t()) + b2;
    return mean(square(y - t));
  }
};

// Micro-batch k of step s (global numbering: the same data whatever the world size).
std::pair<Tensor, Tensor> batch(int64_t step, int64_t k, int64_t samples = kMicro) {
  Generator gen(1000 * static_cast<uint64_t>(step) + static_cast<uint64_t>(k) + 7);
  return {randn({samples, 4}, DType::F32, &gen), randn({samples, 3}, DType::F32, &gen)};
}


bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.numel() != b.numel() || a.dtype() != b.dtype()) return false;
  const Tensor x = a.contiguous(), y = b.contiguous();
  return std::memcmp(x.raw_data(), y.raw_data(), x.nbytes()) == 0;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  return amax(abs(a.to(DType::F64).view({-1}) - b.to(DType::F64).view({-1}))).item();
}

Tensor flat_of(const std::vector<Tensor>& ts) {
  std::vector<Tensor> v;
  for (const Tensor& t : ts) v.push_back(t.detach().contiguous().view({-1}));
  return cat(v, 0);
}

// The single-process trainer's algorithm: K micro-batches per step, loss / K, clip, AdamW.
struct Reference {
  Model model;
  std::unique_ptr<optim::AdamW> opt;
  std::vector<Tensor> last_grads;  // flat per group, before clipping, of the last step
  double last_norm = 0;
  Reference() { opt = std::make_unique<optim::AdamW>(model.groups()); }
  void run(int64_t first_step, int64_t steps, int64_t K, bool one_big_batch = false) {
    for (int64_t s = first_step; s < first_step + steps; ++s) {
      if (one_big_batch) {
        std::vector<Tensor> xs, ts;
        for (int64_t k = 0; k < K; ++k) {
          auto [x, t] = batch(s, k);
          xs.push_back(x), ts.push_back(t);
        }
        model.loss(cat(xs, 0), cat(ts, 0)).backward();
      } else {
        for (int64_t k = 0; k < K; ++k) {
          auto [x, t] = batch(s, k);
          (model.loss(x, t) * (1.0 / static_cast<double>(K))).backward();
        }
      }
      last_grads = {flat_of({model.w1.grad(), model.w2.grad()}), flat_of({model.b1.grad(), model.b2.grad()})};
      last_norm = optim::clip_grad_norm_(model.trainable(), kMaxNorm);
      opt->step();
      opt->zero_grad();
    }
  }
};

// N ranks x A micro-batches with ZeRO; the same data order as Reference (rank r, micro-step a gets k = a·N + r).
void run_zero(optim::ZeroOptimizer& zero, Model& m, int64_t first_step, int64_t steps, int64_t A, bool fail_mode = false,
              std::vector<Tensor>* grads = nullptr, double* norm = nullptr) {
  const int64_t N = zero.process_group().size(), r = zero.process_group().rank();
  for (int64_t s = first_step; s < first_step + steps; ++s) {
    zero.gather_parameters();
    for (int64_t a = 0; a < A; ++a) {
      auto [x, t] = batch(s, a * N + r);
      (m.loss(x, t) * (1.0 / static_cast<double>(A * N))).backward();
      if (fail_mode && s == first_step + 1) {
        const char* mode = std::getenv("VT_TEST_FAIL");
        if (std::string(mode) == "fail" && r == 1) VT_FAIL("injected failure in step ", s + 1, " on rank ", r);
        if (std::string(mode) == "exit" && r == N - 1) std::_Exit(7);
        if (std::string(mode) == "stuck" && r == 1) std::this_thread::sleep_for(std::chrono::seconds(60));
      }
      zero.reduce_gradients();
    }
    if (grads) {
      grads->clear();
      for (size_t g = 0; g < zero.layout().size(); ++g) grads->push_back(zero.reduced_gradient(g).clone());
    }
    const double n = zero.clip_grad_norm(kMaxNorm);
    if (norm) *norm = n;
    zero.step();
    zero.zero_grad();
  }
}

// Compares a ZeRO run's state with the reference: parameters (gathered), master / m / v of the owned range.
void compare_state(optim::ZeroOptimizer& zero, Model& m, Reference& ref, const std::string& what, bool bitwise,
                   double tol) {
  zero.gather_parameters();
  const std::vector<std::pair<Tensor, Tensor>> params = {
      {m.w1, ref.model.w1}, {m.b1, ref.model.b1}, {m.w2, ref.model.w2}, {m.b2, ref.model.b2}, {m.w0, ref.model.w0}};
  for (size_t i = 0; i < params.size(); ++i) {
    const double d = max_abs_diff(params[i].first.detach(), params[i].second.detach());
    if (bitwise) EXPECT(same_bits(params[i].first.detach(), params[i].second.detach()), what, ": parameter ", i, " differs by ", d);
    else EXPECT(d <= tol, what, ": parameter ", i, " differs by ", d, " > ", tol);
  }
  if (!bitwise) return;
  for (size_t g = 0; g < zero.layout().size(); ++g) {
    const auto& L = zero.layout()[g];
    const optim::ParamGroup& inner = zero.inner().groups()[g];
    const optim::ParamGroup& full = ref.opt->groups()[g];
    const int64_t b = std::min(L.owned_begin, L.numel), e = std::min(L.owned_end, L.numel);
    EXPECT(inner.master.numel() == e - b, what, ": inner master of ", L.name, " has ", inner.master.numel(), " != ", e - b);
    EXPECT(same_bits(inner.master, full.master.narrow(0, b, e - b)), what, ": master of ", L.name);
    EXPECT(same_bits(inner.exp_avg, full.exp_avg.narrow(0, b, e - b)), what, ": exp_avg of ", L.name);
    EXPECT(same_bits(inner.exp_avg_sq, full.exp_avg_sq.narrow(0, b, e - b)), what, ": exp_avg_sq of ", L.name);
    EXPECT(L.steps == full.steps, what, ": steps of ", L.name);
  }
}

void equivalence(const std::shared_ptr<dist::ProcessGroup>& pg) {
  const int64_t N = pg->size(), r = pg->rank();
  for (int stage = 0; stage <= 3; ++stage) {
    for (int64_t A : {1, 2}) {
      const std::string what = detail::concat("N=", N, " stage ", stage, " A=", A);
      Reference ref;
      ref.run(0, 3, N * A);
      Model m;
      optim::ZeroOptions zo;
      zo.stage = stage;
      zo.bucket_elements = 4;  // several buckets per shard
      optim::ZeroOptimizer zero(m.groups(), pg, zo);
      std::vector<Tensor> grads;
      double norm = 0;
      run_zero(zero, m, 0, 3, A, false, &grads, &norm);
      // The reduced gradient of the last step, element for element, and the global norm.
      for (size_t g = 0; g < grads.size(); ++g) {
        const auto& L = zero.layout()[g];
        const int64_t b = std::min(L.owned_begin, L.numel);
        EXPECT(same_bits(grads[g], ref.last_grads[g].narrow(0, b, grads[g].numel())), what, ": reduced gradient of ",
               L.name, " differs by ", max_abs_diff(grads[g], ref.last_grads[g].narrow(0, b, grads[g].numel())));
      }
      // The norm is a sum of fp64 squares split at other places across the shards: equal to ~1e-15
      // relative; clipping uses it rounded to fp32 (optim/clip.h), where it must agree exactly.
      EXPECT(static_cast<float>(norm) == static_cast<float>(ref.last_norm) &&
                 std::fabs(norm - ref.last_norm) <= 1e-14 * ref.last_norm,
             what, ": norm ", norm, " vs ", ref.last_norm, " (diff ", norm - ref.last_norm, ")");
      compare_state(zero, m, ref, what, /*bitwise=*/true, 0);
      zero.release_parameters();

      // Model-state bytes: the formulas of zero.h for Ψ padded to N (49 -> 52 and 10 -> 12 at N = 4).
      const optim::ModelStateBytes got = zero.model_state_bytes();
      int64_t psi = 0, psi_real = 0;
      for (const auto& L : zero.layout()) psi += L.padded_numel, psi_real += L.numel;
      const optim::ModelStateBytes want = optim::ZeroOptimizer::expected_bytes(stage, psi, N, 4, 4, zo.bucket_elements, 16 * 4);
      EXPECT(got.params == want.params && got.grads == want.grads && got.bucket == want.bucket &&
                 got.frozen == want.frozen,
             what, ": bytes params ", got.params, "/", want.params, " grads ", got.grads, "/", want.grads, " bucket ",
             got.bucket, "/", want.bucket, " frozen ", got.frozen, "/", want.frozen);
      // The optimizer holds 12 B for each real (unpadded) owned element: the formula less the padding it owns.
      int64_t owned_real = 0;
      for (const auto& L : zero.layout())
        owned_real += std::max<int64_t>(0, std::min(L.owned_end, L.numel) - std::min(L.owned_begin, L.numel));
      EXPECT(got.optimizer == 12 * owned_real && want.optimizer - got.optimizer <= 12 * (psi - psi_real), what,
             ": optimizer bytes ", got.optimizer, " vs formula ", want.optimizer);
      testing::check_layout_bytes(zero, what);
      if (A == 1 && r == 0) std::printf("%s", zero.memory_report().c_str());

      // Native MPI reduction order: within 2e-6 (fp32 sums in MPI's order).
      if (pg->backend() == "mpi" && A == 1) {
        dist::MpiOptions mo;
        mo.native_reductions = true;
        mo.timeout_s = 120;
        auto native = dist::make_mpi_group(mo);
        Model m2;
        optim::ZeroOptimizer z2(m2.groups(), native, zo);
        run_zero(z2, m2, 0, 3, A);
        compare_state(z2, m2, ref, what + " native order", false, 2e-6);
      }
    }
    // One rank with one micro-batch of 2·N: the same global batch, summed inside the GEMMs.
    Reference big;
    big.run(0, 3, N, /*one_big_batch=*/true);
    Model m;
    optim::ZeroOptions zo;
    zo.stage = stage;
    optim::ZeroOptimizer zero(m.groups(), pg, zo);
    run_zero(zero, m, 0, 3, 1);
    compare_state(zero, m, big, detail::concat("N=", N, " stage ", stage, " vs one batch of ", kMicro * N), false, 2e-5);
  }
  // No parameter crosses into the padding; the frozen tensor got no state and did not move.
  Model fresh;
  optim::ZeroOptions zo;
  zo.stage = 1;
  optim::ZeroOptimizer zero(fresh.groups(), pg, zo);
  EXPECT(zero.layout()[0].numel == 49 && zero.layout()[1].numel == 10, "layout");
  EXPECT(zero.layout()[0].padded_numel % N == 0, "padding");
}

// Save on this N (ZeRO-2, A = 4/N, 3 steps); resume on another N (ZeRO-3) for 3 more.
void save(const std::shared_ptr<dist::ProcessGroup>& pg, const std::string& dir) {
  const int64_t N = pg->size();
  EXPECT(4 % N == 0, "save: N must divide 4");
  Model m;
  optim::ZeroOptions zo;
  zo.stage = 2;
  zo.bucket_elements = 5;
  optim::ZeroOptimizer zero(m.groups(), pg, zo);
  run_zero(zero, m, 0, 3, 4 / N);
  std::filesystem::create_directories(dir);
  zero.save_shard(dir);
  pg->barrier();
}

void resume(const std::shared_ptr<dist::ProcessGroup>& pg, const std::string& dir) {
  const int64_t N = pg->size();
  Reference ref;
  ref.run(0, 6, 4);  // uninterrupted: 6 steps of 4 micro-batches on one rank
  Model m;
  optim::ZeroOptions zo;
  zo.stage = 3;
  optim::ZeroOptimizer zero(m.groups(), pg, zo);
  zero.load_shards(dir);
  EXPECT(zero.num_steps() == 3, "resume: ", zero.num_steps(), " steps in the checkpoint");
  run_zero(zero, m, 3, 3, 4 / N);
  compare_state(zero, m, ref, detail::concat("resumed on ", N), /*bitwise=*/true, 0);
  // The consolidated state equals the single-process optimizer after 3 steps.
  if (pg->rank() == 0) {
    Reference three;
    three.run(0, 3, 4);
    const auto state = optim::ZeroOptimizer::consolidate_shards(dir);
    EXPECT(same_bits(state.at("decay.master"), three.opt->groups()[0].master.narrow(0, 0, 49)), "consolidated master");
    EXPECT(same_bits(state.at("no_decay.exp_avg_sq"), three.opt->groups()[1].exp_avg_sq.narrow(0, 0, 10)),
           "consolidated exp_avg_sq");
  }
}

void failure(const std::shared_ptr<dist::ProcessGroup>& pg) {
  Model m;
  optim::ZeroOptions zo;
  zo.stage = 2;
  optim::ZeroOptimizer zero(m.groups(), pg, zo);
  run_zero(zero, m, 0, 3, 1, /*fail_mode=*/true);
}

void devices(const std::shared_ptr<dist::ProcessGroup>& pg) {
  const int r = pg->rank();
  // detect_launch under mpirun agrees with MPI.
  const dist::LaunchInfo li = dist::detect_launch();
  EXPECT(li.launcher == "mpirun" && li.rank == r && li.world_size == pg->size(), "detect_launch: ", li.launcher, " ",
         li.rank, "/", li.world_size);
  // Two launchers that disagree: an error naming both values.
  std::map<std::string, std::string> env = {{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "4"},
                                            {"RANK", "1"}, {"WORLD_SIZE", "2"}};
  auto lookup = [&](const char* n) -> const char* {
    auto it = env.find(n);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  try {
    dist::detect_launch(lookup);
    EXPECT(false, "world sizes 4 and 2 were accepted");
  } catch (const Error& e) {
    EXPECT(std::strstr(e.what(), "WORLD_SIZE=2") && std::strstr(e.what(), "OMPI_COMM_WORLD_SIZE=4"), e.what());
  }
  env = {{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "4"}};
  try {
    dist::detect_launch(lookup);
    EXPECT(false, "rank 5 of 4 was accepted");
  } catch (const Error& e) {
    EXPECT(std::strstr(e.what(), "SLURM_PROCID=5"), e.what());
  }
  env = {{"RANK", "3"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "node0"}, {"MASTER_PORT", "29500"}};
  const dist::LaunchInfo t = dist::detect_launch(lookup);
  EXPECT(t.launcher == "torchrun" && t.rank == 3 && t.world_size == 8 && t.local_rank == 1 && t.master_addr == "node0" &&
             t.master_port == 29500, "torchrun variables");
  // Ranks 0 and 1 claim one GPU.
  if (pg->size() >= 2) {
    try {
      dist::check_unique_devices(*pg, "host:cuda:" + std::to_string(r == 1 ? 0 : r));
      EXPECT(false, "a shared device was accepted");
    } catch (const Error& e) {
      EXPECT(std::strstr(e.what(), "ranks 0 and 1"), e.what());
    }
  }
  dist::check_unique_devices(*pg, "host:cuda:" + std::to_string(r));  // distinct: fine
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "equivalence";
  const std::string modes[] = {"equivalence", "save", "resume", "fail", "exit", "stuck", "devices"};
  if (std::find(std::begin(modes), std::end(modes), mode) == std::end(modes)) {
    std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
    return 2;
  }
  return testing::run_on_ranks("test_zero_mpi", mode, [&](const std::shared_ptr<dist::ProcessGroup>& pg) {
    if (mode == "equivalence") equivalence(pg);
    else if (mode == "save") save(pg, argv[2]);
    else if (mode == "resume") resume(pg, argv[2]);
    else if (mode == "devices") devices(pg);
    else {
      setenv("VT_TEST_FAIL", mode.c_str(), 1);
      failure(pg);
    }
  });
}
