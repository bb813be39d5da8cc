// defines: sum_across_ranks (a differentiable all-reduce: every rank gets the sum of all ranks'
//          tensors, and the backward sums the gradients the same way)
//
// Used where a replicated value is assembled from per-rank parts, as the sharded merge builds
// W = sum_r W_r from each rank's experts (methods/merge.h). Every rank then computes its own
// loss L_r(W) and the run's loss is their sum, so dL/dW_r = sum_r' dL_r'/dW: the backward is the
// same all-reduce, and each rank's part gets the whole run's gradient.
#pragma once
#include <string>

#include <torch/types.h>

#include "xft/distributed/distributed.h"

namespace xft {

// Collective over `group`: every member calls it in the same order, forward and backward. In the
// single-process context it returns x. `dist` must outlive the autograd graph.
torch::Tensor sum_across_ranks(const torch::Tensor& x, const Distributed& dist, Distributed::Group group,
                               const std::string& what);

}  // namespace xft
