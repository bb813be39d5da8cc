// defines: merge_task_vectors (one layer's expert stack -> one dense weight, by Task Arithmetic,
//          TIES or DARE), export_task_vector_merge (an MoE directory -> the dense checkpoint)
//
// The standard merge baselines beside XFT's learned merge (merge.method). The MoE's shared expert
// W_0 is the base and each routed expert i >= 1 is a fine-tuned model: its task vector is
// tau_i = W_i - W_0, every one weighted 1, and W = W_0 + scaling * combine(tau_1 .. tau_{N-1}):
//   task_arithmetic  combine = sum_i tau_i;
//   ties             trim each tau_i to its `density` largest magnitudes, elect each element's
//                    sign as the sign of the trimmed taus' sum, and average the trimmed values
//                    that agree with it (the disjoint mean);
//   dare             drop each element of tau_i with probability 1 - density, rescale the kept
//                    ones by 1 / density, and sum.
// These follow the papers and mergekit's task_arithmetic, ties and dare_linear (its defaults:
// density 1, no normalisation for task arithmetic and DARE, the disjoint mean for TIES). Each of
// gate, up and down is merged apart, layer by layer, in fp32.
#pragma once
#include <string>

#include <torch/torch.h>

#include "xft/methods/merge.h"

namespace xft {

// `stack` [N, ...]: the N experts of one projection of one layer, expert 0 the shared one.
// `generator`: DARE's draws (the others draw nothing). Returns [...] in fp32.
torch::Tensor merge_task_vectors(const torch::Tensor& stack, const MergeConfig& config, torch::Generator& generator);

// The MoE in `moe_dir` (its config must have a shared expert) merged by config.method (one of
// task_arithmetic, ties, dare) into a dense checkpoint of the base architecture in `out_dir`.
void export_task_vector_merge(const std::string& moe_dir, const std::string& out_dir, const MergeConfig& config,
                              torch::Dtype save_dtype);

}  // namespace xft
