// defines: FfnOutput, FeedForwardImpl (what sits at `model.layers.N.mlp`: the dense SwiGLU MLP,
//          the MoE layer, or the learnable merge of an MoE layer)
#pragma once
#include <torch/nn/module.h>
#include <torch/types.h>

namespace xft {

struct FfnOutput {
  torch::Tensor y;         // [.., D], same shape as the input
  torch::Tensor aux_loss;  // scalar load-balancing loss (already times its coefficient), or undefined
};

class FeedForwardImpl : public torch::nn::Module {
 public:
  virtual FfnOutput forward(const torch::Tensor& x) = 0;
};

}  // namespace xft
