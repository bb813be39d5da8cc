// defines: AttentionImpl / Attention (grouped-query self-attention with RoPE through
//          scaled_dot_product_attention; StableLM's qkv-only bias and per-head q/k LayerNorm
//          as the config asks), attention_mask_4d
#pragma once
#include <torch/nn/modules/linear.h>

#include "xft/model/config.h"
#include "xft/model/norm.h"

namespace xft {

// Boolean [B, 1, Tq, L] mask, true = may attend: causal, not padding, same document.
// `padding_mask_BL` covers all L keys (cached + new): 0 for padding, else the token's document
// number (1 for every real token of an unpacked row; 1, 2, ... along a packed row, so no token
// attends across documents). The Tq queries are the last Tq positions. A position may always see
// itself, so a padded query row is never empty (empty rows would make NaN).
torch::Tensor attention_mask_4d(const torch::Tensor& padding_mask_BL, int64_t num_queries = -1);

// One layer's cached keys and values [B, Hkv, L, head_dim] (after RoPE), for generation.
struct KvCacheLayer {
  torch::Tensor k, v;
};

class AttentionImpl : public torch::nn::Module {
 public:
  explicit AttentionImpl(const ModelConfig& config);
  // x: [B, T, D]; cos/sin: [B, T, rotary_dim]; mask: undefined (pure causal) or from attention_mask_4d.
  // With a cache, the new keys/values are appended to it and the queries attend to all of them.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& mask, KvCacheLayer* cache = nullptr);

  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  PerHeadNorm q_layernorm{nullptr}, k_layernorm{nullptr};  // null unless config.qk_layernorm
  int64_t num_heads, num_kv_heads, head_dim;
};
TORCH_MODULE(Attention);

}  // namespace xft
