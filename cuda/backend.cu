// backend.cu: the CUDA backend object and its memory-moving kernels: allocate, copy (host <-> device,
// device strided, with dtype cast), fill and where; plus ensure_registered(), which creates the
// backend once for src/backend.cpp.
//
// copy: a same-dtype dense device copy is one cudaMemcpyAsync; other same-dtype copies move the
// element bits (uintN) through the map kernels (dense 128-bit or strided); a cast converts in
// compute precision with the CPU's exact rules (float -> int truncates toward zero and saturates,
// NaN -> 0; f64 -> bf16/f16 rounds through f32 as torch does; NaNs keep the bits x86 gives them), so
// CUDA and CPU casts agree bit for bit. Host <-> device copies go through the pinned staging
// buffers (allocator.cu); a strided or casting cross-device copy first makes the host side dense
// (on the CPU) or the device side dense (on the GPU).
// fill: the value's bytes are computed by the CPU backend's fill of one element (same rounding),
// then written by a byte-pattern map (cudaMemsetAsync when every byte is equal).
#include <cstring>

#include "allocator.h"
#include "backend.h"
#include "map.cuh"
#include "nn_kernels.h"
#include "vt/ops.h"

namespace vt::cuda {

void check_cuda(const Tensor& t, const char* op) {
  VT_CHECK(t.device().is_cuda(), "cuda ", op, ": tensor on ", t.device().str(), ", expected a CUDA device");
}

std::shared_ptr<Storage> CudaBackend::allocate(size_t nbytes, Device device) {
  VT_CHECK(is_available(), "cuda: no CUDA device is visible, so nothing can be allocated on ", device.str(),
           " (cudaGetDeviceCount found none)");
  return allocate_storage(nbytes, device.index);  // the allocator checks the index
}

// ---- casts -------------------------------------------------------------------------------------
// f64 -> f32 keeping a NaN's sign and top payload bits, quieted (x86 cvtsd2ss; the device's cvt
// would give the canonical NaN).
__device__ __forceinline__ float double_to_float_x86(double d) {
  const uint64_t u = f64_bits(d);
  if ((u & 0x7FFFFFFFFFFFFFFFull) > 0x7FF0000000000000ull)
    return f32_from_bits(static_cast<uint32_t>((u >> 32) & 0x80000000u) | 0x7FC00000u |
                         static_cast<uint32_t>((u >> 29) & 0x7FFFFFu));
  return static_cast<float>(d);
}

template <class S, class D>
struct CastF {
  using CS = compute_t<S>;
  using CD = compute_t<D>;
  __device__ __forceinline__ D operator()(CS v) const {
    constexpr bool s_float = std::is_floating_point_v<CS>, d_float = std::is_floating_point_v<CD>;
    if constexpr (std::is_same_v<D, bool>) {
      return v != CS(0);
    } else if constexpr (s_float && !d_float) {
      // Truncate toward zero, saturating, NaN -> 0 (cpu_elementwise.cpp's rule), then narrow.
      const double x = static_cast<double>(v);
      const double lo = -9223372036854775808.0;
      const int64_t i = x != x ? 0 : x <= lo ? INT64_MIN : x >= -lo ? INT64_MAX : static_cast<int64_t>(x);
      return static_cast<D>(i);
    } else if constexpr (std::is_same_v<CS, double> && std::is_same_v<D, f16>) {
      return f16::from_bits(double_to_f16_bits(v));
    } else if constexpr (std::is_same_v<CS, double> && std::is_same_v<D, bf16>) {
      return bf16::from_bits(double_to_bf16_bits(v));
    } else if constexpr (std::is_same_v<CS, double> && std::is_same_v<D, float>) {
      return double_to_float_x86(v);
    } else if constexpr (std::is_same_v<CS, float> && std::is_same_v<D, double>) {
      return float_to_double_quieting(v);
    } else {
      return to_storage<D>(v);
    }
  }
};

struct IdentityF {
  template <class X>
  __device__ __forceinline__ X operator()(X v) const { return v; }
};

template <class U>
struct ConstantF {
  U value;
  __device__ __forceinline__ U operator()() const { return value; }
};

// Bits of src's elements into dst (same dtype), any strides.
static void copy_bits(const Tensor& src, const Tensor& dst) {
  switch (dst.element_size()) {
    case 1: return launch_map<uint8_t, uint8_t>(dst, IdentityF{}, {&src});
    case 2: return launch_map<uint16_t, uint16_t>(dst, IdentityF{}, {&src});
    case 4: return launch_map<uint32_t, uint32_t>(dst, IdentityF{}, {&src});
    case 8: return launch_map<uint64_t, uint64_t>(dst, IdentityF{}, {&src});
  }
  VT_FAIL("cuda copy: element size ", dst.element_size());
}

// Device to device, both on one CUDA device.
static void copy_device(const Tensor& src, const Tensor& dst) {
  VT_CHECK(src.device() == dst.device(), "cuda copy: tensors on ", src.device().str(), " and ", dst.device().str(),
           "; move between devices with to()");
  if (dst.numel() == 0) return;
  DeviceGuard g(dst.device());
  if (src.dtype() == dst.dtype()) {
    if (src.is_contiguous() && dst.is_contiguous() && src.shape() == dst.shape()) {
      if (src.raw_data() != dst.raw_data())
        VT_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), dst.nbytes(), cudaMemcpyDeviceToDevice,
                                      context(dst.device().index).stream()));
      return;
    }
    return copy_bits(src, dst);
  }
  visit_dtype(src.dtype(), [&](auto s) {
    visit_dtype(dst.dtype(), [&](auto d) {
      using S = typename decltype(s)::type;
      using D = typename decltype(d)::type;
      launch_map<D, S>(dst, CastF<S, D>{}, {&src});
    });
  });
}

void CudaBackend::copy(const Tensor& src, const Tensor& dst) {
  VT_CHECK(src.shape() == dst.shape(), "cuda copy: source shape ", src.shape().str(), " differs from destination ",
           dst.shape().str());
  if (dst.numel() == 0) return;
  const bool src_gpu = src.device().is_cuda(), dst_gpu = dst.device().is_cuda();
  if (src_gpu && dst_gpu) return copy_device(src, dst);
  VT_CHECK(src_gpu || dst_gpu, "cuda copy: neither tensor is on a CUDA device");
  DeviceGuard g(dst_gpu ? dst.device() : src.device());  // staging tensors land on that device
  if (dst_gpu) {  // host -> device
    // Dense host bytes of src's dtype, then (if needed) a device pass for dtype and strides.
    Tensor host = src.is_contiguous() ? src : src.contiguous();
    const bool direct = dst.is_contiguous() && dst.dtype() == src.dtype();
    Tensor stage = direct ? dst : empty(dst.shape(), {src.dtype(), dst.device()});
    copy_host_to_device(stage.raw_data(), host.raw_data(), host.nbytes(), dst.device().index);
    if (!direct) copy_device(stage, dst);
    return;
  }
  // device -> host: make the device side dense in dst's dtype, then one staged transfer.
  Tensor dev = src;
  if (!src.is_contiguous() || src.dtype() != dst.dtype()) {
    dev = empty(src.shape(), {dst.dtype(), src.device()});
    copy_device(src, dev);
  }
  if (dst.is_contiguous()) {
    copy_device_to_host(dst.raw_data(), dev.raw_data(), dev.nbytes(), src.device().index);
  } else {
    Tensor host = empty(dst.shape(), {dst.dtype(), Device::cpu()});
    copy_device_to_host(host.raw_data(), dev.raw_data(), dev.nbytes(), src.device().index);
    kernels::cpu_backend().copy(host, dst);
  }
}

void CudaBackend::fill(const Tensor& dst, double value) {
  check_cuda(dst, "fill");
  if (dst.numel() == 0) return;
  DeviceGuard g(dst.device());
  // The element's bytes exactly as the CPU backend rounds `value` into this dtype.
  Tensor one = empty({}, {dst.dtype(), Device::cpu()});
  kernels::cpu_backend().fill(one, value);
  uint64_t bits = 0;
  const size_t es = dst.element_size();
  std::memcpy(&bits, one.raw_data(), es);
  const unsigned char* b = static_cast<const unsigned char*>(one.raw_data());
  bool same_bytes = true;
  for (size_t i = 1; i < es; ++i) same_bytes &= b[i] == b[0];
  if (same_bytes && dst.is_contiguous()) {
    VT_CUDA_CHECK(cudaMemsetAsync(dst.raw_data(), b[0], dst.nbytes(), context(dst.device().index).stream()));
    return;
  }
  switch (es) {
    case 1: return launch_map<uint8_t>(dst, ConstantF<uint8_t>{static_cast<uint8_t>(bits)}, {});
    case 2: return launch_map<uint16_t>(dst, ConstantF<uint16_t>{static_cast<uint16_t>(bits)}, {});
    case 4: return launch_map<uint32_t>(dst, ConstantF<uint32_t>{static_cast<uint32_t>(bits)}, {});
    case 8: return launch_map<uint64_t>(dst, ConstantF<uint64_t>{bits}, {});
  }
}

// ---- where ---------------------------------------------------------------------------------------
struct WhereF {
  template <class X>
  __device__ __forceinline__ X operator()(int64_t c, X a, X b) const { return c ? a : b; }
};

void CudaBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  check_cuda(out, "where");
  VT_CHECK(cond.dtype() == DType::Bool, "cuda where: condition must be bool, got ", dtype_name(cond.dtype()));
  VT_CHECK(a.dtype() == out.dtype() && b.dtype() == out.dtype(), "cuda where: operand dtypes ",
           dtype_name(a.dtype()), ", ", dtype_name(b.dtype()), " differ from the output's ", dtype_name(out.dtype()));
  DeviceGuard g(out.device());
  switch (out.element_size()) {
    case 1: return launch_map<uint8_t, bool, uint8_t, uint8_t>(out, WhereF{}, {&cond, &a, &b});
    case 2: return launch_map<uint16_t, bool, uint16_t, uint16_t>(out, WhereF{}, {&cond, &a, &b});
    case 4: return launch_map<uint32_t, bool, uint32_t, uint32_t>(out, WhereF{}, {&cond, &a, &b});
    case 8: return launch_map<uint64_t, bool, uint64_t, uint64_t>(out, WhereF{}, {&cond, &a, &b});
  }
}

// ---- registration ------------------------------------------------------------------------------
// Called by kernels::backend(Device::cuda()) on first use. Fused kernels of later layers (rms_norm,
// attention, ...) register here by name with kernels::register_kernel(name, DeviceType::CUDA, fn):
// an explicit call from this function, not a static Registrar, because an object file of a static
// library that nothing references is never linked.
kernels::Backend* ensure_registered() {
  static CudaBackend* backend = [] {
    auto* b = new CudaBackend();  // leaked: tensors may be released after static destruction
    register_nn_norm_kernels();
    register_nn_activation_kernels();
    register_nn_loss_kernels();
    register_nn_rope_interp_kernels();
    register_nn_conv_kernels();
    register_optim_adamw_kernels();
    register_attention_kernels();
    register_gemm_lt_kernels();
    return b;
  }();
  return backend;
}

}  // namespace vt::cuda
