// defines: cuda_ops_available, rms_norm_cuda (ATen glue over the Torch-free kernels in kernels/)
#pragma once
#include <torch/types.h>

namespace xft {

// True when this build compiled the CUDA kernels and a GPU is visible.
bool cuda_ops_available();

// y = weight * normalise(x) over the last dim; x and weight on one CUDA device, same dtype
// (float, half or bfloat16). Throws xft::Error on a build without CUDA kernels.
torch::Tensor rms_norm_cuda(const torch::Tensor& x, const torch::Tensor& weight, double eps);

}  // namespace xft
