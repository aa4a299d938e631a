// gradcheck.h: float64 central-difference check of an op's backward.
//
// For f: inputs -> output, with a fixed random projection r of the output's shape, compares the
// autograd gradient of L = sum(f(x) * r) against (L(x + eps e_i) - L(x - eps e_i)) / (2 eps) for
// every element i of every input that requires grad. Inputs must be float64.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "vt/tensor.h"

namespace vt {

struct GradcheckResult {
  bool ok = true;
  double max_abs_err = 0;
  std::string message;  // first failure: input, element, analytic vs numeric
};

GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f, std::vector<Tensor> inputs,
                          double eps = 1e-6, double atol = 1e-5, double rtol = 1e-3, uint64_t seed = 0);

}  // namespace vt
