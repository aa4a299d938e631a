// dist_process_group.cpp: the world-1 backend, launch detection, the device check, the shared-file
// id exchange and init_process_group; see dist/process_group.h. The MPI backend is src/dist_mpi.cpp,
// the NCCL backend cuda/dist_nccl.cpp.
#include "vt/dist/process_group.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>
#include <unistd.h>

#include "vt/autograd.h"
#include "vt/ops.h"
#ifdef VT_WITH_CUDA
#include "vt/cuda.h"
#endif

namespace vt::dist {

void ProcessGroup::count(int64_t elements, size_t element_size, double seconds) {
  ++stats_.calls;
  stats_.elements_sent += elements;
  stats_.bytes_sent += elements * static_cast<int64_t>(element_size);
  stats_.seconds += seconds;
}

namespace {
struct DoneWork final : Work {
  void wait() override {}
};
}  // namespace

std::unique_ptr<Work> ProcessGroup::all_gather_async(const Tensor& in, Tensor& out) {
  all_gather(in, out);
  return std::make_unique<DoneWork>();
}

// ---- world size 1 ------------------------------------------------------------------------------------

static void check_same(const Tensor& a, const Tensor& b, const char* what) {
  VT_CHECK(a.numel() == b.numel() && a.dtype() == b.dtype() && a.device() == b.device(), what, ": input ",
           a.shape().str(), " ", dtype_name(a.dtype()), " on ", a.device().str(), ", output ", b.shape().str(), " ",
           dtype_name(b.dtype()), " on ", b.device().str());
}

void SingleProcessGroup::all_reduce(Tensor& t, ReduceOp, bool accumulate, const cuda::Stream*) {
  VT_CHECK(!accumulate, "all_reduce: accumulate needs separate input and output (use reduce_scatter)");
}

void SingleProcessGroup::reduce_scatter(const Tensor& in, Tensor& out, ReduceOp, bool accumulate,
                                        const cuda::Stream*) {
  check_same(in, out, "reduce_scatter");
  NoGradGuard no_grad;
  Tensor src = in.view({-1}), dst = out.view({-1});
  if (accumulate) copy_(dst, add(dst, src));  // one rounding per element, as the MPI fold does
  else if (!src.is_same(dst) && src.raw_data() != dst.raw_data()) copy_(dst, src);
}

void SingleProcessGroup::all_gather(const Tensor& in, Tensor& out, const cuda::Stream*) {
  check_same(in, out, "all_gather");
  if (in.raw_data() == out.raw_data()) return;
  NoGradGuard no_grad;
  Tensor dst = out.view({-1});
  copy_(dst, in.view({-1}));
}

// ---- launch ------------------------------------------------------------------------------------------

static int env_int(const EnvLookup& env, const char* name, int fallback) {
  const char* v = env(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  VT_CHECK(end && *end == '\0', "launch: ", name, "='", v, "' is not an integer");
  return static_cast<int>(x);
}

LaunchInfo detect_launch(const EnvLookup& env_in) {
  const EnvLookup env = env_in ? env_in : [](const char* n) -> const char* { return std::getenv(n); };
  struct Source {
    const char* launcher;
    const char *rank, *size, *local_rank, *local_size;
  };
  const Source sources[] = {
      {"mpirun", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
       "OMPI_COMM_WORLD_LOCAL_SIZE"},
      {"srun", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE"},
      {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"},
  };
  LaunchInfo info;
  const Source* first = nullptr;
  for (const Source& s : sources) {
    if (!env(s.rank) || !env(s.size)) continue;
    LaunchInfo li;
    li.launcher = s.launcher;
    li.rank = env_int(env, s.rank, 0);
    li.world_size = env_int(env, s.size, 1);
    li.local_rank = env_int(env, s.local_rank, li.rank);
    li.local_world_size = env_int(env, s.local_size, li.world_size);
    VT_CHECK(li.world_size >= 1 && li.rank >= 0 && li.rank < li.world_size, "launch (", s.launcher, "): ", s.rank,
             "=", li.rank, " is outside [0, ", s.size, "=", li.world_size, ")");
    VT_CHECK(li.local_rank >= 0, "launch (", s.launcher, "): ", s.local_rank, "=", li.local_rank, " is negative");
    if (!first) {
      info = li;
      first = &s;
    } else {
      // Two launchers' variables: they describe the same job or the job is misconfigured.
      VT_CHECK(li.rank == info.rank && li.world_size == info.world_size, "launch: ", first->rank, "=", info.rank,
               " ", first->size, "=", info.world_size, " (", first->launcher, ") disagree with ", s.rank, "=", li.rank,
               " ", s.size, "=", li.world_size, " (", s.launcher, ")");
    }
  }
  if (info.launcher == "torchrun" || env("MASTER_ADDR")) {
    if (const char* a = env("MASTER_ADDR")) info.master_addr = a;
    info.master_port = env_int(env, "MASTER_PORT", 0);
  }
  return info;
}

void check_unique_devices(ProcessGroup& group, const std::string& device_key) {
  constexpr int64_t kKey = 256;
  VT_CHECK(static_cast<int64_t>(device_key.size()) < kKey, "device key '", device_key, "' is too long");
  Tensor mine = zeros({kKey}, DType::U8);
  std::memcpy(mine.raw_data(), device_key.data(), device_key.size());
  Tensor all = zeros({kKey * group.size()}, DType::U8);
  group.all_gather(mine, all);
  std::vector<std::string> keys;
  for (int r = 0; r < group.size(); ++r)
    keys.emplace_back(static_cast<const char*>(all.raw_data()) + r * kKey);
  for (int a = 0; a < group.size(); ++a)
    for (int b = a + 1; b < group.size(); ++b)
      VT_CHECK(keys[a] != keys[b], "dist: ranks ", a, " and ", b, " both use device ", keys[a],
               " (one device per rank: check the launcher's ranks per node against the visible GPUs)");
}

std::vector<uint8_t> exchange_bytes_by_file(const std::string& path, int rank, std::vector<uint8_t> bytes,
                                            double timeout_s) {
  namespace fs = std::filesystem;
  if (rank == 0) {
    const std::string tmp = path + ".tmp." + std::to_string(::getpid());
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
      VT_CHECK(out.good(), "dist: cannot write the bootstrap file '", tmp, "'");
    }
    fs::rename(tmp, path);
    return bytes;
  }
  const auto t0 = std::chrono::steady_clock::now();
  while (true) {
    std::ifstream in(path, std::ios::binary);
    if (in.good()) {
      std::vector<uint8_t> got((std::istreambuf_iterator<char>(in)), {});
      if (got.size() == bytes.size()) return got;
    }
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    VT_CHECK(waited < timeout_s, "dist: rank ", rank, " waited ", timeout_s, " s for rank 0's bootstrap file '", path,
             "' (is VT_DIST_INIT_DIR on a filesystem all ranks share?)");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

static double timeout_from_env(double given) {
  if (given >= 0) return given;
  const char* v = std::getenv("VT_DIST_TIMEOUT_S");
  return v && *v ? std::atof(v) : 600.0;
}

std::shared_ptr<ProcessGroup> init_process_group(const InitOptions& o) {
  const LaunchInfo launch = detect_launch();
  std::string backend = o.backend;
  if (backend == "auto") backend = launch.world_size == 1 ? "single" : o.cuda ? "nccl" : "mpi";
  VT_CHECK(backend == "single" || backend == "mpi" || backend == "nccl", "dist: unknown backend '", backend,
           "' (auto, single, mpi, nccl)");
  if (backend == "single") {
    VT_CHECK(launch.world_size == 1, "dist: the launcher (", launch.launcher, ") started ", launch.world_size,
             " ranks but the single-process backend was asked for");
    return std::make_shared<SingleProcessGroup>();
  }
  MpiOptions mo;
  mo.timeout_s = timeout_from_env(o.timeout_s);
  mo.native_reductions = o.native_reductions;
  std::shared_ptr<ProcessGroup> cpu;
  if (launch.launcher != "torchrun" || backend == "mpi") {
    VT_CHECK(mpi_available(), "dist: ", launch.world_size, " ranks (", launch.launcher, ") need the MPI backend, "
             "and this build has none (install libopenmpi-dev and reconfigure)");
    cpu = make_mpi_group(mo);
    VT_CHECK(cpu->size() == launch.world_size && cpu->rank() == launch.rank, "dist: the launcher (", launch.launcher,
             ") says rank ", launch.rank, " of ", launch.world_size, ", MPI says rank ", cpu->rank(), " of ",
             cpu->size());
  }
  if (backend == "mpi") return cpu;
  VT_CHECK(nccl_available(), "dist: the NCCL backend is not in this build (nccl.h and libnccl not found)");
#ifdef VT_WITH_CUDA
  const int devices = cuda::device_count();
  VT_CHECK(launch.local_rank < devices, "dist: rank ", launch.rank, " has local rank ", launch.local_rank,
           " but only ", devices, " GPU(s) are visible on its node");
  const int device = launch.local_rank;
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  std::vector<uint8_t> id(128, 0);
  if (launch.rank == 0) id = nccl_unique_id();
  if (cpu) {
    check_unique_devices(*cpu, std::string(host) + ":cuda:" + std::to_string(device));
    Tensor t = from_vector(std::vector<uint8_t>(id.begin(), id.end()));
    cpu->broadcast(t, 0);
    std::memcpy(id.data(), t.raw_data(), id.size());
  } else {
    const char* dir = std::getenv("VT_DIST_INIT_DIR");
    const std::string path = std::string(dir && *dir ? dir : "/tmp") + "/vt_nccl_id." + launch.master_addr + "." +
                             std::to_string(launch.master_port);
    id = exchange_bytes_by_file(path, launch.rank, id, mo.timeout_s);
  }
  return make_nccl_group(id, launch.rank, launch.world_size, device);
#else
  VT_FAIL("dist: the NCCL backend needs a CUDA build");
#endif
}

#ifndef VT_WITH_NCCL
bool nccl_available() { return false; }
std::vector<uint8_t> nccl_unique_id() { VT_FAIL("dist: this build has no NCCL backend"); }
std::shared_ptr<ProcessGroup> make_nccl_group(const std::vector<uint8_t>&, int, int, int) {
  VT_FAIL("dist: this build has no NCCL backend (configure with VT_CUDA=ON where nccl.h and libnccl are found)");
}
#endif

}  // namespace vt::dist
