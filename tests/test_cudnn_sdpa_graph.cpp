// The fused-attention graphs of cuda/attention_cudnn_graph.cpp, planned by cuDNN for an H100 without
// a GPU (cuDNN's deviceless planning, cuDNN >= 9.11): cuDNN's heuristics must offer an engine for
// every graph vt builds (forward; backward, fast and deterministic; no mask and causal; MHA and
// GQA; head dims 64 and 128; (B, H, T, D) and (B, T, H, D) storage), and the engine must accept it
// up to compiling its kernel. With the CUDA toolkit's stub driver first on the library path (CMake
// sets that up for CTest; VT_CUDA_STUB=1 says so), loading the compiled kernel is the one step
// that fails, with CUDNN_STATUS_EXECUTION_FAILED_CUDA_DRIVER; with a real driver the plan is
// built. A graph cuDNN's engines do not cover (P in f32 for P V) must be declined: the check can fail.
// Numbers and masks are checked on a GPU by test_cuda_flash_attention.
#if defined(VT_WITH_CUDA) && defined(VT_WITH_CUDNN)
#include <doctest/doctest.h>

#include <cstdlib>
#include <string>

#include "../cuda/attention_cudnn.h"

using namespace vt::cuda::cudnn;

namespace {

// (B, Hq, Hkv, T, D) in (B, H, T, D) storage, or read from (B, T, H, D) storage when `bthd`.
SdpaDims dims(int64_t B, int64_t Hq, int64_t Hkv, int64_t T, int64_t D, bool causal, bool bthd) {
  SdpaDims d;
  d.B = B, d.Hq = Hq, d.Hkv = Hkv, d.Tq = d.Tk = T, d.D = D, d.causal = causal;
  auto strides = [&](int64_t H) -> std::array<int64_t, 4> {
    if (bthd) return {T * H * D, D, H * D, 1};
    return {H * T * D, T * D, D, 1};
  };
  d.q = d.dout = strides(Hq), d.k = d.v = strides(Hkv);
  return d;
}

enum class Outcome { Planned, CompiledStubDriver, Declined };

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
  if (!props) {
    MESSAGE("cuDNN ", cudnnGetVersion(), " cannot plan without a device (needs 9.11): skipped");
    return;
  }
  const bool stub = std::getenv("VT_CUDA_STUB") != nullptr;
  struct Shape {
    int64_t B, Hq, Hkv, T, D;
    bool causal, bthd;
  };
  const Shape shapes[] = {
      {4, 16, 16, 2048, 128, true, false},  // the benchmark's shape
      {2, 8, 2, 300, 64, true, true},       // GQA 4, T not a multiple of 64, (B, T, H, D) storage
      {1, 4, 4, 77, 128, false, true},      // no mask
      {2, 7, 1, 129, 64, false, false},     // GQA 7 (MQA), no mask
  };
  int compiled = 0, planned = 0;
  for (const Shape& s : shapes)
    for (int pass = 0; pass < 3; ++pass) {  // forward, backward, deterministic backward
      const SdpaDims d = dims(s.B, s.Hq, s.Hkv, s.T, s.D, s.causal, s.bthd);
      const std::string label = std::string(pass == 0 ? "forward" : pass == 1 ? "backward" : "deterministic backward") +
                                " B=" + std::to_string(s.B) + " Hq=" + std::to_string(s.Hq) +
                                " Hkv=" + std::to_string(s.Hkv) + " T=" + std::to_string(s.T) +
                                " D=" + std::to_string(s.D) + (s.causal ? " causal" : " no mask") +
                                (s.bthd ? " (B,T,H,D)" : "");
      CAPTURE(label);
      const SdpaGraph g = pass == 0 ? sdpa_forward_graph(d) : sdpa_backward_graph(d, pass == 2);
      PlanReport rep;
      const Outcome o = plan(g, *props, pass == 2, rep);
      if (!stub && o == Outcome::Declined && rep.offered == 0) {
        // Without a driver library cuDNN filters every runtime-compiled engine out: nothing to
        // learn beyond the operation graph having been accepted (it was, or make_plan threw).
        MESSAGE(label, ": no CUDA driver library to compile against; only the operation graph was checked");
        continue;
      }
      CHECK_MESSAGE(o != Outcome::Declined, label, ": ", rep.text);
      compiled += o == Outcome::CompiledStubDriver, planned += o == Outcome::Planned;
    }
  MESSAGE(compiled, " graphs compiled by cuDNN (module load refused by the stub driver), ", planned, " planned");

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

#else
#include <doctest/doctest.h>

TEST_CASE("cuDNN SDPA graphs: not built") {
  MESSAGE("vt was built without CUDA or cuDNN: nothing to test");
}
#endif
