// defines (internal to src/moe, its tests and benchmarks): route_cuda_supports, CudaRouting,
//          route_cuda / route_cuda_full (the CUDA path of route())
//
// The MoE side of the fused router: it maps a MoeConfig onto the tensor-only kernel glue
// (cuda/moe_cuda.h, route_logits_cuda) and its result back onto Routing. A routing rule the
// kernel does not implement is refused here (route_cuda_supports is false), so route() keeps it
// on the ATen path instead of running it as another rule.
#pragma once
#include <torch/types.h>

#include "xft/model/config.h"
#include "xft/moe/routing.h"

namespace xft {

// True when route_cuda takes these logits: on a CUDA device, float / half / bfloat16 (fp64
// stays on the composed path, for gradient checks), 1 <= R <= kRouteCudaMaxRouted, at least one
// routed expert chosen per token, and config.routing a rule the kernel implements.
bool route_cuda_supports(const torch::Tensor& logits_TR, const MoeConfig& config);

struct CudaRouting {
  Routing routing;               // exactly what route() returns
  torch::Tensor experts_TS_i32;  // the same expert ids as int32
  torch::Tensor counts_N;        // int32 [num_experts]: slots per expert, shared expert included
};

// route() on the GPU: one fused kernel forward (softmax, stable top-k, Eq. 2 weights, expert
// counts, no host sync) and one backward (the arithmetic of route()'s custom backward).
// Throws xft::Error when !route_cuda_supports(logits, config) or the width is not config.num_routed().
Routing route_cuda(const torch::Tensor& logits_TR, const MoeConfig& config);
CudaRouting route_cuda_full(const torch::Tensor& logits_TR, const MoeConfig& config);

}  // namespace xft
