// defines: xft::kernels::moe_permute_workspace_bytes, moe_build_permutation, moe_gather_rows,
//          moe_combine_rows, moe_combine_rows_backward, moe_zero_empty_groups (launchers; Torch-free)
//
// Dropless dispatch around grouped matrix products, deterministic everywhere (no float atomics):
//   expert ids [T, S] --build--> row_to_token [M], token_slot_to_row [M], end offsets [E]  (M = T*S)
//   x [T, D] --gather--> rows [M, D] --experts--> y [M, D] --combine--> out [T, D]
// Row order: grouped by expert; inside an expert by token, then by slot (the order of a stable
// argsort of the flattened ids, as xft::moe_combine on the CPU).
#pragma once
#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

#include "dtype.cuh"

namespace xft::kernels {

// The grouped products take fewer than 1024 groups; the index build keeps E counters per warp
// in shared memory.
constexpr int kMaxPermuteExperts = 1024;
// Slots per token a combine block stages in shared memory.
constexpr int kMaxCombineSlots = 128;

// Scratch bytes moe_build_permutation needs for T tokens, S slots and E experts.
size_t moe_permute_workspace_bytes(int64_t T, int S, int E);

// Stable counting sort of the (token, slot) pairs by expert, without host synchronisation:
// per-chunk histograms, a scan over (expert, chunk), and a scatter in which each pair's rank
// among the equal ids before it comes from warp match + popcount and per-warp prefix sums.
// Writes row_to_token [T*S] (the token each row reads), token_slot_to_row [T*S] (the row of
// pair t*S + s) and offsets_end [E] (inclusive end row of each expert: the offs of
// at::_grouped_mm). Preconditions: device pointers; experts contiguous [T, S] with every id in
// [0, E); 1 <= E <= kMaxPermuteExperts; S >= 1; T*S < 2^31; workspace of at least
// moe_permute_workspace_bytes(T, S, E) bytes, 16-byte aligned.
cudaError_t moe_build_permutation(const int32_t* experts, int64_t T, int S, int E, int32_t* row_to_token,
                                  int32_t* token_slot_to_row, int32_t* offsets_end, void* workspace,
                                  size_t workspace_bytes, cudaStream_t stream);

// rows[m, :] = x[row_to_token[m], :], a copy of row_bytes bytes per row (any dtype), in the
// widest unit (16 bytes down to 1) that the row size and both pointers allow.
// Preconditions: device pointers; x and rows row-major contiguous; every index a valid row of x.
cudaError_t moe_gather_rows(const void* x, const int32_t* row_to_token, int64_t rows, int64_t row_bytes, void* out,
                            cudaStream_t stream);

// out[t, :] = sum over s (in slot order) of w[t, s] * y[token_slot_to_row[t*S + s], :], with
// fp32 accumulation; one block per token, no atomics. weights null means all ones: then this is
// the gather's backward (grad_x[t] = sum of the token's row gradients).
// y_dtype: float, half or bfloat16; out_dtype: float or y_dtype. weights fp32 [T, S].
// Preconditions: device pointers; contiguous; 1 <= S <= kMaxCombineSlots; cols >= 1.
cudaError_t moe_combine_rows(const void* y, DType y_dtype, const float* weights, const int32_t* token_slot_to_row,
                             int64_t T, int S, int64_t cols, void* out, DType out_dtype, cudaStream_t stream);

// The combine's backward in one pass over each token's rows:
//   grad_y[row(t, s), :] = w[t, s] * grad_out[t, :]        (in y_dtype)
//   grad_w[t, s]          = <grad_out[t, :], y[row(t, s), :]>  (fp32, a fixed block reduction)
// grad_out has out_dtype (float or y_dtype). Either output may be null (not needed).
// Preconditions: as moe_combine_rows; grad_y [T*S, cols] contiguous.
cudaError_t moe_combine_rows_backward(const void* grad_out, DType out_dtype, const void* y, DType y_dtype,
                                      const float* weights, const int32_t* token_slot_to_row, int64_t T, int S,
                                      int64_t cols, void* grad_y, float* grad_weights, cudaStream_t stream);

// Zeroes group g of `data` (group_bytes bytes at data + g * group_bytes) for every g whose
// row count offsets_end[g] - offsets_end[g-1] is zero: the weight gradient of an expert that got
// no token, which a grouped product with an empty contraction may leave unwritten.
// Preconditions: device pointers; 1 <= groups <= kMaxPermuteExperts.
cudaError_t moe_zero_empty_groups(void* data, int64_t group_bytes, const int32_t* offsets_end, int groups,
                                  cudaStream_t stream);

}  // namespace xft::kernels
