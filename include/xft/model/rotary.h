// defines: RotaryEmbedding (Hugging Face's rotate_half RoPE, with linear and llama3 scaling, over
//          the config's rotary_dim() leading dims of a head), apply_rotary
#pragma once
#include <utility>

#include <torch/types.h>

#include "xft/model/config.h"

namespace xft {

class RotaryEmbedding {
 public:
  explicit RotaryEmbedding(const ModelConfig& config);
  // cos, sin of shape [B, T, rotary_dim] for position ids [B, T], in `dtype`.
  std::pair<torch::Tensor, torch::Tensor> cos_sin(const torch::Tensor& position_ids, torch::Dtype dtype) const;
  const torch::Tensor& inv_freq() const { return inv_freq_; }

 private:
  torch::Tensor inv_freq_;  // [rotary_dim / 2], fp32, CPU
};

// x: [B, H, T, head_dim]; cos/sin: [B, T, R], R <= head_dim. The first R dims of each head become
// x*cos + rotate_half(x)*sin; the rest pass through (partial rotary, StableLM).
torch::Tensor apply_rotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);

}  // namespace xft
