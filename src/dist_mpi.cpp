// dist_mpi.cpp: the MPI backend of dist/process_group.h (CPU tensors), and abort_job.
//
// Every collective is the non-blocking MPI call (MPI_Ialltoall, MPI_Iallgather, MPI_Iallreduce,
// MPI_Ireduce_scatter_block, MPI_Ibcast, MPI_Ibarrier) followed by a wait that polls MPI_Test until
// the deadline: a peer that died or hangs turns into an error on this rank instead of a hang (Open
// MPI without ULFM never reports a dead peer to a blocked collective; mpirun ends the job when a rank
// exits non-zero, and abort_job ends it when a rank throws). all_gather_async returns after the
// MPI_Iallgather; its Work runs that wait later (Open MPI has no progress thread on its own: the
// transfer advances inside MPI calls, i.e. inside the waits of other collectives and this one).
//
// Fixed-order reductions (the default): reduce_scatter sends block r of every rank to rank r with
// MPI_Ialltoall, which then adds the N copies in rank order in the element type (fp32 for f32; bf16
// and f16 are added in fp32 and rounded after every add); all_reduce is that reduce_scatter over
// blocks of ceil(n/N), then an all-gather. The traffic equals the ring algorithms' ((N-1)/N of the
// buffer each way), the result is the same on every rank and for every N-way split of the work.
#include "vt/dist/process_group.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "vt/autograd.h"
#include "vt/ops.h"

#ifdef VT_WITH_MPI
#define OMPI_SKIP_MPICXX 1  // the C API only (Open MPI's deprecated C++ bindings need libmpi_cxx)
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace vt::dist {

#ifdef VT_WITH_MPI

namespace {

#define VT_MPI_CHECK(call, what)                                                                     \
  do {                                                                                               \
    const int vt_mpi_rc_ = (call);                                                                   \
    if (vt_mpi_rc_ != MPI_SUCCESS) {                                                                 \
      char vt_mpi_msg_[MPI_MAX_ERROR_STRING];                                                        \
      int vt_mpi_len_ = 0;                                                                           \
      MPI_Error_string(vt_mpi_rc_, vt_mpi_msg_, &vt_mpi_len_);                                       \
      VT_FAIL("mpi: ", what, " failed at ", __FILE__, ":", __LINE__, ": ", std::string(vt_mpi_msg_, vt_mpi_len_)); \
    }                                                                                                \
  } while (0)

// The datatype that moves the bytes of a vt dtype (16-bit floats move as uint16: MPI has no bf16).
MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::F32: return MPI_FLOAT;
    case DType::F64: return MPI_DOUBLE;
    case DType::I32: return MPI_INT32_T;
    case DType::I64: return MPI_INT64_T;
    case DType::U8: case DType::Bool: return MPI_UINT8_T;
    case DType::BF16: case DType::F16: return MPI_UINT16_T;
  }
  return MPI_BYTE;
}

// Native reductions of 16-bit floats: a user op that adds in fp32 and rounds.
template <class T>
void add_16bit(void* in, void* inout, int* len, MPI_Datatype*) {
  const T* a = static_cast<const T*>(in);
  T* b = static_cast<T*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = T(static_cast<float>(b[i]) + static_cast<float>(a[i]));
}

MPI_Op sum_op(DType t) {
  static MPI_Op bf16_sum = MPI_OP_NULL, f16_sum = MPI_OP_NULL;
  if (t == DType::BF16) {
    if (bf16_sum == MPI_OP_NULL) MPI_Op_create(&add_16bit<bf16>, 1, &bf16_sum);
    return bf16_sum;
  }
  if (t == DType::F16) {
    if (f16_sum == MPI_OP_NULL) MPI_Op_create(&add_16bit<f16>, 1, &f16_sum);
    return f16_sum;
  }
  return MPI_SUM;
}

// acc[i] = acc[i] + x[i] in T's arithmetic (16-bit floats through fp32).
template <class T>
void add_into(T* __restrict__ acc, const T* __restrict__ x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if constexpr (std::is_same_v<T, bf16> || std::is_same_v<T, f16>)
      acc[i] = T(static_cast<float>(acc[i]) + static_cast<float>(x[i]));
    else
      acc[i] = acc[i] + x[i];
  }
}

template <class T>
void divide_by(T* x, int64_t n, int world) {
  for (int64_t i = 0; i < n; ++i) {
    if constexpr (std::is_same_v<T, bf16> || std::is_same_v<T, f16>) x[i] = T(static_cast<float>(x[i]) / world);
    else x[i] = static_cast<T>(x[i] / world);
  }
}

template <class F>
void dispatch(DType t, const char* what, F&& f) {
  switch (t) {
    case DType::F32: f(float{}); break;
    case DType::F64: f(double{}); break;
    case DType::BF16: f(bf16{}); break;
    case DType::F16: f(f16{}); break;
    case DType::I32: f(int32_t{}); break;
    case DType::I64: f(int64_t{}); break;
    default: VT_FAIL("mpi: ", what, " of dtype ", dtype_name(t), " is not supported");
  }
}

bool g_we_initialized = false;

void finalize_at_exit() {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (init && !fin && g_we_initialized) MPI_Finalize();
}

class MpiProcessGroup final : public ProcessGroup {
 public:
  explicit MpiProcessGroup(const MpiOptions& o) : opt_(o) {
    int init = 0;
    MPI_Initialized(&init);
    if (!init) {
      int provided = 0;
      VT_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
      g_we_initialized = true;
      std::atexit(finalize_at_exit);
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);  // errors come back as codes -> vt::Error
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }

  void all_reduce(Tensor& t, ReduceOp op, bool accumulate, const cuda::Stream*) override {
    check_cpu(t, "all_reduce");
    VT_CHECK(!accumulate, "mpi: all_reduce: accumulate needs separate input and output (use reduce_scatter)");
    const auto t0 = now();
    const int64_t n = t.numel();
    if (size_ == 1 || n == 0) return;
    if (opt_.native_reductions) {
      MPI_Request req;
      VT_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, t.raw_data(), static_cast<int>(n), mpi_type(t.dtype()),
                                  sum_op(t.dtype()), MPI_COMM_WORLD, &req), "MPI_Iallreduce");
      wait(req, "all_reduce", n);
      if (op == ReduceOp::Avg) dispatch(t.dtype(), "all_reduce", [&](auto z) { divide_by(t.data<decltype(z)>(), n, size_); });
    } else {
      // Fixed order: reduce-scatter over blocks of k = ceil(n/N) (zero padded), then all-gather.
      const int64_t k = (n + size_ - 1) / size_;
      Tensor padded = zeros({k * size_}, t.dtype());
      Tensor head = padded.narrow(0, 0, n);
      copy_(head, t.view({-1}));
      Tensor block = padded.narrow(0, rank_ * k, k);
      fixed_order_reduce_scatter(padded, block, op, false);
      gather_raw(block, padded, true);
      Tensor dst = t.view({-1});
      copy_(dst, padded.narrow(0, 0, n));
    }
    count(2 * n * (size_ - 1) / size_, t.element_size(), seconds_since(t0));
  }

  void reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op, bool accumulate, const cuda::Stream*) override {
    check_cpu(in, "reduce_scatter");
    check_cpu(out, "reduce_scatter");
    const int64_t n = out.numel();
    VT_CHECK(in.numel() == n * size_ && in.dtype() == out.dtype(), "mpi: reduce_scatter: input ", in.shape().str(),
             " ", dtype_name(in.dtype()), " must hold ", size_, " blocks of the output ", out.shape().str(), " ",
             dtype_name(out.dtype()));
    const bool in_place = out.raw_data() == static_cast<const char*>(in.raw_data()) + rank_ * n * in.element_size();
    VT_CHECK(!(accumulate && in_place), "mpi: reduce_scatter cannot accumulate into its own input block");
    const auto t0 = now();
    if (opt_.native_reductions) {
      Tensor tmp = empty({n}, out.dtype());
      MPI_Request req;
      VT_MPI_CHECK(MPI_Ireduce_scatter_block(in.raw_data(), tmp.raw_data(), static_cast<int>(n), mpi_type(in.dtype()),
                                             sum_op(in.dtype()), MPI_COMM_WORLD, &req), "MPI_Ireduce_scatter_block");
      wait(req, "reduce_scatter", n * size_);
      dispatch(out.dtype(), "reduce_scatter", [&](auto z) {
        using T = decltype(z);
        if (op == ReduceOp::Avg) divide_by(tmp.data<T>(), n, size_);
        if (accumulate) add_into(out.data<T>(), tmp.data<T>(), n);
        else std::memcpy(out.raw_data(), tmp.raw_data(), out.nbytes());
      });
    } else {
      fixed_order_reduce_scatter(in, out, op, accumulate);
    }
    count(n * (size_ - 1), in.element_size(), seconds_since(t0));
  }

  void all_gather(const Tensor& in, Tensor& out, const cuda::Stream*) override {
    check_cpu(in, "all_gather");
    check_cpu(out, "all_gather");
    const int64_t n = in.numel();
    VT_CHECK(out.numel() == n * size_ && in.dtype() == out.dtype(), "mpi: all_gather: output ", out.shape().str(),
             " must hold ", size_, " blocks of the input ", in.shape().str());
    const auto t0 = now();
    const bool in_place = in.raw_data() == static_cast<const char*>(out.raw_data()) + rank_ * n * in.element_size();
    gather_raw(in, out, in_place);
    count(n * (size_ - 1), in.element_size(), seconds_since(t0));
  }

  // MPI_Iallgather now, the poll in wait(). The Work keeps in and out alive until then.
  std::unique_ptr<Work> all_gather_async(const Tensor& in, Tensor& out) override {
    check_cpu(in, "all_gather_async");
    check_cpu(out, "all_gather_async");
    const int64_t n = in.numel();
    VT_CHECK(out.numel() == n * size_ && in.dtype() == out.dtype(), "mpi: all_gather_async: output ",
             out.shape().str(), " must hold ", size_, " blocks of the input ", in.shape().str());
    const auto t0 = now();
    const bool in_place = in.raw_data() == static_cast<const char*>(out.raw_data()) + rank_ * n * in.element_size();
    auto work = std::make_unique<MpiWork>(this, in, out, n * size_);
    VT_MPI_CHECK(MPI_Iallgather(in_place ? MPI_IN_PLACE : in.raw_data(), static_cast<int>(n), mpi_type(in.dtype()),
                                out.raw_data(), static_cast<int>(n), mpi_type(out.dtype()), MPI_COMM_WORLD, &work->req),
                 "MPI_Iallgather");
    count(n * (size_ - 1), in.element_size(), seconds_since(t0));
    return work;
  }

  void broadcast(Tensor& t, int root, const cuda::Stream*) override {
    check_cpu(t, "broadcast");
    VT_CHECK(root >= 0 && root < size_, "mpi: broadcast from rank ", root, " of ", size_);
    const auto t0 = now();
    MPI_Request req;
    VT_MPI_CHECK(MPI_Ibcast(t.raw_data(), static_cast<int>(t.numel()), mpi_type(t.dtype()), root, MPI_COMM_WORLD, &req),
                 "MPI_Ibcast");
    wait(req, "broadcast", t.numel());
    count(rank_ == root ? t.numel() : 0, t.element_size(), seconds_since(t0));
  }

  void barrier() override {
    MPI_Request req;
    VT_MPI_CHECK(MPI_Ibarrier(MPI_COMM_WORLD, &req), "MPI_Ibarrier");
    wait(req, "barrier", 0);
  }

 private:
  struct MpiWork final : Work {
    MpiWork(MpiProcessGroup* g, Tensor a, Tensor b, int64_t n) : group(g), in(std::move(a)), out(std::move(b)), n(n) {}
    ~MpiWork() override {
      if (req == MPI_REQUEST_NULL) return;
      try {
        wait();
      } catch (const std::exception& e) {  // a destructor must not throw: say it and let the job fail later
        std::fprintf(stderr, "vt: %s\n", e.what());
      }
    }
    void wait() override {
      if (req == MPI_REQUEST_NULL) return;
      group->wait(req, "all_gather_async", n);  // MPI_Test sets req to MPI_REQUEST_NULL when done
    }
    MpiProcessGroup* group;
    Tensor in, out;
    int64_t n;
    MPI_Request req = MPI_REQUEST_NULL;
  };

  static std::chrono::steady_clock::time_point now() { return std::chrono::steady_clock::now(); }
  static double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(now() - t0).count();
  }
  void check_cpu(const Tensor& t, const char* what) const {
    VT_CHECK(t.defined() && t.device().is_cpu() && t.is_contiguous(), "mpi: ", what, " takes contiguous CPU tensors",
             t.defined() ? ", got one on " + t.device().str() : std::string());
    VT_CHECK(t.numel() < (int64_t{1} << 31), "mpi: ", what, " of ", t.numel(), " elements (split it: MPI counts are int)");
  }

  // Polls the request until done or the deadline; an error names the collective and this rank.
  void wait(MPI_Request& req, const char* what, int64_t n) {
    const auto t0 = now();
    int done = 0;
    for (int spin = 0;; ++spin) {
      VT_MPI_CHECK(MPI_Test(&req, &done, MPI_STATUS_IGNORE), what);
      if (done) return;
      if (spin > 2000) std::this_thread::sleep_for(std::chrono::microseconds(spin > 20000 ? 1000 : 50));
      if (spin % 256 == 0 && seconds_since(t0) > opt_.timeout_s)
        VT_FAIL("mpi: rank ", rank_, " of ", size_, ": ", what, " of ", n, " elements did not complete within ",
                opt_.timeout_s, " s: a peer rank exited or is stuck (VT_DIST_TIMEOUT_S sets the limit)");
    }
  }

  void gather_raw(const Tensor& in, Tensor& out, bool in_place) {
    const int64_t n = in.numel();
    MPI_Request req;
    VT_MPI_CHECK(MPI_Iallgather(in_place ? MPI_IN_PLACE : in.raw_data(), static_cast<int>(n), mpi_type(in.dtype()),
                                out.raw_data(), static_cast<int>(n), mpi_type(out.dtype()), MPI_COMM_WORLD, &req),
                 "MPI_Iallgather");
    wait(req, "all_gather", n * size_);
  }

  // out (n,) = [out +] block_rank(in_0) + block_rank(in_1) + ... in rank order.
  void fixed_order_reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op, bool accumulate) {
    const int64_t n = out.numel();
    Tensor recv = empty({n * size_}, in.dtype());  // block r: rank r's copy of my block
    MPI_Request req;
    VT_MPI_CHECK(MPI_Ialltoall(in.raw_data(), static_cast<int>(n), mpi_type(in.dtype()), recv.raw_data(),
                               static_cast<int>(n), mpi_type(in.dtype()), MPI_COMM_WORLD, &req), "MPI_Ialltoall");
    wait(req, "reduce_scatter", n * size_);
    dispatch(in.dtype(), "reduce_scatter", [&](auto z) {
      using T = decltype(z);
      T* r = recv.data<T>();
      T* o = out.data<T>();
      if (accumulate && op == ReduceOp::Sum) {
        for (int k = 0; k < size_; ++k) add_into(o, r + k * n, n);
        return;
      }
      for (int k = 1; k < size_; ++k) add_into(r, r + k * n, n);  // the fold, in block 0
      if (op == ReduceOp::Avg) divide_by(r, n, size_);
      if (accumulate) add_into(o, r, n);
      else std::memcpy(o, r, n * sizeof(T));
    });
  }

  MpiOptions opt_;
  int rank_ = 0, size_ = 1;
};

}  // namespace

bool mpi_available() { return true; }

// Every group is a view of MPI_COMM_WORLD (MPI is initialised once); groups differ in their options.
std::shared_ptr<ProcessGroup> make_mpi_group(const MpiOptions& options) {
  return std::make_shared<MpiProcessGroup>(options);
}

void abort_job(const ProcessGroup* group, const std::string& what, int code) {
  const int rank = group ? group->rank() : 0, size = group ? group->size() : 1;
  std::fprintf(stderr, "vt: rank %d of %d failed: %s\n", rank, size, what.c_str());
  std::fflush(stderr);
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (init && !fin) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

#else  // no MPI in this build

bool mpi_available() { return false; }
std::shared_ptr<ProcessGroup> make_mpi_group(const MpiOptions&) {
  VT_FAIL("dist: this build has no MPI backend (install libopenmpi-dev and reconfigure)");
}
void abort_job(const ProcessGroup* group, const std::string& what, int code) {
  std::fprintf(stderr, "vt: rank %d of %d failed: %s\n", group ? group->rank() : 0, group ? group->size() : 1,
               what.c_str());
  std::fflush(stderr);
  std::_Exit(code);
}

#endif

}  // namespace vt::dist
