// multiscale_bsq.cpp: BSQ sign quantisation and multi-scale residual quantisation; see the header.
#include "bsq_vae/multiscale_bsq.h"

#include <cmath>

#include "vt/nn/interpolate.h"
#include "vt/ops.h"

namespace vt::bsq {

BsqOutput bsq_quantize(const Tensor& r) {
  VT_CHECK(r.dim() == 4, "bsq_quantize: expected (B, d, h, w), got ", r.shape().str());
  const int64_t d = r.size(1);
  // u = F.normalize(r, dim=1): only its sign is used, but it is formed as upstream does so that a
  // value that underflows to 0 after the division maps to -1 as it does there.
  Tensor norm = clamp(sqrt(sum(square(r), {1}, /*keepdim=*/true)), 1e-12, std::nullopt);
  Tensor u = r / norm;
  Tensor positive = gt(u, 0.0);                          // (B, d, h, w) Bool
  const double q = 1.0 / std::sqrt(static_cast<double>(d));
  Tensor codes = (cast(positive, DType::F32) * 2.0 - 1.0) * q;  // exactly +-q
  return {codes, positive.permute({0, 2, 3, 1}).contiguous()};
}

Tensor bits_to_codes(const Tensor& bits) {
  VT_CHECK(bits.dim() == 4, "bits_to_codes: expected bits (B, h, w, d), got ", bits.shape().str());
  const double q = 1.0 / std::sqrt(static_cast<double>(bits.size(3)));
  Tensor b = bits.dtype() == DType::Bool ? bits : ne(bits, 0.0);
  return ((cast(b, DType::F32) * 2.0 - 1.0) * q).permute({0, 3, 1, 2}).contiguous();
}

namespace {
bool is_full(const infinity::ScaleHW& s, int64_t H, int64_t W) { return s.h == H && s.w == W; }
}  // namespace

MultiScaleOutput multiscale_quantize(const Tensor& f, const std::vector<infinity::ScaleHW>& scales) {
  VT_CHECK(f.dim() == 4, "multiscale_quantize: expected a latent (B, d, H, W), got ", f.shape().str());
  VT_CHECK(!scales.empty(), "multiscale_quantize: empty schedule");
  const int64_t H = f.size(2), W = f.size(3);
  VT_CHECK(is_full(scales.back(), H, W), "multiscale_quantize: the schedule ends at ", scales.back().h, "x",
           scales.back().w, " but the latent grid is ", H, "x", W);
  MultiScaleOutput out;
  Tensor residual = f.to(DType::F32).contiguous();
  Tensor accumulated = zeros(residual.shape(), {DType::F32, residual.device()});
  for (const infinity::ScaleHW& s : scales) {
    VT_CHECK(s.h <= H && s.w <= W, "multiscale_quantize: scale ", s.h, "x", s.w, " exceeds the latent grid ", H,
             "x", W);
    const bool full_grid = is_full(s, H, W);
    Tensor r = full_grid ? residual : nn::interpolate(residual, {s.h, s.w}, "area");
    BsqOutput q = bsq_quantize(r);
    Tensor up = full_grid ? q.codes : nn::interpolate(q.codes, {H, W}, "bilinear");
    residual = residual - up;
    accumulated = accumulated + up;
    out.bits.push_back(q.bits);
  }
  out.quantized = accumulated;
  return out;
}

Tensor multiscale_bits_to_latent(const std::vector<Tensor>& bits) {
  VT_CHECK(!bits.empty(), "multiscale_bits_to_latent: no scales");
  for (size_t k = 0; k < bits.size(); ++k)
    VT_CHECK(bits[k].dim() == 4 && bits[k].size(0) == bits[0].size(0) && bits[k].size(3) == bits[0].size(3),
             "multiscale_bits_to_latent: scale ", k, " has bits ", bits[k].shape().str(), ", expected (",
             bits[0].size(0), ", h, w, ", bits[0].size(3), ")");
  const int64_t H = bits.back().size(1), W = bits.back().size(2);
  Tensor accumulated = zeros({bits[0].size(0), bits[0].size(3), H, W}, {DType::F32, bits[0].device()});
  for (size_t k = 0; k < bits.size(); ++k) {
    VT_CHECK(bits[k].size(1) <= H && bits[k].size(2) <= W, "multiscale_bits_to_latent: scale ", k, " (",
             bits[k].size(1), "x", bits[k].size(2), ") is larger than the last scale ", H, "x", W);
    Tensor codes = bits_to_codes(bits[k]);
    const bool full_grid = bits[k].size(1) == H && bits[k].size(2) == W;
    accumulated = accumulated + (full_grid ? codes : nn::interpolate(codes, {H, W}, "bilinear"));
  }
  return accumulated;
}

}  // namespace vt::bsq
