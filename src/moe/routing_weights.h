// defines (internal to src/moe, its tests and benchmarks): routing_probs, RoutingWeights,
//          routing_weights (route()'s forward arithmetic, paper Eq. 1-2, in differentiable ATen ops)
//
// route() runs these without autograd inside its custom Function (src/moe/routing.cpp); the
// tests' route_reference (tests/moe_reference.h) runs them under autograd, which gives the
// reference route()'s hand-written backward is held against.
#pragma once
#include <torch/types.h>

#include "xft/model/config.h"

namespace xft {

// Eq. 2's softmax over the routed logits [T, R], in fp32 (fp64 stays fp64), after routing.h's
// rule for non-finite logits: defined for every row.
torch::Tensor routing_probs(const torch::Tensor& logits_TR);

struct RoutingWeights {
  torch::Tensor w_TS;    // slot weights
  torch::Tensor e_TS;    // slot expert ids (slot 0 = expert 0 with a shared expert)
  torch::Tensor v_TK;    // the chosen scores s[idx], largest first (v_0 = s_max)
  torch::Tensor idx_TK;  // the chosen routed experts (indices into R), ties to the lower index
};

// The weights of config.routing from the scores s_TR = routing_probs(logits).
RoutingWeights routing_weights(const torch::Tensor& s_TR, const MoeConfig& config);

}  // namespace xft
