// defines (private to src/): kernel_dtype, kernel_dtype_ok, check_cuda — what every ATen
// wrapper around kernels/ needs to hand tensors to a Torch-free launcher.
#pragma once
#include <cuda_runtime.h>

#include <torch/types.h>

#include "dtype.cuh"
#include "xft/core/error.h"

namespace xft {

inline bool kernel_dtype_ok(const torch::Tensor& t) {
  const auto s = t.scalar_type();
  return s == torch::kFloat32 || s == torch::kFloat16 || s == torch::kBFloat16;
}

inline kernels::DType kernel_dtype(const torch::Tensor& t, const char* what) {
  switch (t.scalar_type()) {
    case torch::kFloat32: return kernels::DType::kFloat32;
    case torch::kFloat16: return kernels::DType::kFloat16;
    case torch::kBFloat16: return kernels::DType::kBFloat16;
    default: fail(what, ": unsupported dtype ", t.scalar_type(), " (expected float32, float16 or bfloat16)");
  }
}

inline void check_cuda(cudaError_t e, const char* what) {
  XFT_CHECK(e == cudaSuccess, what, ": CUDA error: ", cudaGetErrorString(e));
}

}  // namespace xft
