#include "xft/methods/fold_experts.h"

#include <map>

#include "xft/core/error.h"
#include "xft/model/hf_names.h"

namespace xft {

torch::Tensor fold_stack(const torch::Tensor& c_N, const torch::Tensor& stack) {
  const auto acc = stack.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  return torch::tensordot(c_N.to(acc), stack.to(acc), {0}, {0});
}

NamedTensors fold_experts(const NamedTensors& moe_tensors, const torch::Tensor& coefficients_LN) {
  XFT_CHECK(coefficients_LN.dim() == 1 || coefficients_LN.dim() == 2,
            "fold_experts: coefficients must be [N] or [layers, N], got ", coefficients_LN.sizes());
  NamedTensors out;
  std::map<int64_t, std::map<std::string, torch::Tensor>> stacks;  // layer -> projection -> stack
  for (const auto& [name, t] : moe_tensors) {
    const auto ffn = hf::parse_ffn(name);
    if (!ffn) {
      out.emplace_back(name, t);
      continue;
    }
    if (ffn->rest.rfind("experts.", 0) == 0) stacks[ffn->layer][ffn->rest.substr(8)] = t;
    // Routers and merge logits have no place in the dense model.
  }
  XFT_CHECK(!stacks.empty(), "fold_experts: no expert stack (model.layers.L.mlp.experts.*) among the tensors");
  const int64_t layers = stacks.rbegin()->first + 1;
  XFT_CHECK(coefficients_LN.dim() == 1 || coefficients_LN.size(0) == layers, "fold_experts: ", coefficients_LN.size(0),
            " rows of coefficients for ", layers, " layers");
  for (int64_t l = 0; l < layers; ++l) {
    const auto c = coefficients_LN.dim() == 1 ? coefficients_LN : coefficients_LN[l];
    for (const char* proj : hf::kProjections) {
      const auto name = hf::expert_stack(l, proj);
      auto layer = stacks.find(l);
      XFT_CHECK(layer != stacks.end() && layer->second.count(proj), "fold_experts: missing tensor '", name, "'");
      const auto& stack = layer->second.at(proj);
      XFT_CHECK(stack.dim() == 3 && stack.size(0) == c.numel(), "fold_experts: '", name, "' has shape ", stack.sizes(),
                ", expected [", c.numel(), ", ., .] for ", c.numel(), " coefficients");
      out.emplace_back(hf::dense_ffn(l, proj), fold_stack(c, stack));
    }
  }
  return out;
}

}  // namespace xft
