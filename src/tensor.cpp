// tensor.cpp: Tensor metadata, storage, creation, views and conversions.
//
// Views (view, permute, transpose, narrow, slice, select, expand, squeeze, unsqueeze, flatten) build
// a new Layout over the same Storage and record a backward that maps the gradient back through the
// inverse view, so autograd sees them like any other op.
#include "vt/tensor.h"

#include <cmath>
#include <numeric>
#include <ostream>

#include "vt/autograd.h"
#include "vt/backend.h"
#include "vt/ops.h"

namespace vt {

// ---- Shape, Device, Layout helpers -------------------------------------------------------------
std::string Shape::str() const {
  std::string s = "(";
  for (int i = 0; i < n_; ++i) s += (i ? ", " : "") + std::to_string(d_[i]);
  return s + ")";
}
std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << s.str(); }

Device Device::parse(const std::string& s) {
  if (s == "cpu") return cpu();
  if (s == "cuda") return cuda(0);
  if (s.rfind("cuda:", 0) == 0) {
    try {
      return cuda(std::stoi(s.substr(5)));
    } catch (...) {
    }
  }
  VT_FAIL("device: cannot parse '", s, "' (expected cpu, cuda or cuda:N)");
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  int n = std::max(a.size(), b.size());
  Shape out;
  out.resize(n);
  for (int i = 0; i < n; ++i) {
    int64_t x = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t y = i < n - b.size() ? 1 : b[i - (n - b.size())];
    VT_CHECK(x == y || x == 1 || y == 1, op, ": shapes ", a.str(), " and ", b.str(),
             " do not broadcast (dim ", i, ": ", x, " vs ", y, ")");
    out[i] = x == 1 ? y : x;
  }
  return out;
}

Shape broadcast_strides(const Layout& l, const Shape& to) {
  Shape st;
  st.resize(to.size());
  int off = to.size() - l.ndim();
  for (int i = 0; i < to.size(); ++i) {
    int j = i - off;
    st[i] = (j < 0 || l.shape[j] == 1) ? 0 : l.strides[j];
  }
  return st;
}

// ---- Storage -----------------------------------------------------------------------------------
std::shared_ptr<Storage> Storage::allocate(size_t nbytes, Device device) {
  return kernels::backend(device).allocate(nbytes, device);
}

std::shared_ptr<Storage> Storage::wrap(void* data, size_t nbytes, Device device, std::shared_ptr<void> owner) {
  auto s = std::make_shared<Storage>();
  s->data = data;
  s->nbytes = nbytes;
  s->device = device;
  s->owner = std::move(owner);
  return s;
}

// ---- metadata ----------------------------------------------------------------------------------
static TensorImpl& checked(const std::shared_ptr<TensorImpl>& p) {
  VT_CHECK(p != nullptr, "tensor: use of an undefined tensor");
  return *p;
}
const Shape& Tensor::shape() const { return checked(impl_).layout.shape; }
const Shape& Tensor::strides() const { return checked(impl_).layout.strides; }
int64_t Tensor::offset() const { return checked(impl_).layout.offset; }
const Layout& Tensor::layout() const { return checked(impl_).layout; }
DType Tensor::dtype() const { return checked(impl_).dtype; }
Device Tensor::device() const { return checked(impl_).storage->device; }
const std::shared_ptr<Storage>& Tensor::storage() const { return checked(impl_).storage; }
int64_t Tensor::size(int64_t d) const { return shape()[wrap_dim(d, dim(), "size")]; }
int64_t Tensor::stride(int64_t d) const { return strides()[wrap_dim(d, dim(), "stride")]; }
void* Tensor::raw_data() const {
  return static_cast<char*>(storage()->data) + offset() * static_cast<int64_t>(element_size());
}

Tensor make_tensor(std::shared_ptr<Storage> storage, const Layout& layout, DType dtype) {
  VT_CHECK(layout.extent() * static_cast<int64_t>(dtype_size(dtype)) <= static_cast<int64_t>(storage->nbytes),
           "make_tensor: layout ", layout.shape.str(), " reaches past the ", storage->nbytes, "-byte storage");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::move(storage);
  impl->layout = layout;
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

// ---- creation ----------------------------------------------------------------------------------
Tensor empty(const Shape& shape, TensorOptions opt) {
  for (int64_t d : shape) VT_CHECK(d >= 0, "empty: negative dim in shape ", shape.str());
  Tensor t = make_tensor(Storage::allocate(shape.numel() * dtype_size(opt.dtype), opt.device), Layout(shape),
                         opt.dtype);
  if (opt.requires_grad) t.requires_grad_();
  return t;
}
Tensor full(const Shape& shape, double value, TensorOptions opt) {
  bool rg = opt.requires_grad;
  opt.requires_grad = false;
  Tensor t = empty(shape, opt);
  kernels::backend(opt.device).fill(t, value);
  if (rg) t.requires_grad_();
  return t;
}
Tensor zeros(const Shape& shape, TensorOptions opt) { return full(shape, 0, opt); }
Tensor ones(const Shape& shape, TensorOptions opt) { return full(shape, 1, opt); }
Tensor scalar_tensor(double value, TensorOptions opt) { return full(Shape{}, value, opt); }
Tensor empty_like(const Tensor& t) { return empty(t.shape(), {t.dtype(), t.device()}); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), {t.dtype(), t.device()}); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), {t.dtype(), t.device()}); }
Tensor full_like(const Tensor& t, double v) { return full(t.shape(), v, {t.dtype(), t.device()}); }

Tensor from_blob(const void* data, const Shape& shape, DType dtype, Device device) {
  Tensor cpu = empty(shape, dtype);
  if (cpu.nbytes()) std::memcpy(cpu.raw_data(), data, cpu.nbytes());
  return device.is_cpu() ? cpu : cpu.to(device);
}

// Values computed in double on the host, then cast (like torch.arange: start + i*step).
Tensor arange(double start, double end, double step, TensorOptions opt) {
  VT_CHECK(step != 0, "arange: step must be non-zero");
  VT_CHECK(std::isfinite(start) && std::isfinite(end), "arange: bounds must be finite");
  int64_t n = std::max<int64_t>(0, static_cast<int64_t>(std::ceil((end - start) / step)));
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = start + static_cast<double>(i) * step;
  return from_vector(v).to(opt.dtype).to(opt.device);
}

// torch.linspace: the first half counts up from start, the second half down from end.
Tensor linspace(double start, double end, int64_t steps, TensorOptions opt) {
  VT_CHECK(steps >= 0, "linspace: steps must be non-negative, got ", steps);
  std::vector<double> v(steps);
  double step = steps > 1 ? (end - start) / static_cast<double>(steps - 1) : 0;
  int64_t half = steps / 2;
  for (int64_t i = 0; i < steps; ++i) v[i] = i < half ? start + step * i : end - step * (steps - 1 - i);
  return from_vector(v).to(opt.dtype).to(opt.device);
}

Tensor eye(int64_t n, int64_t m, TensorOptions opt) {
  if (m < 0) m = n;
  Tensor t = zeros({n, m}, {opt.dtype, Device::cpu()});
  Tensor d = t.as_strided_diag();
  kernels::cpu_backend().fill(d, 1);
  return t.to(opt.device);
}

// ---- conversions -------------------------------------------------------------------------------
Tensor Tensor::to(DType t) const { return dtype() == t ? *this : cast(*this, t); }

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), {dtype(), device()});
  kernels::backend(device()).copy(*this, out);
  Tensor self = *this;
  autograd::record("clone", out, {self}, [](const Tensor& g) { return grads{g}; });
  return out;
}

double Tensor::item() const {
  VT_CHECK(numel() == 1, "item: tensor with ", numel(), " elements (shape ", shape().str(), ")");
  return tolist<double>()[0];
}

template <class T>
std::vector<T> Tensor::tolist() const {
  Tensor c = to(Device::cpu()).to(dtype_of<T>()).contiguous();
  std::vector<T> v(c.numel());
  if constexpr (std::is_same_v<T, bool>) {
    const uint8_t* p = static_cast<const uint8_t*>(c.raw_data());
    for (size_t i = 0; i < v.size(); ++i) v[i] = p[i];
  } else {
    if (!v.empty()) std::memcpy(v.data(), c.raw_data(), v.size() * sizeof(T));
  }
  return v;
}
template std::vector<float> Tensor::tolist<float>() const;
template std::vector<double> Tensor::tolist<double>() const;
template std::vector<int32_t> Tensor::tolist<int32_t>() const;
template std::vector<int64_t> Tensor::tolist<int64_t>() const;
template std::vector<uint8_t> Tensor::tolist<uint8_t>() const;
template std::vector<bool> Tensor::tolist<bool>() const;
template std::vector<bf16> Tensor::tolist<bf16>() const;
template std::vector<f16> Tensor::tolist<f16>() const;

// ---- views -------------------------------------------------------------------------------------
// A view shares storage; its backward maps g (view-shaped) to the input's shape.
static Tensor make_view(const Tensor& x, const Layout& l, const char* name,
                        std::function<grads(const Tensor&)> backward) {
  Tensor out = make_tensor(x.storage(), l, x.dtype());
  autograd::record(name, out, {x}, std::move(backward));
  return out;
}

// Strides for viewing layout `l` with shape `to` without a copy, or false when impossible
// (PyTorch's computeStride: walk chunks of dims that are contiguous among themselves).
static bool view_strides(const Layout& l, const Shape& to, Shape& out) {
  out.resize(to.size());
  if (l.numel() == 0 || to.size() == 0 || l.ndim() == 0) {
    out = contiguous_strides(to);
    return true;
  }
  int view_d = to.size() - 1;
  int64_t chunk_base = l.strides[l.ndim() - 1], tensor_numel = 1, view_numel = 1;
  for (int d = l.ndim() - 1; d >= 0; --d) {
    tensor_numel *= l.shape[d];
    if (d == 0 || (l.shape[d - 1] != 1 && l.strides[d - 1] != tensor_numel * chunk_base)) {
      while (view_d >= 0 && (view_numel < tensor_numel || to[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base;
        view_numel *= to[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return false;
      if (d > 0) {
        chunk_base = l.strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}

static Shape infer_shape(const Shape& s, int64_t numel, const char* op) {
  Shape out = s;
  int infer = -1;
  int64_t known = 1;
  for (int i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      VT_CHECK(infer < 0, op, ": only one dim can be -1 in ", s.str());
      infer = i;
    } else {
      VT_CHECK(s[i] >= 0, op, ": invalid dim ", s[i], " in ", s.str());
      known *= s[i];
    }
  }
  if (infer >= 0) {
    VT_CHECK(known != 0 && numel % known == 0, op, ": shape ", s.str(), " is invalid for ", numel, " elements");
    out[infer] = numel / known;
  }
  VT_CHECK(out.numel() == numel, op, ": shape ", s.str(), " is invalid for input of size ", numel);
  return out;
}

Tensor Tensor::view(const Shape& s) const {
  Shape to = infer_shape(s, numel(), "view");
  Shape st;
  VT_CHECK(view_strides(layout(), to, st), "view: shape ", to.str(), " is not compatible with the strides of ",
           shape().str(), "; use reshape (which copies)");
  Shape from = shape();
  return make_view(*this, Layout(to, st, offset()), "view", [from](const Tensor& g) { return grads{g.reshape(from)}; });
}

Tensor Tensor::reshape(const Shape& s) const {
  Shape to = infer_shape(s, numel(), "reshape");
  Shape st;
  if (view_strides(layout(), to, st)) return view(to);
  return contiguous().view(to);
}

Tensor Tensor::permute(const Shape& dims) const {
  VT_CHECK(dims.size() == dim(), "permute: ", dims.size(), " dims given for a tensor of ", dim(), " dims");
  Layout l;
  l.offset = offset();
  Shape inv;
  inv.resize(dim(), -1);
  for (int i = 0; i < dim(); ++i) {
    int d = wrap_dim(dims[i], dim(), "permute");
    VT_CHECK(inv[d] < 0, "permute: dim ", d, " repeated in ", dims.str());
    inv[d] = i;
    l.shape.push_back(shape()[d]);
    l.strides.push_back(strides()[d]);
  }
  return make_view(*this, l, "permute", [inv](const Tensor& g) { return grads{g.permute(inv)}; });
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  if (dim() == 0) return *this;
  int a = wrap_dim(d0, dim(), "transpose"), b = wrap_dim(d1, dim(), "transpose");
  Shape p;
  for (int i = 0; i < dim(); ++i) p.push_back(i);
  std::swap(p[a], p[b]);
  return permute(p);
}

Tensor Tensor::slice(int64_t dim_, int64_t start, int64_t end, int64_t step) const {
  int d = wrap_dim(dim_, dim(), "slice");
  VT_CHECK(step > 0, "slice: step must be positive, got ", step);
  int64_t n = shape()[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Layout l = layout();
  l.offset += start * l.strides[d];
  l.shape[d] = (end - start + step - 1) / step;
  l.strides[d] *= step;
  Shape from = shape();
  DType dt = dtype();
  return make_view(*this, l, "slice", [from, dt, d, start, end, step](const Tensor& g) {
    Tensor z = zeros(from, {g.dtype(), g.device()});
    Tensor part = z.slice(d, start, end, step);
    copy_(part, g);
    return grads{z};
  });
}

Tensor Tensor::narrow(int64_t dim_, int64_t start, int64_t length) const {
  int d = wrap_dim(dim_, dim(), "narrow");
  int64_t n = shape()[d];
  if (start < 0) start += n;
  VT_CHECK(start >= 0 && length >= 0 && start + length <= n, "narrow: range [", start, ", ", start + length,
           ") is outside dim ", d, " of size ", n);
  return slice(d, start, start + length);
}

Tensor Tensor::select(int64_t dim_, int64_t index) const {
  int d = wrap_dim(dim_, dim(), "select");
  int64_t n = shape()[d];
  VT_CHECK(index >= -n && index < n, "select: index ", index, " out of range for dim ", d, " of size ", n);
  if (index < 0) index += n;
  return narrow(d, index, 1).squeeze(d);
}

Tensor Tensor::expand(const Shape& s) const {
  VT_CHECK(s.size() >= dim(), "expand: target ", s.str(), " has fewer dims than ", shape().str());
  Layout l;
  l.offset = offset();
  int off = s.size() - dim();
  for (int i = 0; i < s.size(); ++i) {
    int j = i - off;
    int64_t have = j < 0 ? 1 : shape()[j];
    int64_t want = s[i] == -1 ? have : s[i];
    VT_CHECK(j >= 0 || s[i] != -1, "expand: -1 not allowed for the new leading dim ", i);
    VT_CHECK(have == want || have == 1, "expand: dim ", i, " of size ", have, " cannot expand to ", want,
             " (", shape().str(), " -> ", s.str(), ")");
    l.shape.push_back(want);
    l.strides.push_back(j < 0 || (have == 1 && want != 1) ? 0 : strides()[j]);
  }
  Shape from = shape();
  return make_view(*this, l, "expand", [from](const Tensor& g) { return grads{sum_to(g, from)}; });
}

Tensor Tensor::squeeze() const {
  Shape s;
  for (int64_t d : shape())
    if (d != 1) s.push_back(d);
  return view(s);
}

Tensor Tensor::squeeze(int64_t dim_) const {
  if (dim() == 0) return *this;
  int d = wrap_dim(dim_, dim(), "squeeze");
  if (shape()[d] != 1) return *this;
  Layout l = layout();
  l.shape.erase(d);
  l.strides.erase(d);
  Shape from = shape();
  return make_view(*this, l, "squeeze", [from](const Tensor& g) { return grads{g.view(from)}; });
}

Tensor Tensor::unsqueeze(int64_t dim_) const {
  int d = wrap_dim(dim_, dim() + 1, "unsqueeze");
  Layout l = layout();
  int64_t st = d < dim() ? strides()[d] * shape()[d] : 1;
  l.shape.insert(d, 1);
  l.strides.insert(d, st);
  Shape from = shape();
  return make_view(*this, l, "unsqueeze", [from](const Tensor& g) { return grads{g.view(from)}; });
}

Tensor Tensor::flatten(int64_t start, int64_t end) const {
  if (dim() == 0) return reshape({1});
  int a = wrap_dim(start, dim(), "flatten"), b = wrap_dim(end, dim(), "flatten");
  VT_CHECK(a <= b, "flatten: start dim ", a, " after end dim ", b);
  Shape s;
  for (int i = 0; i < a; ++i) s.push_back(shape()[i]);
  int64_t p = 1;
  for (int i = a; i <= b; ++i) p *= shape()[i];
  s.push_back(p);
  for (int i = b + 1; i < dim(); ++i) s.push_back(shape()[i]);
  return reshape(s);
}

// The main diagonal as a 1-D view (no autograd; used by eye).
Tensor Tensor::as_strided_diag() const {
  VT_CHECK(dim() == 2, "diagonal: needs a 2-D tensor, got ", shape().str());
  Layout l(Shape{std::min(shape()[0], shape()[1])}, Shape{strides()[0] + strides()[1]}, offset());
  return make_tensor(storage(), l, dtype());
}

Tensor Tensor::operator-() const { return neg(*this); }

}  // namespace vt
