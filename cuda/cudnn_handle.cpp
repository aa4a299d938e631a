// cudnn_handle.cpp: the cuDNN handle of each device and the lock that serialises cuDNN work (conv2d
// in nn_conv_cudnn.cu, fused attention in attention_cudnn.cpp). See cudnn_graph.h.
#ifdef VT_WITH_CUDNN
#include <algorithm>
#include <vector>

#include "cudnn_graph.h"
#include "device.h"
#include "vt/cuda.h"

namespace vt::cuda::cudnn {

std::mutex& mutex() {
  static std::mutex mu;
  return mu;
}

cudnnHandle_t handle(int device) {
  static std::vector<cudnnHandle_t> all;  // leaked: handles outlive static destruction safely
  static std::vector<cudaStream_t> bound;  // the stream each handle is set to
  if (all.empty()) all.assign(std::max(device_count(), 1), nullptr), bound.assign(all.size(), nullptr);
  const cudaStream_t stream = current_stream(device);
  if (!all[device]) VT_CUDNN_CHECK(cudnnCreate(&all[device]));
  else if (bound[device] == stream) return all[device];
  VT_CUDNN_CHECK(cudnnSetStream(all[device], stream));
  bound[device] = stream;
  return all[device];
}

}  // namespace vt::cuda::cudnn
#endif
