// optim_adamw.cu: the fused AdamW step on CUDA, registered as "adamw_step" (the optimizer and the
// CPU version are in src/optim_adamw.cpp; the update rule is in include/vt/optim/adamw.h).
//
// One pass over n elements: the gradient is read in the parameter's dtype (or f32) and widened, the
// fp32 master weight and both fp32 moments are updated, and the parameter is rewritten from the
// master by round-to-nearest-even (bf16/f16) or copied (f32). Every operation is an explicitly
// rounded intrinsic (__fmul_rn, __fadd_rn, __fdiv_rn, __fsqrt_rn; the lerp's fma as __fmaf_rn),
// so nvcc cannot contract a product into an fma: the order and rounding are those of the CPU kernel,
// which is compiled with fp-contract=off, and the two agree bit for bit. Dense path: 4 elements per
// thread per iteration (128-bit loads of master, m, v), a grid-stride loop, a scalar tail.
#include "backend.h"
#include "loop.cuh"
#include "nn_kernels.h"
#include "vt/optim/adamw.h"

namespace vt::cuda {
namespace {

using optim::AdamWScalars;

constexpr int kThreads = 256;
constexpr int kVec = 4;

template <class P>
__device__ __forceinline__ P narrow(float x) { return to_storage<P>(x); }

// The update of one element; p, m, v in and out.
__device__ __forceinline__ void adamw_one(const AdamWScalars& s, float g, float& p, float& m, float& v) {
  p = __fmul_rn(p, s.decay);                                       // param.mul_(1 - lr*wd)
  m = __fmaf_rn(s.one_minus_beta1, __fsub_rn(g, m), m);            // exp_avg.lerp_(g, 1-b1)
  v = __fmul_rn(v, s.beta2);                                       // exp_avg_sq.mul_(b2)
  v = __fadd_rn(v, __fmul_rn(__fmul_rn(s.one_minus_beta2, g), g));  //   .addcmul_(g, g, 1-b2)
  const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), s.bc2_sqrt), s.eps);
  p = __fadd_rn(p, __fdiv_rn(__fmul_rn(s.neg_step_size, m), denom));  // addcdiv_(m, denom, -step_size)
}

// param, grad: (n) of P, G; master, m, v: (n) f32. `vec`: all pointers allow kVec-wide accesses.
template <class P, class G>
__global__ void __launch_bounds__(kThreads) adamw_kernel(AdamWScalars s, P* __restrict__ param,
                                                          const G* __restrict__ grad, float* __restrict__ master,
                                                          float* __restrict__ m, float* __restrict__ v, int64_t n,
                                                          bool vec) {
  const int64_t start = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t nvec = vec ? n / kVec : 0;
  for (int64_t i = start; i < nvec; i += step) {
    const int64_t e = i * kVec;
    const Vec<G, kVec> gv = *reinterpret_cast<const Vec<G, kVec>*>(grad + e);
    Vec<float, kVec> pv = *reinterpret_cast<const Vec<float, kVec>*>(master + e);
    Vec<float, kVec> mv = *reinterpret_cast<const Vec<float, kVec>*>(m + e);
    Vec<float, kVec> vv = *reinterpret_cast<const Vec<float, kVec>*>(v + e);
    Vec<P, kVec> out;
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      adamw_one(s, static_cast<float>(load(&gv.v[k])), pv.v[k], mv.v[k], vv.v[k]);
      out.v[k] = narrow<P>(pv.v[k]);
    }
    *reinterpret_cast<Vec<float, kVec>*>(master + e) = pv;
    *reinterpret_cast<Vec<float, kVec>*>(m + e) = mv;
    *reinterpret_cast<Vec<float, kVec>*>(v + e) = vv;
    *reinterpret_cast<Vec<P, kVec>*>(param + e) = out;
  }
  for (int64_t i = nvec * kVec + start; i < n; i += step) {
    float p = master[i], mi = m[i], vi = v[i];
    adamw_one(s, static_cast<float>(load(grad + i)), p, mi, vi);
    master[i] = p;
    m[i] = mi;
    v[i] = vi;
    param[i] = narrow<P>(p);
  }
}

bool aligned_to(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

template <class P, class G>
void launch(const AdamWScalars& s, const Tensor& param, const Tensor& grad, const Tensor& master,
            const Tensor& exp_avg, const Tensor& exp_avg_sq) {
  const int64_t n = param.numel();
  DeviceContext& ctx = context(param.device().index);
  const bool vec = aligned_to(param.raw_data(), sizeof(P) * kVec) && aligned_to(grad.raw_data(), sizeof(G) * kVec) &&
                   aligned16(master.raw_data()) && aligned16(exp_avg.raw_data()) && aligned16(exp_avg_sq.raw_data());
  adamw_kernel<P, G><<<grid_for((n + kVec - 1) / kVec, kThreads, ctx), kThreads, 0, ctx.stream()>>>(
      s, static_cast<P*>(param.raw_data()), static_cast<const G*>(grad.raw_data()),
      static_cast<float*>(master.raw_data()), static_cast<float*>(exp_avg.raw_data()),
      static_cast<float*>(exp_avg_sq.raw_data()), n, vec);
  VT_CUDA_CHECK_LAUNCH();
}

void adamw_step_cuda(const AdamWScalars& s, const Tensor& param, const Tensor& grad, const Tensor& master,
                     const Tensor& exp_avg, const Tensor& exp_avg_sq) {
  check_cuda(param, "adamw_step");
  VT_CHECK(grad.device() == param.device() && master.device() == param.device(), "adamw_step: parameter on ",
           param.device().str(), ", gradient on ", grad.device().str(), ", master on ", master.device().str());
  if (param.numel() == 0) return;
  DeviceGuard g(param.device());
  const bool f32_grad = grad.dtype() == DType::F32;  // an fp32 accumulation buffer for a 16-bit param
  switch (param.dtype()) {
    case DType::F32: return launch<float, float>(s, param, grad, master, exp_avg, exp_avg_sq);
    case DType::BF16:
      if (f32_grad) return launch<bf16, float>(s, param, grad, master, exp_avg, exp_avg_sq);
      return launch<bf16, bf16>(s, param, grad, master, exp_avg, exp_avg_sq);
    case DType::F16:
      if (f32_grad) return launch<f16, float>(s, param, grad, master, exp_avg, exp_avg_sq);
      return launch<f16, f16>(s, param, grad, master, exp_avg, exp_avg_sq);
    default: VT_FAIL("adamw_step: parameter dtype ", dtype_name(param.dtype()), " is not a float type");
  }
}

}  // namespace

void register_optim_adamw_kernels() {
  kernels::register_kernel("adamw_step", DeviceType::CUDA,
                           static_cast<optim::AdamWStepFn*>(&adamw_step_cuda));
}

}  // namespace vt::cuda
