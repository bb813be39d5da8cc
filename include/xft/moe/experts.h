// defines: ExpertsImpl / Experts (N SwiGLU FFNs as stacked tensors; dispatch.h routes tokens to them)
//
// Stacked so they can feed grouped matrix products:
//   gate_proj [E, F, D], up_proj [E, F, D], down_proj [E, D, F]; expert 0 is the shared one.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

namespace xft {

class ExpertsImpl : public torch::nn::Module {
 public:
  ExpertsImpl(int64_t num_experts, int64_t hidden, int64_t intermediate);
  // Expert e on rows x_MD -> y_MD.
  torch::Tensor expert_forward(int64_t e, const torch::Tensor& x_MD) const;
  int64_t num_experts() const { return gate_proj.size(0); }

  torch::Tensor gate_proj, up_proj, down_proj;
};
TORCH_MODULE(Experts);

}  // namespace xft
