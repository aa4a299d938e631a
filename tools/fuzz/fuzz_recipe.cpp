// fuzz_recipe.cpp: recipe files (train/recipe.h). A file either loads or throws vt::Error; a loaded
// recipe written back with to_json must load again to the same JSON (nothing lost or invented).
#include <string>

#include <nlohmann/json.hpp>

#include "fuzz_util.h"
#include "recipe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = vt::fuzz::write_input("recipe.json", data, size);
  vt::fuzz::expect_vt_errors_only([&] {
    const vt::train::Recipe r = vt::train::Recipe::load(path);
    const nlohmann::json once = r.to_json();
    const nlohmann::json twice = vt::train::Recipe::from_json(once, "to_json of " + path).to_json();
    vt::fuzz::require(once == twice, "from_json(to_json(recipe)) gives the same recipe");
  });
  return 0;
}
