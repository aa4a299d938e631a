// dist/process_group.h: collectives across the ranks of a data-parallel job, behind one interface.
//
//   launcher (mpirun | srun | torchrun-style env) --detect_launch--> LaunchInfo {rank, world, local rank}
//        --init_process_group--> Single (world 1) | MPI (CPU tensors) | NCCL (CUDA tensors, id sent over MPI)
//
// Every collective works on contiguous 1-D-viewable tensors of one dtype and is called by every rank
// in the same order (the MPI and NCCL rule). Shapes, in elements, with N = size():
//   all_reduce(t)                 t: (n,) in place; every rank ends with the reduction
//   reduce_scatter(in, out)       in: (N·n,) as N blocks of n; rank r ends with the reduction of block r
//                                 in out: (n,). out may be in's own block r (in place)
//   all_gather(in, out)           in: (n,), out: (N·n,); block r of out is rank r's in. in may be out's
//                                 own block r (in place)
//   broadcast(t, root)            t: (n,) in place; every rank ends with root's t
//   barrier()
//   all_gather_async(in, out)     all_gather that returns at once with a Work; work->wait() before
//                                 out is read (and before in or out is freed). MPI: MPI_Iallgather,
//                                 wait() polls it (with the timeout); NCCL: queued on the group's
//                                 communication stream after the caller's current stream, wait()
//                                 makes the current stream wait on its event; world 1: done at once.
//                                 Other collectives may be called while it is in flight (every rank
//                                 in the same order, as always).
// ReduceOp::Avg divides the sum by N. `accumulate` (reductions only) adds the reduction onto what the
// output holds instead of overwriting it: out = out + Σ_r in_r. With a fixed reduction order (below)
// that is the left fold ((out + in_0) + in_1) + ... , which lets gradient accumulation across
// micro-steps reproduce a one-process run bit for bit (optim/zero.h).
//
// Reduction order. The MPI backend reduces in rank order by default: the blocks travel by
// MPI_Alltoall and each rank adds the N copies of its own block in the order 0, 1, ..., N-1, so the
// fp32 result does not depend on Open MPI's choice of algorithm (which changes with the message
// size and N). MpiOptions::native_reductions uses MPI_Allreduce / MPI_Reduce_scatter_block instead
// (same traffic, order up to MPI). NCCL reduces in its own ring/tree order; it is not bitwise fixed.
//
// Streams (NCCL): a collective is queued on `stream` (null: the current stream of the tensor's
// device) and returns at once; the CPU backends complete before returning.
//
// Failure: the MPI backend waits for each collective at most MpiOptions::timeout_s (env
// VT_DIST_TIMEOUT_S), then throws an error naming the collective, this rank and the wait. A rank that
// throws should call abort_job(): it prints the error with its rank and takes the whole job down
// (MPI_Abort), so no rank waits forever on a dead peer.
//
// Traffic accounting: stats() counts, per rank, the elements a ring implementation sends:
// all_reduce (N-1)/N·2n, reduce_scatter and all_gather (N-1)/N·(N·n), broadcast n. The ZeRO formulas
// (training.md §9: 2Ψ, 2Ψ, 3Ψ) are stated in these units.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "vt/tensor.h"

namespace vt::cuda {
class Stream;
}

namespace vt::dist {

enum class ReduceOp : uint8_t { Sum, Avg };

struct CommStats {
  int64_t calls = 0;
  int64_t elements_sent = 0;  // ring model, see the top note
  int64_t bytes_sent = 0;
  double seconds = 0;         // wall time inside collectives (CPU backends; NCCL: time to enqueue)
};

// A collective in flight. wait() is idempotent; a Work dropped unwaited is waited for first.
class Work {
 public:
  virtual ~Work() = default;
  virtual void wait() = 0;
};

class ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;  // "single", "mpi", "nccl"

  virtual void all_reduce(Tensor& t, ReduceOp op = ReduceOp::Sum, bool accumulate = false,
                          const cuda::Stream* stream = nullptr) = 0;
  virtual void reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op = ReduceOp::Sum, bool accumulate = false,
                              const cuda::Stream* stream = nullptr) = 0;
  virtual void all_gather(const Tensor& in, Tensor& out, const cuda::Stream* stream = nullptr) = 0;
  virtual void broadcast(Tensor& t, int root = 0, const cuda::Stream* stream = nullptr) = 0;
  virtual void barrier() = 0;
  // Default: the blocking all_gather, then a Work that is already done.
  virtual std::unique_ptr<Work> all_gather_async(const Tensor& in, Tensor& out);

  const CommStats& stats() const { return stats_; }
  void reset_stats() { stats_ = {}; }

 protected:
  void count(int64_t elements, size_t element_size, double seconds);
  CommStats stats_;
};

// World size 1: reductions copy (or add, with accumulate), gathers copy, the rest does nothing.
class SingleProcessGroup final : public ProcessGroup {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "single"; }
  void all_reduce(Tensor& t, ReduceOp op, bool accumulate, const cuda::Stream* stream) override;
  void reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op, bool accumulate,
                      const cuda::Stream* stream) override;
  void all_gather(const Tensor& in, Tensor& out, const cuda::Stream* stream) override;
  void broadcast(Tensor&, int, const cuda::Stream*) override {}
  void barrier() override {}
};

// ---- launch ---------------------------------------------------------------------------------------

struct LaunchInfo {
  std::string launcher = "none";  // "none", "mpirun", "srun", "torchrun"
  int rank = 0, world_size = 1;
  int local_rank = 0, local_world_size = 1;
  std::string master_addr;        // torchrun-style only
  int master_port = 0;
};

using EnvLookup = std::function<const char*(const char*)>;  // nullptr when unset
// Reads the launcher's variables: OMPI_COMM_WORLD_RANK/SIZE/LOCAL_RANK/LOCAL_SIZE (Open MPI),
// SLURM_PROCID/NTASKS/LOCALID (srun), RANK/WORLD_SIZE/LOCAL_RANK/LOCAL_WORLD_SIZE/MASTER_ADDR/
// MASTER_PORT (torchrun, DeepSpeed). When two launchers' variables are present they must agree;
// a disagreement (or a rank outside [0, world)) is an error naming both values.
LaunchInfo detect_launch(const EnvLookup& env = nullptr);

// Every rank passes the device it will use ("host:cuda:0"); two ranks with the same key is an error
// naming both ranks. Collective (all-gathers the keys over `group`).
void check_unique_devices(ProcessGroup& group, const std::string& device_key);

struct InitOptions {
  std::string backend = "auto";  // auto | single | mpi | nccl
  bool cuda = false;             // auto: NCCL for a CUDA run, MPI for CPU
  double timeout_s = -1;         // MPI collective timeout; < 0: env VT_DIST_TIMEOUT_S or 600
  bool native_reductions = false;  // MPI: MPI_Allreduce order instead of the fixed rank order
};

// The process group of this job, from the launcher's variables (world 1 without a launcher). For a
// CUDA run it selects device local_rank first (an error naming the rank when there is no such GPU)
// and checks that no two ranks share a GPU.
std::shared_ptr<ProcessGroup> init_process_group(const InitOptions& options = {});

// Prints "vt: rank R of N failed: <what>" to stderr and ends every rank of the job (MPI_Abort under
// MPI; exit otherwise). Never returns.
[[noreturn]] void abort_job(const ProcessGroup* group, const std::string& what, int code = 1);

// ---- backends (defined when built with them) -------------------------------------------------------

bool mpi_available();   // this build has the MPI backend
bool nccl_available();  // this build has the NCCL backend

struct MpiOptions {
  double timeout_s = 600;
  bool native_reductions = false;
};
// MPI_COMM_WORLD (MPI_Init_thread on first use, MPI_Finalize at exit).
std::shared_ptr<ProcessGroup> make_mpi_group(const MpiOptions& options = {});
// NCCL: rank 0 creates the 128-byte ncclUniqueId; init_process_group sends it to the other ranks
// (MPI_Bcast under mpirun/srun; under a torchrun-style launch a file in VT_DIST_INIT_DIR, default
// /tmp, named after MASTER_ADDR and MASTER_PORT: the spec's shared-file method). Then one
// communicator over `world` ranks on CUDA device `device` (ncclCommInitRank after cudaSetDevice).
std::vector<uint8_t> nccl_unique_id();
std::shared_ptr<ProcessGroup> make_nccl_group(const std::vector<uint8_t>& unique_id, int rank, int world, int device);
// The shared-file exchange: rank 0 writes `bytes` to `path` atomically; the others wait for the file
// (at most timeout_s, then an error naming the path) and read it.
std::vector<uint8_t> exchange_bytes_by_file(const std::string& path, int rank, std::vector<uint8_t> bytes,
                                            double timeout_s);

}  // namespace vt::dist
