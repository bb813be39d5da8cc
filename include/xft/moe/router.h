// defines: RouterImpl / Router: token -> logits over the R routed experts (paper Eq. 2's
//          u^T e_i), linear (weight [R, D]) or mlp (w2 tanh(w1 x), w1 [R, D], w2 [R, R]),
//          with optional noisy gating during training; RouterLogits
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include "xft/model/config.h"

namespace xft {

// What routing and the load estimate need. Without noise (or at eval) noisy == clean and
// noise_scale is undefined.
struct RouterLogits {
  torch::Tensor noisy_TR;        // what routing takes the top-k of
  torch::Tensor clean_TR;        // W x (or the MLP's output)
  torch::Tensor noise_scale_TR;  // softplus(noise_weight x) + 0.01
};

class RouterImpl : public torch::nn::Module {
 public:
  RouterImpl(int64_t hidden, const MoeConfig& config);
  // x_TD -> fp32 (fp64 for fp64 input) logits. Noise is added only when the module is training
  // and noise is on, as the reference code trains: logits += randn * (softplus(noise_weight x) + 0.01).
  RouterLogits forward(const torch::Tensor& x_TD);

  torch::Tensor weight;        // linear
  torch::Tensor w1, w2;        // mlp
  torch::Tensor noise_weight;  // router_noise; N(0, router_init_std) like the other router weights
  bool mlp;
};
TORCH_MODULE(Router);

}  // namespace xft
