// The tensor-core flash-attention kernels (cuda/flash_attention_{fwd,bwd}.cu) against the CPU
// attention kernels and against the CUDA fallback kernels (cuda/nn_attention.cu, forced with
// VT_ATTENTION_FALLBACK=1), called through the kernel registry with the AttentionRows contract
// (include/vt/nn/attention.h), so that lse is checked too.
//
// One table of cases: bf16 and f16, head dims 64 and 128, every structural mask (causal,
// causal-from-end down to Tq = 1, block-causal with Infinity's scale lengths and padding, varlen
// with odd segments and an empty key segment, none with Tq != Tk), GQA ratios 1, 2 and 7, lengths
// that are not multiples of the 64-row tiles, rows that see no key, and q, k, v, dout read in place
// from (B, T, H, D) storage. Outputs are poisoned with NaN first (every element must be written);
// errors are measured relative to the largest reference magnitude, as bf16 work needs; two
// backward runs must give the same bits. Every case passes with a message when no GPU is visible.
#ifdef VT_WITH_CUDA
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "attention_rows.h"
#include "cuda_test_util.h"
#ifdef VT_WITH_CUDNN
#include "../cuda/attention_cudnn.h"
#endif
#include "vt/backend.h"
#include "vt/nn/attention.h"
#include "vt/ops.h"
#include "vt/random.h"

using namespace vt;
using test::bytes_of;
using test::kCpu;
using test::kGpu;
using test::rows_of;

namespace {

using Mask = nn::AttentionMask;

struct Case {
  const char* name;
  int64_t B, Hq, Hkv, Tq, Tk;
  Mask mask;
  bool transposed = false;  // q, k, v, dout are (B, T, H, D) storage read as (B, H, T, D)
};

const std::vector<int64_t> kInfinityLengths = {1, 4, 16, 36, 64, 144};  // sum 265

std::vector<Case> cases() {
  return {
      {"causal T=200", 2, 2, 2, 200, 200, Mask::causal()},
      {"causal T=128 GQA 2, (B,T,H,D) storage", 1, 4, 2, 128, 128, Mask::causal(), true},
      {"causal T=1000 GQA 2 (many key tiles)", 1, 2, 1, 1000, 1000, Mask::causal()},
      {"causal_from_end Tq=37 Tk=300 GQA 7", 1, 7, 1, 37, 300, Mask::causal_from_end()},
      {"causal_from_end decode Tq=1 Tk=129", 2, 2, 1, 1, 129, Mask::causal_from_end()},
      {"causal_from_end Tq=100 > Tk=50: rows that see nothing", 1, 2, 2, 100, 50, Mask::causal_from_end()},
      {"block_causal Infinity 1..144 + 7 padding rows, (B,T,H,D)", 1, 2, 2, 272, 272,
       Mask::block_causal(kInfinityLengths), true},
      {"block_causal KV cache: the last scale (Tq=144 of Tk=265)", 2, 2, 1, 144, 265,
       Mask::block_causal(kInfinityLengths)},
      {"varlen segments 37, 1, 103, 59", 1, 2, 1, 200, 200, Mask::varlen({0, 37, 38, 141, 200})},
      {"varlen q != k, an empty key segment (rows that see nothing)", 1, 2, 2, 131, 150,
       Mask::varlen({0, 20, 50, 131}, {0, 0, 77, 150})},
      {"none: cross attention Tq=77 Tk=190, (B,T,H,D)", 2, 2, 2, 77, 190, Mask::none(), true},
      {"none: one exact tile T=64", 1, 1, 1, 64, 64, Mask::none()},
  };
}

struct Inputs {
  Tensor q, k, v, dout;  // CPU, (B, H, T, D) views
};

// Random inputs (never zeros); with `transposed` each is a view of (B, T, H, D) storage.
Inputs make_inputs(const Case& c, int64_t D, DType dt, uint64_t seed) {
  auto make = [&](int64_t H, int64_t T, uint64_t s) {
    Generator g(s);
    if (c.transposed) return randn({c.B, T, H, D}, DType::F32, &g).to(dt).transpose(1, 2);
    return randn({c.B, H, T, D}, DType::F32, &g).to(dt);
  };
  return {make(c.Hq, c.Tq, seed), make(c.Hkv, c.Tk, seed + 1), make(c.Hkv, c.Tk, seed + 2),
          make(c.Hq, c.Tq, seed + 3)};
}

// Moves a (B, H, T, D) view to `d` keeping its storage layout (a transposed view stays one).
Tensor to_device(const Tensor& t, bool transposed, Device d) {
  return transposed ? t.transpose(1, 2).to(d).transpose(1, 2) : t.to(d);
}

struct Result {
  Tensor out, lse, dq, dk, dv;  // on the CPU
};

Result run(const Case& c, const Inputs& in, const nn::AttentionRows& rows, Device dev, int backward_runs = 1,
           bool* deterministic = nullptr) {
  const Tensor q = to_device(in.q, c.transposed, dev), k = to_device(in.k, c.transposed, dev);
  const Tensor v = to_device(in.v, c.transposed, dev), dout = to_device(in.dout, c.transposed, dev);
  const DType dt = q.dtype();
  const int64_t D = q.size(3);
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  Tensor out = empty({c.B, c.Hq, c.Tq, D}, {dt, dev}), lse = empty({c.B, c.Hq, c.Tq}, {DType::F32, dev});
  fill_(out, NAN), fill_(lse, NAN);
  kernels::get<nn::AttentionForwardFn>("attention_forward", dev)(q, k, v, rows, scale, out, lse);
  Result r{out.to(kCpu), lse.to(kCpu), {}, {}, {}};
  for (int run = 0; run < backward_runs; ++run) {
    Tensor dq = empty(q.shape(), {dt, dev}), dk = empty(k.shape(), {dt, dev}), dv = empty(v.shape(), {dt, dev});
    fill_(dq, NAN), fill_(dk, NAN), fill_(dv, NAN);
    kernels::get<nn::AttentionBackwardFn>("attention_backward", dev)(q, k, v, out, lse, dout, rows, scale, dq, dk,
                                                                     dv);
    if (run == 0) {
      r.dq = dq.to(kCpu), r.dk = dk.to(kCpu), r.dv = dv.to(kCpu);
    } else if (deterministic) {
      *deterministic = *deterministic && bytes_of(dq) == bytes_of(r.dq) && bytes_of(dk) == bytes_of(r.dk) &&
                       bytes_of(dv) == bytes_of(r.dv);
    }
  }
  return r;
}

// "" when |got - want| <= tol * max|want| everywhere (infinities must match exactly, NaN never
// passes); else the worst element.
std::string close(const Tensor& got, const Tensor& want, double tol) {
  const std::vector<double> g = got.to(DType::F64).tolist<double>(), w = want.to(DType::F64).tolist<double>();
  if (g.size() != w.size()) return "sizes differ: " + got.shape().str() + " vs " + want.shape().str();
  double ref = 0;
  for (double x : w)
    if (std::isfinite(x)) ref = std::max(ref, std::fabs(x));
  const double lim = tol * std::max(ref, 1e-6);
  size_t worst = 0;
  double worst_err = -1;
  for (size_t i = 0; i < g.size(); ++i) {
    if (std::isnan(g[i]) || (std::isinf(w[i]) && g[i] != w[i]) || (std::isinf(g[i]) && g[i] != w[i]))
      return "element " + std::to_string(i) + ": got " + std::to_string(g[i]) + ", want " + std::to_string(w[i]);
    if (std::isinf(w[i])) continue;
    const double e = std::fabs(g[i] - w[i]);
    if (e > worst_err) worst_err = e, worst = i;
  }
  if (worst_err <= lim) return "";
  return "max error " + std::to_string(worst_err) + " > " + std::to_string(lim) + " (tol " + std::to_string(tol) +
         " x max|want| " + std::to_string(ref) + ") at element " + std::to_string(worst) + ": got " +
         std::to_string(g[worst]) + ", want " + std::to_string(w[worst]);
}

// Checks every output of `got` against `want`; failures name the case and the tensor.
void check_result(const std::string& label, const Result& got, const Result& want) {
  const std::pair<const char*, std::pair<Tensor, Tensor>> pairs[] = {
      {"out", {got.out, want.out}}, {"dq", {got.dq, want.dq}}, {"dk", {got.dk, want.dk}}, {"dv", {got.dv, want.dv}}};
  for (const auto& [name, p] : pairs) {
    const std::string m = close(p.first, p.second, 2e-2);
    CHECK_MESSAGE(m.empty(), label, ": ", name, ": ", m);
  }
  const std::string m = close(got.lse, want.lse, 1e-3);
  CHECK_MESSAGE(m.empty(), label, ": lse: ", m);
}

}  // namespace

TEST_CASE("cuda flash attention: matches the CPU and the CUDA fallback kernels on every mask, dtype, head dim") {
  VT_SKIP_WITHOUT_GPU();
  unsetenv("VT_ATTENTION_FALLBACK");
  int n = 0, differs_from_fallback = 0;
  uint64_t seed = 1000;
  for (const Case& c : cases())
    for (DType dt : {DType::BF16, DType::F16})
      for (int64_t D : {64, 128}) {
        const std::string label =
            std::string(c.name) + " [" + std::string(dtype_name(dt)) + ", D=" + std::to_string(D) + "]";
        CAPTURE(label);
        const Inputs in = make_inputs(c, D, dt, seed += 10);
        const nn::AttentionRows rows = rows_of(c.mask, c.Tq, c.Tk);
        bool deterministic = true;
        const Result flash = run(c, in, rows, kGpu, 2, &deterministic);
        const Result cpu = run(c, in, rows, kCpu);
        Result fallback;
        {
          const test::ScopedEnv use_fallback("VT_ATTENTION_FALLBACK", "1");  // cuda/nn_attention.cu's kernels
          fallback = run(c, in, rows, kGpu);
        }
        check_result(label + " vs CPU", flash, cpu);
        check_result(label + " vs CUDA fallback", flash, fallback);
        CHECK_MESSAGE(deterministic, label, ": two backward runs differ");
        differs_from_fallback += bytes_of(flash.out) != bytes_of(fallback.out);
        ++n;
      }
  MESSAGE(n, " flash attention cases checked against the CPU and the CUDA fallback");
  // The tensor cores round P to 16 bits before P V, the fallback keeps it in f32: identical bits
  // everywhere would mean the flash path never ran.
  CHECK_MESSAGE(differs_from_fallback > n / 2, "the flash path seems not to run: ", differs_from_fallback, " of ", n,
                " outputs differ from the fallback's");
}

TEST_CASE("cuda flash attention: the atomic-dQ backward (VT_FLASH_BWD=atomic) matches the CPU on every mask") {
  VT_SKIP_WITHOUT_GPU();
  unsetenv("VT_ATTENTION_FALLBACK");
  int n = 0, dq_differs = 0;
  uint64_t seed = 5000;
  for (const Case& c : cases())
    for (DType dt : {DType::BF16, DType::F16})
      for (int64_t D : {64, 128}) {
        const std::string label =
            std::string(c.name) + " [" + std::string(dtype_name(dt)) + ", D=" + std::to_string(D) + ", atomic dQ]";
        CAPTURE(label);
        const Inputs in = make_inputs(c, D, dt, seed += 10);
        const nn::AttentionRows rows = rows_of(c.mask, c.Tq, c.Tk);
        const Result deterministic = run(c, in, rows, kGpu);
        Result atomic;
        {
          const test::ScopedEnv atomic_dq("VT_FLASH_BWD", "atomic");
          atomic = run(c, in, rows, kGpu);
        }
        check_result(label + " vs CPU", atomic, run(c, in, rows, kCpu));
        // dK and dV come from the same kernel code with the same order: identical bits.
        CHECK_MESSAGE(bytes_of(atomic.dk) == bytes_of(deterministic.dk), label, ": dk differs from the default path");
        CHECK_MESSAGE(bytes_of(atomic.dv) == bytes_of(deterministic.dv), label, ": dv differs from the default path");
        dq_differs += bytes_of(atomic.dq) != bytes_of(deterministic.dq);
        ++n;
      }
  MESSAGE(n, " cases; the atomic dQ differs in some bits from the deterministic one in ", dq_differs);
}

#ifdef VT_WITH_CUDNN
// cuDNN's fused SDPA (cuda/attention_cudnn.h), opted into with VT_ATTENTION_CUDNN, on the cases of
// the table whose mask it takes (none, top-left causal): both backward variants against the CPU;
// the deterministic one must repeat its bits. The run counters prove cuDNN ran every call.
TEST_CASE("cuda attention on cuDNN (VT_ATTENTION_CUDNN=1 / deterministic) matches the CPU") {
  VT_SKIP_WITHOUT_GPU();
  unsetenv("VT_ATTENTION_FALLBACK");
  int n = 0;
  uint64_t seed = 9000;
  for (const Case& c : cases()) {
    if (c.mask.kind != Mask::Kind::None && c.mask.kind != Mask::Kind::Causal) continue;
    // bf16 with D 128 and f16 with D 64: every (dtype, head dim) pair would double the plans cuDNN
    // compiles at first use (about a second each) for little more coverage.
    for (const char* mode : {"1", "deterministic"})
      for (const auto& [dt, D] : {std::pair{DType::BF16, int64_t{128}}, std::pair{DType::F16, int64_t{64}}}) {
        const std::string label = std::string(c.name) + " [" + std::string(dtype_name(dt)) +
                                  ", D=" + std::to_string(D) + ", VT_ATTENTION_CUDNN=" + mode + "]";
        CAPTURE(label);
        const Inputs in = make_inputs(c, D, dt, seed += 10);
        const nn::AttentionRows rows = rows_of(c.mask, c.Tq, c.Tk);
        const bool det_mode = std::string(mode) == "deterministic";
        bool deterministic = true;
        const auto before = cuda::cudnn::sdpa_runs();
        Result got;
        {
          const test::ScopedEnv use_cudnn("VT_ATTENTION_CUDNN", mode);
          got = run(c, in, rows, kGpu, det_mode ? 2 : 1, &deterministic);
        }
        const auto after = cuda::cudnn::sdpa_runs();
        CHECK_MESSAGE(after[0] == before[0] + 1, label, ": the forward did not run on cuDNN (see stderr)");
        CHECK_MESSAGE(after[1] == before[1] + (det_mode ? 2 : 1), label, ": the backward did not run on cuDNN");
        check_result(label + " vs CPU", got, run(c, in, rows, kCpu));
        if (det_mode) CHECK_MESSAGE(deterministic, label, ": two deterministic backward runs differ");
        ++n;
      }
  }
  MESSAGE(n, " cuDNN attention cases checked against the CPU");
  CHECK(n >= 20);
}
#endif

TEST_CASE("cuda flash attention: scaled_dot_product_attention with autograd on (B,T,H,D) views matches the CPU") {
  VT_SKIP_WITHOUT_GPU();
  unsetenv("VT_ATTENTION_FALLBACK");
  const int64_t B = 2, T = 150, Hq = 4, Hkv = 2, D = 128;
  auto grads = [&](Device d) {
    Generator g(7);
    auto make = [&](int64_t H) {
      return randn({B, T, H, D}, DType::F32, &g).to(DType::BF16).to(d).requires_grad_();
    };
    Tensor q = make(Hq), k = make(Hkv), v = make(Hkv);
    Tensor gout = randn({B, Hq, T, D}, DType::F32, &g).to(DType::BF16).to(d);
    Tensor y = nn::scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                Mask::causal());
    y.backward(gout);
    return std::vector<Tensor>{y.detach().to(kCpu), q.grad().to(kCpu), k.grad().to(kCpu), v.grad().to(kCpu)};
  };
  const auto gpu = grads(kGpu), cpu = grads(kCpu);
  const char* names[] = {"out", "dq", "dk", "dv"};
  for (int i = 0; i < 4; ++i) {
    const std::string m = close(gpu[i], cpu[i], 2e-2);
    CHECK_MESSAGE(m.empty(), names[i], ": ", m);
  }
}

#else
#include "test_skip.h"

TEST_CASE("cuda flash attention: CUDA is not built") { VT_SKIP("vt was built without CUDA (VT_CUDA=OFF or no nvcc)"); }
#endif
