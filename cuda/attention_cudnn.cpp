// attention_cudnn.cpp: running the SDPA graphs of attention_cudnn_graph.cpp (see attention_cudnn.h):
// which calls qualify, a plan cache per shape, scratch buffers, execution on the current stream.
#ifdef VT_WITH_CUDNN
#include "attention_cudnn.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>

#include "allocator.h"
#include "device.h"
#include "flash_attention.cuh"

namespace vt::cuda::cudnn {
namespace {

std::atomic<int64_t> g_runs[2];

enum class Mode { Off, Fast, Deterministic };
Mode mode() {
  const char* e = env_switch("VT_ATTENTION_CUDNN");
  if (!e) return Mode::Off;
  return std::strcmp(e, "deterministic") == 0 ? Mode::Deterministic : Mode::Fast;
}

// The mask the graphs can express: every key (false), top-left causal (true), or neither.
std::optional<bool> causal_of(const nn::AttentionRows& rows, int64_t Tq, int64_t Tk) {
  if (rows.dense.defined()) return std::nullopt;
  if (rows.key_begin.empty()) return false;
  bool full = true, causal = true;
  for (int64_t i = 0; i < Tq && (full || causal); ++i) {
    const int64_t b = std::max<int64_t>(rows.key_begin[i], 0), e = std::min(rows.key_end[i], Tk);
    full = full && b == 0 && e == Tk;
    causal = causal && b == 0 && e == std::min(i + 1, Tk);
  }
  if (full) return false;
  if (causal) return true;
  return std::nullopt;
}

std::array<int64_t, 4> strides4(const Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2), 1}; }

}  // namespace

std::optional<SdpaDims> sdpa_dims(const Tensor& q, const Tensor& k, const Tensor& v, const nn::AttentionRows& rows,
                                  const Tensor* dout) {
  if (!flash::flash_supports(q, k, v, rows, dout)) return std::nullopt;  // bf16/f16, D 64 or 128, 16-byte rows
  // Decoding (a few query rows against a long cache) stays on vt's kernels, whose speed there
  // bench_gpu_models measures; the fused engines are meant for training and prefill shapes.
  if (q.size(2) < 64) return std::nullopt;
  const std::optional<bool> causal = causal_of(rows, q.size(2), k.size(2));
  if (!causal) return std::nullopt;
  SdpaDims d;
  d.type = q.dtype() == DType::BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_HALF;
  d.B = q.size(0), d.Hq = q.size(1), d.Hkv = k.size(1), d.Tq = q.size(2), d.Tk = k.size(2), d.D = q.size(3);
  d.q = strides4(q), d.k = strides4(k), d.v = strides4(v);
  if (dout) d.dout = strides4(*dout);
  d.causal = *causal;
  // A batch of one may carry any batch stride (a view's); give cuDNN the one a contiguous batch
  // would have, the span of one (H, T, D) block, so its strides still order the dims as stored.
  if (d.B == 1) {
    const auto span = [&](std::array<int64_t, 4>& s, int64_t H, int64_t T) {
      s[0] = std::max({s[1] * H, s[2] * T, d.D});
    };
    span(d.q, d.Hq, d.Tq), span(d.k, d.Hkv, d.Tk), span(d.v, d.Hkv, d.Tk);
    if (dout) span(d.dout, d.Hq, d.Tq);
  }
  return d;
}

namespace {

// A built graph and its plan (null: cuDNN declined it), per (device, pass, dims).
struct Entry {
  SdpaGraph graph;
  std::unique_ptr<Plan> plan;
};

Entry& entry_for(int device, int pass, const SdpaDims& d, cudnnHandle_t h) {
  static std::map<std::vector<int64_t>, std::unique_ptr<Entry>> cache;  // under mutex()
  std::vector<int64_t> key = {device, pass, d.type, d.B, d.Hq, d.Hkv, d.Tq, d.Tk, d.D, d.causal};
  for (const auto* s : {&d.q, &d.k, &d.v, &d.dout}) key.insert(key.end(), s->begin(), s->end());
  std::unique_ptr<Entry>& e = cache[key];
  if (e) return *e;
  e = std::make_unique<Entry>();
  std::vector<cudnnBackendNumericalNote_t> exclude;
  if (pass == 2) exclude.push_back(CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC);
  PlanReport why;
  try {  // a graph this cuDNN rejects outright (an older version, say) is declined like any other
    e->graph = pass == 0 ? sdpa_forward_graph(d) : sdpa_backward_graph(d, pass == 2);
    e->plan = make_plan(e->graph.graph, h, nullptr, exclude, &why);
  } catch (const Error& err) {
    e->plan = nullptr, why.text = err.what();
  }
  if (!e->plan)
    std::fprintf(stderr,
                 "vt: cuDNN SDPA %s declined B=%lld Hq=%lld Hkv=%lld Tq=%lld Tk=%lld D=%lld causal=%d (%s); "
                 "vt's flash kernels run it\n",
                 pass == 0 ? "forward" : "backward", (long long)d.B, (long long)d.Hq, (long long)d.Hkv,
                 (long long)d.Tq, (long long)d.Tk, (long long)d.D, int(d.causal), why.text.c_str());
  return *e;
}

// A graph tensor (by its uid field in SdpaGraph) and the device memory it reads or writes.
using Binding = std::pair<int64_t SdpaGraph::*, const void*>;

// Pass `pass` (0 forward, 1 backward, 2 deterministic backward) of call `d`: plans it once, then
// runs it on `bound` plus the by-value scalars and the scratch buffers, on the current stream of
// `device`. False when cuDNN declined the graph (the caller's own kernel runs it then).
bool run_pass(int device, int pass, const SdpaDims& d, double scale, const std::vector<Binding>& bound) {
  std::lock_guard<std::mutex> lock(mutex());
  cudnnHandle_t h = handle(device);
  const Entry& e = entry_for(device, pass, d, h);
  if (!e.plan) return false;
  const SdpaGraph& g = e.graph;
  std::vector<int64_t> uids;
  std::vector<void*> ptrs;
  for (const auto& [uid, ptr] : bound) uids.push_back(g.*uid), ptrs.push_back(const_cast<void*>(ptr));
  float scale_f = static_cast<float>(scale), neg_inf = -INFINITY, one = 1.f;
  uids.push_back(g.scale), ptrs.push_back(&scale_f);
  if (g.neg_inf) uids.push_back(g.neg_inf), ptrs.push_back(&neg_inf);
  if (g.one) uids.push_back(g.one), ptrs.push_back(&one);
  std::shared_ptr<void> sum, acc, ws;
  if (g.softmax_sum) {
    sum = allocate_workspace(g.softmax_sum_bytes, device);
    uids.push_back(g.softmax_sum), ptrs.push_back(sum.get());
  }
  if (g.dq_accum) {  // cuDNN accumulates dQ here with atomics: it must start at zero
    acc = allocate_workspace(g.dq_accum_bytes, device);
    VT_CUDA_CHECK(cudaMemsetAsync(acc.get(), 0, g.dq_accum_bytes, current_stream(device)));
    uids.push_back(g.dq_accum), ptrs.push_back(acc.get());
  }
  if (e.plan->workspace_bytes > 0) ws = allocate_workspace(e.plan->workspace_bytes, device);
  execute(h, *e.plan, uids, ptrs, ws.get());
  ++g_runs[pass == 0 ? 0 : 1];
  return true;
}

}  // namespace

bool sdpa_forward(const Tensor& q, const Tensor& k, const Tensor& v, const nn::AttentionRows& rows, double scale,
                  const Tensor& out, const Tensor& lse) {
  if (mode() == Mode::Off) return false;
  const std::optional<SdpaDims> d = sdpa_dims(q, k, v, rows, nullptr);
  return d && run_pass(q.device().index, 0, *d, scale,
                       {{&SdpaGraph::q, q.raw_data()}, {&SdpaGraph::k, k.raw_data()}, {&SdpaGraph::v, v.raw_data()},
                        {&SdpaGraph::o, out.raw_data()}, {&SdpaGraph::stats, lse.raw_data()}});
}

bool sdpa_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                   const Tensor& dout, const nn::AttentionRows& rows, double scale, const Tensor& dq,
                   const Tensor& dk, const Tensor& dv) {
  const Mode m = mode();
  if (m == Mode::Off) return false;
  const std::optional<SdpaDims> d = sdpa_dims(q, k, v, rows, &dout);
  return d && run_pass(q.device().index, m == Mode::Deterministic ? 2 : 1, *d, scale,
                       {{&SdpaGraph::q, q.raw_data()}, {&SdpaGraph::k, k.raw_data()}, {&SdpaGraph::v, v.raw_data()},
                        {&SdpaGraph::o, out.raw_data()}, {&SdpaGraph::dout, dout.raw_data()},
                        {&SdpaGraph::stats, lse.raw_data()}, {&SdpaGraph::dq, dq.raw_data()},
                        {&SdpaGraph::dk, dk.raw_data()}, {&SdpaGraph::dv, dv.raw_data()}});
}

std::array<int64_t, 2> sdpa_runs() { return {g_runs[0].load(), g_runs[1].load()}; }

}  // namespace vt::cuda::cudnn
#endif
