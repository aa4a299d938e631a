// dataset.h: writing a ShapeWorld dataset directory (layout and JSON schemas in docs/shapeworld.md).
//
//   DIR/manifest.json                       palette, shapes, sizes, held-out pairs, counts; written last
//   DIR/{train,test}/images/NNNNNN.png        the scene (generation target, understanding image, edit source,
//                                           chosen image)
//   DIR/{train,test}/images/NNNNNN_edit.png   the edit target
//   DIR/{train,test}/images/NNNNNN_rejected.png  the preference pair's rejected render
//   DIR/{train,test}/generation.json        text-to-image pairs with GenEval metadata
//   DIR/{train,test}/understanding.json     LLaVA-format single-turn questions
//   DIR/{train,test}/editing.json           editing triples
//   DIR/{train,test}/preference.json        DPO triples (prompt, chosen, rejected)
// Scene i of a split is a pure function of (seed, split, i): rendering runs in parallel (OpenMP)
// and the bytes do not depend on the thread count.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

namespace vt::shapes {

struct MakeOptions {
  std::string out_dir;
  int size = 128;        // 64, 128, 256 or 512
  int train = 1000;      // scenes in the train split
  int test = 200;        // scenes in the test split
  uint64_t seed = 0;
  float noise_sigma = 0; // optional per-pixel background noise (grey levels); PNGs grow ~30x with it
  bool plain = false;    // uniform backgrounds: one tinted grey per scene, no gradient or texture
  float object_scale = 1;  // object sizes x this, in [kMinObjectScale, kMaxObjectScale] (scene.h)
  // Called now and then from the writing threads (serialised): stage name, scenes done, total.
  std::function<void(const char* stage, size_t done, size_t total)> progress;
};

// Writes the dataset and returns the manifest it wrote. Throws vt::Error naming the file on I/O
// failure; existing files of the same name are replaced atomically.
nlohmann::json make_dataset(const MakeOptions& options);

// Split name and zero-padded index -> "train-000042"; relative image paths use the same numbering.
std::string scene_id(const std::string& split, int index);

}  // namespace vt::shapes
