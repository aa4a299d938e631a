// gemm.cu: batched matmul on cuBLAS: out (B, M, N) = a (B, M, K) @ b (B, K, N), any strides.
//
// cuBLAS is column-major; a row-major C (M, N) with row stride ldc is the column-major matrix C^T
// (N, M) with leading dimension ldc. So vt computes C^T = b^T a^T: cuBLAS's "A" is b and its "B" is
// a. An operand (R, C) with strides (sr, sc) is read in place when one stride is 1 and the other a
// valid leading dimension: sc == 1 is a row-major matrix (no transpose of its transpose: op N),
// sr == 1 a column-major one (op T). Anything else (both strides > 1, a broadcast inner dim) is
// first copied contiguous. The batch runs as one strided-batched call when each operand has one
// batch stride (0 for a broadcast batch is fine).
//
// Precision: f32 in f32 with CUBLAS_COMPUTE_32F (no TF32, as PyTorch's default for matmul), f64 in
// f64, bf16 and f16 operands with f32 accumulation (CUBLAS_COMPUTE_32F) and one rounding to the
// 16-bit output. cuBLAS picks its kernels by heuristics (cublasGemmEx calls cuBLASLt underneath,
// as torch.matmul does), with a 32 MiB workspace per stream so the split-K and stream-K kernels
// are available.
#include <mutex>
#include <vector>

#include "allocator.h"
#include "backend.h"
#include "loop.cuh"

namespace vt::cuda {

namespace {

// One cuBLAS handle per device, shared by every stream: a call takes the handle's lock, binds it to
// the calling thread's current stream and that stream's workspace (device.h) when another stream
// had it, and enqueues.
struct Blas {
  std::mutex mu;
  cublasHandle_t handle = nullptr;
  cudaStream_t bound = nullptr;  // the stream (and its workspace) the handle is set to
  bool any_bound = false;
};

struct BlasCall {
  std::unique_lock<std::mutex> lock;
  cublasHandle_t handle;
};

BlasCall blas_handle(int device) {
  static std::mutex mu;
  static std::vector<Blas*> all;  // leaked: handles outlive static destruction safely
  Blas* b;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (all.empty()) all.assign(std::max(device_count(), 1), nullptr);
    if (!all[device]) {
      auto* nb = new Blas();
      DeviceGuard g(device);
      VT_CUBLAS_CHECK(cublasCreate(&nb->handle));
      VT_CUBLAS_CHECK(cublasSetMathMode(nb->handle, CUBLAS_DEFAULT_MATH));
      all[device] = nb;
    }
    b = all[device];
  }
  BlasCall call{std::unique_lock<std::mutex>(b->mu), b->handle};
  const cudaStream_t stream = current_stream(device);
  if (!b->any_bound || stream != b->bound) {  // cublasSetStream also resets the workspace: set both
    VT_CUBLAS_CHECK(cublasSetStream(b->handle, stream));
    VT_CUBLAS_CHECK(cublasSetWorkspace(b->handle, gemm_workspace(device, stream), kGemmWorkspaceBytes));
    b->bound = stream, b->any_bound = true;
  }
  return call;
}

// How cuBLAS reads one operand: op, leading dimension, batch stride.
struct Operand {
  const void* ptr;
  cublasOperation_t op;
  int64_t ld, batch_stride;
};

// The operand X (rows R, cols C) described so that op(X as stored) is the column-major X^T (C, R)
// the swapped product needs (cuBLAS's A = b^T, B = a^T); false when the strides do not allow it.
bool as_transposed(const Tensor& x, Operand& o) {
  const int64_t R = x.shape()[1], C = x.shape()[2];
  int64_t sr = x.strides()[1], sc = x.strides()[2];
  // The stride of a size-1 dim is free: pick the one that makes the other layout valid.
  if (R == 1) sr = sc == 1 ? std::max<int64_t>(C, 1) : 1;
  if (C == 1) sc = sr == 1 ? std::max<int64_t>(R, 1) : 1;
  o.ptr = x.raw_data();
  o.batch_stride = x.shape()[0] == 1 ? 0 : x.strides()[0];
  if (sc == 1 && sr >= std::max<int64_t>(C, 1)) {  // row-major X = column-major X^T: no transpose
    o.op = CUBLAS_OP_N;
    o.ld = sr;
    return true;
  }
  if (sr == 1 && sc >= std::max<int64_t>(R, 1)) {  // column-major X: transpose it
    o.op = CUBLAS_OP_T;
    o.ld = sc;
    return true;
  }
  return false;
}

bool fits_int(int64_t v) { return v >= 0 && v <= INT32_MAX; }

}  // namespace

void CudaBackend::bmm(const Tensor& a_in, const Tensor& b_in, const Tensor& out_in) {
  check_cuda(a_in, "bmm");
  check_cuda(b_in, "bmm");
  check_cuda(out_in, "bmm");
  VT_CHECK(a_in.dim() == 3 && b_in.dim() == 3 && out_in.dim() == 3, "cuda bmm: expects 3-d operands");
  const DType t = out_in.dtype();
  VT_CHECK(a_in.dtype() == t && b_in.dtype() == t, "cuda bmm: dtypes ", dtype_name(a_in.dtype()), " @ ",
           dtype_name(b_in.dtype()), " -> ", dtype_name(t));
  const int64_t B = out_in.shape()[0], M = out_in.shape()[1], N = out_in.shape()[2], K = a_in.shape()[2];
  if (B == 0 || M == 0 || N == 0) return;
  DeviceGuard g(out_in.device());
  if (K == 0) return fill(out_in, 0);

  // Operands cuBLAS can read in place, else contiguous copies.
  Tensor a = a_in, b = b_in, out = out_in;
  Operand oa, ob, oc;
  if (!as_transposed(a, oa)) {
    a = a_in.contiguous();
    as_transposed(a, oa);
  }
  if (!as_transposed(b, ob)) {
    b = b_in.contiguous();
    as_transposed(b, ob);
  }
  // The output must be row-major (C^T column-major, op N): unit column stride, row stride >= N.
  auto row_major = [&](const Tensor& c) {
    const int64_t sr = c.strides()[1], sc = c.strides()[2];
    oc.ptr = c.raw_data();
    oc.op = CUBLAS_OP_N;
    oc.ld = M == 1 ? N : sr;
    oc.batch_stride = B == 1 ? 0 : c.strides()[0];
    return (N == 1 || sc == 1) && (M == 1 || sr >= N) && (B == 1 || c.strides()[0] > 0);
  };
  if (!row_major(out)) {
    out = empty(out_in.shape(), {t, out_in.device()});
    row_major(out);
  }
  VT_CHECK(fits_int(M) && fits_int(N) && fits_int(K) && fits_int(B) && fits_int(oa.ld) && fits_int(ob.ld) &&
               fits_int(oc.ld),
           "cuda bmm: sizes beyond 32-bit cuBLAS limits (", B, "x", M, "x", N, "x", K, ")");

  cudaDataType_t dt;
  cublasComputeType_t ct;
  switch (t) {
    case DType::F32: dt = CUDA_R_32F, ct = CUBLAS_COMPUTE_32F; break;
    case DType::F64: dt = CUDA_R_64F, ct = CUBLAS_COMPUTE_64F; break;
    case DType::BF16: dt = CUDA_R_16BF, ct = CUBLAS_COMPUTE_32F; break;
    case DType::F16: dt = CUDA_R_16F, ct = CUBLAS_COMPUTE_32F; break;
    default: VT_FAIL("matmul: unsupported dtype ", dtype_name(t), " on cuda");
  }
  const float one_f = 1.f, zero_f = 0.f;
  const double one_d = 1.0, zero_d = 0.0;
  const void* alpha = t == DType::F64 ? static_cast<const void*>(&one_d) : &one_f;
  const void* beta = t == DType::F64 ? static_cast<const void*>(&zero_d) : &zero_f;
  const BlasCall blas = blas_handle(out.device().index);
  cublasHandle_t h = blas.handle;
  // C^T (N, M) = op(b^T) (N, K) @ op(a^T) (K, M); cuBLAS "A" = b, "B" = a.
  if (B == 1) {
    VT_CUBLAS_CHECK(cublasGemmEx(h, ob.op, oa.op, static_cast<int>(N), static_cast<int>(M), static_cast<int>(K), alpha,
                                 ob.ptr, dt, static_cast<int>(ob.ld), oa.ptr, dt, static_cast<int>(oa.ld), beta,
                                 out.raw_data(), dt, static_cast<int>(oc.ld), ct, CUBLAS_GEMM_DEFAULT));
  } else {
    VT_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        h, ob.op, oa.op, static_cast<int>(N), static_cast<int>(M), static_cast<int>(K), alpha, ob.ptr, dt,
        static_cast<int>(ob.ld), ob.batch_stride, oa.ptr, dt, static_cast<int>(oa.ld), oa.batch_stride, beta,
        out.raw_data(), dt, static_cast<int>(oc.ld), oc.batch_stride, static_cast<int>(B), ct, CUBLAS_GEMM_DEFAULT));
  }
  if (!out.is_same(out_in)) copy(out, out_in);
}

}  // namespace vt::cuda
