// defines: route_logits_cuda (the fused router of paper Eq. 1-2 with its backward) and the pieces
//          of the dropless CUDA dispatch: MoePermutation, moe_permutation_cuda,
//          moe_gather_rows_cuda, moe_combine_rows_cuda, grouped_linear_cuda,
//          moe_zero_empty_groups_cuda, with the *_supports queries that say what they take.
//
// ATen glue over kernels/moe_routing.cu and kernels/moe_permute.cu, in tensors only: it knows no
// MoE config, no expert module and no routing result type. The MoE layer maps its own types onto
// it (src/moe/routing_cuda.h, src/moe/dispatch_cuda.h), so this layer includes nothing above
// core and kernels/. On a build without CUDA kernels every function here throws xft::Error and
// the *_supports queries return false (src/cuda/cuda_ops_none.cpp).
#pragma once
#include <torch/types.h>

#include "route_mode.h"

namespace xft {

// ---- routing (paper Eq. 2; Eq. 1 for vanilla) ---------------------------------------------

// One warp per token holds the routed logits: R is at most this.
constexpr int64_t kRouteCudaMaxRouted = 64;
// Slots per token the gather's backward and the combine take (kernels::kMaxCombineSlots).
constexpr int64_t kMoeCudaMaxSlots = 128;
// Experts the index build and the grouped products take (kernels::kMaxPermuteExperts).
constexpr int64_t kMoeCudaMaxExperts = 1024;

// True when route_logits_cuda takes these logits: on a CUDA device, float / half / bfloat16
// (fp64 stays on the composed path, for gradient checks), 1 <= R <= kRouteCudaMaxRouted, fewer
// than 2^31 tokens, 1 <= routed_k <= R chosen per token, and `mode` one of the rules the kernel
// knows (kernels::route_mode_known).
bool route_logits_cuda_supports(const torch::Tensor& logits_TR, int64_t routed_k, kernels::RouteMode mode);

// What the fused router returns: the tensors of route() and two the CUDA dispatch reuses.
struct RoutedLogits {
  torch::Tensor weights_TS;      // fp32 [T, S] gate weights, differentiable w.r.t. the logits
  torch::Tensor experts_TS;      // int64 [T, S] expert ids (slot 0 = expert 0 with a shared expert)
  torch::Tensor probs_TR;        // fp32 [T, R] softmax of the logits, differentiable
  torch::Tensor experts_TS_i32;  // the same expert ids as int32
  torch::Tensor counts_N;        // int32 [N]: slots per expert, shared expert included
};

// One fused kernel forward (softmax, stable top-k, Eq. 1-2 weights, expert counts, no host
// sync) and one backward (the arithmetic of route()'s custom backward, src/moe/routing.cpp).
// Throws xft::Error when !route_logits_cuda_supports(logits_TR, routed_k, mode).
RoutedLogits route_logits_cuda(const torch::Tensor& logits_TR, int64_t routed_k, kernels::RouteMode mode,
                               bool renormalize);

// ---- dropless dispatch --------------------------------------------------------------------

// Rows grouped by expert, by token inside an expert, by slot inside a token (the order of a
// stable argsort of the flattened expert ids, as moe_combine on the CPU).
struct MoePermutation {
  torch::Tensor row_to_token;       // int32 [T*S]: the token row m reads
  torch::Tensor token_slot_to_row;  // int32 [T*S]: the row of (t, s) at t*S + s
  torch::Tensor offsets_end;        // int32 [E]: inclusive end row of each expert (grouped-mm offs)
  int64_t tokens = 0, slots = 0;
};

// experts_TS: integer [T, S] on a CUDA device, every id in [0, num_experts) (not checked on the
// device: an id out of range is undefined behaviour). No host synchronisation.
MoePermutation moe_permutation_cuda(const torch::Tensor& experts_TS, int64_t num_experts);

// rows [T*S, D] = x_TD[row_to_token]; differentiable w.r.t. x (backward: each token sums its
// rows' gradients in slot order, no atomics). perm.slots is at most kMoeCudaMaxSlots (the
// backward's limit), checked before any device work.
torch::Tensor moe_gather_rows_cuda(const torch::Tensor& x_TD, const MoePermutation& perm);

// out [T, D] fp32 = sum_s weights_TS[t, s] * y_MD[token_slot_to_row[t*S + s]], accumulated in
// fp32 in slot order; differentiable w.r.t. y and the weights (one pass for both gradients).
torch::Tensor moe_combine_rows_cuda(const torch::Tensor& y_MD, const torch::Tensor& weights_TS,
                                    const MoePermutation& perm);

// How grouped_linear_cuda checks the values of its offsets (their dtype, layout and count are
// always checked on the host).
enum class OffsetsCheck {
  kValidate,  // copy them to the host (one host sync): >= 0, non-decreasing, last == M
  kTrusted,   // no look at the values, no sync: offsets straight from moe_permutation_cuda
};

// y [M, N] = x_MK[rows of group e] @ w_ENK[e]^T for each group e (rows split by offsets_end:
// contiguous int32 [E], inclusive ends, non-decreasing, the last equal to M), through
// at::_grouped_mm, with its own backward: dx by a grouped product, dW by a grouped product
// whose empty groups (experts without a token) are zeroed. bf16, sm90/sm100, K and N multiples
// of 8, w contiguous and 16-byte aligned. With kValidate (the default) bad offset values throw
// xft::Error at the price of one host sync; moe_combine_cuda passes kTrusted.
torch::Tensor grouped_linear_cuda(const torch::Tensor& x_MK, const torch::Tensor& w_ENK,
                                  const torch::Tensor& offsets_end, OffsetsCheck check = OffsetsCheck::kValidate);

// Zeroes, in place, every group g of data_E (data_E[g], for E groups) whose row count
// offsets_end[g] - offsets_end[g-1] is zero: the weight gradient of an expert without a token,
// which a grouped product may leave unwritten (grouped_linear_cuda's backward calls it).
// data_E contiguous on a CUDA device, offsets_end contiguous int32 [E] on the same device,
// 1 <= E <= kMoeCudaMaxExperts. No host sync.
void moe_zero_empty_groups_cuda(const torch::Tensor& data_E, const torch::Tensor& offsets_end);

// True when grouped_linear_cuda takes w_ENK for inputs like x (only x's device and dtype are
// read) without a host sync: bf16 x and w on one sm90/sm100 device (at::_grouped_mm's fast
// path), w [E, N, K] contiguous and 16-byte aligned, N and K multiples of 8, 1 <= E <
// kMoeCudaMaxExperts.
bool grouped_linear_cuda_supports(const torch::Tensor& x, const torch::Tensor& w_ENK);

// True when the index build, the gather and the combine take rows like x_TD with `slots` slots
// per token over `num_experts` experts: x on a CUDA device in float / half / bfloat16,
// slots <= kMoeCudaMaxSlots, 1 <= num_experts <= kMoeCudaMaxExperts.
bool moe_dispatch_cuda_supports(const torch::Tensor& x_TD, int64_t slots, int64_t num_experts);

}  // namespace xft
