// tensor_io.h: safetensors files <-> vt::Tensor, keeping Hugging Face tensor names as they are.
#pragma once
#include <map>
#include <string>

#include "vt/io/safetensors.h"
#include "vt/tensor.h"

namespace vt::io {

// Every tensor of a .safetensors file, or of a sharded checkpoint (a directory holding
// model.safetensors or model.safetensors.index.json, or the index file itself).
// With `zero_copy`, tensors of a single file view the read-only mapping directly (writing to
// them is an error of the caller); misaligned tensors are copied either way.
std::map<std::string, Tensor> load_safetensors(const std::string& path, bool zero_copy = false);

// One tensor from a parsed entry; `owner` keeps the bytes alive when `zero_copy`.
Tensor tensor_from_entry(const TensorEntry& e, const uint8_t* data, const std::shared_ptr<void>& owner,
                         bool zero_copy, const std::string& source);

// Writes tensors (any device, any layout) atomically: temp file, then rename.
void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace vt::io
