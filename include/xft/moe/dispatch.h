// defines: ExpertOrder / sort_by_expert (the (token, slot) rows grouped by expert), moe_dispatch
//          (the one place a layer's routed tokens reach their experts and come back combined),
//          moe_combine (the local path), combine_dtype
//
// Dropless dispatch: no capacity factor, no dropped token. moe_dispatch picks the path:
//   - expert parallel (a sharding is set): rows travel by all-to-all to the ranks holding their
//     experts (distributed/expert_sharding.h), run there, and come back;
//   - CUDA (src/moe/dispatch_cuda.h over cuda/moe_cuda.h): index build, gather, grouped
//     products, combine, no host sync;
//   - CPU: sort by expert, gather, one product chain per expert that received any, weighted
//     scatter-add back.
// Every path returns y_TD = sum over slots s of weights_TS[t, s] * FFN_{experts_TS[t, s]}(x_TD[t])
// in combine_dtype(x), differentiable w.r.t. x, the weights and the expert stacks.
#pragma once
#include <torch/types.h>

#include "xft/distributed/expert_sharding.h"
#include "xft/moe/experts.h"

namespace xft {

// The dtype routed outputs are summed in: fp32, or fp64 for fp64 inputs.
torch::Dtype combine_dtype(const torch::Tensor& x);

// Rows of the flattened [T, S] slots, stably sorted by expert (token order within an expert).
struct ExpertOrder {
  torch::Tensor order;          // [T*S]: the flat (t*S + s) index of each row
  torch::Tensor token_of_row;   // [T*S]: t
  torch::Tensor expert_of_row;  // [T*S]: experts_TS[t, s], non-decreasing
};
ExpertOrder sort_by_expert(const torch::Tensor& experts_TS);

// experts_TS holds global expert indices; with a sharding, routed experts only (the caller
// computes the replicated shared expert itself).
torch::Tensor moe_dispatch(const ExpertsImpl& experts, const torch::Tensor& x_TD, const torch::Tensor& experts_TS,
                           const torch::Tensor& weights_TS, const ExpertSharding* sharding = nullptr);

// Every expert local: the CUDA path when it takes the call, else the CPU path.
torch::Tensor moe_combine(const ExpertsImpl& experts, const torch::Tensor& x_TD, const torch::Tensor& experts_TS,
                          const torch::Tensor& weights_TS);

}  // namespace xft
