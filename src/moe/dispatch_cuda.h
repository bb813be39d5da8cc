// defines (internal to src/moe, its tests and benchmarks): MoeCudaPath, moe_grouped_path_available,
//          moe_combine_cuda_supports, moe_combine_cuda (the CUDA path of moe_combine())
//
// The MoE side of the dropless CUDA dispatch: an expert stack and its SwiGLU over the
// tensor-only kernel glue of cuda/moe_cuda.h (index build, gather, grouped products, combine).
#pragma once
#include <torch/types.h>

#include "xft/moe/experts.h"

namespace xft {

// True when moe_combine_cuda can take the grouped path for these experts and input: bf16 input
// and expert stacks on one sm90/sm100 device, hidden and intermediate sizes multiples of 8,
// 16-byte aligned contiguous stacks, fewer than 1024 experts.
bool moe_grouped_path_available(const ExpertsImpl& experts, const torch::Tensor& x_TD);

// True when moe_combine_cuda takes this call: x on a CUDA device in float / half / bfloat16,
// experts_TS [T, S] with S <= 128, at most 1024 experts.
bool moe_combine_cuda_supports(const ExpertsImpl& experts, const torch::Tensor& x_TD, const torch::Tensor& experts_TS);

enum class MoeCudaPath {
  kAuto,     // grouped when moe_grouped_path_available, else the loop
  kGrouped,  // at::_grouped_mm for gate, up and down; throws when unavailable
  kLoop,     // a per-expert loop of matrix products (one host sync for the offsets)
};

// moe_combine() on the GPU, same contract (fp32 [T, D] out, differentiable w.r.t. x, the
// weights and the expert stacks): index build -> gather -> experts -> SwiGLU -> combine.
torch::Tensor moe_combine_cuda(const ExpertsImpl& experts, const torch::Tensor& x_TD, const torch::Tensor& experts_TS,
                               const torch::Tensor& weights_TS, MoeCudaPath path = MoeCudaPath::kAuto);

}  // namespace xft
