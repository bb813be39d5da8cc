// Built when XFT_WITH_CUDA is off: the CUDA ops report themselves unavailable.
#include "xft/cuda_ops.h"
#include "xft/error.h"

namespace xft {

bool cuda_ops_available() { return false; }

torch::Tensor rms_norm_cuda(const torch::Tensor&, const torch::Tensor&, double) {
  fail("rms_norm_cuda: this build of xft has no CUDA kernels (configured with XFT_WITH_CUDA=OFF)");
}

}  // namespace xft
