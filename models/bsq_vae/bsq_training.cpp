// bsq_training.cpp: the straight-through multi-scale quantiser and the training forward; see the header.
#include "bsq_vae/bsq_training.h"

#include <cmath>

#include "vt/autograd.h"
#include "vt/nn/interpolate.h"
#include "vt/ops.h"

namespace vt::bsq {

Tensor straight_through(const Tensor& value, const Tensor& through) {
  VT_CHECK(value.shape() == through.shape(), "straight_through: value ", value.shape().str(), " and gradient path ",
           through.shape().str(), " differ in shape");
  Tensor out = value.detach().clone();
  autograd::record("straight_through", out, {through}, [](const Tensor& g) { return grads{g}; });
  return out;
}

namespace {
bool is_full(const infinity::ScaleHW& s, int64_t H, int64_t W) { return s.h == H && s.w == W; }
}  // namespace

MultiScaleTrainOutput multiscale_quantize_train(const Tensor& f, const std::vector<infinity::ScaleHW>& scales) {
  VT_CHECK(f.dim() == 4, "multiscale_quantize_train: expected a latent (B, d, H, W), got ", f.shape().str());
  VT_CHECK(f.dtype() == DType::F32 || f.dtype() == DType::F64,
           "multiscale_quantize_train: the quantiser runs in f32 (or f64 for checks), got ", dtype_name(f.dtype()));
  VT_CHECK(!scales.empty(), "multiscale_quantize_train: empty schedule");
  const int64_t d = f.size(1), H = f.size(2), W = f.size(3);
  VT_CHECK(is_full(scales.back(), H, W), "multiscale_quantize_train: the schedule ends at ", scales.back().h, "x",
           scales.back().w, " but the latent grid is ", H, "x", W);
  const double q = 1.0 / std::sqrt(static_cast<double>(d));

  MultiScaleTrainOutput out;
  Tensor residual = f.contiguous();
  Tensor accumulated = zeros(residual.shape(), {f.dtype(), f.device()});
  for (const infinity::ScaleHW& s : scales) {
    VT_CHECK(s.h <= H && s.w <= W, "multiscale_quantize_train: scale ", s.h, "x", s.w, " exceeds the latent grid ",
             H, "x", W);
    const bool full_grid = is_full(s, H, W);
    Tensor r = full_grid ? residual : nn::interpolate(residual, {s.h, s.w}, "area");  // (B, d, h_k, w_k)
    // The same expressions as bsq_quantize(), so the signs (and the bits) are the same.
    Tensor norm = clamp(sqrt(sum(square(r), {1}, /*keepdim=*/true)), 1e-12, std::nullopt);  // (B, 1, h_k, w_k)
    Tensor u = r / norm;
    Tensor positive = gt(u.detach(), 0.0);
    Tensor codes = (cast(positive, f.dtype()) * 2.0 - 1.0) * q;
    Tensor q_st = straight_through(codes, u);
    Tensor up = full_grid ? q_st : nn::interpolate(q_st, {H, W}, "bilinear");
    residual = residual - up.detach();  // upstream: residual - quantized.detach()
    accumulated = accumulated + up;
    out.scales.push_back({u, codes, positive.permute({0, 2, 3, 1}).contiguous()});
  }
  out.quantized = accumulated;
  return out;
}

BsqVaeTrainForward bsq_vae_train_forward(const BsqVae& vae, const Tensor& image,
                                         const std::vector<infinity::ScaleHW>& scales) {
  BsqVaeTrainForward out;
  out.latent = vae.encode_latent(image);
  out.quant = multiscale_quantize_train(out.latent, scales);
  out.reconstruction = vae.decoder->forward(out.quant.quantized);
  return out;
}

}  // namespace vt::bsq
