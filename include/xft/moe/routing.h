// defines: Routing, route (one op, custom backward), route_reference (composed ATen ops)
//
// Shapes: T tokens, R routed experts (N-1 with a shared expert, N without), K active experts
// per token (including the shared one), S = K slots returned.
//   xft (Eq. 2):     s = softmax(z) over R; top K-1 of s; s_max = the largest;
//                    slot 0 = shared expert 0 with weight 1 - s_max;
//                    slots 1.. = chosen experts with softmax(chosen s) * s_max  (sum of all = 1)
//   shared_no_norm:  as xft, but the chosen experts keep their raw scores s
//   vanilla (Eq. 1): top K of s over all N experts, raw scores (optionally renormalised)
// Ties resolve to the lower expert index. Softmax and weights are fp32 whatever z's dtype (fp64 stays fp64).
#pragma once
#include <torch/types.h>

#include "xft/model/config.h"

namespace xft {


struct Routing {
  torch::Tensor weights_TS;  // fp32 gate weights, differentiable w.r.t. the logits
  torch::Tensor experts_TS;  // int64 expert index in [0, N); slot 0 is expert 0 with a shared expert
  torch::Tensor probs_TR;    // fp32 softmax over the routed logits, differentiable (for aux losses)
};

// logits_TR: router logits over the R routed experts.
Routing route(const torch::Tensor& logits_TR, const MoeConfig& config);
// The same function built from differentiable ATen ops: the reference route()'s custom
// backward is tested against.
Routing route_reference(const torch::Tensor& logits_TR, const MoeConfig& config);

// Scatters slot weights into a dense [T, N] routing matrix (zeros elsewhere).
torch::Tensor dense_routing_matrix(const Routing& routing, int64_t num_experts);

}  // namespace xft
