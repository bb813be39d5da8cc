#include "xft/moe/router.h"

#include <torch/nn/functional/activation.h>

namespace xft {

RouterImpl::RouterImpl(int64_t hidden, const MoeConfig& c) : mlp(c.router == RouterKind::kMlp) {
  const int64_t R = c.num_routed();
  const double std = c.router_init_std;
  if (mlp) {
    w1 = register_parameter("w1", torch::randn({R, hidden}) * std);
    w2 = register_parameter("w2", torch::randn({R, R}) * std);
  } else {
    weight = register_parameter("weight", torch::randn({R, hidden}) * std);
  }
  // The reference's noise weight is a key its conversion leaves missing, so transformers gives
  // it the N(0, 0.02) init of the other new weights (method notes, "Router").
  if (c.router_noise) noise_weight = register_parameter("noise_weight", torch::randn({R, hidden}) * std);
}

RouterLogits RouterImpl::forward(const torch::Tensor& x_TD) {
  auto logits = mlp ? torch::linear(torch::tanh(torch::linear(x_TD, w1)), w2) : torch::linear(x_TD, weight);
  // Routing is computed in fp32 at least (Eq. 2's softmax is never taken in bf16).
  logits = logits.to(x_TD.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32);
  if (!is_training() || !noise_weight.defined()) return {logits, logits, {}};
  auto scale = torch::softplus(torch::linear(x_TD, noise_weight).to(logits.scalar_type())) + 0.01;
  return {logits + torch::randn_like(logits) * scale, logits, scale};
}

}  // namespace xft
