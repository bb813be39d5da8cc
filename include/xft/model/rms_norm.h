// defines: RMSNormImpl / RMSNorm, rms_norm (the op; a CUDA kernel serves inference on the GPU)
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

namespace xft {

// Hugging Face's LlamaRMSNorm: normalise in fp32, cast back, then scale by the weight.
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps);
// The same math composed from ATen ops (the reference the CUDA kernel is tested against).
torch::Tensor rms_norm_reference(const torch::Tensor& x, const torch::Tensor& weight, double eps);

class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
  double eps;
};
TORCH_MODULE(RMSNorm);

}  // namespace xft
