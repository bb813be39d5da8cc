#include "xft/moe/experts.h"

#include "xft/model/mlp.h"

namespace xft {

ExpertsImpl::ExpertsImpl(int64_t E, int64_t D, int64_t F) {
  gate_proj = register_parameter("gate_proj", torch::randn({E, F, D}) * 0.02);
  up_proj = register_parameter("up_proj", torch::randn({E, F, D}) * 0.02);
  down_proj = register_parameter("down_proj", torch::randn({E, D, F}) * 0.02);
}

torch::Tensor ExpertsImpl::expert_forward(int64_t e, const torch::Tensor& x_MD) const {
  auto h_MF = swiglu(torch::linear(x_MD, gate_proj[e]), torch::linear(x_MD, up_proj[e]));
  return torch::linear(h_MF, down_proj[e]);
}

}  // namespace xft
