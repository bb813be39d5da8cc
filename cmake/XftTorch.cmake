# Finds LibTorch from a Python torch installation.
#   default:          the project's venv (.venv/bin/python, made by scripts/setup.sh)
#   -DXFT_PYTHON=...  (or the XFT_PYTHON environment variable) any python3 with torch 2.11,
#                     such as a GPU machine's own, used as it is.
if(NOT XFT_PYTHON)
  if(DEFINED ENV{XFT_PYTHON})
    set(XFT_PYTHON "$ENV{XFT_PYTHON}")
  else()
    set(XFT_PYTHON "${CMAKE_SOURCE_DIR}/.venv/bin/python")
  endif()
endif()
set(XFT_PYTHON "${XFT_PYTHON}" CACHE FILEPATH "python3 whose torch provides LibTorch")
if(NOT EXISTS "${XFT_PYTHON}")
  message(FATAL_ERROR "xft: no python at ${XFT_PYTHON}. Run scripts/setup.sh first, "
                      "or pass -DXFT_PYTHON=/path/to/python3 with torch installed.")
endif()
execute_process(
  COMMAND "${XFT_PYTHON}" -c "import torch, os; print(torch.utils.cmake_prefix_path); print(torch.__version__); print(os.path.dirname(os.path.dirname(torch.__file__)))"
  OUTPUT_VARIABLE _xft_torch_info RESULT_VARIABLE _xft_rc OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT _xft_rc EQUAL 0)
  message(FATAL_ERROR "xft: ${XFT_PYTHON} cannot import torch")
endif()
string(REPLACE "\n" ";" _xft_torch_info "${_xft_torch_info}")
list(GET _xft_torch_info 0 _xft_torch_prefix)
list(GET _xft_torch_info 1 XFT_TORCH_VERSION)
list(GET _xft_torch_info 2 XFT_SITE_PACKAGES)
message(STATUS "xft: torch ${XFT_TORCH_VERSION} from ${XFT_PYTHON}")
list(APPEND CMAKE_PREFIX_PATH "${_xft_torch_prefix}")

if(XFT_WITH_CUDA)
  include(CheckLanguage)
  check_language(CUDA)
  if(NOT CMAKE_CUDA_COMPILER)
    message(WARNING "xft: no nvcc found; building without CUDA kernels")
    set(XFT_WITH_CUDA OFF CACHE BOOL "" FORCE)
  endif()
endif()
if(XFT_WITH_CUDA)
  # Without a GPU, Torch's arch auto-detection fails or picks archs nvcc 13 dropped: pin them
  # through TORCH_CUDA_ARCH_LIST (Torch ignores and warns about CMAKE_CUDA_ARCHITECTURES, which
  # is set again after find_package for our own kernels).
  string(REGEX REPLACE "([0-9])([0-9a-z]+)" "\\1.\\2" _xft_arch_list "${XFT_CUDA_ARCHITECTURES}")
  string(REPLACE ";" " " _xft_arch_list "${_xft_arch_list}")
  set(ENV{TORCH_CUDA_ARCH_LIST} "${_xft_arch_list}")
  set(TORCH_CUDA_ARCH_LIST "${_xft_arch_list}")
  enable_language(CUDA)
  set(CMAKE_CUDA_STANDARD 17)
  unset(CMAKE_CUDA_ARCHITECTURES CACHE)
  unset(CMAKE_CUDA_ARCHITECTURES)
endif()

find_package(Torch REQUIRED CONFIG)
if(XFT_WITH_CUDA)
  set(CMAKE_CUDA_ARCHITECTURES ${XFT_CUDA_ARCHITECTURES} CACHE STRING "" FORCE)
endif()

# The wheel keeps CUDA's runtime libraries in site-packages/nvidia/*/lib: let the linker and
# the built programs find them.
file(GLOB _xft_nvidia_libs LIST_DIRECTORIES true "${XFT_SITE_PACKAGES}/nvidia/*/lib" "${XFT_SITE_PACKAGES}/nvidia/*/*/lib")
set(XFT_TORCH_LIB_DIRS "${_xft_torch_prefix}/../../lib" ${_xft_nvidia_libs})
foreach(_d ${_xft_nvidia_libs})
  string(APPEND CMAKE_EXE_LINKER_FLAGS " -Wl,-rpath-link,${_d}")
  string(APPEND CMAKE_SHARED_LINKER_FLAGS " -Wl,-rpath-link,${_d}")
endforeach()
set(CMAKE_BUILD_RPATH ${XFT_TORCH_LIB_DIRS})
