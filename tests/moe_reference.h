// defines: route_reference, dense_routing_matrix, moe_combine_naive (the reference
//          implementations the MoE path is tested against; test-only, not installed)
#pragma once
#include <torch/torch.h>

#include "moe/routing_weights.h"
#include "xft/moe/dispatch.h"
#include "xft/moe/experts.h"
#include "xft/moe/routing.h"

namespace xft::test {

// route() built from differentiable ATen ops (autograd through routing_weights): the reference
// route()'s custom backward is tested against. Differs from route() only at non-finite logits,
// where autograd through nan_to_num gives 0 (routing.h).
inline Routing route_reference(const torch::Tensor& logits_TR, const MoeConfig& config) {
  auto s_TR = routing_probs(logits_TR);
  auto r = routing_weights(s_TR, config);
  return {r.w_TS, r.e_TS, s_TR};
}

// Scatters slot weights into a dense [T, N] routing matrix (zeros elsewhere).
inline torch::Tensor dense_routing_matrix(const Routing& r, int64_t num_experts) {
  auto G_TN = torch::zeros({r.weights_TS.size(0), num_experts}, r.weights_TS.options());
  return G_TN.scatter_add(-1, r.experts_TS, r.weights_TS);
}

// Every expert on every token, weighted by the dense routing matrix G_TN (combine_dtype out):
// what every dispatch path must equal.
inline torch::Tensor moe_combine_naive(const ExpertsImpl& experts, const torch::Tensor& x_TD,
                                       const torch::Tensor& G_TN) {
  const auto acc = combine_dtype(x_TD);
  auto out = torch::zeros({x_TD.size(0), x_TD.size(1)}, x_TD.options().dtype(acc));
  for (int64_t e = 0; e < experts.num_experts(); ++e) {
    out = out + G_TN.select(1, e).unsqueeze(1).to(acc) * experts.expert_forward(e, x_TD).to(acc);
  }
  return out;
}

}  // namespace xft::test
