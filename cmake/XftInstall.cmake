# `cmake --install` puts headers, libxft and a package config in the prefix, so another project
# can `find_package(xft)` and link `xft::xft` (LibTorch is found again there through Torch's
# own package config: point CMAKE_PREFIX_PATH at torch.utils.cmake_prefix_path).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)
install(TARGETS xft EXPORT xftTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/xft DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT xftTargets NAMESPACE xft:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/xft)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/xftConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/xftConfig.cmake INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/xft)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/xftConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/xftConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/xftConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/xft)
if(XFT_BUILD_EXAMPLES)
  install(TARGETS xft-tool driver-sft driver-xft driver-ewa xft-study xft-demo RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
