// gradcheck.cpp: see gradcheck.h.
#include "vt/gradcheck.h"

#include <cmath>
#include <sstream>

#include "vt/ops.h"
#include "vt/random.h"

namespace vt {

GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f, std::vector<Tensor> inputs,
                          double eps, double atol, double rtol, uint64_t seed) {
  GradcheckResult res;
  for (auto& x : inputs) {
    VT_CHECK(!x.defined() || !x.requires_grad() || x.dtype() == DType::F64,
             "gradcheck: inputs that require grad must be float64, got ", dtype_name(x.dtype()));
    if (x.defined() && x.requires_grad()) x = x.detach().clone().requires_grad_();
  }
  Tensor out = f(inputs);
  Generator gen(seed);
  Tensor r = randn(out.shape(), DType::F64, &gen);
  if (!out.requires_grad()) {
    res.ok = false;
    res.message = "output does not require grad";
    return res;
  }
  sum(mul(out, r)).backward();
  // The numeric derivative differences the outputs before projecting them, so that large
  // constant outputs (e.g. a -1e9 mask fill) do not cancel catastrophically.
  auto out_at = [&](std::vector<Tensor> xs) {
    NoGradGuard ng;
    return f(xs).detach().clone();
  };
  for (size_t k = 0; k < inputs.size(); ++k) {
    const Tensor& x = inputs[k];
    if (!x.defined() || !x.requires_grad()) continue;
    Tensor g = x.grad().defined() ? x.grad().contiguous() : zeros_like(x);
    std::vector<double> analytic = g.tolist<double>();
    Tensor base = x.detach().clone();
    double* p = base.data<double>();
    for (int64_t i = 0; i < base.numel(); ++i) {
      double keep = p[i];
      std::vector<Tensor> xs = inputs;
      xs[k] = base;
      p[i] = keep + eps;
      Tensor hi = out_at(xs);
      p[i] = keep - eps;
      Tensor lo = out_at(xs);
      p[i] = keep;
      double numeric;
      {
        NoGradGuard ng;
        numeric = sum(mul(sub(hi, lo), r)).item() / (2 * eps);
      }
      double err = std::fabs(numeric - analytic[i]);
      res.max_abs_err = std::max(res.max_abs_err, err);
      if (!(err <= atol + rtol * std::fabs(numeric)) && res.ok) {
        res.ok = false;
        std::ostringstream os;
        os << "input " << k << " element " << i << ": analytic " << analytic[i] << " vs numeric " << numeric;
        res.message = os.str();
      }
    }
  }
  return res;
}

}  // namespace vt
