// DPO's reference model sharded forward-only under ZeRO-3 (optim/zero_partition.h ShardedInference,
// train/dpo.h), run under
//   mpirun --oversubscribe --allow-run-as-root -np N test_dpo_ref_mpi
// (or alone: world 1). Every rank loads the tiny VARGPT checkpoint twice: the policy, and the
// reference with seeded noise on every weight (so the loss is not ln 2 and the rewards not 0). The
// pairs are two random images on the fixture's text-to-image prompt (as test_dpo.cpp builds them).
//
//   equal     the reference log-probs from the sharded reference, gathered block by block with
//             prefetch (and without), equal the whole reference's BIT FOR BIT, in two forwards in a
//             row; so do dpo_forward's loss, sft loss and every TRL metric (they are a function of
//             the same bits on every rank).
//   held      between forwards the reference's parameters hold no bytes and the rank holds its
//             shard: at most 1/N of the model plus its padding (< N elements per unit); after a
//             forward the same again, nothing gathered.
//   peak      the gathered bytes during a forward (the partition's count, buffers in flight
//             included) stay within rest + 2 x the largest block (rest + 1 without prefetch) and
//             below the whole model.
//   hooks     a scope sets aside the installed block hooks (a ZeRO-3 optimizer's) and puts them back;
//             a block run with grad on inside it is refused, naming ShardedInference.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <tuple>

#include "dpo.h"
#include "infinity/self_correction.h"
#include "../random_image_bits.h"
#include "trainer.h"
#include "mpi_check.h"
#include "vt/autograd.h"
#include "vt/dist/process_group.h"
#include "vt/io/tensor_io.h"
#include "vt/ops.h"
#include "vt/optim/zero_partition.h"
#include "vt/random.h"

using namespace vt;
using vargpt::Vargpt;

namespace {

const std::string kTiny = std::string(VT_FIXTURES) + "/vargpt_tiny";

bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  const Tensor x = a.contiguous().to(Device::cpu()), y = b.contiguous().to(Device::cpu());
  return std::memcmp(x.raw_data(), y.raw_data(), x.nbytes()) == 0;
}

// Two pairs (chosen, rejected: random bit patterns with their teacher inputs at 256²) on the
// fixture's text-to-image prompt.
vargpt::TrainingBatch pairs(const Vargpt& m) {
  const auto ref = io::load_safetensors(kTiny + "/reference.safetensors");
  const Tensor prompt = ref.at("t2i.input_ids").to(DType::I64).contiguous().reshape({-1});
  std::vector<int64_t> ids(prompt.data<int64_t>(), prompt.data<int64_t>() + prompt.numel());
  vargpt::TrainingBatch b;
  b.schedule = infinity::schedule_for_image(256, 256);
  ids.insert(ids.end(), b.schedule.padded_tokens(infinity::kSequencePadMultiple), m.tokens().pad);
  ids.push_back(m.tokens().end);
  const int64_t T = static_cast<int64_t>(ids.size()), d = m.config().gen.codebook_dim, rows = 4;
  std::vector<int64_t> all;
  for (int64_t i = 0; i < rows; ++i) all.insert(all.end(), ids.begin(), ids.end());
  b.input_ids = from_vector(all, {rows, T});
  Generator gen(11);
  std::tie(b.gen_inputs, b.gen_labels) = testing::random_image_bits(b.schedule, d, rows, gen);
  return b;
}

int64_t held_by_parameters(const nn::Module& m) {
  int64_t bytes = 0;
  for (const Tensor& p : m.parameters()) bytes += static_cast<int64_t>(p.storage()->nbytes);
  return bytes;
}

// Counts the hook calls that reach it (a stand-in for a ZeRO-3 optimizer's hooks).
struct CountingHooks : nn::BlockHooks {
  int calls = 0;
  bool manages(const nn::Module&) const override { return true; }
  void before_forward(const nn::Module&) override { ++calls; }
  void after_forward(const nn::Module&, bool) override { ++calls; }
  void before_backward(const nn::Module&) override { ++calls; }
  void after_backward(const nn::Module&) override { ++calls; }
};

void run(const std::shared_ptr<dist::ProcessGroup>& pg) {
  const int64_t N = pg->size();
  auto policy = Vargpt::from_pretrained(kTiny, DType::F32);
  policy->eval();
  const vargpt::TrainingBatch batch = pairs(*policy);
  train::DpoOptions opt;
  opt.beta = 0.5;
  opt.ftx = 0.25;

  for (const bool prefetch : {true, false}) {
    auto reference = Vargpt::from_pretrained(kTiny, DType::F32);
    reference->freeze("*");
    reference->eval();
    {
      NoGradGuard no_grad;
      Generator gen(5);  // the same noise on every rank
      for (Tensor p : reference->parameters()) copy_(p, p + randn(p.shape(), p.dtype(), &gen) * 0.05);
    }
    // The whole reference: the log-probs, the loss and the metrics to match.
    const Tensor whole_logps = train::reference_logps(*reference, batch);
    const train::DpoStepOutput whole = train::dpo_forward(*policy, reference.get(), batch, opt);
    const auto whole_metrics = train::dpo_metrics(whole);
    EXPECT(std::fabs(whole.metrics.loss.item() - std::log(2.0)) > 1e-3, "the noisy reference gives ln 2");

    optim::ShardedInference sharded(*reference, train::zero3_blocks(*reference, false), pg, prefetch);
    const optim::ZeroPartition& part = sharded.partition();
    const int64_t model = sharded.model_bytes();
    int64_t units = 0, rest = part.set_bytes(part.rest()), largest = 0, blocks = 0;
    for (size_t g = 0; g < part.num_groups(); ++g) units += static_cast<int64_t>(part.units(g).size());
    for (size_t b = 0; b < part.num_blocks(); ++b)
      if (part.has_units(b)) largest = std::max(largest, part.set_bytes(b)), ++blocks;
    const std::string what = detail::concat("N=", N, " prefetch ", prefetch);
    auto check_held = [&](const char* when) {
      EXPECT(held_by_parameters(*reference) == 0, what, " ", when, ": the reference's parameters hold ",
             held_by_parameters(*reference), " B");
      EXPECT(part.gathered_bytes() == 0, what, " ", when, ": ", part.gathered_bytes(), " B gathered");
      // 1/N of the model, plus this rank's share of each unit's padding (< N f32 elements per unit).
      EXPECT(part.shard_bytes() * N >= model && part.shard_bytes() * N < model + units * N * 4, what, " ", when,
             ": shard ", part.shard_bytes(), " B x ", N, " ranks vs the model's ", model, " B (", units, " units)");
    };
    check_held("before the first forward");
    EXPECT(blocks >= 3 && rest + 2 * largest < model, what, ": ", blocks, " blocks, rest ", rest, " + 2 x ", largest,
           " is not below the model's ", model, " B: the peak check would prove nothing");

    CountingHooks optimizer_hooks;  // installed as a ZeRO-3 optimizer's would be
    nn::set_block_hooks(&optimizer_hooks);
    for (int forward = 0; forward < 2; ++forward) {
      Tensor logps;
      {
        optim::ShardedInference::Scope gathered(sharded);
        EXPECT(nn::block_hooks() == &sharded.partition().hooks(), what, ": the scope did not install its hooks");
        logps = train::reference_logps(*reference, batch);
      }
      EXPECT(nn::block_hooks() == &optimizer_hooks, what, ": the scope did not put the previous hooks back");
      EXPECT(same_bits(logps, whole_logps), what, " forward ", forward, ": sharded reference log-probs ",
             logps.tolist<float>()[0], "... vs ", whole_logps.tolist<float>()[0], "...");
      check_held("after a forward");
      nn::set_block_hooks(nullptr);  // the policy runs as without ZeRO here
      train::DpoOptions given = opt;
      given.precomputed_reference = true;
      const train::DpoStepOutput out = train::dpo_forward(*policy, nullptr, batch, given, &logps);
      nn::set_block_hooks(&optimizer_hooks);
      EXPECT(same_bits(out.loss, whole.loss) && same_bits(out.sft_loss, whole.sft_loss), what, ": loss ",
             out.loss.item(), " vs ", whole.loss.item());
      const auto metrics = train::dpo_metrics(out);
      for (const auto& [k, v] : whole_metrics)
        EXPECT(metrics.count(k) && std::memcmp(&metrics.at(k), &v, sizeof v) == 0, what, ": ", k, " ",
               metrics.count(k) ? metrics.at(k) : 0.0, " vs ", v);
    }
    EXPECT(optimizer_hooks.calls == 0, what, ": the optimizer's hooks saw ", optimizer_hooks.calls,
           " calls from the reference's forward");
    const int64_t bound = rest + (prefetch ? 2 : 1) * largest;
    EXPECT(part.peak_gathered_bytes() <= bound && part.peak_gathered_bytes() < model, what, ": peak gathered ",
           part.peak_gathered_bytes(), " B, bound rest ", rest, " + ", prefetch ? 2 : 1, " x ", largest, " = ", bound,
           ", model ", model);
    if (testing::g_rank == 0)
      std::printf("%s: reference %lld B, held per rank %lld B (%.3f of it), peak gathered %lld B (rest %lld + %d x "
                  "block %lld = %lld)\n",
                  what.c_str(), (long long)model, (long long)part.shard_bytes(),
                  static_cast<double>(part.shard_bytes()) / static_cast<double>(model),
                  (long long)part.peak_gathered_bytes(), (long long)rest, prefetch ? 2 : 1, (long long)largest,
                  (long long)bound);
    nn::set_block_hooks(nullptr);

    // Forward only: with grad on a block is refused (it would never be reduced nor freed in order).
    std::string error;
    try {
      optim::ShardedInference::Scope gathered(sharded);
      vargpt::TrainingOptions to;
      to.text_loss = false;
      vargpt::training_forward(*reference, batch, to);
    } catch (const std::exception& e) {
      error = e.what();
    }
    EXPECT(error.find("ShardedInference") != std::string::npos, what, ": grad on inside the scope gave '", error, "'");
    EXPECT(nn::block_hooks() == nullptr, what, ": hooks left installed after an error");
    check_held("after the refused forward");
  }
}

}  // namespace

int main() { return testing::run_on_ranks("test_dpo_ref_mpi", "all", run); }
