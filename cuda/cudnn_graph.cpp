// cudnn_graph.cpp: the backend-API wrapper of cudnn_graph.h.
#ifdef VT_WITH_CUDNN
#include "cudnn_graph.h"

#include <algorithm>

#include "vt/error.h"

namespace vt::cuda::cudnn {

std::string last_error() {
  char buf[2048] = {};
  cudnnGetLastErrorString(buf, sizeof buf);
  return buf;
}

namespace {
[[noreturn]] void fail(const char* call, const char* what, long attr, cudnnStatus_t s) {
  std::string msg = ::vt::detail::concat("cuDNN graph: ", call, " of ", what);
  if (attr >= 0) msg += ::vt::detail::concat(" (attribute ", attr, ")");
  msg += ::vt::detail::concat(" failed: ", cudnnGetErrorString(s));
  const std::string why = last_error();
  if (!why.empty()) msg += ": " + why;
  throw ::vt::Error(msg);
}
}  // namespace

Desc::Desc(cudnnBackendDescriptorType_t type, const char* what) : what_(what) {
  const cudnnStatus_t s = cudnnBackendCreateDescriptor(type, &d_);
  if (s != CUDNN_STATUS_SUCCESS) fail("cudnnBackendCreateDescriptor", what, -1, s);
}

Desc& Desc::operator=(Desc&& o) noexcept {
  if (this != &o) {
    if (d_) cudnnBackendDestroyDescriptor(d_);
    d_ = o.d_, what_ = o.what_, o.d_ = nullptr;
  }
  return *this;
}

Desc::~Desc() {
  if (d_) cudnnBackendDestroyDescriptor(d_);
}

Desc& Desc::set(cudnnBackendAttributeName_t attr, cudnnBackendAttributeType_t type, int64_t count,
                const void* values) {
  const cudnnStatus_t s = cudnnBackendSetAttribute(d_, attr, type, count, values);
  if (s != CUDNN_STATUS_SUCCESS) fail("cudnnBackendSetAttribute", what_, attr, s);
  return *this;
}

Desc& Desc::finalize() {
  const cudnnStatus_t s = cudnnBackendFinalize(d_);
  if (s != CUDNN_STATUS_SUCCESS) fail("cudnnBackendFinalize", what_, -1, s);
  return *this;
}

// ---- graph -------------------------------------------------------------------------------------------
int64_t Graph::add_tensor(cudnnDataType_t type, const std::vector<int64_t>& dims, const std::vector<int64_t>& strides,
                          std::optional<cudnnBackendAttributeName_t> flag, const char* what) {
  const int64_t uid = static_cast<int64_t>(tensors_.size()) + 1;
  auto t = std::make_unique<Desc>(CUDNN_BACKEND_TENSOR_DESCRIPTOR, what);
  const bool yes = true;
  t->set_data_type(CUDNN_ATTR_TENSOR_DATA_TYPE, type)
      .set_i64s(CUDNN_ATTR_TENSOR_DIMENSIONS, dims)
      .set_i64s(CUDNN_ATTR_TENSOR_STRIDES, strides)
      .set_i64(CUDNN_ATTR_TENSOR_UNIQUE_ID, uid)
      .set_i64(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, 16);
  if (flag) t->set(*flag, CUDNN_TYPE_BOOLEAN, 1, &yes);
  t->finalize();
  tensors_.push_back(std::move(t));
  return uid;
}

int64_t Graph::tensor(cudnnDataType_t type, std::vector<int64_t> dims, std::vector<int64_t> strides,
                      bool is_virtual) {
  VT_CHECK(dims.size() == strides.size() && dims.size() >= 3 && dims.size() <= 8,
           "cuDNN graph: a tensor needs 3 to 8 dims with as many strides, got ", dims.size(), " and ",
           strides.size());
  if (is_virtual) return add_tensor(type, dims, strides, CUDNN_ATTR_TENSOR_IS_VIRTUAL, "virtual tensor");
  return add_tensor(type, dims, strides, std::nullopt, "tensor");
}

int64_t Graph::scalar(cudnnDataType_t type, int rank) {
  const std::vector<int64_t> ones(rank, 1);
  return add_tensor(type, ones, ones, CUDNN_ATTR_TENSOR_IS_BY_VALUE, "by-value scalar");
}

void Graph::pointwise(cudnnPointwiseMode_t mode, int64_t x, int64_t y, int64_t b, int64_t t, cudnnDataType_t math,
                      int64_t axis) {
  Desc pw(CUDNN_BACKEND_POINTWISE_DESCRIPTOR, "pointwise descriptor");
  pw.set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode)
      .set_data_type(CUDNN_ATTR_POINTWISE_MATH_PREC, math);
  if (mode == CUDNN_POINTWISE_GEN_INDEX) pw.set_i64(CUDNN_ATTR_POINTWISE_AXIS, axis);
  pw.finalize();
  Desc op(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, "pointwise operation");
  const float one = 1.f;
  op.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, pw)
      .set_desc(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, tensor_desc(x))
      .set_desc(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, tensor_desc(y));
  if (b) op.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_BDESC, tensor_desc(b));
  if (t) op.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_TDESC, tensor_desc(t));
  op.set(CUDNN_ATTR_OPERATION_POINTWISE_ALPHA1, CUDNN_TYPE_FLOAT, 1, &one)
      .set(CUDNN_ATTR_OPERATION_POINTWISE_ALPHA2, CUDNN_TYPE_FLOAT, 1, &one)
      .finalize();
  ops_.push_back(std::move(op));
}

void Graph::reduction(cudnnReduceTensorOp_t op_kind, int64_t x, int64_t y) {
  Desc red(CUDNN_BACKEND_REDUCTION_DESCRIPTOR, "reduction descriptor");
  red.set(CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &op_kind)
      .set_data_type(CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_DATA_FLOAT)
      .finalize();
  Desc op(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR, "reduction operation");
  op.set_desc(CUDNN_ATTR_OPERATION_REDUCTION_XDESC, tensor_desc(x))
      .set_desc(CUDNN_ATTR_OPERATION_REDUCTION_YDESC, tensor_desc(y))
      .set_desc(CUDNN_ATTR_OPERATION_REDUCTION_DESC, red)
      .finalize();
  ops_.push_back(std::move(op));
}

void Graph::matmul(int64_t a, int64_t b, int64_t c) {
  Desc mm(CUDNN_BACKEND_MATMUL_DESCRIPTOR, "matmul descriptor");
  mm.set_data_type(CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_DATA_FLOAT).finalize();
  Desc op(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR, "matmul operation");
  op.set_desc(CUDNN_ATTR_OPERATION_MATMUL_ADESC, tensor_desc(a))
      .set_desc(CUDNN_ATTR_OPERATION_MATMUL_BDESC, tensor_desc(b))
      .set_desc(CUDNN_ATTR_OPERATION_MATMUL_CDESC, tensor_desc(c))
      .set_desc(CUDNN_ATTR_OPERATION_MATMUL_DESC, mm)
      .finalize();
  ops_.push_back(std::move(op));
}

void Graph::reshape(int64_t x, int64_t y) {
  Desc op(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR, "reshape operation");
  op.set_desc(CUDNN_ATTR_OPERATION_RESHAPE_XDESC, tensor_desc(x))
      .set_desc(CUDNN_ATTR_OPERATION_RESHAPE_YDESC, tensor_desc(y))
      .finalize();
  ops_.push_back(std::move(op));
}

Desc Graph::finalize(cudnnHandle_t handle) const {
  Desc g(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, "operation graph");
  std::vector<cudnnBackendDescriptor_t> ops;
  for (const Desc& op : ops_) ops.push_back(op.get());
  g.set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, static_cast<int64_t>(ops.size()), ops.data());
  if (handle) g.set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
  g.finalize();
  return g;
}

// ---- planning and execution --------------------------------------------------------------------------
namespace {
// The numerical notes of the engine behind engine config `cfg`.
std::vector<cudnnBackendNumericalNote_t> notes_of(const Desc& cfg) {
  Desc engine(CUDNN_BACKEND_ENGINE_DESCRIPTOR, "engine");
  cudnnBackendDescriptor_t e = engine.get();
  int64_t n = 0;
  if (cudnnBackendGetAttribute(cfg.get(), CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n, &e) !=
      CUDNN_STATUS_SUCCESS)
    return {};
  cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
  n = 0;
  if (cudnnBackendGetAttribute(e, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, CUDNN_TYPE_NUMERICAL_NOTE,
                               CUDNN_NUMERICAL_NOTE_TYPE_COUNT, &n, notes) != CUDNN_STATUS_SUCCESS)
    return {};
  return {notes, notes + n};
}
// The start of cuDNN's JSON description of a finalized plan (which engine, which knobs), or "".
std::string plan_json(cudnnBackendDescriptor_t plan) {
  int64_t len = 0;
  if (cudnnBackendGetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_JSON_REPRESENTATION, CUDNN_TYPE_CHAR, 0, &len,
                               nullptr) != CUDNN_STATUS_SUCCESS ||
      len <= 0)
    return "";
  std::string json(static_cast<size_t>(len), '\0');
  if (cudnnBackendGetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_JSON_REPRESENTATION, CUDNN_TYPE_CHAR, len, &len,
                               json.data()) != CUDNN_STATUS_SUCCESS)
    return "";
  return json.substr(0, std::min<size_t>(json.find('\0'), 200));
}
}  // namespace

std::unique_ptr<Plan> make_plan(const Graph& graph, cudnnHandle_t handle, const Desc* device_props,
                                const std::vector<cudnnBackendNumericalNote_t>& exclude_notes, PlanReport* report) {
  VT_CHECK(handle || device_props, "cuDNN graph: a plan needs a handle or a device description");
  Desc og = graph.finalize(handle);
  PlanReport local;
  PlanReport& rep = report ? *report : local;
  rep = PlanReport{};
  // Mode A's ranking first (cuDNN's own choice, as its frontend asks); the fallback list after it.
  for (const cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
    Desc heur(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, "engine heuristics");
    heur.set_desc(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, og).set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
    if (!handle) heur.set_desc(CUDNN_ATTR_ENGINEHEUR_DEVICEPROP, *device_props);
    heur.finalize();
    int64_t count = 0;
    cudnnStatus_t s = cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                               CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr);
    if (s != CUDNN_STATUS_SUCCESS) fail("cudnnBackendGetAttribute(ENGINEHEUR_RESULTS)", "engine heuristics", -1, s);
    std::vector<Desc> cfgs;
    std::vector<cudnnBackendDescriptor_t> raw;
    for (int64_t i = 0; i < count; ++i) {
      cfgs.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, "engine config");
      raw.push_back(cfgs.back().get());
    }
    int64_t got = 0;
    if (count > 0) {
      s = cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, count,
                                   &got, raw.data());
      if (s != CUDNN_STATUS_SUCCESS) fail("cudnnBackendGetAttribute(ENGINEHEUR_RESULTS)", "engine heuristics", -1, s);
    }
    rep.offered += got;
    rep.text += ::vt::detail::concat(rep.text.empty() ? "" : "; ", "heuristics ",
                                     mode == CUDNN_HEUR_MODE_A ? "A" : "FALLBACK", " offered ", got,
                                     " engine configs");
    for (int64_t i = 0; i < got; ++i) {
      const std::vector<cudnnBackendNumericalNote_t> notes = notes_of(cfgs[i]);
      const auto excluded = std::find_first_of(notes.begin(), notes.end(), exclude_notes.begin(), exclude_notes.end());
      if (excluded != notes.end()) {
        rep.text += ::vt::detail::concat("; config ", i, ": skipped (numerical note ", static_cast<int>(*excluded), ")");
        continue;
      }
      auto plan = std::make_unique<Plan>();
      cudnnBackendDescriptor_t p = plan->plan.get(), c = cfgs[i].get();
      if (handle) {
        s = cudnnBackendSetAttribute(p, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
      } else {
        cudnnBackendDescriptor_t dp = device_props->get();
        s = cudnnBackendSetAttribute(p, CUDNN_ATTR_EXECUTION_PLAN_DEVICEPROP, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &dp);
      }
      if (s == CUDNN_STATUS_SUCCESS)
        s = cudnnBackendSetAttribute(p, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &c);
      if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendFinalize(p);
      rep.tried.push_back(s);
      if (s != CUDNN_STATUS_SUCCESS) {
        rep.text += ::vt::detail::concat("; config ", i, ": ", cudnnGetErrorString(s), " ", last_error());
        continue;
      }
      int64_t n = 0;
      s = cudnnBackendGetAttribute(p, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &n,
                                   &plan->workspace_bytes);
      if (s != CUDNN_STATUS_SUCCESS) fail("cudnnBackendGetAttribute(WORKSPACE_SIZE)", "execution plan", -1, s);
      plan->engine = plan_json(p);
      plan->keep.push_back(std::move(og));  // the plan may refer to these; they live as long as it
      plan->keep.push_back(std::move(heur));
      plan->keep.push_back(std::move(cfgs[i]));
      return plan;
    }
  }
  return nullptr;
}

void execute(cudnnHandle_t handle, const Plan& plan, const std::vector<int64_t>& uids,
             const std::vector<void*>& pointers, void* workspace) {
  VT_CHECK(uids.size() == pointers.size(), "cuDNN graph: ", uids.size(), " uids for ", pointers.size(), " pointers");
  Desc pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, "variant pack");
  pack.set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, static_cast<int64_t>(uids.size()), uids.data())
      .set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, static_cast<int64_t>(pointers.size()),
           pointers.data())
      .set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace)
      .finalize();
  const cudnnStatus_t s = cudnnBackendExecute(handle, plan.plan.get(), pack.get());
  if (s != CUDNN_STATUS_SUCCESS) fail("cudnnBackendExecute", "execution plan", -1, s);
}

std::unique_ptr<Desc> h100_device_properties() {
  if (cudnnGetVersion() < 91100) return nullptr;
  // The fields cuDNN 9.19 reads (it names a missing one in its error); the values of an H100 SXM5.
  static const char* kJson =
      R"({"maxGridSize":[2147483647,65535,65535],"maxBlockSize":[1024,1024,64],"regsPerBlock":65536,)"
      R"("multiProcessorCount":132,"warpSize":32,"maxSharedMemoryPerBlock":49152,)"
      R"("maxSharedMemoryPerBlockOptin":232448,"reservedSharedMemoryPerBlock":1024,"maxRegistersPerSM":65536,)"
      R"("maxCtasPerSM":32,"maxThreadsPerBlock":1024,"maxThreadsPerSM":2048,"pciDeviceId":8960,"isTccDriver":0,)"
      R"("supportCoopLaunch":1,"smClockRateKHz":1980000,"memClockRateKHz":2619000,"l2CacheSize":52428800,)"
      R"("deviceName":"NVIDIA H100 80GB HBM3","totalGlobalMem":85520809984,"cudaDeviceId":0,"deviceVer":900,)"
      R"("driverVer":13000})";
  auto d = std::make_unique<Desc>(CUDNN_BACKEND_DEVICEPROP_DESCRIPTOR, "device properties");
  const std::string json = kJson;
  d->set(CUDNN_ATTR_DEVICEPROP_JSON_REPRESENTATION, CUDNN_TYPE_CHAR, static_cast<int64_t>(json.size()), json.data())
      .finalize();
  return d;
}

}  // namespace vt::cuda::cudnn
#endif
