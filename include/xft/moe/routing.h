// defines: Routing, route (one op, custom backward)
//
// Shapes: T tokens, R routed experts (N-1 with a shared expert, N without), K active experts
// per token (including the shared one), S = K slots returned.
//   xft (Eq. 2):     s = softmax(z) over R; top K-1 of s; s_max = the largest;
//                    slot 0 = shared expert 0 with weight 1 - s_max;
//                    slots 1.. = chosen experts with softmax(chosen s) * s_max  (sum of all = 1)
//   shared_no_norm:  as xft, but the chosen experts keep their raw scores s
//   vanilla (Eq. 1): top K of s over all N experts, raw scores (optionally renormalised)
// Ties resolve to the lower expert index. Softmax and weights are fp32 whatever z's dtype (fp64 stays fp64).
//
// Non-finite logits (a diverged router, a masked logit): before the softmax every logit is
// clamped to the finite range of the compute dtype, +inf to its largest value, -inf and NaN to
// its lowest. Consequences, the same on the CPU and in the CUDA kernel (kernels/moe_routing.cu):
//   - a row with +inf logits splits its probability evenly among them; -inf and NaN logits get
//     probability exactly 0 whenever the row has any other value;
//   - a row whose logits are all -inf or NaN gets uniform probabilities 1/R;
//   - the scores are never NaN, so the top-k is a total order: the chosen ids are distinct, the
//     ties (the zeros included) go to the lower index, and every weight is finite.
// The rule is element-wise (no host sync). route()'s backward differentiates the clamped
// logits, so a row of all -inf/NaN logits gets the gradient of uniform scores; the tests'
// route_reference (tests/moe_reference.h: autograd through nan_to_num) gives 0 at non-finite
// logits instead.
//
// Adding a routing rule: docs/extending.md.
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

}  // namespace xft
