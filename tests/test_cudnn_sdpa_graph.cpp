// The fused-attention graphs of cuda/attention_cudnn_graph.cpp, planned by cuDNN for an H100 without
// a GPU (cuDNN's deviceless planning, cuDNN >= 9.11): cuDNN's heuristics must offer an engine for
// every graph vt builds (forward; backward, fast and deterministic; no mask and causal; MHA and
// GQA; head dims 64 and 128; (B, H, T, D) and (B, T, H, D) storage), and the engine must accept it
// up to compiling its kernel. With the CUDA toolkit's stub driver first on the library path (CMake
// sets that up for CTest; VT_CUDA_STUB=1 says so), loading the compiled kernel is the one step
// that fails, with CUDNN_STATUS_EXECUTION_FAILED_CUDA_DRIVER; with a real driver the plan is
// built. The stub CTest loads is tests/cuda_driver_shim.c, which keeps the names of the kernels
// cuDNN compiled: the first must be cuDNN's sm90 wgmma flash attention, forward or backward, as
// the graph asks. A graph cuDNN's engines do not cover (P in f32 for P V) must be declined: the
// check can fail.
// Numbers and masks are checked on a GPU by test_cuda_flash_attention.
#if defined(VT_WITH_CUDA) && defined(VT_WITH_CUDNN)
#include <dlfcn.h>

#include <cstdlib>
#include <string>

#include "../cuda/attention_cudnn.h"
#include "attention_rows.h"
#include "test_skip.h"
#include "vt/ops.h"

using namespace vt::cuda::cudnn;

namespace {

// (B, Hq, Hkv, Tq, Tk, D) in (B, H, T, D) storage, or read from (B, T, H, D) storage when `bthd`.
SdpaDims dims(int64_t B, int64_t Hq, int64_t Hkv, int64_t Tq, int64_t Tk, int64_t D, bool causal, bool bthd) {
  SdpaDims d;
  d.B = B, d.Hq = Hq, d.Hkv = Hkv, d.Tq = Tq, d.Tk = Tk, d.D = D, d.causal = causal;
  auto strides = [&](int64_t H, int64_t T) -> std::array<int64_t, 4> {
    if (bthd) return {T * H * D, D, H * D, 1};
    return {H * T * D, T * D, D, 1};
  };
  d.q = d.dout = strides(Hq, Tq), d.k = d.v = strides(Hkv, Tk);
  return d;
}

enum class Outcome { Planned, CompiledStubDriver, Declined };

// The kernels cuDNN compiled and tried to load, as tests/cuda_driver_shim.c (the libcuda.so.1 that
// CTest puts first on the library path) kept their names; absent when another driver, or none yet,
// is loaded (cuDNN loads it when it first needs it: look again after each plan).
struct ShimKernels {
  int (*count)() = nullptr;
  const char* (*name)(int) = nullptr;
  ShimKernels() {
    if (void* h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD)) {
      count = reinterpret_cast<int (*)()>(dlsym(h, "vt_shim_kernel_count"));
      name = reinterpret_cast<const char* (*)(int)>(dlsym(h, "vt_shim_kernel"));
    }
  }
  bool present() const { return count && name; }
};

Outcome plan(const SdpaGraph& g, const Desc& props, bool deterministic, PlanReport& rep) {
  std::vector<cudnnBackendNumericalNote_t> exclude;
  if (deterministic) exclude.push_back(CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC);
  if (make_plan(g.graph, nullptr, &props, exclude, &rep)) return Outcome::Planned;
  if (rep.tried.empty()) return Outcome::Declined;
  for (cudnnStatus_t s : rep.tried)
    if (s != CUDNN_STATUS_EXECUTION_FAILED_CUDA_DRIVER) return Outcome::Declined;
  return Outcome::CompiledStubDriver;
}

}  // namespace

TEST_CASE("cuDNN SDPA graphs: an engine takes every forward and backward graph vt builds (H100, deviceless)") {
  const auto props = h100_device_properties();
  if (!props) VT_SKIP("cuDNN ", cudnnGetVersion(), " cannot plan without a device (needs 9.11)");
  const bool stub = std::getenv("VT_CUDA_STUB") != nullptr;
  struct Shape {
    int64_t B, Hq, Hkv, Tq, Tk, D;
    bool causal, bthd;
  };
  const Shape shapes[] = {
      {4, 16, 16, 2048, 2048, 128, true, false},  // the benchmark's shape
      {2, 8, 2, 300, 300, 64, true, true},        // GQA 4, T not a multiple of 64, (B, T, H, D) storage
      {1, 4, 4, 77, 190, 128, false, true},       // no mask, cross attention (Tq != Tk)
      {2, 7, 1, 129, 129, 64, false, false},      // GQA 7 (MQA), no mask
  };
  int compiled = 0, planned = 0, named = 0;
  for (const Shape& s : shapes)
    for (int pass = 0; pass < 3; ++pass) {  // forward, backward, deterministic backward
      const SdpaDims d = dims(s.B, s.Hq, s.Hkv, s.Tq, s.Tk, s.D, s.causal, s.bthd);
      const std::string label = std::string(pass == 0 ? "forward" : pass == 1 ? "backward" : "deterministic backward") +
                                " B=" + std::to_string(s.B) + " Hq=" + std::to_string(s.Hq) +
                                " Hkv=" + std::to_string(s.Hkv) + " Tq=" + std::to_string(s.Tq) + " Tk=" + std::to_string(s.Tk) +
                                " D=" + std::to_string(s.D) + (s.causal ? " causal" : " no mask") +
                                (s.bthd ? " (B,T,H,D)" : "");
      CAPTURE(label);
      const SdpaGraph g = pass == 0 ? sdpa_forward_graph(d) : sdpa_backward_graph(d, pass == 2);
      PlanReport rep;
      const ShimKernels before;
      const int loaded_before = before.present() ? before.count() : 0;
      const Outcome o = plan(g, *props, pass == 2, rep);
      const ShimKernels shim;
      if (!stub && o == Outcome::Declined && rep.offered == 0) {
        // Without a driver library cuDNN filters every runtime-compiled engine out: nothing to
        // learn beyond the operation graph having been accepted (it was, or make_plan threw).
        // CTest loads the driver shim wherever CMake found the toolkit's stub (VT_CUDA_STUB).
        VT_SKIP(label, ": no CUDA driver library to compile against (run under CTest, which loads the "
                "driver shim, or set VT_CUDA_STUB=1 with tests/cuda_driver_shim.c on LD_LIBRARY_PATH)");
      }
      CHECK_MESSAGE(o != Outcome::Declined, label, ": ", rep.text);
      compiled += o == Outcome::CompiledStubDriver, planned += o == Outcome::Planned;
      // The engine cuDNN ranks first must be its Hopper flash attention (wgmma), not the sm80 one.
      if (o == Outcome::CompiledStubDriver && shim.present()) {
        REQUIRE(shim.count() > loaded_before);
        ++named;
        const std::string first = shim.name(loaded_before);
        CAPTURE(first);
        CHECK(first.find("sdpa_sm90_flash") != std::string::npos);
        CHECK(first.find("wgmma") != std::string::npos);
        CHECK(first.find(pass == 0 ? "fprop" : "bprop") != std::string::npos);
        if (s.Tq == 2048 && pass < 2) MESSAGE(label, ": cuDNN's first engine compiles ", first);
      }
    }
  MESSAGE(compiled, " graphs compiled by cuDNN (module load refused by the stub driver), ", planned, " planned");
  // Under CTest the stub is the shim (VT_CUDA_STUB): every compiled graph's engine was named.
  if (stub) CHECK_MESSAGE(named == compiled, "the driver shim named ", named, " of ", compiled, " compiled graphs");

  // The control: attention whose P enters the P V product in f32 (cuDNN's fused engines want it in
  // the I/O dtype) must be declined, so that an accepted graph means something.
  Graph bad;
  const int64_t B = 1, H = 2, T = 128, D = 64;
  const int64_t q = bad.tensor(CUDNN_DATA_BFLOAT16, {B, H, T, D}, {H * T * D, T * D, D, 1}, false);
  const int64_t kt = bad.tensor(CUDNN_DATA_BFLOAT16, {B, H, D, T}, {H * T * D, T * D, 1, D}, false);
  const int64_t v = bad.tensor(CUDNN_DATA_BFLOAT16, {B, H, T, D}, {H * T * D, T * D, D, 1}, false);
  const int64_t o = bad.tensor(CUDNN_DATA_BFLOAT16, {B, H, T, D}, {H * T * D, T * D, D, 1}, false);
  const int64_t s = bad.virtual_tensor(CUDNN_DATA_FLOAT, {B, H, T, T}, {H * T * T, T * T, T, 1});
  const int64_t p = bad.virtual_tensor(CUDNN_DATA_FLOAT, {B, H, T, T}, {H * T * T, T * T, T, 1});
  bad.matmul(q, kt, s);
  bad.pointwise(CUDNN_POINTWISE_EXP, s, p);
  bad.matmul(p, v, o);
  SdpaGraph control;
  control.graph = std::move(bad);
  PlanReport rep;
  CHECK_MESSAGE(plan(control, *props, false, rep) == Outcome::Declined, "P in f32: ", rep.text);
}

// Which calls the cuDNN path takes (sdpa_dims): the masks are judged by their key ranges, whatever
// AttentionMask kind produced them; every other call stays on vt's kernels. CPU tensors stand in
// for device ones (the routing reads only dtypes, shapes, strides and addresses).
TEST_CASE("cuDNN SDPA routing: takes no mask and top-left causal, bf16/f16, D 64/128, Tq >= 64; keeps strides") {
  using vt::nn::AttentionMask;
  const auto rows = vt::test::rows_of;
  const auto qkv = [](int64_t B, int64_t H, int64_t T, int64_t D, vt::DType dt) {
    return vt::empty({B, H, T, D}, {dt, vt::Device::cpu()});
  };
  const vt::DType bf16 = vt::DType::BF16;
  const vt::Tensor q = qkv(2, 8, 128, 64, bf16), k = qkv(2, 2, 128, 64, bf16), v = qkv(2, 2, 128, 64, bf16);

  const auto none = sdpa_dims(q, k, v, rows(AttentionMask::none(), 128, 128), nullptr);
  REQUIRE(none.has_value());
  CHECK(!none->causal);
  CHECK(none->type == CUDNN_DATA_BFLOAT16);
  CHECK((none->B == 2 && none->Hq == 8 && none->Hkv == 2 && none->Tq == 128 && none->Tk == 128 && none->D == 64));
  const auto causal = sdpa_dims(q, k, v, rows(AttentionMask::causal(), 128, 128), nullptr);
  REQUIRE(causal.has_value());
  CHECK(causal->causal);
  // causal_from_end with Tq == Tk is the same set of keys per row: taken, as causal.
  const auto from_end = sdpa_dims(q, k, v, rows(AttentionMask::causal_from_end(), 128, 128), nullptr);
  REQUIRE(from_end.has_value());
  CHECK(from_end->causal);

  // Declined: bottom-right causal with Tq < Tk, block-causal, varlen, a dense mask, f32, D 80,
  // fewer than 64 query rows.
  const vt::Tensor q64 = qkv(2, 8, 64, 64, bf16), k96 = qkv(2, 2, 96, 64, bf16), v96 = qkv(2, 2, 96, 64, bf16);
  CHECK(!sdpa_dims(q64, k96, v96, rows(AttentionMask::causal_from_end(), 64, 96), nullptr));
  CHECK(!sdpa_dims(q, k, v, rows(AttentionMask::block_causal({1, 4, 16, 36, 71}), 128, 128), nullptr));
  CHECK(!sdpa_dims(q, k, v, rows(AttentionMask::varlen({0, 60, 128}), 128, 128), nullptr));
  vt::nn::AttentionRows dense;
  dense.dense = vt::empty({2, 8, 128, 128}, {vt::DType::Bool, vt::Device::cpu()});
  CHECK(!sdpa_dims(q, k, v, dense, nullptr));
  const vt::DType f32 = vt::DType::F32;
  CHECK(!sdpa_dims(qkv(2, 8, 128, 64, f32), qkv(2, 2, 128, 64, f32), qkv(2, 2, 128, 64, f32), {}, nullptr));
  CHECK(!sdpa_dims(qkv(2, 8, 128, 80, bf16), qkv(2, 2, 128, 80, bf16), qkv(2, 2, 128, 80, bf16), {}, nullptr));
  CHECK(!sdpa_dims(qkv(2, 8, 63, 64, bf16), k, v, {}, nullptr));

  // (B, T, H, D) storage read as (B, H, T, D): the strides reach the graph unchanged; f16 maps to HALF.
  const vt::Tensor qs = vt::empty({2, 128, 8, 128}, {vt::DType::F16, vt::Device::cpu()}).transpose(1, 2);
  const vt::Tensor ks = vt::empty({2, 128, 2, 128}, {vt::DType::F16, vt::Device::cpu()}).transpose(1, 2);
  const auto t = sdpa_dims(qs, ks, ks, {}, &qs);
  REQUIRE(t.has_value());
  CHECK(t->type == CUDNN_DATA_HALF);
  CHECK(t->q == std::array<int64_t, 4>{128 * 8 * 128, 128, 8 * 128, 1});
  CHECK(t->k == std::array<int64_t, 4>{128 * 2 * 128, 128, 2 * 128, 1});
  CHECK(t->dout == t->q);
  // A batch of one: its batch stride becomes the span of one (H, T, D) block, in either storage.
  const vt::Tensor q1 = vt::empty({1, 128, 8, 64}, {bf16, vt::Device::cpu()}).transpose(1, 2);
  const vt::Tensor k1 = vt::empty({1, 2, 128, 64}, {bf16, vt::Device::cpu()});
  const auto one = sdpa_dims(q1, k1, k1, {}, nullptr);
  REQUIRE(one.has_value());
  CHECK(one->q == std::array<int64_t, 4>{128 * 8 * 64, 64, 8 * 64, 1});
  CHECK(one->k == std::array<int64_t, 4>{2 * 128 * 64, 128 * 64, 64, 1});
}

#else
#include "test_skip.h"

TEST_CASE("cuDNN SDPA graphs: not built") { VT_SKIP("vt was built without CUDA or cuDNN"); }
#endif
