// defines: ExpertsImpl / Experts (N SwiGLU FFNs as stacked tensors), moe_combine (dropless
//          sort-gather-compute-scatter dispatch), moe_combine_naive (every expert on every token)
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

// The dtype routed outputs are summed in: fp32, or fp64 for fp64 inputs.
torch::Dtype combine_dtype(const torch::Tensor& x);

// y_TD = sum over slots s of weights_TS[t, s] * FFN_{experts_TS[t, s]}(x_TD[t]).
// Dropless: tokens are sorted by expert (stable, so token order within an expert), gathered,
// run through one product chain per expert that received any, weighted, and summed back in
// combine_dtype(x), and returned in it [T, D]. Differentiable w.r.t. x, the weights and the expert tensors.
torch::Tensor moe_combine(const ExpertsImpl& experts, const torch::Tensor& x_TD, const torch::Tensor& experts_TS,
                          const torch::Tensor& weights_TS);

// Reference: every expert on every token, weighted by the dense routing matrix G_TN (combine_dtype out).
torch::Tensor moe_combine_naive(const ExpertsImpl& experts, const torch::Tensor& x_TD, const torch::Tensor& G_TN);

}  // namespace xft
