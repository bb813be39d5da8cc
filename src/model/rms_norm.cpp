#include "xft/model/rms_norm.h"

#include <torch/autograd.h>

#include "cuda/cuda_ops.h"

namespace xft {

torch::Tensor rms_norm_reference(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  auto h = x.to(torch::kFloat32);
  h = h * torch::rsqrt(h.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * h.to(x.scalar_type());
}

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  // The fused kernel has no backward: it serves only where no gradient is wanted.
  const bool needs_grad = torch::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad());
  if (x.is_cuda() && !needs_grad && cuda_ops_available() && x.scalar_type() == weight.scalar_type()) {
    return rms_norm_cuda(x, weight, eps);
  }
  return rms_norm_reference(x, weight, eps);
}

RMSNormImpl::RMSNormImpl(int64_t dim, double eps_) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({dim}));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) { return rms_norm(x, weight, eps); }

}  // namespace xft
