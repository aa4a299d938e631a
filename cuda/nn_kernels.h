// nn_kernels.h: the fused nn and optimizer kernels of the CUDA backend, registered by name in the
// kernel registry (include/vt/backend.h) under the same names as their CPU versions. Each .cu file
// registers its kernels from one function, called once by ensure_registered() (backend.cu):
//   nn_norm.cu         layer_norm forward and backward (and, through nn_rms_norm.cu and
//                      nn_group_norm.cu, rms_norm, add_rms_norm and group_norm)
//   nn_activation.cu   softmax forward and backward, activations, swiglu
//   nn_loss.cu         cross-entropy and bitwise cross-entropy forward and backward
//   nn_rope_interp.cu  rope_apply, interpolate forward and backward
//   nn_conv.cu         conv2d forward and backward (cuDNN in nn_conv_cudnn.cu, else im2col + cuBLAS)
//   optim_adamw.cu     adamw_step
//   nn_attention.cu    attention_forward and backward (flash-attention style; bf16/f16 with
//                      D = 64, 128 on tensor cores in flash_attention_{fwd,bwd}.cu)
// Below the declarations: the few device helpers these files share (warp and block sums, float
// dtype dispatch), visible to nvcc only.
#pragma once
#include <array>
#include <cstdint>

namespace vt::cuda {

// How many conv2d forward calls ran on cuDNN and on im2col + cuBLAS (nn_conv.cu), so that a test
// can check that the path it means was taken.
std::array<int64_t, 2> conv2d_forward_runs();

void register_nn_norm_kernels();
void register_rms_norm_kernels();    // called by register_nn_norm_kernels
void register_group_norm_kernels();  // likewise
void register_nn_activation_kernels();
void register_nn_loss_kernels();
void register_nn_rope_interp_kernels();
void register_nn_conv_kernels();
void register_optim_adamw_kernels();
void register_attention_kernels();

}  // namespace vt::cuda

#ifdef __CUDACC__
#include "loop.cuh"

namespace vt::cuda::nnk {

// Sum / max over the 32 lanes of a warp; every lane gets the result. The butterfly order is fixed,
// so the result is the same run to run.
template <class A>
__device__ __forceinline__ A warp_sum(A v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
template <class A>
__device__ __forceinline__ A warp_max(A v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const A u = __shfl_xor_sync(0xffffffffu, v, o);
    v = (u > v || u != u) ? u : v;  // NaN wins, as in a sequential max that propagates NaN
  }
  return v;
}

// Sum over a whole block of blockDim.x threads (a multiple of 32, at most 1024); every thread gets
// the result. `scratch` holds 32 values; the call ends with a barrier, so it may be reused at once.
template <class A>
__device__ __forceinline__ A block_sum(A v, A* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  A t = lane < warps ? scratch[lane] : A(0);
  t = warp_sum(t);
  __syncthreads();
  return t;
}

// Max over a whole block, as block_sum (NaN wins, as in warp_max).
template <class A>
__device__ __forceinline__ A block_max(A v, A* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_max(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  A t = lane < warps ? scratch[lane] : A(-INFINITY);
  t = warp_max(t);
  __syncthreads();
  return t;
}

// Calls f(type_tag<T>{}) for the four float dtypes; other dtypes raise naming `op`.
template <class F>
decltype(auto) visit_float(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::F32: return f(type_tag<float>{});
    case DType::F64: return f(type_tag<double>{});
    case DType::BF16: return f(type_tag<bf16>{});
    case DType::F16: return f(type_tag<f16>{});
    default: VT_FAIL("cuda ", op, ": needs a floating-point tensor, got ", dtype_name(t));
  }
}

// Blocks for a grid over `n` items of `per_block` each (at least 1).
inline unsigned blocks_for(int64_t n, int64_t per_block) {
  const int64_t b = (n + per_block - 1) / per_block;
  return static_cast<unsigned>(b < 1 ? 1 : b);
}

}  // namespace vt::cuda::nnk
#endif
