// nn_loss.cpp: cross_entropy (fused with log_softmax), bitwise_cross_entropy + bit_accuracy, and the
// DPO sigmoid loss, each op next to its backward, with the CPU kernels of the first two.
//
// Cross-entropy kernel. Forward, per row of C logits (threads take whole rows): one pass over the
// row in L1-sized blocks keeps a running max m and a running sum s of exp(z - m) (a block whose
// max exceeds m rescales s once), plus sum(z) when label smoothing needs it; it stores the row's
// logsumexp (f32) and its loss. Nothing of size (rows, C) is allocated. Backward: one pass per row
// writes dz = g_row * (exp(z - lse) - eps / C) straight into the gradient buffer, then fixes the
// target column; ignored rows are zero-filled. The gradient is the only logits-sized buffer of the
// whole loss (1x the logits' bytes), versus PyTorch's log_softmax output plus its gradient.
// Values are held in f32 (f64 for f64 logits) and rounded once into the logits' dtype.
#include "vt/nn/loss.h"

#include <omp.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "cpu_loop.h"
#include "nn_cpu_math.h"

namespace vt::nn {

using cpu::acc_t;
using cpu::ld;
using cpu::st;

static DType acc_dtype(DType t) { return t == DType::F64 ? DType::F64 : DType::F32; }

// ==== cross_entropy ===============================================================================
static constexpr int64_t kBlock = 2048;  // logits per block of the online logsumexp (8 KB of f32)

// z: (N, C); y: (N); row_loss, lse: (N)
template <class T>
static void cross_entropy_forward_typed(const T* z, const int64_t* y, int64_t N, int64_t C, int64_t ignore,
                                        double eps_d, acc_t<T>* row_loss, acc_t<T>* lse) {
  using A = acc_t<T>;
  const A eps = A(eps_d);
  int threads = N * C >= cpu::kParallelGrain ? omp_get_max_threads() : 1;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t r = 0; r < N; ++r) {
    const T* zr = z + r * C;
    A m = -INFINITY, s = 0, sz = 0;
    for (int64_t b0 = 0; b0 < C; b0 += kBlock) {
      const T* zb = zr + b0;
      int64_t n = std::min(kBlock, C - b0);
      A bm = -INFINITY, bs = 0, bz = 0;
#pragma omp simd reduction(max : bm)
      for (int64_t i = 0; i < n; ++i) bm = std::max(bm, ld(zb[i]));
      if (bm > m) {
        s = m == -INFINITY ? A(0) : s * cpu::exp_acc(m - bm);
        m = bm;
      }
      if (m == -INFINITY) continue;  // all -inf so far: nothing to add (and exp(-inf - -inf) is NaN)
#pragma omp simd reduction(+ : bs, bz)
      for (int64_t i = 0; i < n; ++i) {
        A v = ld(zb[i]);
        bs += cpu::exp_acc(v - m);
        bz += v;
      }
      s += bs;
      sz += bz;
    }
    A l = m + std::log(s);
    lse[r] = l;
    if (y[r] == ignore) {
      row_loss[r] = 0;
      continue;
    }
    A smooth = eps > 0 ? eps / A(C) * sz : A(0);
    row_loss[r] = l - (A(1) - eps) * ld(zr[y[r]]) - smooth;
  }
}

// dz[r, c] = g[r] * (exp(z - lse) - eps / C - (1 - eps) [c == y]);  0 for ignored rows
template <class T>
static void cross_entropy_backward_typed(const T* z, const int64_t* y, const acc_t<T>* lse, const acc_t<T>* g,
                                         int64_t N, int64_t C, int64_t ignore, double eps_d, T* dz) {
  using A = acc_t<T>;
  const A eps = A(eps_d);
  int threads = N * C >= cpu::kParallelGrain ? omp_get_max_threads() : 1;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t r = 0; r < N; ++r) {
    const T* zr = z + r * C;
    T* dr = dz + r * C;
    if (y[r] == ignore) {
      std::memset(static_cast<void*>(dr), 0, C * sizeof(T));
      continue;
    }
    const A gr = g[r], l = lse[r], off = gr * eps / A(C);
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) dr[c] = st<T>(gr * cpu::exp_acc(ld(zr[c]) - l) - off);
    const int64_t t = y[r];
    dr[t] = st<T>(gr * (cpu::exp_acc(ld(zr[t]) - l) - eps / A(C) - (A(1) - eps)));
  }
}

static void cross_entropy_forward_cpu(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                                      double label_smoothing, const Tensor& row_loss, const Tensor& lse) {
  int64_t N = logits.size(0), C = logits.size(1);
  const int64_t* y = target.data<int64_t>();
  for (int64_t r = 0; r < N; ++r)
    VT_CHECK(y[r] == ignore_index || (y[r] >= 0 && y[r] < C), "cross_entropy: target ", y[r], " at row ", r,
             " is out of range for ", C, " classes (ignore_index ", ignore_index, ")");
  cpu::dispatch_float(logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    cross_entropy_forward_typed<T>(logits.data<T>(), y, N, C, ignore_index, label_smoothing,
                                   row_loss.data<acc_t<T>>(), lse.data<acc_t<T>>());
  });
}

static void cross_entropy_backward_cpu(const Tensor& logits, const Tensor& target, const Tensor& lse,
                                       const Tensor& row_grad, int64_t ignore_index, double label_smoothing,
                                       const Tensor& dlogits) {
  cpu::dispatch_float(logits.dtype(), "cross_entropy_backward", [&](auto tag) {
    using T = decltype(tag);
    cross_entropy_backward_typed<T>(logits.data<T>(), target.data<int64_t>(), lse.data<acc_t<T>>(),
                                    row_grad.data<acc_t<T>>(), logits.size(0), logits.size(1), ignore_index,
                                    label_smoothing, dlogits.data<T>());
  });
}

static kernels::Registrar reg_ce_fwd("cross_entropy_forward", DeviceType::CPU, &cross_entropy_forward_cpu);
static kernels::Registrar reg_ce_bwd("cross_entropy_backward", DeviceType::CPU, &cross_entropy_backward_cpu);

static Shape drop_last(const Shape& s, int k) { return Shape(s.begin(), s.end() - k); }

Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, double label_smoothing,
                     Reduction reduction) {
  VT_CHECK(logits.dim() >= 1 && is_floating(logits.dtype()), "cross_entropy: logits must be a floating (..., C) "
           "tensor, got ", dtype_name(logits.dtype()), " ", logits.shape().str());
  VT_CHECK(is_integral(target.dtype()) && target.dtype() != DType::Bool, "cross_entropy: target must hold int64 "
           "class indices, got ", dtype_name(target.dtype()));
  Shape rows_shape = drop_last(logits.shape(), 1);
  VT_CHECK(target.shape() == rows_shape, "cross_entropy: target ", target.shape().str(), " does not match logits ",
           logits.shape().str(), " (needs ", rows_shape.str(), ")");
  VT_CHECK(label_smoothing >= 0 && label_smoothing <= 1, "cross_entropy: label_smoothing must be in [0, 1], got ",
           label_smoothing);
  VT_CHECK(logits.device() == target.device(), "cross_entropy: logits on ", logits.device().str(), ", target on ",
           target.device().str());
  const int64_t C = logits.size(-1), N = rows_shape.numel();
  VT_CHECK(C > 0 || N == 0, "cross_entropy: logits ", logits.shape().str(), " have no classes");
  const DType at = acc_dtype(logits.dtype());
  Tensor z = logits.contiguous().detach().reshape({N, C});
  Tensor y = cast(target, DType::I64).contiguous().reshape({N});
  Tensor row_loss = empty({N}, {at, z.device()}), lse = empty({N}, {at, z.device()});
  static const kernels::Kernel<CrossEntropyForwardFn> k_cross_entropy_forward("cross_entropy_forward");
  if (N > 0)
    k_cross_entropy_forward(z.device())(z, y, ignore_index, label_smoothing, row_loss, lse);
  Tensor out, count;
  {
    NoGradGuard ng;
    if (reduction == Reduction::None) {
      out = cast(row_loss, logits.dtype()).view(rows_shape);
    } else if (reduction == Reduction::Sum) {
      out = cast(sum(row_loss), logits.dtype());
    } else {
      count = cast(sum(ne(y, static_cast<double>(ignore_index))), at);  // 0 valid rows: 0 / 0 = NaN, as PyTorch
      out = cast(div(sum(row_loss), count), logits.dtype());
    }
    if (out.is_same(row_loss)) out = out.clone();
  }
  autograd::record("cross_entropy", out, {logits},
                   [z, y, lse, count, N, C, ignore_index, label_smoothing, reduction, shape = logits.shape()](
                       const Tensor& g) {
                     Tensor ga = cast(g, lse.dtype());
                     Tensor row_grad = reduction == Reduction::None ? ga.reshape({N})
                                       : reduction == Reduction::Sum ? ga.expand({N})
                                                                     : div(ga, count).expand({N});
                     row_grad = row_grad.contiguous();
                     Tensor dz = empty({N, C}, {z.dtype(), z.device()});
                     static const kernels::Kernel<CrossEntropyBackwardFn> k_cross_entropy_backward("cross_entropy_backward");
                     if (N > 0)
                       k_cross_entropy_backward(z.device())(
                           z, y, lse, row_grad, ignore_index, label_smoothing, dz);
                     return grads{dz.view(shape)};
                   });
  return out;
}

// ==== bitwise cross-entropy =======================================================================
// z: (T, d, 2); b: (T, d); token_loss: (T) = mean over the d bits of
//   l = logsumexp(z0, z1) - (1 - eps) z_b - (eps / 2)(z0 + z1),  logsumexp = max + log1p(exp(-|z1 - z0|))
template <class T>
static void bitwise_forward_typed(const T* z, const int64_t* b, int64_t tokens, int64_t d, double eps_d,
                                  acc_t<T>* token_loss) {
  using A = acc_t<T>;
  const A eps = A(eps_d);
  int threads = tokens * d >= cpu::kParallelGrain / 8 ? omp_get_max_threads() : 1;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t t = 0; t < tokens; ++t) {
    A acc = 0;
    for (int64_t j = 0; j < d; ++j) {
      int64_t k = t * d + j;
      A z0 = ld(z[2 * k]), z1 = ld(z[2 * k + 1]);
      A lse = std::max(z0, z1) + std::log1p(std::exp(-std::fabs(z1 - z0)));
      acc += lse - (A(1) - eps) * (b[k] ? z1 : z0) - eps / A(2) * (z0 + z1);
    }
    token_loss[t] = acc / A(d);
  }
}

// dz_c = token_grad / d * (p_c - (1 - eps)[c == b] - eps / 2),  p1 = sigmoid(z1 - z0), p0 = sigmoid(z0 - z1)
template <class T>
static void bitwise_backward_typed(const T* z, const int64_t* b, const acc_t<T>* token_grad, int64_t tokens, int64_t d,
                                   double eps_d, T* dz) {
  using A = acc_t<T>;
  const A eps = A(eps_d);
  int threads = tokens * d >= cpu::kParallelGrain / 8 ? omp_get_max_threads() : 1;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t t = 0; t < tokens; ++t) {
    A coef = token_grad[t] / A(d);
    for (int64_t j = 0; j < d; ++j) {
      int64_t k = t * d + j;
      A delta = ld(z[2 * k + 1]) - ld(z[2 * k]);
      A p1 = A(1) / (A(1) + std::exp(-delta)), p0 = A(1) / (A(1) + std::exp(delta));
      A on = A(1) - eps, half = eps / A(2);
      dz[2 * k] = st<T>(coef * (p0 - (b[k] ? A(0) : on) - half));
      dz[2 * k + 1] = st<T>(coef * (p1 - (b[k] ? on : A(0)) - half));
    }
  }
}

static void bitwise_forward_cpu(const Tensor& logits, const Tensor& bits, double label_smoothing,
                                const Tensor& token_loss) {
  int64_t tokens = logits.size(0), d = logits.size(1);
  const int64_t* b = bits.data<int64_t>();
  for (int64_t k = 0; k < tokens * d; ++k)
    VT_CHECK(b[k] == 0 || b[k] == 1, "bitwise_cross_entropy: bit ", k % d, " of token ", k / d, " is ", b[k],
             " (bits must be 0 or 1)");
  cpu::dispatch_float(logits.dtype(), "bitwise_cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    bitwise_forward_typed<T>(logits.data<T>(), b, tokens, d, label_smoothing, token_loss.data<acc_t<T>>());
  });
}

static void bitwise_backward_cpu(const Tensor& logits, const Tensor& bits, const Tensor& token_grad,
                                 double label_smoothing, const Tensor& dlogits) {
  cpu::dispatch_float(logits.dtype(), "bitwise_cross_entropy_backward", [&](auto tag) {
    using T = decltype(tag);
    bitwise_backward_typed<T>(logits.data<T>(), bits.data<int64_t>(), token_grad.data<acc_t<T>>(), logits.size(0),
                              logits.size(1), label_smoothing, dlogits.data<T>());
  });
}

static kernels::Registrar reg_bce_fwd("bitwise_cross_entropy_forward", DeviceType::CPU, &bitwise_forward_cpu);
static kernels::Registrar reg_bce_bwd("bitwise_cross_entropy_backward", DeviceType::CPU, &bitwise_backward_cpu);

static void check_bits(const Tensor& logits, const Tensor& bits, const char* op) {
  VT_CHECK(logits.dim() >= 2 && logits.size(-1) == 2 && is_floating(logits.dtype()), op,
           ": logits must be a floating (..., d, 2) tensor, got ", dtype_name(logits.dtype()), " ",
           logits.shape().str());
  VT_CHECK(bits.shape() == drop_last(logits.shape(), 1), op, ": bits ", bits.shape().str(), " do not match logits ",
           logits.shape().str(), " (needs ", drop_last(logits.shape(), 1).str(), ")");
  VT_CHECK(logits.device() == bits.device(), op, ": logits on ", logits.device().str(), ", bits on ",
           bits.device().str());
}

Tensor bitwise_cross_entropy(const Tensor& logits, const Tensor& bits, const Tensor& token_weight,
                             double label_smoothing) {
  check_bits(logits, bits, "bitwise_cross_entropy");
  Shape token_shape = drop_last(logits.shape(), 2);
  VT_CHECK(!token_weight.defined() || token_weight.shape() == token_shape, "bitwise_cross_entropy: token_weight ",
           token_weight.defined() ? token_weight.shape().str() : "", " does not match the tokens ", token_shape.str(),
           " of logits ", logits.shape().str());
  VT_CHECK(label_smoothing >= 0 && label_smoothing <= 1, "bitwise_cross_entropy: label_smoothing must be in "
           "[0, 1], got ", label_smoothing);
  const int64_t d = logits.size(-2), T = token_shape.numel();
  const DType at = acc_dtype(logits.dtype());
  Tensor z = logits.contiguous().detach().reshape({T, d, 2});
  Tensor b = cast(bits.detach(), DType::I64).contiguous().reshape({T, d});
  Tensor token_loss = empty({T}, {at, z.device()});
  static const kernels::Kernel<BitwiseCrossEntropyForwardFn> k_bitwise_cross_entropy_forward("bitwise_cross_entropy_forward");
  if (T * d > 0)
    k_bitwise_cross_entropy_forward(z.device())(z, b, label_smoothing, token_loss);
  Tensor out, w, wsum;
  {
    NoGradGuard ng;
    if (token_weight.defined()) {
      w = cast(token_weight.detach(), at).reshape({T});
      wsum = sum(w);
      out = cast(div(sum(mul(token_loss, w)), wsum), logits.dtype());
    } else {
      wsum = full({}, static_cast<double>(T), {at, z.device()});
      out = cast(div(sum(token_loss), wsum), logits.dtype());
    }
  }
  // token_weight is a constant: it receives no gradient.
  autograd::record("bitwise_cross_entropy", out, {logits},
                   [z, b, w, wsum, T, label_smoothing, shape = logits.shape()](const Tensor& g) {
                     Tensor per = div(cast(g, wsum.dtype()), wsum);  // d loss / d token_loss_t = w_t / sum w
                     Tensor token_grad = (w.defined() ? mul(w, per) : per.expand({T})).contiguous();
                     Tensor dz = empty(z.shape(), {z.dtype(), z.device()});
                     static const kernels::Kernel<BitwiseCrossEntropyBackwardFn> k_bitwise_cross_entropy_backward("bitwise_cross_entropy_backward");
                     if (z.numel() > 0)
                       k_bitwise_cross_entropy_backward(z.device())(
                           z, b, token_grad, label_smoothing, dz);
                     return grads{dz.view(shape)};
                   });
  return out;
}

Tensor bit_accuracy(const Tensor& logits, const Tensor& bits) {
  check_bits(logits, bits, "bit_accuracy");
  NoGradGuard ng;
  Tensor pred = gt(logits.select(-1, 1), logits.select(-1, 0));  // argmax over the pair; a tie is bit 0
  return mean(cast(eq(cast(pred, DType::I64), cast(bits, DType::I64)), DType::F32));
}

// ==== DPO (sigmoid) ===============================================================================
// N is small (pairs in a batch), so the per-pair arithmetic runs on the host in f64 whatever the
// device; the backward is device ops on (N) tensors:
//   dL/du_i = (1/N) [-(1 - eps) sigmoid(-u_i) + eps sigmoid(u_i)]
//   dL/d policy_chosen = beta dL/du = -dL/d policy_rejected = -dL/d ref_chosen = dL/d ref_rejected
static double log_sigmoid(double u) { return std::min(u, 0.0) - std::log1p(std::exp(-std::fabs(u))); }
static double sigmoid(double u) { return u >= 0 ? 1 / (1 + std::exp(-u)) : std::exp(u) / (1 + std::exp(u)); }

DpoOutput dpo_sigmoid_loss(const Tensor& pc, const Tensor& pr, const Tensor& rc, const Tensor& rr, double beta,
                           double label_smoothing) {
  const Tensor* ins[4] = {&pc, &pr, &rc, &rr};
  const char* names[4] = {"policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps"};
  for (int i = 0; i < 4; ++i) {
    VT_CHECK(ins[i]->dim() == 1 && is_floating(ins[i]->dtype()), "dpo_sigmoid_loss: ", names[i],
             " must be a floating (N) tensor, got ", dtype_name(ins[i]->dtype()), " ", ins[i]->shape().str());
    VT_CHECK(ins[i]->shape() == pc.shape(), "dpo_sigmoid_loss: ", names[i], " ", ins[i]->shape().str(),
             " differs from policy_chosen_logps ", pc.shape().str());
    VT_CHECK(ins[i]->device() == pc.device(), "dpo_sigmoid_loss: ", names[i], " on ", ins[i]->device().str(),
             ", policy_chosen_logps on ", pc.device().str());
  }
  VT_CHECK(pc.size(0) > 0, "dpo_sigmoid_loss: no pairs (N = 0)");
  VT_CHECK(label_smoothing >= 0 && label_smoothing <= 0.5, "dpo_sigmoid_loss: label_smoothing must be in [0, 0.5], "
           "got ", label_smoothing);
  const int64_t N = pc.size(0);
  auto host = [](const Tensor& t) { return t.detach().to(Device::cpu()).tolist<double>(); };
  std::vector<double> a = host(pc), b = host(pr), c = host(rc), d = host(rr);
  std::vector<double> cr(N), rj(N), dldu(N);
  double loss = 0, acc = 0, eps = label_smoothing;
  for (int64_t i = 0; i < N; ++i) {
    double u = beta * ((a[i] - b[i]) - (c[i] - d[i]));
    loss += -(1 - eps) * log_sigmoid(u) - eps * log_sigmoid(-u);
    dldu[i] = (-(1 - eps) * sigmoid(-u) + eps * sigmoid(u)) / N;
    cr[i] = beta * (a[i] - c[i]);
    rj[i] = beta * (b[i] - d[i]);
    acc += cr[i] > rj[i];
  }
  DType t = result_type(pc, pr);
  Device dev = pc.device();
  auto dev_tensor = [&](const std::vector<double>& v, DType dt) { return from_vector(v).to(dt).to(dev); };
  auto scalar = [&](double v, DType dt) { return full({}, v, {dt, dev}); };
  DpoOutput out;
  out.loss = scalar(loss / N, t);
  out.chosen_rewards = dev_tensor(cr, t);
  out.rejected_rewards = dev_tensor(rj, t);
  double mc = 0, mr = 0;
  for (int64_t i = 0; i < N; ++i) mc += cr[i], mr += rj[i];
  out.rewards_chosen = scalar(mc / N, t);
  out.rewards_rejected = scalar(mr / N, t);
  out.margins = scalar((mc - mr) / N, t);
  out.accuracies = scalar(acc / N, DType::F32);  // TRL: (chosen > rejected).float().mean()
  Tensor coef = dev_tensor(dldu, DType::F64);
  autograd::record("dpo_sigmoid_loss", out.loss, {pc, pr, rc, rr}, [coef, beta](const Tensor& g) {
    Tensor gu = mul(mul(coef, cast(g, DType::F64)), beta);  // (N)
    Tensor ngu = neg(gu);
    return grads{gu, ngu, ngu, gu};
  });
  return out;
}

}  // namespace vt::nn
