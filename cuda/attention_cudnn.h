// attention_cudnn.h: scaled dot-product attention on cuDNN's fused flash-attention engines (cuDNN
// >= 9 on sm_80+; the Hopper engines use wgmma and TMA, which vt's own mma.sync kernels do not).
// Opt-in: VT_ATTENTION_CUDNN=1 routes the calls it can take (bf16/f16, head dim 64 or 128, at
// least 64 query rows, no mask or top-left causal, no dense mask) here; everything else, and any
// shape cuDNN declines, stays on vt's flash kernels.
//
// The graphs (attention_cudnn_graph.cpp) spell out SDPA as cuDNN's pattern matcher expects it, in
// the order cuDNN's own frontend lowers its SDPA node (cudnn-frontend, CompositeSDPANode):
//
//   forward    S = (Q K^T) * scale;  S = causal ? (row >= col ? S : -inf) : S
//              M = max_j S;  E = exp(S - M);  L = sum_j E;  stats = M + log L  (= vt's lse)
//              O = (E / L, rounded to q's dtype) V
//   backward   Dsum = sum_d dO * O  (f32, in a scratch buffer)
//              P = exp(S - stats);  dV = P^T dO;  dS = P * (dO V^T - Dsum) * scale
//              dK = dS^T Q;  dQ = dS K   (f32 scratch dQacc then a cast, unless deterministic)
//
// K and V enter transposed (dims (B, H, D, T), strides swapped), as the backend wants K^T (and V^T
// in the backward). GQA: the forward matmuls broadcast KV heads over their query group; the
// backward computes dK, dV per query head and sums each group with a reduction.
//
// Determinism: with VT_ATTENTION_CUDNN=deterministic the backward is built the way cuDNN's frontend
// asks for its deterministic algorithm (dQ straight from the dS K product, dP in the workspace) and
// engines that cuDNN marks NONDETERMINISTIC are skipped; =1 takes the fastest engine, whose dQ is
// accumulated with atomics and so may differ in the last bits from run to run (as torch's flash
// backward). vt's own kernels are deterministic.
#pragma once
#ifdef VT_WITH_CUDNN
#include <array>
#include <atomic>
#include <cstdint>
#include <optional>

#include "cudnn_graph.h"
#include "vt/nn/attention.h"

namespace vt::cuda::cudnn {

// One SDPA call as the graphs need it. Strides are in elements, dims (B, H, T, D) order.
struct SdpaDims {
  cudnnDataType_t type = CUDNN_DATA_BFLOAT16;
  int64_t B = 0, Hq = 0, Hkv = 0, Tq = 0, Tk = 0, D = 0;
  std::array<int64_t, 4> q{}, k{}, v{}, dout{};  // dout: backward only
  bool causal = false;
};

// A built graph and the uids of its tensors (0: not in this graph). softmax_sum and dq_accum are
// f32 scratch tensors that the caller provides (bytes given).
struct SdpaGraph {
  Graph graph;
  int64_t q = 0, k = 0, v = 0, o = 0, stats = 0, dout = 0, dq = 0, dk = 0, dv = 0;
  int64_t scale = 0, neg_inf = 0, one = 0, softmax_sum = 0, dq_accum = 0;
  int64_t softmax_sum_bytes = 0, dq_accum_bytes = 0;
};

SdpaGraph sdpa_forward_graph(const SdpaDims& d);
SdpaGraph sdpa_backward_graph(const SdpaDims& d, bool deterministic);

// ---- runtime (attention_cudnn.cpp) -----------------------------------------------------------------
// A call as the graphs see it, or nullopt when they cannot take it: not bf16/f16, head dim not 64
// or 128, rows not 16-byte aligned, fewer than 64 query rows, a dense mask, or key ranges other
// than every key or top-left causal (whatever AttentionMask produced them). dout: backward only.
std::optional<SdpaDims> sdpa_dims(const Tensor& q, const Tensor& k, const Tensor& v, const nn::AttentionRows& rows,
                                  const Tensor* dout);

// The CUDA attention kernels call these first. False: not wanted (VT_ATTENTION_CUDNN unset), or
// cuDNN cannot take this call; the caller runs its own kernel then. Declined shapes are remembered,
// and reported once on stderr with cuDNN's reasons.
bool sdpa_forward(const Tensor& q, const Tensor& k, const Tensor& v, const nn::AttentionRows& rows, double scale,
                  const Tensor& out, const Tensor& lse);
bool sdpa_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                   const Tensor& dout, const nn::AttentionRows& rows, double scale, const Tensor& dq,
                   const Tensor& dk, const Tensor& dv);

// How many forward and backward calls cuDNN ran (tests check that the path they mean was taken).
std::array<int64_t, 2> sdpa_runs();

}  // namespace vt::cuda::cudnn
#endif
