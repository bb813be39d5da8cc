// defines: MlpImpl / Mlp, the dense Llama SwiGLU FFN: down(silu(gate(x)) * up(x))
#pragma once
#include <torch/nn/modules/linear.h>

#include "xft/model/feed_forward.h"

namespace xft {

class MlpImpl : public FeedForwardImpl {
 public:
  MlpImpl(int64_t hidden, int64_t intermediate, bool bias);
  using FeedForwardImpl::forward;
  FfnOutput forward(const torch::Tensor& x, const torch::Tensor& token_mask) override;

  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(Mlp);

// silu(g) * u, the SwiGLU activation shared by the dense MLP and the experts.
torch::Tensor swiglu(const torch::Tensor& g, const torch::Tensor& u);

}  // namespace xft
