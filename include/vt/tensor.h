// tensor.h: the Tensor handle.
//
// A Tensor is a cheap handle (one shared_ptr) to a TensorImpl: refcounted Storage (bytes on a
// device), a Layout (shape, strides in elements, offset), a dtype, and the autograd link
// (requires_grad, grad_fn for results, the accumulated grad for leaves). Views share storage;
// contiguous() copies only when the layout is not already row-major dense.
//
// The op functions live in ops.h as free functions with PyTorch names and semantics; the methods
// below are thin forwards so that model code reads like PyTorch (x.transpose(1, 2).contiguous()).
#pragma once
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vt/dtype.h"
#include "vt/half.h"
#include "vt/shape.h"

namespace vt {

// Bytes on a device. `owner` keeps alive whatever the bytes belong to (an aligned allocation, an
// mmapped file, a CUDA allocation); the deleter runs when the last Storage reference goes.
struct Storage {
  void* data = nullptr;
  size_t nbytes = 0;
  Device device;
  std::shared_ptr<void> owner;

  static std::shared_ptr<Storage> allocate(size_t nbytes, Device device);
  // Wraps memory owned elsewhere (e.g. an mmapped safetensors file); `owner` keeps it alive.
  static std::shared_ptr<Storage> wrap(void* data, size_t nbytes, Device device, std::shared_ptr<void> owner);
};

struct Node;  // autograd.h
struct TensorImpl;

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- metadata ----------------------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  const Shape& strides() const;
  int64_t offset() const;
  const Layout& layout() const;
  int dim() const { return shape().size(); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t stride(int64_t d) const;
  int64_t numel() const { return shape().numel(); }
  DType dtype() const;
  Device device() const;
  bool is_cuda() const { return device().is_cuda(); }
  bool is_contiguous() const { return layout().is_contiguous(); }
  size_t element_size() const { return dtype_size(dtype()); }
  size_t nbytes() const { return numel() * element_size(); }
  const std::shared_ptr<Storage>& storage() const;
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool is_same(const Tensor& o) const { return impl_ == o.impl_; }

  // Pointer to element 0 (offset applied). Typed access checks the dtype.
  void* raw_data() const;
  template <class T>
  T* data() const;

  // ---- autograd ----------------------------------------------------------------------------
  bool requires_grad() const;
  Tensor& requires_grad_(bool on = true);  // leaves only
  Tensor grad() const;                     // undefined until backward reaches this leaf
  void set_grad(const Tensor& g) const;
  void zero_grad() const { set_grad(Tensor()); }
  const std::shared_ptr<Node>& grad_fn() const;
  bool is_leaf() const { return grad_fn() == nullptr; }
  Tensor detach() const;  // shares storage, no autograd link
  // Reverse-mode autodiff from this tensor. `grad` defaults to ones for a single-element tensor.
  void backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;

  // ---- conversions -------------------------------------------------------------------------
  Tensor to(DType t) const;
  Tensor to(Device d) const;
  Tensor contiguous() const;
  Tensor clone() const;
  double item() const;  // single-element tensor as double
  template <class T>
  std::vector<T> tolist() const;  // all elements, row-major, converted to T
  std::string str() const;        // PyTorch-style printing

  // ---- views (no copies) -------------------------------------------------------------------
  Tensor view(const Shape& s) const;     // -1 allowed once; needs compatible strides
  Tensor reshape(const Shape& s) const;  // view when possible, else copy
  Tensor permute(const Shape& dims) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor t() const { return transpose(0, 1); }
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;  // python a[s:e:st]
  Tensor select(int64_t dim, int64_t index) const;                               // drops dim
  Tensor expand(const Shape& s) const;                                           // -1 keeps a dim
  Tensor squeeze() const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor flatten(int64_t start = 0, int64_t end = -1) const;
  Tensor as_strided_diag() const;  // main diagonal of a 2-D tensor as a view (no autograd)

  // ---- operators (forwards to ops.h) -------------------------------------------------------
  Tensor operator-() const;
  Tensor operator[](int64_t i) const { return select(0, i); }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Layout layout;
  DType dtype = DType::F32;
  bool requires_grad = false;
  std::shared_ptr<Node> grad_fn;           // set on results of differentiable ops
  std::shared_ptr<Node> grad_accumulator;  // created lazily for leaves that require grad
  Tensor grad;                             // accumulated gradient of a leaf
};

// ---- creation -------------------------------------------------------------------------------
struct TensorOptions {
  DType dtype = DType::F32;
  Device device = Device::cpu();
  bool requires_grad = false;
  TensorOptions() = default;
  TensorOptions(DType d) : dtype(d) {}  // NOLINT: lets zeros({2}, DType::BF16) read naturally
  TensorOptions(DType d, Device dev) : dtype(d), device(dev) {}
};

Tensor empty(const Shape& shape, TensorOptions opt = {});
Tensor zeros(const Shape& shape, TensorOptions opt = {});
Tensor ones(const Shape& shape, TensorOptions opt = {});
Tensor full(const Shape& shape, double value, TensorOptions opt = {});
Tensor scalar_tensor(double value, TensorOptions opt = {});  // 0-d
Tensor arange(double start, double end, double step = 1, TensorOptions opt = DType::I64);
inline Tensor arange(double end, TensorOptions opt = DType::I64) { return arange(0, end, 1, opt); }
Tensor linspace(double start, double end, int64_t steps, TensorOptions opt = {});
Tensor eye(int64_t n, int64_t m = -1, TensorOptions opt = {});
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor empty_like(const Tensor& t);
Tensor full_like(const Tensor& t, double value);
// Copies `nbytes` from a host buffer holding `shape` elements of `dtype`.
Tensor from_blob(const void* data, const Shape& shape, DType dtype, Device device = Device::cpu());
template <class T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape);
template <class T>
Tensor from_vector(const std::vector<T>& values) {
  return from_vector(values, Shape{static_cast<int64_t>(values.size())});
}
// A tensor viewing existing storage with an explicit layout (used by io and views).
Tensor make_tensor(std::shared_ptr<Storage> storage, const Layout& layout, DType dtype);

// ---- random (Philox counter-based: same stream on CPU and CUDA, any thread count) ----------
class Generator;
Tensor rand(const Shape& shape, TensorOptions opt = {}, Generator* gen = nullptr);   // U[0,1)
Tensor randn(const Shape& shape, TensorOptions opt = {}, Generator* gen = nullptr);  // N(0,1)
Tensor uniform(const Shape& shape, double lo, double hi, TensorOptions opt = {}, Generator* gen = nullptr);
Tensor normal(const Shape& shape, double mean, double std, TensorOptions opt = {}, Generator* gen = nullptr);
Tensor randint(int64_t low, int64_t high, const Shape& shape, TensorOptions opt = DType::I64,
               Generator* gen = nullptr);
// Building a module whose every parameter a checkpoint overwrites: in this scope rand, uniform,
// randn and normal return uninitialised tensors and draw nothing (torch's skip_init), so loading an
// 11B-parameter model does not first draw 11B numbers to throw away. Thread-local; nests.
struct SkipInitGuard {
  SkipInitGuard();
  ~SkipInitGuard();
  SkipInitGuard(const SkipInitGuard&) = delete;
  SkipInitGuard& operator=(const SkipInitGuard&) = delete;

 private:
  bool previous_;
};
bool skip_init_enabled();
Tensor bernoulli(const Tensor& p, Generator* gen = nullptr);  // 0/1 of p's dtype
// Rows of `probs` (..., K) are unnormalised weights; draws n indices per row (int64).
Tensor multinomial(const Tensor& probs, int64_t n, bool replacement = false, Generator* gen = nullptr);
void manual_seed(uint64_t seed);

// ---- element type mapping -------------------------------------------------------------------
template <class T>
constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<double>() { return DType::F64; }
template <> constexpr DType dtype_of<bf16>() { return DType::BF16; }
template <> constexpr DType dtype_of<f16>() { return DType::F16; }
template <> constexpr DType dtype_of<int32_t>() { return DType::I32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::I64; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::U8; }
template <> constexpr DType dtype_of<bool>() { return DType::Bool; }

template <class T>
T* Tensor::data() const {
  VT_CHECK(defined(), "data: undefined tensor");
  VT_CHECK(dtype() == dtype_of<T>(), "data<", dtype_name(dtype_of<T>()), ">: tensor has dtype ",
           dtype_name(dtype()));
  return static_cast<T*>(raw_data());
}

template <class T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape) {
  VT_CHECK(static_cast<int64_t>(values.size()) == shape.numel(), "from_vector: ", values.size(),
           " values for shape ", shape.str());
  if constexpr (std::is_same_v<T, bool>) {
    std::vector<uint8_t> b(values.begin(), values.end());
    return from_blob(b.data(), shape, DType::Bool);
  } else {
    return from_blob(values.data(), shape, dtype_of<T>());
  }
}

std::ostream& operator<<(std::ostream& os, const Tensor& t);

}  // namespace vt
