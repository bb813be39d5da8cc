// defines: AttentionImpl / Attention (grouped-query self-attention with RoPE through
//          scaled_dot_product_attention), attention_mask_4d
#pragma once
#include <torch/nn/modules/linear.h>

#include "xft/config.h"

namespace xft {

// Boolean [B, 1, T, T] mask, true = may attend: causal and not padding. A position may always
// see itself, so a padded query row is never empty (empty rows would make NaN).
torch::Tensor attention_mask_4d(const torch::Tensor& padding_mask_BT);

class AttentionImpl : public torch::nn::Module {
 public:
  explicit AttentionImpl(const ModelConfig& config);
  // x: [B, T, D]; cos/sin: [B, T, head_dim]; mask: undefined (pure causal) or from attention_mask_4d.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& mask);

  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  int64_t num_heads, num_kv_heads, head_dim;
};
TORCH_MODULE(Attention);

}  // namespace xft
