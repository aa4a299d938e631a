// shape.h: Shape (up to 8 dims, stored inline so that small ops never allocate for it), Device and
// Layout (shape + strides in elements + offset), the view arithmetic every op builds on.
#pragma once
#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "vt/error.h"

namespace vt {

inline constexpr int kMaxDims = 8;

// A fixed-capacity vector of int64 dims. Converts from braces and from std::vector.
class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) { assign(dims.begin(), dims.end()); }
  Shape(const std::vector<int64_t>& dims) { assign(dims.begin(), dims.end()); }  // NOLINT
  template <class It>
  Shape(It first, It last) { assign(first, last); }

  int size() const { return n_; }
  bool empty() const { return n_ == 0; }
  int64_t& operator[](int i) { return d_[i]; }
  int64_t operator[](int i) const { return d_[i]; }
  const int64_t* begin() const { return d_; }
  const int64_t* end() const { return d_ + n_; }
  int64_t* begin() { return d_; }
  int64_t* end() { return d_ + n_; }
  int64_t back() const { return d_[n_ - 1]; }
  void push_back(int64_t v) {
    VT_CHECK(n_ < kMaxDims, "shape: more than ", kMaxDims, " dims");
    d_[n_++] = v;
  }
  void insert(int pos, int64_t v) {
    VT_CHECK(n_ < kMaxDims, "shape: more than ", kMaxDims, " dims");
    for (int i = n_; i > pos; --i) d_[i] = d_[i - 1];
    d_[pos] = v;
    ++n_;
  }
  void erase(int pos) {
    for (int i = pos; i + 1 < n_; ++i) d_[i] = d_[i + 1];
    --n_;
  }
  void resize(int n, int64_t fill = 0) {
    VT_CHECK(n >= 0 && n <= kMaxDims, "shape: ", n, " dims (at most ", kMaxDims, ")");
    for (int i = n_; i < n; ++i) d_[i] = fill;
    n_ = n;
  }
  int64_t numel() const {
    int64_t p = 1;
    for (int i = 0; i < n_; ++i) p *= d_[i];
    return p;
  }
  std::vector<int64_t> vec() const { return {d_, d_ + n_}; }
  bool operator==(const Shape& o) const { return n_ == o.n_ && std::equal(begin(), end(), o.begin()); }
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::string str() const;  // "(2, 3)" as PyTorch prints torch.Size

 private:
  template <class It>
  void assign(It first, It last) {
    n_ = 0;
    for (; first != last; ++first) push_back(static_cast<int64_t>(*first));
  }
  int64_t d_[kMaxDims] = {};
  int n_ = 0;
};

std::ostream& operator<<(std::ostream& os, const Shape& s);

// Wraps a possibly negative dim index into [0, ndim); `what` names the op in the error.
inline int wrap_dim(int64_t dim, int ndim, const char* what) {
  int64_t n = std::max(ndim, 1);  // a 0-d tensor accepts dim 0 and -1, as in PyTorch
  VT_CHECK(dim >= -n && dim < n, what, ": dim ", dim, " out of range for a tensor of ", ndim, " dims");
  return static_cast<int>(dim < 0 ? dim + n : dim);
}

enum class DeviceType : uint8_t { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }
  static Device cpu() { return {}; }
  static Device cuda(int i = 0) { return {DeviceType::CUDA, i}; }
  static Device parse(const std::string& s);  // "cpu", "cuda", "cuda:1"
};

// Row-major contiguous strides for a shape.
inline Shape contiguous_strides(const Shape& shape) {
  Shape st;
  st.resize(shape.size());
  int64_t s = 1;
  for (int i = shape.size() - 1; i >= 0; --i) {
    st[i] = s;
    s *= std::max<int64_t>(shape[i], 1);
  }
  return st;
}

// Where the elements of a tensor live inside its storage: element (i0..in) is at
// offset + sum_k ik * strides[k] (in elements, not bytes).
struct Layout {
  Shape shape;
  Shape strides;
  int64_t offset = 0;

  Layout() = default;
  explicit Layout(const Shape& s, int64_t off = 0) : shape(s), strides(contiguous_strides(s)), offset(off) {}
  Layout(const Shape& s, const Shape& st, int64_t off) : shape(s), strides(st), offset(off) {}

  int ndim() const { return shape.size(); }
  int64_t numel() const { return shape.numel(); }
  bool is_contiguous() const {
    if (numel() == 0) return true;
    int64_t s = 1;
    for (int i = ndim() - 1; i >= 0; --i) {
      if (shape[i] != 1 && strides[i] != s) return false;
      s *= shape[i];
    }
    return true;
  }
  // One past the largest element index touched (0 for an empty tensor); used for bound checks.
  int64_t extent() const {
    if (numel() == 0) return offset;
    int64_t hi = offset;
    for (int i = 0; i < ndim(); ++i) hi += (shape[i] - 1) * std::max<int64_t>(strides[i], 0);
    return hi + 1;
  }
};

// The broadcast shape of two shapes under NumPy rules; `op` names the caller in the error.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);
// Strides that read a tensor of layout `l` as if it had the (broadcast) shape `to`: 0 for new or
// size-1 dims.
Shape broadcast_strides(const Layout& l, const Shape& to);

}  // namespace vt
