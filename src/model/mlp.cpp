#include "xft/model/mlp.h"

#include <torch/nn/functional/activation.h>

namespace xft {

MlpImpl::MlpImpl(int64_t hidden, int64_t intermediate, bool bias) {
  gate_proj =
      register_module("gate_proj", torch::nn::Linear(torch::nn::LinearOptions(hidden, intermediate).bias(bias)));
  up_proj = register_module("up_proj", torch::nn::Linear(torch::nn::LinearOptions(hidden, intermediate).bias(bias)));
  down_proj =
      register_module("down_proj", torch::nn::Linear(torch::nn::LinearOptions(intermediate, hidden).bias(bias)));
}

torch::Tensor swiglu(const torch::Tensor& g, const torch::Tensor& u) { return torch::silu(g) * u; }

FfnOutput MlpImpl::forward(const torch::Tensor& x, const torch::Tensor&) {
  return {down_proj->forward(swiglu(gate_proj->forward(x), up_proj->forward(x))), {}};
}

}  // namespace xft
