// tensor_io.cpp: see tensor_io.h.
#include "vt/io/tensor_io.h"

#include <filesystem>

namespace vt::io {

Tensor tensor_from_entry(const TensorEntry& e, const uint8_t* data, const std::shared_ptr<void>& owner,
                         bool zero_copy, const std::string& source) {
  VT_CHECK(e.shape.size() <= static_cast<size_t>(kMaxDims), source, ": tensor '", e.name, "' has ", e.shape.size(),
           " dims (vt supports up to ", kMaxDims, ")");
  Shape s(e.shape);
  size_t nbytes = e.end - e.begin;
  bool aligned = reinterpret_cast<uintptr_t>(data) % dtype_size(e.dtype) == 0;
  if (zero_copy && aligned && owner) {
    auto st = Storage::wrap(const_cast<uint8_t*>(data), nbytes, Device::cpu(), owner);
    return make_tensor(st, Layout(s), e.dtype);
  }
  return from_blob(data, s, e.dtype);
}

std::map<std::string, Tensor> load_safetensors(const std::string& path, bool zero_copy) {
  std::map<std::string, Tensor> out;
  namespace fs = std::filesystem;
  if (fs::is_regular_file(path) && path.size() > 12 && path.substr(path.size() - 12) == ".safetensors") {
    std::shared_ptr<SafetensorsFile> f = SafetensorsFile::open(path);
    for (const TensorEntry& e : f->entries()) out[e.name] = tensor_from_entry(e, f->data(e), f, zero_copy, path);
    return out;
  }
  CheckpointReader reader(path);
  for (const std::string& name : reader.names()) {
    const TensorEntry& e = reader.entry(name);
    out[name] = tensor_from_entry(e, reader.data(name), nullptr, false, reader.path());
  }
  return out;
}

void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<Tensor> keep;  // host, contiguous copies alive until written
  std::vector<TensorToWrite> list;
  for (const auto& [name, t] : tensors) {
    VT_CHECK(t.defined(), "save_safetensors: tensor '", name, "' is undefined (", path, ")");
    Tensor c = t.detach().to(Device::cpu()).contiguous();
    keep.push_back(c);
    list.push_back({name, c.dtype(), c.shape().vec(), c.raw_data(), c.nbytes()});
  }
  write_safetensors(path, list, metadata);
}

}  // namespace vt::io
