// defines: moe_route_forward, moe_route_backward (launchers; Torch-free; the rules they take,
//          RouteMode, are in route_mode.h)
//
// The fused router of paper Eq. 2 (and Eq. 1 for vanilla), one warp per token:
//   s = softmax(z) over the R routed logits, in fp32 whatever z's dtype, after clamping z to
//   the finite floats (+inf to FLT_MAX, -inf and NaN to -FLT_MAX: xft::route's rule for
//   non-finite logits, so the ids stay distinct and the weights finite);
//   top-k of s by k rounds of warp argmax, ties to the lower expert index (the order of a
//   stable descending sort, as xft::route on the CPU);
//   xft:            slot 0 = shared expert 0 with 1 - s_max; slot j+1 = expert idx_j + 1 with
//                   softmax(v)_j * s_max (v = the chosen scores, v_0 = s_max);
//   shared_no_norm: as xft, slot j+1 keeps v_j;
//   vanilla:        slot j = expert idx_j with v_j, or v_j / sum(v) when renormalised.
#pragma once
#include <cstdint>

#include <cuda_runtime.h>

#include "dtype.cuh"
#include "route_mode.h"

namespace xft::kernels {

// One warp holds a token's logits in two registers per lane.
constexpr int kMaxRoutedExperts = 64;

// Forward. Shapes: T tokens, R routed experts, k chosen per token (top_k - 1 with a shared
// expert, top_k for vanilla), S = k + 1 slots with a shared expert (k for vanilla),
// N = R + 1 experts with a shared expert (R for vanilla).
// Writes weights [T, S] fp32, experts [T, S] int32 (slot 0 = expert 0 with a shared expert),
// probs [T, R] fp32 (the softmax, saved for the backward) and, when counts is not null,
// counts [N] int32 = slots per expert (zeroed here with an async memset: no host sync).
// Preconditions: device pointers; logits row-major contiguous [T, R] of `dtype`; outputs
// contiguous; 1 <= R <= kMaxRoutedExperts; 1 <= k <= R; 0 <= T < 2^31.
// Returns cudaErrorInvalidValue when a precondition on the sizes fails or `mode` is not one of
// RouteMode's values, else the launch's error.
cudaError_t moe_route_forward(const void* logits, DType dtype, int64_t T, int R, int k, RouteMode mode,
                              bool renormalize, float* weights, int32_t* experts, float* probs, int32_t* counts,
                              cudaStream_t stream);

// Backward: grad_logits [T, R] (in `dtype`) from grad_weights [T, S] and grad_probs [T, R]
// (either may be null, meaning zero), the saved probs, experts and weights of the forward.
// The arithmetic of xft::RouteFunction::backward (src/moe/routing.cpp):
//   dv (gradient w.r.t. the chosen scores) per mode, ds = grad_probs + scatter(dv),
//   dz = s * (ds - <ds, s>)   (softmax backward).
// Preconditions: as the forward, all fp32 inputs contiguous.
cudaError_t moe_route_backward(const float* probs, const int32_t* experts, const float* weights,
                               const float* grad_weights, const float* grad_probs, int64_t T, int R, int k,
                               RouteMode mode, bool renormalize, void* grad_logits, DType dtype, cudaStream_t stream);

}  // namespace xft::kernels
