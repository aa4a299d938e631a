// gemm_lt.cu: linear layers on cuBLASLt with the bias (and GELU) folded into the GEMM's epilogue,
// the "linear_bias_forward" kernel of nn::linear (include/vt/nn/functional.h).
//
//   out (M, N) = act(x (M, K) @ weight (N, K)^T + bias (N)),   act = identity or GELU (tanh form)
//
// The epilogue adds the bias to the f32 accumulator and rounds once to the output dtype, which is
// what torch's F.linear does on CUDA (addmm -> cublasLt with CUBLASLT_EPILOGUE_BIAS), and saves the
// separate broadcast-add pass (a full read and write of the output) of matmul-then-add.
//
// Layout: cuBLASLt is column-major. The row-major out (M, N) is the column-major out^T (N, M) =
// W (N, K) @ x^T (K, M); the row-major weight (N, K) is the column-major (K, N) matrix W^T, read
// with op T; the row-major x (M, K) is the column-major (K, M) x^T, read with op N. The bias runs
// along the rows of out^T, which is the epilogue's bias vector of length N.
//
// Precision: f32 inputs use CUBLAS_COMPUTE_32F (no TF32, as PyTorch's default), bf16/f16 inputs
// accumulate in f32. Descriptors are created per call (microseconds); the heuristic picks the
// algorithm. Operands must be contiguous and share a dtype; nn::linear checks that.
#include <cublasLt.h>

#include <mutex>
#include <vector>

#include "allocator.h"
#include "backend.h"
#include "check.h"
#include "device.h"
#include "vt/nn/functional.h"

namespace vt::cuda {

namespace {

// A cuBLASLt handle is thread-safe and stream-free; the workspace is the stream's (device.h).
struct LtHandle {
  cublasLtHandle_t handle = nullptr;
};

LtHandle& lt_handle(int device) {
  static std::mutex mu;
  static std::vector<LtHandle*> all;  // leaked on purpose: used until process exit
  std::lock_guard<std::mutex> lock(mu);
  if (all.empty()) all.assign(std::max(device_count(), 1), nullptr);
  if (!all[device]) {
    auto* h = new LtHandle();
    VT_CUBLAS_CHECK(cublasLtCreate(&h->handle));
    all[device] = h;
  }
  return *all[device];
}

// Destroys cuBLASLt descriptors when the call ends, however it ends.
struct LtDescriptors {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  ~LtDescriptors() {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (d) cublasLtMatrixLayoutDestroy(d);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

void linear_bias_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, bool gelu_tanh,
                         const Tensor& out) {
  check_cuda(x, "linear");
  check_cuda(weight, "linear");
  check_cuda(bias, "linear");
  check_cuda(out, "linear");
  const DType t = x.dtype();
  VT_CHECK(weight.dtype() == t && bias.dtype() == t && out.dtype() == t, "cuda linear: dtypes differ");
  VT_CHECK(x.is_contiguous() && weight.is_contiguous() && bias.is_contiguous() && out.is_contiguous(),
           "cuda linear: operands must be contiguous");
  const int64_t M = x.size(0), K = x.size(1), N = weight.size(0);
  VT_CHECK(weight.size(1) == K && bias.numel() == N && out.size(0) == M && out.size(1) == N,
           "cuda linear: shapes x ", x.shape().str(), " weight ", weight.shape().str(), " bias ", bias.shape().str(),
           " out ", out.shape().str());
  VT_CHECK(M <= INT32_MAX && N <= INT32_MAX && K <= INT32_MAX, "cuda linear: sizes beyond 32-bit cuBLASLt limits");
  if (M == 0 || N == 0) return;
  DeviceGuard g(out.device());
  cudaDataType_t dt;
  switch (t) {
    case DType::F32: dt = CUDA_R_32F; break;
    case DType::BF16: dt = CUDA_R_16BF; break;
    case DType::F16: dt = CUDA_R_16F; break;
    default: VT_FAIL("cuda linear: unsupported dtype ", dtype_name(t));
  }
  LtHandle& h = lt_handle(out.device().index);
  const cudaStream_t stream = current_stream(out.device().index);
  LtDescriptors desc;
  VT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t op_t = CUBLAS_OP_T, op_n = CUBLAS_OP_N;
  VT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc.op, CUBLASLT_MATMUL_DESC_TRANSA, &op_t, sizeof(op_t)));
  VT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc.op, CUBLASLT_MATMUL_DESC_TRANSB, &op_n, sizeof(op_n)));
  const cublasLtEpilogue_t epi = gelu_tanh ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
  VT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
  const void* bias_ptr = bias.raw_data();
  VT_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(desc.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_ptr, sizeof(bias_ptr)));
  VT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &dt, sizeof(dt)));
  // A = weight as column-major (K, N), op T -> (N, K); B = x as column-major (K, M); D = (N, M).
  VT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&desc.a, dt, K, N, K));
  VT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&desc.b, dt, K, M, K));
  VT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&desc.d, dt, N, M, N));
  VT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&desc.pref));
  const size_t ws = kGemmWorkspaceBytes;
  VT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(desc.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                       sizeof(ws)));
  cublasLtMatmulHeuristicResult_t heuristic{};
  int found = 0;
  VT_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(h.handle, desc.op, desc.a, desc.b, desc.d, desc.d, desc.pref, 1,
                                                 &heuristic, &found));
  VT_CHECK(found > 0, "cuda linear: cuBLASLt has no algorithm for ", dtype_name(t), " (", M, "x", K, ") @ (", K, "x",
           N, ")^T with a ", gelu_tanh ? "GELU+bias" : "bias", " epilogue");
  const float one = 1.f, zero = 0.f;
  VT_CUBLAS_CHECK(cublasLtMatmul(h.handle, desc.op, &one, weight.raw_data(), desc.a, x.raw_data(), desc.b, &zero,
                                 out.raw_data(), desc.d, out.raw_data(), desc.d, &heuristic.algo,
                                 gemm_workspace(out.device().index, stream), kGemmWorkspaceBytes, stream));
}

}  // namespace

void register_gemm_lt_kernels() {
  kernels::register_kernel("linear_bias_forward", DeviceType::CUDA,
                           static_cast<kernels::LinearBiasForwardFn*>(linear_bias_forward));
}

}  // namespace vt::cuda
