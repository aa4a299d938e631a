// dist_nccl.cpp: the NCCL backend of dist/process_group.h (CUDA tensors), training.md §10.
//
// One communicator per group, created by ncclCommInitRank after cudaSetDevice(device) from the
// unique id that rank 0 made (init_process_group sends it over MPI or a shared file). Every
// collective is queued on `stream` (null: the caller's current stream of the tensor's device) and
// returns at once; the host never waits. In-place forms follow NCCL's rules: reduce-scatter is in
// place when out == in + rank·n, all-gather when in == out + rank·n. ReduceOp::Avg is ncclAvg
// (NCCL >= 2.10). `accumulate` reduces into a scratch buffer on the same stream and adds it to the
// output (out = out + Σ in): NCCL has no accumulating collective. The scratch is announced to the
// stream (record_stream) so the caching allocator keeps it until the add has run.
// all_gather_async queues on the group's own communication stream, which first waits for the
// caller's current stream (the shard is written there); its Work makes the caller's current stream
// wait on an event recorded after the gather, so compute queued later reads the gathered buffer
// while compute queued earlier overlaps the transfer. Both buffers are announced to the
// communication stream (record_stream).
// Reduction order is NCCL's (ring or tree, chosen by size): not bitwise fixed across world sizes.
#ifdef VT_WITH_NCCL
#include <nccl.h>

#include <chrono>
#include <cstring>

#include "check.h"
#include "vt/autograd.h"
#include "vt/cuda.h"
#include "vt/dist/process_group.h"
#include "vt/ops.h"

#define VT_NCCL_CHECK(expr)                                                                       \
  do {                                                                                            \
    const ncclResult_t vt_nccl_rc_ = (expr);                                                      \
    VT_CHECK(vt_nccl_rc_ == ncclSuccess, "NCCL error at ", __FILE__, ":", __LINE__, ": ", #expr, \
             ": ", ncclGetErrorString(vt_nccl_rc_));                                             \
  } while (0)

namespace vt::dist {

namespace {

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::F32: return ncclFloat32;
    case DType::F64: return ncclFloat64;
    case DType::BF16: return ncclBfloat16;
    case DType::F16: return ncclFloat16;
    case DType::I32: return ncclInt32;
    case DType::I64: return ncclInt64;
    case DType::U8: case DType::Bool: return ncclUint8;
  }
  return ncclUint8;
}

class NcclProcessGroup final : public ProcessGroup {
 public:
  NcclProcessGroup(const std::vector<uint8_t>& id, int rank, int world, int device)
      : rank_(rank), size_(world), device_(device) {
    VT_CHECK(id.size() == sizeof(ncclUniqueId), "nccl: unique id of ", id.size(), " bytes, expected ",
             sizeof(ncclUniqueId));
    ncclUniqueId uid;
    std::memcpy(&uid, id.data(), sizeof uid);
    VT_CUDA_CHECK(cudaSetDevice(device));
    VT_NCCL_CHECK(ncclCommInitRank(&comm_, world, uid, rank));
  }
  ~NcclProcessGroup() override {
    if (comm_) ncclCommDestroy(comm_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "nccl"; }

  void all_reduce(Tensor& t, ReduceOp op, bool accumulate, const cuda::Stream* stream) override {
    check(t, "all_reduce");
    VT_CHECK(!accumulate, "nccl: all_reduce: accumulate needs separate input and output (use reduce_scatter)");
    const auto t0 = std::chrono::steady_clock::now();
    VT_NCCL_CHECK(ncclAllReduce(t.raw_data(), t.raw_data(), t.numel(), nccl_type(t.dtype()), nccl_op(op), comm_,
                                pick(stream)));
    count(2 * t.numel() * (size_ - 1) / size_, t.element_size(), since(t0));
  }

  void reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op, bool accumulate, const cuda::Stream* stream) override {
    check(in, "reduce_scatter");
    check(out, "reduce_scatter");
    const int64_t n = out.numel();
    VT_CHECK(in.numel() == n * size_ && in.dtype() == out.dtype(), "nccl: reduce_scatter: input ", in.shape().str(),
             " must hold ", size_, " blocks of the output ", out.shape().str());
    const auto t0 = std::chrono::steady_clock::now();
    cudaStream_t s = pick(stream);
    if (!accumulate) {
      VT_NCCL_CHECK(ncclReduceScatter(in.raw_data(), out.raw_data(), n, nccl_type(in.dtype()), nccl_op(op), comm_, s));
    } else {
      // out += reduce(in): into scratch on the same stream, then one add there.
      const cuda::Stream st = stream ? *stream : cuda::Stream::current(device_);
      cuda::StreamGuard guard(st);
      Tensor scratch = empty({n}, TensorOptions(out.dtype(), out.device()));
      VT_NCCL_CHECK(ncclReduceScatter(in.raw_data(), scratch.raw_data(), n, nccl_type(in.dtype()), nccl_op(op), comm_,
                                      st.handle()));
      NoGradGuard no_grad;
      Tensor dst = out.view({-1});
      copy_(dst, add(dst, scratch));
      cuda::record_stream(scratch, st);
    }
    count(n * (size_ - 1), in.element_size(), since(t0));
  }

  void all_gather(const Tensor& in, Tensor& out, const cuda::Stream* stream) override {
    check(in, "all_gather");
    check(out, "all_gather");
    const int64_t n = in.numel();
    VT_CHECK(out.numel() == n * size_ && in.dtype() == out.dtype(), "nccl: all_gather: output ", out.shape().str(),
             " must hold ", size_, " blocks of the input ", in.shape().str());
    const auto t0 = std::chrono::steady_clock::now();
    VT_NCCL_CHECK(ncclAllGather(in.raw_data(), out.raw_data(), n, nccl_type(in.dtype()), comm_, pick(stream)));
    count(n * (size_ - 1), in.element_size(), since(t0));
  }

  std::unique_ptr<Work> all_gather_async(const Tensor& in, Tensor& out) override {
    check(in, "all_gather_async");
    check(out, "all_gather_async");
    const int64_t n = in.numel();
    VT_CHECK(out.numel() == n * size_ && in.dtype() == out.dtype(), "nccl: all_gather_async: output ",
             out.shape().str(), " must hold ", size_, " blocks of the input ", in.shape().str());
    if (!comm_stream_) comm_stream_ = std::make_unique<cuda::Stream>(cuda::Stream::create(device_));
    const cuda::Stream caller = cuda::Stream::current(device_);
    comm_stream_->wait(caller);
    const auto t0 = std::chrono::steady_clock::now();
    VT_NCCL_CHECK(ncclAllGather(in.raw_data(), out.raw_data(), n, nccl_type(in.dtype()), comm_,
                                reinterpret_cast<cudaStream_t>(comm_stream_->handle())));
    count(n * (size_ - 1), in.element_size(), since(t0));
    cuda::record_stream(in, *comm_stream_);
    cuda::record_stream(out, *comm_stream_);
    auto work = std::make_unique<NcclWork>(device_);
    work->done.record(*comm_stream_);
    return work;
  }

  void broadcast(Tensor& t, int root, const cuda::Stream* stream) override {
    check(t, "broadcast");
    VT_NCCL_CHECK(ncclBroadcast(t.raw_data(), t.raw_data(), t.numel(), nccl_type(t.dtype()), root, comm_, pick(stream)));
    count(rank_ == root ? t.numel() : 0, t.element_size(), 0);
  }

  // A one-element all-reduce, then the host waits for it (training.md §9.3).
  void barrier() override {
    Tensor one = zeros({1}, TensorOptions(DType::F32, Device::cuda(device_)));
    all_reduce(one, ReduceOp::Sum, false, nullptr);
    cuda::synchronize(device_);
  }

 private:
  struct NcclWork final : Work {
    explicit NcclWork(int d) : device(d) {}
    void wait() override {
      if (waited) return;
      cuda::Stream::current(device).wait(done);
      waited = true;
    }
    ~NcclWork() override { wait(); }
    int device;
    cuda::Event done;
    bool waited = false;
  };

  static double since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  static ncclRedOp_t nccl_op(ReduceOp op) { return op == ReduceOp::Avg ? ncclAvg : ncclSum; }
  cudaStream_t pick(const cuda::Stream* s) const {
    return reinterpret_cast<cudaStream_t>(s ? s->handle() : cuda::stream(device_));
  }
  void check(const Tensor& t, const char* what) const {
    VT_CHECK(t.defined() && t.is_cuda() && t.device().index == device_ && t.is_contiguous(), "nccl: ", what,
             " takes contiguous tensors on cuda:", device_, t.defined() ? ", got one on " + t.device().str() : std::string());
  }
  int rank_, size_, device_;
  ncclComm_t comm_ = nullptr;
  std::unique_ptr<cuda::Stream> comm_stream_;  // all_gather_async's, made on first use
};

}  // namespace

bool nccl_available() { return true; }

std::vector<uint8_t> nccl_unique_id() {
  ncclUniqueId uid;
  VT_NCCL_CHECK(ncclGetUniqueId(&uid));
  std::vector<uint8_t> out(sizeof uid);
  std::memcpy(out.data(), &uid, sizeof uid);
  return out;
}

std::shared_ptr<ProcessGroup> make_nccl_group(const std::vector<uint8_t>& unique_id, int rank, int world, int device) {
  return std::make_shared<NcclProcessGroup>(unique_id, rank, world, device);
}

}  // namespace vt::dist
#endif  // VT_WITH_NCCL
