// cudnn_graph.h: a small wrapper over cuDNN's backend (graph) API, enough to describe a fused
// operation graph (tensors, matmul, pointwise, reduction, reshape), ask cuDNN's heuristics for an
// engine, build an execution plan and run it. attention_cudnn.cu uses it for fused SDPA.
//
// The backend API works on opaque descriptors: create one of a type, set attributes, finalize. Each
// call here is checked, and an error names the descriptor, the attribute and cuDNN's own last error
// message (which says what it rejected, e.g. "!json_object.HasMember(...)").
//
// Tensors are named by a unique id (uid) that the variant pack later maps to a device pointer.
// Virtual tensors (intermediates that stay inside the fused kernel) get a uid too but no pointer.
// By-value tensors are f32/i32 scalars read from host memory at execution (the softmax scale, -inf).
//
// Plans can also be built without a GPU ("deviceless"): cuDNN >= 9.11 accepts a description of the
// target device (DEVICEPROP, given as JSON), so a machine with no GPU can check that cuDNN's
// heuristics find an engine for a graph. h100_device_properties() describes an H100 SXM5.
#pragma once
#ifdef VT_WITH_CUDNN
#include <cudnn.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace vt::cuda::cudnn {

// The lock every cuDNN call of vt runs under (handles, plan caches), and the handle of `device`,
// created on first use and bound to the calling thread's current stream (cudnn_handle.cpp).
std::mutex& mutex();
cudnnHandle_t handle(int device);

// One backend descriptor, owned (destroyed with the object).
class Desc {
 public:
  Desc(cudnnBackendDescriptorType_t type, const char* what);
  Desc(Desc&& o) noexcept : d_(o.d_), what_(o.what_) { o.d_ = nullptr; }
  Desc& operator=(Desc&& o) noexcept;
  Desc(const Desc&) = delete;
  Desc& operator=(const Desc&) = delete;
  ~Desc();

  Desc& set(cudnnBackendAttributeName_t attr, cudnnBackendAttributeType_t type, int64_t count, const void* values);
  Desc& set_i64(cudnnBackendAttributeName_t attr, int64_t v) { return set(attr, CUDNN_TYPE_INT64, 1, &v); }
  Desc& set_i64s(cudnnBackendAttributeName_t attr, const std::vector<int64_t>& v) {
    return set(attr, CUDNN_TYPE_INT64, static_cast<int64_t>(v.size()), v.data());
  }
  Desc& set_desc(cudnnBackendAttributeName_t attr, const Desc& d) {
    return set(attr, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &d.d_);
  }
  Desc& set_data_type(cudnnBackendAttributeName_t attr, cudnnDataType_t t) {
    return set(attr, CUDNN_TYPE_DATA_TYPE, 1, &t);
  }
  Desc& finalize();
  cudnnBackendDescriptor_t get() const { return d_; }

 private:
  cudnnBackendDescriptor_t d_ = nullptr;
  const char* what_;
};

// cuDNN's last error message (cudnnGetLastErrorString), or "" when it has none.
std::string last_error();

// An operation graph under construction. Tensor uids count up from 1.
class Graph {
 public:
  // A tensor of `dims` and `strides` (elements; rank 3..8, as cuDNN wants).
  int64_t tensor(cudnnDataType_t type, std::vector<int64_t> dims, std::vector<int64_t> strides, bool is_virtual);
  int64_t virtual_tensor(cudnnDataType_t type, std::vector<int64_t> dims, std::vector<int64_t> strides) {
    return tensor(type, std::move(dims), std::move(strides), true);
  }
  // A by-value scalar (dims 1, 1, 1, 1) of `rank` dims; its value is passed at execution.
  int64_t scalar(cudnnDataType_t type, int rank = 4);

  // y = mode(x [, b [, t]]); compute in `math` (f32 unless the mode wants otherwise). GEN_INDEX
  // takes `axis` (which dim of y's index it writes).
  void pointwise(cudnnPointwiseMode_t mode, int64_t x, int64_t y, int64_t b = 0, int64_t t = 0,
                 cudnnDataType_t math = CUDNN_DATA_FLOAT, int64_t axis = -1);
  // y = reduce(x) over the dims where y has extent 1 and x does not.
  void reduction(cudnnReduceTensorOp_t op, int64_t x, int64_t y);
  // c = a @ b over the last two dims (a (..., M, K), b (..., K, N), c (..., M, N)); f32 accumulation.
  void matmul(int64_t a, int64_t b, int64_t c);
  // y = x with y's dims and strides (a view: used for transposes inside the graph).
  void reshape(int64_t x, int64_t y);

  // The finalized operation graph over all operations added so far. `handle` may be null when a
  // deviceless plan is wanted.
  Desc finalize(cudnnHandle_t handle) const;

  const Desc& tensor_desc(int64_t uid) const { return *tensors_.at(uid - 1); }

 private:
  // A tensor descriptor, with boolean attribute `flag` (IS_VIRTUAL, IS_BY_VALUE) set when given.
  int64_t add_tensor(cudnnDataType_t type, const std::vector<int64_t>& dims, const std::vector<int64_t>& strides,
                     std::optional<cudnnBackendAttributeName_t> flag, const char* what);

  std::vector<std::unique_ptr<Desc>> tensors_;  // by uid - 1
  std::vector<Desc> ops_;
};

// An execution plan: the engine cuDNN's heuristics ranked first among those that finalize.
struct Plan {
  std::vector<Desc> keep;  // the operation graph, heuristics and engine config the plan was made from
  Desc plan{CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, "execution plan"};
  int64_t workspace_bytes = 0;
  std::string engine;  // the engine's description (cuDNN's JSON of the plan, trimmed), for logs
};

// What planning went through: how many engine configs cuDNN's heuristics offered, the status of
// each one tried (in order; skipped ones are not tried), and all of it as text for a message.
struct PlanReport {
  int64_t offered = 0;
  std::vector<cudnnStatus_t> tried;
  std::string text;
};

// Plans `graph` on the device behind `handle`, or, with `handle` null, deviceless for `device_props`:
// the first engine config that finalizes, in the order of cuDNN's heuristics mode A, then of its
// fallback list. Engines whose numerical notes include one in `exclude_notes` are skipped (e.g.
// NONDETERMINISTIC).
// Returns null when no engine takes the graph; `report` (when given) says why.
std::unique_ptr<Plan> make_plan(const Graph& graph, cudnnHandle_t handle, const Desc* device_props,
                                const std::vector<cudnnBackendNumericalNote_t>& exclude_notes,
                                PlanReport* report = nullptr);

// Runs `plan`: uids[i] reads or writes pointers[i] (device memory; host memory for by-value
// scalars); `workspace` has plan.workspace_bytes bytes on the handle's stream.
void execute(cudnnHandle_t handle, const Plan& plan, const std::vector<int64_t>& uids,
             const std::vector<void*>& pointers, void* workspace);

// A DEVICEPROP descriptor for an H100 SXM5 80GB (sm_90, 132 SMs), for deviceless planning.
// Null when the linked cuDNN cannot take one (before 9.11).
std::unique_ptr<Desc> h100_device_properties();

}  // namespace vt::cuda::cudnn
#endif
