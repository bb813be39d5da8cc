// ATen glue for kernels/: device guards, dtype and layout checks, the current stream.
#include "cuda/cuda_ops.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/cuda.h>

#include "cuda/cuda_glue.h"
#include "rms_norm.cuh"
#include "xft/core/error.h"

namespace xft {

bool cuda_ops_available() { return torch::cuda::is_available(); }

torch::Tensor rms_norm_cuda(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  XFT_CHECK(x.is_cuda() && weight.is_cuda() && x.device() == weight.device(),
            "rms_norm_cuda: x and weight must be on one CUDA device");
  XFT_CHECK(x.scalar_type() == weight.scalar_type(), "rms_norm_cuda: x is ", x.scalar_type(), " but weight is ",
            weight.scalar_type());
  XFT_CHECK(x.dim() >= 1,
            "rms_norm_cuda: x must have at least one dimension (normalised over the last), got a "
            "0-dim tensor");
  XFT_CHECK(weight.dim() == 1 && x.size(-1) == weight.size(0), "rms_norm_cuda: weight shape ", weight.sizes(),
            " does not match the last dim of x ", x.sizes());
  c10::cuda::CUDAGuard guard(x.device());
  auto xc = x.contiguous();
  auto wc = weight.contiguous();
  auto y = torch::empty_like(xc);
  const int64_t cols = x.size(-1);
  // Nothing to normalise: an empty output of x's shape, as rms_norm_reference gives (and no
  // division of numel by a zero row length below; the launcher wants cols >= 1).
  if (xc.numel() == 0) return y;
  check_cuda(kernels::rms_norm_forward(xc.data_ptr(), wc.data_ptr(), y.data_ptr(), xc.numel() / cols, cols,
                                       static_cast<float>(eps), kernel_dtype(x, "rms_norm_cuda"),
                                       at::cuda::getCurrentCUDAStream()),
             "rms_norm_cuda");
  return y;
}

}  // namespace xft
