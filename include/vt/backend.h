// backend.h: the kernel interface a device implements.
//
// The op layer (src/ops_*.cpp) does shapes, dtype promotion, broadcasting and autograd once; it then
// hands already-broadcast views to the kernels of the tensors' device through this interface. The
// CPU backend lives in src/cpu_*.cpp, the CUDA backend in cuda/. A kernel a backend lacks answers
// `supports() == false`, and the op raises an error naming the op and the device, so a missing
// kernel is a visible gap rather than a silent fallback.
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <type_traits>
#include <typeinfo>

#include "vt/tensor.h"

namespace vt {
class Generator;
}

namespace vt::kernels {

enum class UnaryOp : uint8_t {
  Neg, Abs, Sign, Exp, Log, Sqrt, Rsqrt, Sin, Cos, Tanh, Sigmoid, Relu, Square, Reciprocal,
  Clamp,      // p0 = min (or -inf), p1 = max (or +inf)
  PowScalar,  // p0 = exponent
  IsNan, IsInf, LogicalNot,  // Bool output
};
enum class BinaryOp : uint8_t {
  Add, Sub, Mul, Div, Pow, Max, Min,  // out dtype = input dtype; Add/Sub use alpha: a + alpha*b
  Eq, Ne, Lt, Le, Gt, Ge, And, Or,    // Bool output
};
enum class ReduceOp : uint8_t { Sum, Max, Min, ArgMax, ArgMin };
enum class RandomDist : uint8_t { Uniform, Normal, RandInt, Bernoulli };

const char* name(UnaryOp op);
const char* name(BinaryOp op);

struct Backend {
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  // nbytes on `device` (this backend's kind; the index picks the GPU).
  virtual std::shared_ptr<Storage> allocate(size_t nbytes, Device device) = 0;

  // dst[i] = cast(src[i]); src is a view already broadcast to dst's shape (0 strides allowed).
  virtual void copy(const Tensor& src, const Tensor& dst) = 0;
  virtual void fill(const Tensor& dst, double value) = 0;
  // out = op(x); x and out have the same shape; out dtype is x's (Bool for the predicates).
  virtual void unary(UnaryOp op, const Tensor& x, const Tensor& out, double p0, double p1) = 0;
  // out = op(a, b); a and b are broadcast views of out's shape, of one dtype.
  virtual void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out, double alpha) = 0;
  // out = cond ? a : b; all broadcast views of out's shape; a, b of out's dtype.
  virtual void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) = 0;
  // Reduces x over the dims whose bit is set in `mask`; out has x's shape with those dims = 1.
  // Sum accumulates in double (f64) or float-with-double-partials; ArgMax/ArgMin write int64.
  // Deterministic: the summation order does not depend on the thread count.
  virtual void reduce(ReduceOp op, const Tensor& x, uint32_t mask, const Tensor& out) = 0;
  virtual void cumsum(const Tensor& x, int dim, const Tensor& out) = 0;
  // Sorts along the last dim of x (rows); values and int64 indices to out tensors of x's shape.
  virtual void sort_rows(const Tensor& x, bool descending, const Tensor& values, const Tensor& indices) = 0;
  // out(i..,j,k..) = x(i.., index(j), k..) along `dim`.
  virtual void index_select(const Tensor& x, int dim, const Tensor& index, const Tensor& out) = 0;
  virtual void gather(const Tensor& x, int dim, const Tensor& index, const Tensor& out) = 0;
  // out += scatter of src along dim at index (out already holds x). Deterministic order.
  virtual void scatter_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src) = 0;
  // out (B, M, N) = a (B, M, K) @ b (B, K, N); batch dims flattened to one, any strides.
  virtual void bmm(const Tensor& a, const Tensor& b, const Tensor& out) = 0;
  // Philox stream: element i uses counter (i, call_offset) under key seed.
  virtual void random(RandomDist dist, const Tensor& out, double p0, double p1, uint64_t seed,
                      uint64_t call_offset) = 0;
};

Backend& backend(Device d);

// Fused kernels beyond the core interface (rms_norm, attention, cross-entropy, AdamW, ...) are
// registered by name per device type, each with the type of its signature. The op that owns a
// kernel declares the signature next to its definition, `using RmsNormForward = void(const
// Tensor& x, ...);`, and keeps one handle per kernel that looks it up once per device type:
//   const kernels::Kernel<RmsNormForward> kRmsNormForward("rms_norm_forward");
//   kRmsNormForward(x.device())(x, ...);
// A missing kernel is an error naming the kernel and the device (ggml's supports() made visible).
// A kernel looked up with another signature than it was registered with is an error naming the
// kernel and both signatures, never a call through the wrong type. Registering a name twice for
// one device type is an error too (a handle keeps what it found first).
using AnyKernel = void (*)();  // any function pointer; cast back to its own type before a call
void register_kernel(const char* name, DeviceType dev, AnyKernel fn, const std::type_info& signature);
template <class Fn>
void register_kernel(const char* name, DeviceType dev, Fn* fn) {
  static_assert(std::is_function_v<Fn>, "register_kernel: pass a function pointer");
  register_kernel(name, dev, reinterpret_cast<AnyKernel>(fn), typeid(Fn));
}
// The kernel (name, dev) registered with `signature`; nullptr when none is registered; throws when
// one is registered with another signature.
AnyKernel find_kernel(const char* name, DeviceType dev, const std::type_info& signature);
bool supports(const char* name, Device d);  // whether any kernel is registered under the name
template <class Fn>
Fn* get(const char* name, Device d) {
  AnyKernel p = find_kernel(name, d.type, typeid(Fn));
  VT_CHECK(p != nullptr, name, ": no kernel for device ", d.str());
  return reinterpret_cast<Fn*>(p);
}

// A call site's handle on one kernel: the first call per device type looks it up (get<Fn>, under
// the registry's lock), later calls read the cached pointer. Constant-initialised, so a handle at
// namespace scope is ready before any static constructor runs.
template <class Fn>
class Kernel {
 public:
  explicit constexpr Kernel(const char* name) : name_(name) {}
  Fn* operator()(Device d) const {
    std::atomic<Fn*>& slot = cache_[static_cast<size_t>(d.type)];
    Fn* f = slot.load(std::memory_order_acquire);
    if (f == nullptr) {
      f = get<Fn>(name_, d);
      slot.store(f, std::memory_order_release);
    }
    return f;
  }
  const char* name() const { return name_; }

 private:
  const char* name_;
  mutable std::array<std::atomic<Fn*>, 2> cache_{};  // per DeviceType: CPU, CUDA
};

// Registers at static-initialisation time: `static kernels::Registrar r("rms_norm_forward",
// DeviceType::CPU, &rms_norm_forward_cpu);` in the .cpp that defines the CPU kernel.
struct Registrar {
  template <class Fn>
  Registrar(const char* name, DeviceType dev, Fn* fn) {
    register_kernel(name, dev, fn);
  }
};
Backend& cpu_backend();
// Registered by the CUDA library at start-up when it is linked in.
void register_cuda_backend(Backend* b);

}  // namespace vt::kernels
