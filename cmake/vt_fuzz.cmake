# vt_fuzz.cmake (VT_FUZZ=ON, clang): one libFuzzer executable per tools/fuzz/fuzz_*.cpp, linked
# with the whole stack (vt_train pulls in the models, ShapeWorld and libvt), all of it built with
# -fsanitize=fuzzer-no-link,address,undefined (CMakeLists.txt). tools/fuzz/run_fuzz.sh builds and
# runs them on their seed corpora (tools/fuzz/corpus/<target>).
file(GLOB VT_FUZZ_SOURCES CONFIGURE_DEPENDS tools/fuzz/fuzz_*.cpp)
foreach(src ${VT_FUZZ_SOURCES})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_link_libraries(${name} PRIVATE vt_train)
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  target_compile_definitions(${name} PRIVATE VT_FUZZ_FIXTURES="${CMAKE_CURRENT_SOURCE_DIR}/tests/fixtures"
                             VT_FUZZ_TOKENIZER="${CMAKE_CURRENT_SOURCE_DIR}/tests/fixtures/chat_tiny/tokenizer.json")
endforeach()
