#include "xft/model/attention.h"

#include <ATen/ops/scaled_dot_product_attention.h>

#include "xft/model/rotary.h"

namespace xft {

torch::Tensor attention_mask_4d(const torch::Tensor& padding_mask_BL, int64_t num_queries) {
  const int64_t L = padding_mask_BL.size(1);
  const int64_t Tq = num_queries < 0 ? L : num_queries;
  auto opts = torch::TensorOptions().dtype(torch::kBool).device(padding_mask_BL.device());
  // Query q sits at key position L - Tq + q: it sees keys up to and including itself.
  auto causal_QL = torch::ones({Tq, L}, opts).tril(L - Tq);
  auto self_QL = torch::eye(Tq, L, opts).roll(L - Tq, 1);
  // Values are document numbers (0 = padding): a real query sees the real keys of its own
  // document, a padded query every real key (its output is never used; a 0/1 mask is one
  // document per row, the plain padding mask).
  const int64_t B = padding_mask_BL.size(0);
  auto doc_BL = padding_mask_BL.to(torch::kInt64);
  auto keys_B11L = doc_BL.view({B, 1, 1, L});
  auto queries_B1Q1 = doc_BL.narrow(1, L - Tq, Tq).view({B, 1, Tq, 1});
  auto same_B1QL = keys_B11L.eq(queries_B1Q1).logical_or(queries_B1Q1.eq(0));
  return causal_QL.logical_and(keys_B11L.gt(0)).logical_and(same_B1QL).logical_or(self_QL);
}

AttentionImpl::AttentionImpl(const ModelConfig& c)
    : num_heads(c.num_attention_heads), num_kv_heads(c.num_key_value_heads), head_dim(c.head_dim) {
  using torch::nn::Linear;
  using torch::nn::LinearOptions;
  const int64_t D = c.hidden_size;
  q_proj = register_module("q_proj", Linear(LinearOptions(D, num_heads * head_dim).bias(c.qkv_bias())));
  k_proj = register_module("k_proj", Linear(LinearOptions(D, num_kv_heads * head_dim).bias(c.qkv_bias())));
  v_proj = register_module("v_proj", Linear(LinearOptions(D, num_kv_heads * head_dim).bias(c.qkv_bias())));
  o_proj = register_module("o_proj", Linear(LinearOptions(num_heads * head_dim, D).bias(c.o_proj_bias())));
  if (c.qk_layernorm) {
    q_layernorm = register_module("q_layernorm", PerHeadNorm(num_heads, head_dim, c.layer_norm_eps));
    k_layernorm = register_module("k_layernorm", PerHeadNorm(num_kv_heads, head_dim, c.layer_norm_eps));
  }
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                     const torch::Tensor& mask, KvCacheLayer* cache) {
  const int64_t B = x.size(0), T = x.size(1);
  auto q = q_proj->forward(x).view({B, T, num_heads, head_dim}).transpose(1, 2);
  auto k = k_proj->forward(x).view({B, T, num_kv_heads, head_dim}).transpose(1, 2);
  auto v = v_proj->forward(x).view({B, T, num_kv_heads, head_dim}).transpose(1, 2);
  if (q_layernorm) {
    // StableLM normalises each head before RoPE (and before the cache, so cached keys are normed).
    q = q_layernorm->forward(q);
    k = k_layernorm->forward(k);
  }
  q = apply_rotary(q, cos, sin);
  k = apply_rotary(k, cos, sin);
  if (cache) {
    if (cache->k.defined()) {
      k = torch::cat({cache->k, k}, 2);
      v = torch::cat({cache->v, v}, 2);
    }
    cache->k = k;
    cache->v = v;
  }
  if (num_kv_heads != num_heads) {
    // Grouped-query attention: each kv head serves num_heads / num_kv_heads query heads.
    const int64_t rep = num_heads / num_kv_heads;
    k = k.repeat_interleave(rep, 1);
    v = v.repeat_interleave(rep, 1);
  }
  // A single new query attends to every cached key: no mask needed then.
  const bool causal = !(cache && T == 1);
  torch::Tensor out = mask.defined() ? at::scaled_dot_product_attention(q, k, v, mask, 0.0, /*is_causal=*/false)
                                     : at::scaled_dot_product_attention(q, k, v, {}, 0.0, causal);
  return o_proj->forward(out.transpose(1, 2).reshape({B, T, num_heads * head_dim}));
}

}  // namespace xft
