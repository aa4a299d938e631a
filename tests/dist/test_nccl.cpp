// The NCCL process group and ZeRO on one GPU (world size 1: a communicator of one rank made from
// its own unique id). Exits 77 (CTest: skipped) without a GPU. Checks:
//   - all_reduce (sum, avg), reduce_scatter (plain, accumulate), all_gather (in place), broadcast,
//     all_gather_async (communication stream + event) on a bf16 and an f32 tensor give the world-1 results
//   - ZeRO-3 (gather-all, bucketed reduce-scatter, shard step, release) on cuda:0 equals ZeRO-0 bit
//     for bit after 3 AdamW steps of a small MLP, with a frozen layer and 59 trainable elements
#include <cstdio>
#include <cstring>

#include "vt/autograd.h"
#include "vt/cuda.h"
#include "vt/dist/process_group.h"
#include "vt/ops.h"
#include "vt/optim/zero.h"
#include "vt/philox.h"

using namespace vt;

static int failures = 0;
#define EXPECT(c, msg)                                                     \
  do {                                                                     \
    if (!(c)) {                                                            \
      ++failures;                                                          \
      std::fprintf(stderr, "FAILED %s:%d: %s: %s\n", __FILE__, __LINE__, #c, msg); \
    }                                                                      \
  } while (0)

static bool same(const Tensor& a, const Tensor& b) {
  const Tensor x = a.to(Device::cpu()).contiguous(), y = b.to(Device::cpu()).contiguous();
  return x.nbytes() == y.nbytes() && std::memcmp(x.raw_data(), y.raw_data(), x.nbytes()) == 0;
}

static std::vector<Tensor> run(int stage, dist::ProcessGroup& /*unused*/, std::shared_ptr<dist::ProcessGroup> pg) {
  const Device dev = Device::cuda(0);
  Generator gen(42);
  Tensor w0 = (randn({4, 4}, DType::F32, &gen) * 0.5).to(dev);
  Tensor w1 = (randn({7, 4}, DType::F32, &gen) * 0.5).to(dev), b1 = (randn({7}, DType::F32, &gen) * 0.1).to(dev);
  Tensor w2 = (randn({3, 7}, DType::F32, &gen) * 0.5).to(dev), b2 = (randn({3}, DType::F32, &gen) * 0.1).to(dev);
  for (Tensor* t : {&w1, &b1, &w2, &b2}) t->requires_grad_(true);
  optim::ParamGroupSpec g;
  g.params = {w0, w1, b1, w2, b2};
  g.options.lr = 1e-2;
  optim::ZeroOptions zo;
  zo.stage = stage;
  zo.bucket_elements = 4;
  optim::ZeroOptimizer zero({g}, pg, zo);
  for (int s = 0; s < 3; ++s) {
    zero.gather_parameters();
    Generator data(100 + s);
    const Tensor x = randn({2, 4}, DType::F32, &data).to(dev), t = randn({2, 3}, DType::F32, &data).to(dev);
    Tensor h = tanh(matmul(tanh(matmul(x, w0.t())), w1.t()) + b1);
    mean(square(matmul(h, w2.t()) + b2 - t)).backward();
    zero.reduce_gradients();
    zero.clip_grad_norm(0.5);
    zero.step();
    zero.zero_grad();
  }
  zero.gather_parameters();
  std::vector<Tensor> out;
  for (const Tensor& p : {w1, b1, w2, b2}) out.push_back(p.detach().to(Device::cpu()).clone());
  return out;
}

int main() {
  if (!dist::nccl_available() || !cuda::is_available()) {
    std::printf("test_nccl: no GPU or no NCCL in this build: skipped\n");
    return 77;
  }
  std::shared_ptr<dist::ProcessGroup> pg = dist::make_nccl_group(dist::nccl_unique_id(), 0, 1, 0);
  const Device dev = Device::cuda(0);
  Generator gen(7);
  for (DType dt : {DType::F32, DType::BF16}) {
    const Tensor x = randn({8}, DType::F32, &gen).to(dt).to(dev);
    Tensor y = x.clone();
    pg->all_reduce(y, dist::ReduceOp::Sum);
    EXPECT(same(y, x), "all_reduce sum");
    pg->all_reduce(y, dist::ReduceOp::Avg);
    EXPECT(same(y, x), "all_reduce avg");
    Tensor out = empty({8}, TensorOptions(dt, dev));
    pg->reduce_scatter(x, out);
    EXPECT(same(out, x), "reduce_scatter");
    Tensor acc = x.clone();
    pg->reduce_scatter(x, acc, dist::ReduceOp::Sum, /*accumulate=*/true);
    EXPECT(same(acc, add(x, x)), "reduce_scatter accumulate");
    Tensor g = x.clone();
    pg->all_gather(g, g);
    EXPECT(same(g, x), "all_gather in place");
    Tensor b = x.clone();
    pg->broadcast(b, 0);
    EXPECT(same(b, x), "broadcast");
    // all_gather_async: queued on the communication stream after the current one (which wrote x2);
    // wait() orders the current stream after the gather, so the copy below reads the gathered bytes.
    const Tensor x2 = mul(x, 2.0);
    Tensor gathered = empty({8}, TensorOptions(dt, dev));
    std::unique_ptr<dist::Work> work = pg->all_gather_async(x2, gathered);
    work->wait();
    EXPECT(same(gathered.clone(), x2), "all_gather_async");
  }
  pg->barrier();
  const std::vector<Tensor> z0 = run(0, *pg, pg), z3 = run(3, *pg, pg);
  for (size_t i = 0; i < z0.size(); ++i) EXPECT(same(z0[i], z3[i]), "ZeRO-3 differs from ZeRO-0 on one GPU");
  std::printf("test_nccl: %s\n", failures == 0 ? "passed" : "FAILED");
  return failures == 0 ? 0 : 1;
}
