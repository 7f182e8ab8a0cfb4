include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS mixprec EXPORT mixprecTargets)
install(DIRECTORY include/mixprec DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

set(_mixprec_cmake_dir ${CMAKE_INSTALL_DATADIR}/cmake/mixprec)
install(EXPORT mixprecTargets NAMESPACE mixprec:: DESTINATION ${_mixprec_cmake_dir})
export(EXPORT mixprecTargets NAMESPACE mixprec::
       FILE ${CMAKE_CURRENT_BINARY_DIR}/mixprecTargets.cmake)

configure_package_config_file(cmake/mixprecConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/mixprecConfig.cmake
  INSTALL_DESTINATION ${_mixprec_cmake_dir})
# Header-only: the package fits any architecture.
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/mixprecConfigVersion.cmake
  COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/mixprecConfig.cmake
              ${CMAKE_CURRENT_SOURCE_DIR}/cmake/xtl_shim.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/mixprecConfigVersion.cmake
        DESTINATION ${_mixprec_cmake_dir})
