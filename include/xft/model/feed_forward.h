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
  // x [.., D]; token_mask [..] (x without its last dim; true = a real token) or undefined (all
  // real). Padding still flows through (its output is ignored downstream), but an FFN with a
  // statistic over tokens (the MoE's aux loss and routing counts) counts real tokens only.
  virtual FfnOutput forward(const torch::Tensor& x, const torch::Tensor& token_mask) = 0;
  FfnOutput forward(const torch::Tensor& x) { return forward(x, torch::Tensor()); }
};

}  // namespace xft
