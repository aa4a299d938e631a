// check.h: every CUDA runtime, cuBLAS and cuDNN call in vt goes through these macros, which raise vt::Error
// naming the call, the file and line, and the library's own error string. Kernel launches are
// followed by VT_CUDA_CHECK_LAUNCH(), which reports launch-configuration errors at once (errors
// inside a running kernel surface at the next synchronising call, also checked).
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#ifdef VT_WITH_CUDNN  // defined for the files of libvt when CMake found cuDNN
#include <cudnn.h>
#endif

#include "vt/error.h"

namespace vt::cuda::detail {
[[noreturn]] inline void throw_cuda_error(cudaError_t e, const char* what, const char* file, int line) {
  (void)cudaGetLastError();  // clear a sticky-free error so the next call starts clean
  throw ::vt::Error(::vt::detail::concat("CUDA error ", cudaGetErrorName(e), " (", cudaGetErrorString(e),
                                         ") in ", what, " at ", file, ":", line));
}
[[noreturn]] inline void throw_cublas_error(cublasStatus_t s, const char* what, const char* file, int line) {
  throw ::vt::Error(::vt::detail::concat("cuBLAS error ", cublasGetStatusName(s), " (", cublasGetStatusString(s),
                                         ") in ", what, " at ", file, ":", line));
}
#ifdef VT_WITH_CUDNN
[[noreturn]] inline void throw_cudnn_error(cudnnStatus_t s, const char* what, const char* file, int line) {
  throw ::vt::Error(::vt::detail::concat("cuDNN error ", cudnnGetErrorString(s), " in ", what, " at ", file, ":",
                                         line));
}
#endif
}  // namespace vt::cuda::detail

#define VT_CUDA_CHECK(expr)                                                               \
  do {                                                                                    \
    const cudaError_t vt_cuda_err_ = (expr);                                              \
    if (vt_cuda_err_ != cudaSuccess)                                                      \
      ::vt::cuda::detail::throw_cuda_error(vt_cuda_err_, #expr, __FILE__, __LINE__);      \
  } while (0)

#define VT_CUDA_CHECK_LAUNCH() VT_CUDA_CHECK(cudaGetLastError())

#define VT_CUBLAS_CHECK(expr)                                                             \
  do {                                                                                    \
    const cublasStatus_t vt_cublas_st_ = (expr);                                          \
    if (vt_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                           \
      ::vt::cuda::detail::throw_cublas_error(vt_cublas_st_, #expr, __FILE__, __LINE__);   \
  } while (0)

#ifdef VT_WITH_CUDNN
#define VT_CUDNN_CHECK(expr)                                                              \
  do {                                                                                    \
    const cudnnStatus_t vt_cudnn_st_ = (expr);                                            \
    if (vt_cudnn_st_ != CUDNN_STATUS_SUCCESS)                                             \
      ::vt::cuda::detail::throw_cudnn_error(vt_cudnn_st_, #expr, __FILE__, __LINE__);     \
  } while (0)
#endif
