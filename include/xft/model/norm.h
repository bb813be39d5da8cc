// defines: NormImpl / Norm (a decoder norm of either kind: RMSNorm or LayerNorm), make_norm,
//          PerHeadNormImpl / PerHeadNorm (StableLM's qk_layernorm: one LayerNorm per head)
//
// Parameter names follow Hugging Face: `weight` (both kinds) and `bias` (LayerNorm with bias),
// so a layer's norms load as model.layers.N.input_layernorm.{weight,bias}, and a per-head norm as
// ...self_attn.q_layernorm.norms.H.weight.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include "xft/model/config.h"

namespace xft {

class NormImpl : public torch::nn::Module {
 public:
  // kRms: LlamaRMSNorm (weight only; `bias` must be false). kLayerNorm: nn.LayerNorm over the
  // last dim, with a bias when `bias`.
  NormImpl(NormKind kind, int64_t dim, double eps, bool bias);
  torch::Tensor forward(const torch::Tensor& x);

  torch::Tensor weight;
  torch::Tensor bias;  // undefined without a bias
  NormKind kind;
  double eps;
};
TORCH_MODULE(Norm);

// The decoder norm the config asks for, over hidden_size: RMSNorm (Llama) or LayerNorm with
// bias (StableLM).
Norm make_norm(const ModelConfig& config);

// x [B, H, T, head_dim]: head h normalised by its own bias-free LayerNorm `norms[h]`
// (StableLmLayerNormPerHead).
class PerHeadNormImpl : public torch::nn::Module {
 public:
  PerHeadNormImpl(int64_t num_heads, int64_t head_dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::ModuleList norms{nullptr};
};
TORCH_MODULE(PerHeadNorm);

}  // namespace xft
