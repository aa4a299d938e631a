// bench_matmul.cpp: f32 GEMM throughput of vt::cpu::gemm_f32 against Eigen and OpenBLAS, 2 threads
// each, on square sizes and on the Qwen2-0.5B MLP shapes of VARGPT's language model.
//
// RUN IT AS
//   env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE ./bench_matmul
// This machine exports OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, which pin OpenBLAS to AVX2 kernels;
// unsetting them in that command only lets OpenBLAS pick its AVX-512 (Cooperlake/SkylakeX) kernels,
// the baseline the issue asks vt to reach (>= 0.9x at 1024 and 2048). The startup line prints
// the kernel OpenBLAS chose.
//
// The CPU column is the whole process's CPU time (all threads). On a machine shared with other
// jobs the real time of a 2-thread run swings with the scheduler; 2 M N K / (CPU time / 2) then
// still gives the throughput of the two cores while they ran, and is the number to compare.
//
// Cases (counter "GFLOP", printed as GFLOP=x/s, is 2 M N K / 1e9 per second of real time):
//   square/n:  C[n,n] = A[n,n] . B[n,n]
//   mlp_up:    X[4096,896] . W[896,4864]      (B row-major)
//   linear_up: X[4096,896] . W[4864,896]^T    (B transposed in place, as nn.Linear stores W)
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstdio>
#include <random>
#include <vector>

#include "vt/cpu/gemm.h"
#ifdef VT_HAVE_EIGEN
#include <Eigen/Core>
#endif
#ifdef VT_HAVE_CBLAS
#include <cblas.h>
#endif

namespace {

constexpr int kThreads = 2;

struct Problem {
  int64_t M, N, K;
  bool b_transposed;  // B given as W[N, K] (row-major), used as W^T
  std::vector<float> A, B, C;
  Problem(int64_t M_, int64_t N_, int64_t K_, bool bt) : M(M_), N(N_), K(K_), b_transposed(bt) {
    std::mt19937 rng(42);
    std::uniform_real_distribution<float> u(-1, 1);
    A.resize(size_t(M * K));
    B.resize(size_t(K * N));
    C.resize(size_t(M * N));
    for (float& x : A) x = u(rng);
    for (float& x : B) x = u(rng);
  }
};

void set_flops(benchmark::State& state, const Problem& p) {
  state.counters["GFLOP"] = benchmark::Counter(2e-9 * double(p.M) * double(p.N) * double(p.K),
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

Problem make(const benchmark::State& state, int shape) {
  if (shape == 0) return Problem(state.range(0), state.range(0), state.range(0), false);
  return Problem(4096, 4864, 896, shape == 2);
}

void BM_vt(benchmark::State& state, int shape) {
  omp_set_num_threads(kThreads);
  Problem p = make(state, shape);
  const int64_t rsB = p.b_transposed ? 1 : p.N, csB = p.b_transposed ? p.K : 1;
  for (auto _ : state) {
    vt::cpu::gemm_f32(p.M, p.N, p.K, 1.0f, p.A.data(), p.K, 1, p.B.data(), rsB, csB, 0.0f,
                      p.C.data(), p.N, 1);
    benchmark::DoNotOptimize(p.C.data());
  }
  set_flops(state, p);
}

#ifdef VT_HAVE_EIGEN
void BM_eigen(benchmark::State& state, int shape) {
  Eigen::setNbThreads(kThreads);
  Problem p = make(state, shape);
  using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Eigen::Map<const RowMat> A(p.A.data(), p.M, p.K);
  Eigen::Map<RowMat> C(p.C.data(), p.M, p.N);
  for (auto _ : state) {
    if (p.b_transposed)
      C.noalias() = A * Eigen::Map<const RowMat>(p.B.data(), p.N, p.K).transpose();
    else
      C.noalias() = A * Eigen::Map<const RowMat>(p.B.data(), p.K, p.N);
    benchmark::DoNotOptimize(p.C.data());
  }
  set_flops(state, p);
}
#endif

#ifdef VT_HAVE_CBLAS
void BM_openblas(benchmark::State& state, int shape) {
#ifdef OPENBLAS_VERSION
  openblas_set_num_threads(kThreads);
#endif
  Problem p = make(state, shape);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, p.b_transposed ? CblasTrans : CblasNoTrans, int(p.M),
                int(p.N), int(p.K), 1.0f, p.A.data(), int(p.K), p.B.data(),
                int(p.b_transposed ? p.K : p.N), 0.0f, p.C.data(), int(p.N));
    benchmark::DoNotOptimize(p.C.data());
  }
  set_flops(state, p);
}
#endif

// Each library runs each case back to back, so the three numbers of a row share machine state.
void register_all() {
  struct Lib {
    const char* name;
    void (*fn)(benchmark::State&, int);
  };
  std::vector<Lib> libs = {{"vt", BM_vt}};
#ifdef VT_HAVE_EIGEN
  libs.push_back({"eigen", BM_eigen});
#endif
#ifdef VT_HAVE_CBLAS
  libs.push_back({"openblas", BM_openblas});
#endif
  for (int n : {256, 512, 1024, 2048})
    for (const Lib& lib : libs)
      benchmark::RegisterBenchmark((std::string(lib.name) + "/square").c_str(), lib.fn, 0)
          ->Arg(n)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime()
          ->MeasureProcessCPUTime()
          ->MinTime(n >= 1024 ? 1.0 : 0.3);
  for (int shape : {1, 2})
    for (const Lib& lib : libs)
      benchmark::RegisterBenchmark(
          (std::string(lib.name) + (shape == 1 ? "/mlp_up_4096x896x4864" : "/linear_up_4096x896x4864T")).c_str(),
          lib.fn, shape)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime()
          ->MeasureProcessCPUTime()
          ->MinTime(1.0);
}

}  // namespace

int main(int argc, char** argv) {
#if defined(VT_HAVE_CBLAS) && defined(OPENBLAS_VERSION)
  std::printf("OpenBLAS: %s, core %s\n", openblas_get_config(), openblas_get_corename());
#endif
  register_all();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
