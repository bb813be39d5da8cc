#include "xft/model/norm.h"

#include <ATen/ops/layer_norm.h>

#include "xft/core/error.h"
#include "xft/model/rms_norm.h"

namespace xft {

NormImpl::NormImpl(NormKind kind_, int64_t dim, double eps_, bool with_bias) : kind(kind_), eps(eps_) {
  XFT_CHECK(!(with_bias && kind == NormKind::kRms), "RMSNorm has no bias");
  weight = register_parameter("weight", torch::ones({dim}));
  if (with_bias) bias = register_parameter("bias", torch::zeros({dim}));
}

torch::Tensor NormImpl::forward(const torch::Tensor& x) {
  if (kind == NormKind::kRms) return rms_norm(x, weight, eps);
  return at::layer_norm(x, {weight.size(0)}, weight, bias, eps);
}

Norm make_norm(const ModelConfig& c) {
  const bool layer_norm = c.norm_kind() == NormKind::kLayerNorm;
  return Norm(c.norm_kind(), c.hidden_size, c.norm_eps(), /*bias=*/layer_norm);
}

PerHeadNormImpl::PerHeadNormImpl(int64_t num_heads, int64_t head_dim, double eps) {
  norms = register_module("norms", torch::nn::ModuleList());
  for (int64_t h = 0; h < num_heads; ++h) norms->push_back(Norm(NormKind::kLayerNorm, head_dim, eps, /*bias=*/false));
}

torch::Tensor PerHeadNormImpl::forward(const torch::Tensor& x) {
  // Head by head, as transformers does: each head has its own weight.
  std::vector<torch::Tensor> heads;
  heads.reserve(norms->size());
  for (size_t h = 0; h < norms->size(); ++h) {
    heads.push_back(norms->ptr<NormImpl>(h)->forward(x.narrow(1, static_cast<int64_t>(h), 1)));
  }
  return torch::cat(heads, 1);
}

}  // namespace xft
