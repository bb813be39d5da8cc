// defines: xft::kernels::rms_norm_forward (launcher; Torch-free)
#pragma once
#include <cuda_runtime.h>

#include "dtype.cuh"

namespace xft::kernels {

// y[r, :] = w * cast<T>(x[r, :] * rsqrt(mean(x[r, :]^2) + eps)), accumulation in fp32.
// Preconditions: x, w, y device pointers of dtype `dtype`, rows >= 0, cols >= 1, x and y
// row-major contiguous [rows, cols]. Returns the launch's error code.
cudaError_t rms_norm_forward(const void* x, const void* w, void* y, int64_t rows, int64_t cols, float eps, DType dtype,
                             cudaStream_t stream);

}  // namespace xft::kernels
