// defines: CheckpointOutput, CheckpointedFn, checkpointed (a function of one tensor whose
//          intermediate activations are not kept: the backward runs it again), recomputing
//
// What `<stage>_train.activation_checkpointing` does to each decoder layer: only the layer's
// input stays alive between the forward and the backward, so the activation memory of a model is
// one layer's plus one [B, T, D] tensor per layer, for a second forward per layer in the backward.
#pragma once
#include <functional>
#include <vector>

#include <torch/types.h>

namespace xft {

struct CheckpointOutput {
  torch::Tensor y;    // the function's result
  torch::Tensor aux;  // a scalar it adds to a loss (the MoE load-balancing loss), or undefined
};
using CheckpointedFn = std::function<CheckpointOutput(const torch::Tensor& x)>;

// fn(x), computed without autograd. Its backward runs fn(x) again with autograd, under the
// random-number generator states (CPU, and x's CUDA device) and the autocast state that this call
// saw, so noisy routing draws the same noise and the gradients are those of the first forward;
// the generators then go back to where they were. `params`: the tensors requiring grad that fn
// uses (a layer's trainable parameters); they are inputs of this op, so they get their gradients
// even when x needs none (the merge stage freezes the embedding). fn must not keep state that a
// second call would change: side effects check recomputing().
CheckpointOutput checkpointed(const CheckpointedFn& fn, const torch::Tensor& x,
                              const std::vector<torch::Tensor>& params);

// True while a backward recomputes a checkpointed forward on this thread.
bool recomputing();

}  // namespace xft
