#include "xft/attention.h"

#include <ATen/ops/scaled_dot_product_attention.h>

#include "xft/rotary.h"

namespace xft {

torch::Tensor attention_mask_4d(const torch::Tensor& padding_mask_BT) {
  const int64_t T = padding_mask_BT.size(1);
  auto opts = torch::TensorOptions().dtype(torch::kBool).device(padding_mask_BT.device());
  auto causal_TT = torch::ones({T, T}, opts).tril();
  auto keys_B11T = padding_mask_BT.to(torch::kBool).view({padding_mask_BT.size(0), 1, 1, T});
  auto diag_TT = torch::eye(T, opts);
  return causal_TT.logical_and(keys_B11T).logical_or(diag_TT);
}

AttentionImpl::AttentionImpl(const ModelConfig& c)
    : num_heads(c.num_attention_heads), num_kv_heads(c.num_key_value_heads), head_dim(c.head_dim) {
  using torch::nn::Linear;
  using torch::nn::LinearOptions;
  const int64_t D = c.hidden_size;
  q_proj = register_module("q_proj", Linear(LinearOptions(D, num_heads * head_dim).bias(c.attention_bias)));
  k_proj = register_module("k_proj", Linear(LinearOptions(D, num_kv_heads * head_dim).bias(c.attention_bias)));
  v_proj = register_module("v_proj", Linear(LinearOptions(D, num_kv_heads * head_dim).bias(c.attention_bias)));
  o_proj = register_module("o_proj", Linear(LinearOptions(num_heads * head_dim, D).bias(c.attention_bias)));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                     const torch::Tensor& mask) {
  const int64_t B = x.size(0), T = x.size(1);
  auto q = q_proj->forward(x).view({B, T, num_heads, head_dim}).transpose(1, 2);
  auto k = k_proj->forward(x).view({B, T, num_kv_heads, head_dim}).transpose(1, 2);
  auto v = v_proj->forward(x).view({B, T, num_kv_heads, head_dim}).transpose(1, 2);
  q = apply_rotary(q, cos, sin);
  k = apply_rotary(k, cos, sin);
  if (num_kv_heads != num_heads) {
    // Grouped-query attention: each kv head serves num_heads / num_kv_heads query heads.
    const int64_t rep = num_heads / num_kv_heads;
    k = k.repeat_interleave(rep, 1);
    v = v.repeat_interleave(rep, 1);
  }
  torch::Tensor out = mask.defined()
                          ? at::scaled_dot_product_attention(q, k, v, mask, 0.0, /*is_causal=*/false)
                          : at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/true);
  return o_proj->forward(out.transpose(1, 2).reshape({B, T, num_heads * head_dim}));
}

}  // namespace xft
