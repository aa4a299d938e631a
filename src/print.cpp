// print.cpp: PyTorch-style printing: tensor([[ 1.0000, -2.5000], ...], dtype=torch.bfloat16).
//
// Floats print with 4 decimals, or in scientific notation when the magnitudes span more than
// 1e-4..1e8 (torch's rule), or with a trailing "." when every value is an integer. Tensors with
// more than 1000 elements show the first and last 3 entries of each dim around "...".
#include <cmath>
#include <cstdio>
#include <ostream>
#include <sstream>

#include "vt/ops.h"

namespace vt {

namespace {

struct Formatter {
  enum Mode { Int, Bool, IntFloat, Fixed, Sci } mode = Fixed;
  int width = 1;
  std::string fmt(double v) const {
    char buf[64];
    if (mode == Bool) return v != 0 ? "True" : "False";
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    switch (mode) {
      case Int: std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v)); break;
      case IntFloat: std::snprintf(buf, sizeof buf, "%.0f.", v); break;
      case Fixed: std::snprintf(buf, sizeof buf, "%.4f", v); break;
      default: std::snprintf(buf, sizeof buf, "%.4e", v); break;
    }
    return buf;
  }
};

void print_dim(std::ostream& os, const std::vector<double>& v, const Shape& s, int d, int64_t off, bool elide,
               const Formatter& f, int indent) {
  if (s.size() == 0) {
    os << f.fmt(v[0]);
    return;
  }
  int64_t stride = 1;
  for (int k = d + 1; k < s.size(); ++k) stride *= s[k];
  os << "[";
  int64_t n = s[d];
  bool cut = elide && n > 6;
  for (int64_t i = 0; i < n; ++i) {
    if (cut && i == 3) {
      os << (d + 1 == s.size() ? "..., " : "...,\n" + std::string(indent + 1, ' ') + (d + 2 < s.size() ? "\n" + std::string(indent + 1, ' ') : ""));
      i = n - 3;
    }
    if (d + 1 == s.size()) {
      std::string t = f.fmt(v[off + i]);
      os << std::string(std::max<int>(0, f.width - static_cast<int>(t.size())), ' ') << t;
    } else {
      print_dim(os, v, s, d + 1, off + i * stride, elide, f, indent + 1);
    }
    if (i + 1 < n) os << (d + 1 == s.size() ? ", " : ",\n" + std::string(s.size() - d - 1 > 1 ? 1 : 0, '\n') + std::string(indent + 1, ' '));
  }
  os << "]";
}

}  // namespace

std::string Tensor::str() const {
  if (!defined()) return "tensor(undefined)";
  std::vector<double> v = to(DType::F64).tolist<double>();
  Formatter f;
  if (dtype() == DType::Bool) {
    f.mode = Formatter::Bool;
  } else if (!is_floating(dtype())) {
    f.mode = Formatter::Int;
  } else {
    bool all_int = true;
    double mx = 0, mn = INFINITY;
    for (double x : v) {
      if (!std::isfinite(x)) continue;
      all_int &= x == std::floor(x);
      mx = std::max(mx, std::fabs(x));
      if (x != 0) mn = std::min(mn, std::fabs(x));
    }
    if (all_int) f.mode = mx >= 1e8 ? Formatter::Sci : Formatter::IntFloat;
    else f.mode = (mx >= 1e8 || (mn < 1e-4 && mn > 0) || (mn != INFINITY && mx / mn > 1000)) ? Formatter::Sci : Formatter::Fixed;
  }
  for (double x : v) f.width = std::max<int>(f.width, static_cast<int>(f.fmt(x).size()));
  std::ostringstream os;
  os << "tensor(";
  if (numel() == 0 && dim() > 0) os << "[]";
  else print_dim(os, v, shape(), 0, 0, numel() > 1000, f, 7);
  if (numel() == 0 || numel() > 1000) os << ", size=" << shape().str();
  if (dtype() != DType::F32 && dtype() != DType::I64 && dtype() != DType::Bool) os << ", dtype=torch." << dtype_name(dtype());
  if (!device().is_cpu()) os << ", device='" << device().str() << "'";
  if (requires_grad()) os << (grad_fn() ? std::string(", grad_fn=<") + grad_fn()->name + ">" : ", requires_grad=True");
  os << ")";
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

}  // namespace vt
