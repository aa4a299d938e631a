// backend.cpp: backend lookup by device, op names, device moves and the random-tensor ops.
#include "vt/backend.h"

#include <cxxabi.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>

#include "cpu_backend.h"
#include "vt/ops.h"
#include "vt/random.h"

namespace vt::kernels {

static Backend* g_cuda = nullptr;

// A registered kernel: the function and the type of its signature.
struct KernelEntry {
  AnyKernel fn;
  const std::type_info* signature;
};

// Function-local so that registrars in other translation units can run first.
static std::map<std::pair<std::string, DeviceType>, KernelEntry>& kernel_map() {
  static std::map<std::pair<std::string, DeviceType>, KernelEntry> m;
  return m;
}
static std::mutex& kernel_mutex() {
  static std::mutex m;
  return m;
}

// A signature as C++ spells it ("void (vt::Tensor const&, double)"), for error messages.
static std::string readable(const std::type_info& t) {
  int status = 0;
  char* s = abi::__cxa_demangle(t.name(), nullptr, nullptr, &status);
  std::string out = status == 0 && s ? s : t.name();
  std::free(s);
  return out;
}

static const char* device_type_name(DeviceType dev) { return dev == DeviceType::CPU ? "cpu" : "cuda"; }

void register_kernel(const char* name, DeviceType dev, AnyKernel fn, const std::type_info& signature) {
  std::lock_guard<std::mutex> lock(kernel_mutex());
  auto [it, inserted] = kernel_map().try_emplace({name, dev}, KernelEntry{fn, &signature});
  VT_CHECK(inserted, "kernel ", name, " is registered twice for device ", device_type_name(dev));
}
AnyKernel find_kernel(const char* name, DeviceType dev, const std::type_info& signature) {
  if (dev == DeviceType::CUDA) (void)backend(Device::cuda());  // makes the CUDA library register
  std::lock_guard<std::mutex> lock(kernel_mutex());
  auto it = kernel_map().find({name, dev});
  if (it == kernel_map().end()) return nullptr;
  VT_CHECK(*it->second.signature == signature, "kernel ", name, " on ", device_type_name(dev),
           " was registered as ", readable(*it->second.signature), " but is looked up as ", readable(signature));
  return it->second.fn;
}
bool supports(const char* name, Device d) {
  try {
    if (d.type == DeviceType::CUDA) (void)backend(d);
  } catch (const Error&) {
    return false;
  }
  std::lock_guard<std::mutex> lock(kernel_mutex());
  return kernel_map().count({name, d.type}) != 0;
}
void register_cuda_backend(Backend* b) { g_cuda = b; }

Backend& cpu_backend() {
  static cpu::CpuBackend b;
  return b;
}

#ifdef VT_WITH_CUDA
}  // namespace vt::kernels
namespace vt::cuda {
// Defined in cuda/: creates the CUDA backend and registers its kernels (once). Referencing it
// here also keeps the linker from dropping the CUDA objects out of the static library.
kernels::Backend* ensure_registered();
}  // namespace vt::cuda
namespace vt::kernels {
#endif

Backend& backend(Device d) {
  if (d.is_cpu()) return cpu_backend();
#ifdef VT_WITH_CUDA
  if (!g_cuda) g_cuda = vt::cuda::ensure_registered();
#endif
  VT_CHECK(g_cuda != nullptr, "device ", d.str(), ": this build of vt has no CUDA backend (configure with VT_CUDA=ON)");
  return *g_cuda;
}

const char* name(UnaryOp op) {
  static const char* n[] = {"neg", "abs", "sign", "exp", "log", "sqrt", "rsqrt", "sin", "cos", "tanh",
                            "sigmoid", "relu", "square", "reciprocal", "clamp", "pow", "isnan", "isinf",
                            "logical_not"};
  return n[static_cast<int>(op)];
}
const char* name(BinaryOp op) {
  static const char* n[] = {"add", "sub", "mul", "div", "pow", "maximum", "minimum", "eq",
                            "ne",  "lt",  "le",  "gt",  "ge",  "logical_and", "logical_or"};
  return n[static_cast<int>(op)];
}

}  // namespace vt::kernels

namespace vt {

// Moves between devices go through host memory; the CUDA backend's copy understands a CPU source
// or destination (cudaMemcpy), so one contiguous copy suffices.
Tensor Tensor::to(Device d) const {
  if (device() == d) return *this;
  Tensor src = contiguous();
  Tensor out = empty(shape(), {dtype(), d});
  kernels::Backend& b = d.is_cpu() ? kernels::backend(device()) : kernels::backend(d);
  b.copy(src, out);
  autograd::record("to_device", out, {*this}, [dev = device()](const Tensor& g) { return grads{g.to(dev)}; });
  return out;
}

// ---- random ------------------------------------------------------------------------------------
namespace {
thread_local bool t_skip_init = false;
}  // namespace
SkipInitGuard::SkipInitGuard() : previous_(t_skip_init) { t_skip_init = true; }
SkipInitGuard::~SkipInitGuard() { t_skip_init = previous_; }
bool skip_init_enabled() { return t_skip_init; }

static Generator& gen_or_default(Generator* g) { return g ? *g : default_generator(); }

static Tensor random_tensor(kernels::RandomDist dist, const Shape& shape, TensorOptions opt, double p0, double p1,
                            Generator* gen) {
  bool rg = opt.requires_grad;
  opt.requires_grad = false;
  Tensor t = empty(shape, opt);
  if (t_skip_init) {  // a checkpoint will overwrite it (SkipInitGuard)
    if (rg) t.requires_grad_();
    return t;
  }
  Generator& g = gen_or_default(gen);
  kernels::backend(opt.device).random(dist, t, p0, p1, g.seed(), g.reserve());
  if (rg) t.requires_grad_();
  return t;
}

Tensor rand(const Shape& shape, TensorOptions opt, Generator* gen) {
  return uniform(shape, 0, 1, opt, gen);
}
Tensor uniform(const Shape& shape, double lo, double hi, TensorOptions opt, Generator* gen) {
  VT_CHECK(is_floating(opt.dtype), "uniform: needs a floating dtype, got ", dtype_name(opt.dtype));
  return random_tensor(kernels::RandomDist::Uniform, shape, opt, lo, hi, gen);
}
Tensor randn(const Shape& shape, TensorOptions opt, Generator* gen) { return normal(shape, 0, 1, opt, gen); }
Tensor normal(const Shape& shape, double mean, double std, TensorOptions opt, Generator* gen) {
  VT_CHECK(is_floating(opt.dtype), "normal: needs a floating dtype, got ", dtype_name(opt.dtype));
  VT_CHECK(std >= 0, "normal: std must be non-negative, got ", std);
  return random_tensor(kernels::RandomDist::Normal, shape, opt, mean, std, gen);
}
Tensor randint(int64_t low, int64_t high, const Shape& shape, TensorOptions opt, Generator* gen) {
  VT_CHECK(low < high, "randint: empty range [", low, ", ", high, ")");
  return random_tensor(kernels::RandomDist::RandInt, shape, opt, static_cast<double>(low),
                       static_cast<double>(high), gen);
}
Tensor bernoulli(const Tensor& p, Generator* gen) {
  VT_CHECK(is_floating(p.dtype()), "bernoulli: probabilities must be floating, got ", dtype_name(p.dtype()));
  Tensor u = rand(p.shape(), {DType::F32, p.device()}, gen);
  return cast(lt(u, p.detach()), p.dtype());
}

// Inverse-CDF sampling per row with replacement; without replacement, the Gumbel-top-k trick
// (equivalent to sequential sampling without replacement).
Tensor multinomial(const Tensor& probs, int64_t n, bool replacement, Generator* gen) {
  VT_CHECK(probs.dim() == 1 || probs.dim() == 2, "multinomial: probs must be 1-D or 2-D, got ", probs.shape().str());
  Tensor p = (probs.dim() == 1 ? probs.unsqueeze(0) : probs).to(Device::cpu()).to(DType::F64).contiguous();
  const int64_t R = p.size(0), K = p.size(1);
  VT_CHECK(replacement || n <= K, "multinomial: cannot draw ", n, " samples without replacement from ", K,
           " categories");
  const double* w = p.data<double>();
  for (int64_t i = 0; i < R * K; ++i)
    VT_CHECK(std::isfinite(w[i]) && w[i] >= 0, "multinomial: probabilities must be finite and >= 0 (row ", i / K,
             " has ", w[i], ")");
  Tensor u = rand({R, replacement ? n : K}, DType::F64, gen);
  const double* uu = u.data<double>();
  Tensor out = empty({R, n}, DType::I64);
  int64_t* o = out.data<int64_t>();
  for (int64_t r = 0; r < R; ++r) {
    const double* row = w + r * K;
    double total = 0;
    for (int64_t k = 0; k < K; ++k) total += row[k];
    VT_CHECK(total > 0, "multinomial: row ", r, " sums to zero");
    if (replacement) {
      std::vector<double> cdf(K);
      double c = 0;
      for (int64_t k = 0; k < K; ++k) cdf[k] = (c += row[k] / total);
      for (int64_t j = 0; j < n; ++j) {
        double x = uu[r * n + j];
        int64_t k = std::min<int64_t>(std::upper_bound(cdf.begin(), cdf.end(), x) - cdf.begin(), K - 1);
        while (row[k] == 0 && k > 0) --k;  // only reachable through rounding at the top of the cdf
        o[r * n + j] = k;
      }
    } else {
      std::vector<std::pair<double, int64_t>> keys(K);
      for (int64_t k = 0; k < K; ++k) {
        double g = -std::log(-std::log(std::max(uu[r * K + k], 1e-300)));
        keys[k] = {row[k] > 0 ? std::log(row[k]) + g : -INFINITY, k};
      }
      std::partial_sort(keys.begin(), keys.begin() + n, keys.end(),
                        [](auto& a, auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
      for (int64_t j = 0; j < n; ++j) o[r * n + j] = keys[j].second;
    }
  }
  if (probs.dim() == 1) out = out.view({n});
  return out.to(probs.device());
}

void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

}  // namespace vt
