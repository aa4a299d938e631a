# vt_install.cmake: `cmake --install` puts the headers, libvt and the models library under the
# prefix with a package config, so another CMake project can write
#
#   find_package(vt REQUIRED)
#   target_link_libraries(app PRIVATE vt::vt)         # the tensor library
#   target_link_libraries(app PRIVATE vt::models)     # Qwen2(-VL), Infinity, BSQ-VAE, VARGPT, tokenizer
#
# Layout: include/vt/... (libvt's headers, as in the source tree), include/vt_models/<model>/*.h
# (included as "qwen2/qwen2.h", as inside vt), lib/libvt.a, lib/libvt_models.a, lib/cmake/vt/.
# The package carries what the build used: CUDA, MPI, NCCL and cuDNN links, and the sanitizer
# runtime of a VT_SANITIZE build (its static libraries need it).
include(CMakePackageConfigHelpers)

set_target_properties(vt_models PROPERTIES EXPORT_NAME models)
install(TARGETS vt vt_models EXPORT vtTargets ARCHIVE DESTINATION lib LIBRARY DESTINATION lib)
install(DIRECTORY include/vt DESTINATION include)
install(DIRECTORY models/ DESTINATION include/vt_models FILES_MATCHING PATTERN "*.h")
install(EXPORT vtTargets NAMESPACE vt:: DESTINATION lib/cmake/vt)

configure_package_config_file(cmake/vtConfig.cmake.in ${CMAKE_CURRENT_BINARY_DIR}/vtConfig.cmake
                              INSTALL_DESTINATION lib/cmake/vt)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/vtConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/vtConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/vtConfigVersion.cmake
        DESTINATION lib/cmake/vt)

# The test: install into a temporary prefix, build tests/package/consumer against it, run it.
add_test(NAME package_consumer
         COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/tests/package/package_test.sh ${CMAKE_BINARY_DIR}
                 ${CMAKE_CURRENT_SOURCE_DIR}/tests/package/consumer ${CMAKE_CXX_COMPILER})
set_tests_properties(package_consumer PROPERTIES TIMEOUT 900 ENVIRONMENT "OMP_NUM_THREADS=2")
