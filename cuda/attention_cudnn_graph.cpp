// attention_cudnn_graph.cpp: the forward and backward SDPA operation graphs of attention_cudnn.h.
// Host code only (no device needed), so a machine without a GPU can plan them (deviceless).
#ifdef VT_WITH_CUDNN
#include "attention_cudnn.h"

#include "vt/error.h"

namespace vt::cuda::cudnn {
namespace {

using Dims = std::vector<int64_t>;
constexpr cudnnDataType_t kF32 = CUDNN_DATA_FLOAT;

// (B, H, T, D) with the last two dims swapped: the transposed operand the backend's matmul wants.
int64_t transposed(Graph& g, const SdpaDims& d, int64_t H, int64_t T, const std::array<int64_t, 4>& s) {
  return g.tensor(d.type, {d.B, H, d.D, T}, {s[0], s[1], s[3], s[2]}, false);
}

// Scores (B, Hq, Tq, Tk) f32, contiguous layout (virtual).
Dims score_dims(const SdpaDims& d) { return {d.B, d.Hq, d.Tq, d.Tk}; }
Dims score_strides(const SdpaDims& d) { return {d.Hq * d.Tq * d.Tk, d.Tq * d.Tk, d.Tk, 1}; }
// Per-row statistics (B, Hq, Tq, 1) f32.
Dims row_dims(const SdpaDims& d) { return {d.B, d.Hq, d.Tq, 1}; }
Dims row_strides(const SdpaDims& d) { return {d.Hq * d.Tq, d.Tq, 1, 1}; }

// S * scale.
int64_t scaled(Graph& g, const SdpaGraph& sg, const SdpaDims& d, int64_t s) {
  const int64_t y = g.virtual_tensor(kF32, score_dims(d), score_strides(d));
  g.pointwise(CUDNN_POINTWISE_MUL, s, y, sg.scale);
  return y;
}

// (causal) The top-left mask row >= col on a score tensor: the pattern of cuDNN's diagonal band
// mask (row and column indices generated inside the kernel, compared, then a select with -inf).
int64_t masked(Graph& g, const SdpaGraph& sg, const SdpaDims& d, int64_t x) {
  if (!d.causal) return x;
  const int64_t row = g.virtual_tensor(CUDNN_DATA_INT32, score_dims(d), score_strides(d));
  g.pointwise(CUDNN_POINTWISE_GEN_INDEX, x, row, 0, 0, kF32, 2);
  const int64_t col = g.virtual_tensor(CUDNN_DATA_INT32, score_dims(d), score_strides(d));
  g.pointwise(CUDNN_POINTWISE_GEN_INDEX, x, col, 0, 0, kF32, 3);
  const int64_t keep = g.virtual_tensor(CUDNN_DATA_BOOLEAN, score_dims(d), score_strides(d));
  g.pointwise(CUDNN_POINTWISE_CMP_GE, row, keep, col, 0, CUDNN_DATA_BOOLEAN);
  const int64_t y = g.virtual_tensor(kF32, score_dims(d), score_strides(d));
  g.pointwise(CUDNN_POINTWISE_BINARY_SELECT, x, y, sg.neg_inf, keep);
  return y;
}

void check_dims(const SdpaDims& d) {
  VT_CHECK(d.B > 0 && d.Hq > 0 && d.Hkv > 0 && d.Tq > 0 && d.Tk > 0 && d.D > 0 && d.Hq % d.Hkv == 0,
           "cuDNN SDPA: bad dims B ", d.B, " Hq ", d.Hq, " Hkv ", d.Hkv, " Tq ", d.Tq, " Tk ", d.Tk, " D ", d.D);
}

}  // namespace

SdpaGraph sdpa_forward_graph(const SdpaDims& d) {
  check_dims(d);
  SdpaGraph sg;
  Graph& g = sg.graph;
  sg.q = g.tensor(d.type, {d.B, d.Hq, d.Tq, d.D}, {d.q[0], d.q[1], d.q[2], d.q[3]}, false);
  sg.k = transposed(g, d, d.Hkv, d.Tk, d.k);  // K^T (B, Hkv, D, Tk)
  sg.v = g.tensor(d.type, {d.B, d.Hkv, d.Tk, d.D}, {d.v[0], d.v[1], d.v[2], d.v[3]}, false);
  sg.o = g.tensor(d.type, {d.B, d.Hq, d.Tq, d.D}, {d.Hq * d.Tq * d.D, d.Tq * d.D, d.D, 1}, false);
  sg.stats = g.tensor(kF32, row_dims(d), row_strides(d), false);
  sg.scale = g.scalar(kF32);
  if (d.causal) sg.neg_inf = g.scalar(kF32);

  const int64_t s = g.virtual_tensor(kF32, score_dims(d), score_strides(d));
  g.matmul(sg.q, sg.k, s);  // S = Q K^T
  const int64_t x = masked(g, sg, d, scaled(g, sg, d, s));
  // softmax with its statistics, as cuDNN's composite softmax node: max, exp(x - max), sum, log.
  const int64_t m = g.virtual_tensor(kF32, row_dims(d), row_strides(d));
  g.reduction(CUDNN_REDUCE_TENSOR_MAX, x, m);
  const int64_t centered = g.virtual_tensor(kF32, score_dims(d), score_strides(d));
  g.pointwise(CUDNN_POINTWISE_SUB, x, centered, m);
  const int64_t e = g.virtual_tensor(kF32, score_dims(d), score_strides(d));
  g.pointwise(CUDNN_POINTWISE_EXP, centered, e);
  const int64_t l = g.virtual_tensor(kF32, row_dims(d), row_strides(d));
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, e, l);
  const int64_t log_l = g.virtual_tensor(kF32, row_dims(d), row_strides(d));
  g.pointwise(CUDNN_POINTWISE_LOG, l, log_l);
  g.pointwise(CUDNN_POINTWISE_ADD, m, sg.stats, log_l);  // stats = m + log l
  const int64_t p = g.virtual_tensor(d.type, score_dims(d), score_strides(d));  // P in q's dtype for P V
  g.pointwise(CUDNN_POINTWISE_DIV, e, p, l);
  g.matmul(p, sg.v, sg.o);  // O = P V
  return sg;
}

SdpaGraph sdpa_backward_graph(const SdpaDims& d, bool deterministic) {
  check_dims(d);
  SdpaGraph sg;
  Graph& g = sg.graph;
  const int64_t group = d.Hq / d.Hkv;
  const Dims q_dims = {d.B, d.Hq, d.Tq, d.D}, q_contig = {d.Hq * d.Tq * d.D, d.Tq * d.D, d.D, 1};
  const Dims kv_contig = {d.Hkv * d.Tk * d.D, d.Tk * d.D, d.D, 1};
  sg.q = g.tensor(d.type, q_dims, {d.q[0], d.q[1], d.q[2], d.q[3]}, false);
  sg.k = transposed(g, d, d.Hkv, d.Tk, d.k);  // K^T (B, Hkv, D, Tk)
  sg.v = transposed(g, d, d.Hkv, d.Tk, d.v);  // V^T (B, Hkv, D, Tk)
  sg.o = g.tensor(d.type, q_dims, q_contig, false);
  sg.dout = g.tensor(d.type, q_dims, {d.dout[0], d.dout[1], d.dout[2], d.dout[3]}, false);
  sg.stats = g.tensor(kF32, row_dims(d), row_strides(d), false);
  sg.dq = g.tensor(d.type, q_dims, q_contig, false);
  sg.dk = g.tensor(d.type, {d.B, d.Hkv, d.Tk, d.D}, kv_contig, false);
  sg.dv = g.tensor(d.type, {d.B, d.Hkv, d.Tk, d.D}, kv_contig, false);
  sg.scale = g.scalar(kF32);
  sg.one = g.scalar(kF32);
  if (d.causal) sg.neg_inf = g.scalar(kF32);

  // Dsum = sum_d dO * O (the frontend lays the product out as (B, T, H, D); it stays virtual).
  const int64_t prod = g.virtual_tensor(kF32, q_dims, {d.Hq * d.Tq * d.D, d.Tq * d.D, d.Hq * d.D, 1});
  g.pointwise(CUDNN_POINTWISE_MUL, sg.dout, prod, sg.o);
  const int64_t rowsum = g.virtual_tensor(kF32, row_dims(d), row_strides(d));
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, prod, rowsum);
  sg.softmax_sum = g.tensor(kF32, row_dims(d), row_strides(d), false);  // scratch
  sg.softmax_sum_bytes = d.B * d.Hq * d.Tq * 4;
  g.pointwise(CUDNN_POINTWISE_MUL, rowsum, sg.softmax_sum, sg.one);

  // P = exp(scale * Q K^T - stats), masked (the frontend masks after subtracting the statistics)
  const int64_t s = g.virtual_tensor(kF32, score_dims(d), score_strides(d));
  g.matmul(sg.q, sg.k, s);
  const int64_t centered = g.virtual_tensor(kF32, score_dims(d), score_strides(d));
  g.pointwise(CUDNN_POINTWISE_SUB, scaled(g, sg, d, s), centered, sg.stats);
  const int64_t p = g.virtual_tensor(kF32, score_dims(d), score_strides(d));
  g.pointwise(CUDNN_POINTWISE_EXP, masked(g, sg, d, centered), p);

  // (Hq, Tk, D) products are summed over each query group into the (Hkv, Tk, D) gradient under GQA.
  const auto grad_kv = [&](int64_t a_t, int64_t b, int64_t out) {
    if (group == 1) return g.matmul(a_t, b, out);
    const int64_t full = g.virtual_tensor(d.type, {d.B, d.Hq, d.Tk, d.D}, {d.Hq * d.Tk * d.D, d.Tk * d.D, d.D, 1});
    g.matmul(a_t, b, full);
    g.reduction(CUDNN_REDUCE_TENSOR_ADD, full, out);
  };
  // The transpose of a (B, Hq, Tq, Tk) score tensor, in q's dtype (a view inside the graph).
  const auto transpose_scores = [&](int64_t x_) {
    const int64_t t = g.virtual_tensor(d.type, {d.B, d.Hq, d.Tk, d.Tq}, {d.Hq * d.Tq * d.Tk, d.Tq * d.Tk, 1, d.Tk});
    g.reshape(x_, t);
    return t;
  };

  grad_kv(transpose_scores(p), sg.dout, sg.dv);  // dV = P^T dO

  // dS = P * (dO V^T - Dsum) * scale
  const int64_t dp = g.virtual_tensor(kF32, score_dims(d), score_strides(d));
  g.matmul(sg.dout, sg.v, dp);
  const int64_t dp_c = g.virtual_tensor(kF32, score_dims(d), score_strides(d));
  g.pointwise(CUDNN_POINTWISE_SUB, dp, dp_c, sg.softmax_sum);
  const int64_t ds0 = g.virtual_tensor(kF32, score_dims(d), score_strides(d));
  g.pointwise(CUDNN_POINTWISE_MUL, dp_c, ds0, p);
  const int64_t ds = g.virtual_tensor(kF32, score_dims(d), score_strides(d));
  g.pointwise(CUDNN_POINTWISE_MUL, ds0, ds, sg.scale);

  grad_kv(transpose_scores(ds), sg.q, sg.dk);  // dK = dS^T Q

  // dQ = dS K: K^T viewed back as (B, Hkv, Tk, D).
  const int64_t k_rows = g.virtual_tensor(kF32, {d.B, d.Hkv, d.Tk, d.D}, {d.k[0], d.k[1], d.k[2], d.k[3]});
  g.reshape(sg.k, k_rows);
  if (deterministic) {
    g.matmul(ds, k_rows, sg.dq);
  } else {
    sg.dq_accum = g.tensor(kF32, q_dims, q_contig, false);  // scratch, f32
    sg.dq_accum_bytes = d.B * d.Hq * d.Tq * d.D * 4;
    g.matmul(ds, k_rows, sg.dq_accum);
    g.pointwise(CUDNN_POINTWISE_IDENTITY, sg.dq_accum, sg.dq);
  }
  return sg;
}

}  // namespace vt::cuda::cudnn
#endif
