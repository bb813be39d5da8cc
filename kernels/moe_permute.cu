// Dropless dispatch kernels: the stable index build, the row gather, the weighted combine and
// its backward, and the zeroing of empty groups' weight gradients. Deterministic: integer
// atomics only (whose totals do not depend on order), fixed-order float sums.
#include "moe_permute.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace xft::kernels {
namespace {

constexpr unsigned kFullMask = 0xffffffffu;

// ---- index build -------------------------------------------------------------------------
constexpr int kPermThreads = 256;
constexpr int kPermWarps = kPermThreads / 32;
constexpr int64_t kChunk = 4096;  // (token, slot) pairs per block

// Pass 1: chunk_counts[b, e] = pairs of chunk b routed to expert e.
__global__ void __launch_bounds__(kPermThreads)
    permute_histogram_kernel(const int32_t* __restrict__ ids, int64_t M, int E, int32_t* __restrict__ chunk_counts) {
  extern __shared__ int32_t hist[];  // [E]
  for (int e = threadIdx.x; e < E; e += kPermThreads) hist[e] = 0;
  __syncthreads();
  const int64_t begin = static_cast<int64_t>(blockIdx.x) * kChunk;
  const int64_t end = begin + kChunk < M ? begin + kChunk : M;
  for (int64_t i = begin + threadIdx.x; i < end; i += kPermThreads) atomicAdd(&hist[ids[i]], 1);
  __syncthreads();
  for (int e = threadIdx.x; e < E; e += kPermThreads) chunk_counts[static_cast<int64_t>(blockIdx.x) * E + e] = hist[e];
}

// Pass 2 (one block): chunk_counts[b, e] becomes the first row of chunk b's pairs for expert e:
// start(e) + the pairs of expert e in chunks before b; offsets_end[e] = start(e) + total(e).
__global__ void __launch_bounds__(kPermThreads)
    permute_scan_kernel(int32_t* __restrict__ chunk_counts, int64_t chunks, int E, int32_t* __restrict__ offsets_end) {
  extern __shared__ int32_t start[];  // [E]
  for (int e = threadIdx.x; e < E; e += kPermThreads) {
    int32_t run = 0;
    for (int64_t b = 0; b < chunks; ++b) {
      const int32_t c = chunk_counts[b * E + e];
      chunk_counts[b * E + e] = run;
      run += c;
    }
    start[e] = run;  // the expert's total, for now
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int32_t acc = 0;
    for (int e = 0; e < E; ++e) {
      const int32_t total = start[e];
      start[e] = acc;
      acc += total;
      offsets_end[e] = acc;
    }
  }
  __syncthreads();
  for (int e = threadIdx.x; e < E; e += kPermThreads) {
    for (int64_t b = 0; b < chunks; ++b) chunk_counts[b * E + e] += start[e];
  }
}

// Pass 3: each pair's row = its chunk's base for its expert + the pairs with the same expert
// before it in the chunk. Tiles of 256 pairs in order; inside a tile the rank is the popcount of
// the lower lanes with the same id (warp match) plus the same-id counts of the lower warps.
__global__ void __launch_bounds__(kPermThreads)
    permute_scatter_kernel(const int32_t* __restrict__ ids, int64_t M, int S, int E,
                           const int32_t* __restrict__ chunk_base, int32_t* __restrict__ row_to_token,
                           int32_t* __restrict__ token_slot_to_row) {
  extern __shared__ int32_t smem[];
  int32_t* base = smem;             // [E]: next row of each expert in this chunk
  int32_t* warp_counts = smem + E;  // [kPermWarps][E]: this tile's pairs per warp and expert
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int e = threadIdx.x; e < E; e += kPermThreads) base[e] = chunk_base[static_cast<int64_t>(blockIdx.x) * E + e];
  const int64_t begin = static_cast<int64_t>(blockIdx.x) * kChunk;
  const int64_t end = begin + kChunk < M ? begin + kChunk : M;
  for (int64_t tile = begin; tile < end; tile += kPermThreads) {  // the same trip count for every thread
    for (int i = threadIdx.x; i < kPermWarps * E; i += kPermThreads) warp_counts[i] = 0;
    __syncthreads();
    const int64_t i = tile + threadIdx.x;
    const bool valid = i < end;
    const int e = valid ? ids[i] : -1;  // -1: the tail lanes form a group of their own
    const unsigned peers = __match_any_sync(kFullMask, e);
    const unsigned lower = peers & ((1u << lane) - 1u);
    if (valid && lower == 0) warp_counts[warp * E + e] = __popc(peers);  // the group's lowest lane
    __syncthreads();
    if (valid) {
      int32_t row = base[e] + __popc(lower);
      for (int w = 0; w < warp; ++w) row += warp_counts[w * E + e];
      row_to_token[row] = static_cast<int32_t>(i / S);
      token_slot_to_row[i] = row;
    }
    __syncthreads();
    for (int ee = threadIdx.x; ee < E; ee += kPermThreads) {
      int32_t add = 0;
      for (int w = 0; w < kPermWarps; ++w) add += warp_counts[w * E + ee];
      base[ee] += add;
    }
    __syncthreads();
  }
}

// ---- gather ------------------------------------------------------------------------------
constexpr int kGatherThreads = 128;

template <typename U>
__global__ void __launch_bounds__(kGatherThreads)
    gather_rows_kernel(const U* __restrict__ x, const int32_t* __restrict__ row_to_token, int64_t units,
                       U* __restrict__ out) {
  const int64_t r = blockIdx.x;
  const U* src = x + static_cast<int64_t>(row_to_token[r]) * units;
  U* dst = out + r * units;
  for (int64_t i = threadIdx.x; i < units; i += kGatherThreads) dst[i] = src[i];
}

// ---- combine -----------------------------------------------------------------------------
constexpr int kCombineThreads = 256;

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

// A fixed reduction tree (deterministic); the result is valid in warp 0. The barriers on both
// sides let it be called in a loop.
__device__ float block_sum(float v, float* partial) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  v = warp_sum(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  float r = 0.f;
  if (warp == 0) r = warp_sum(lane < kCombineThreads / 32 ? partial[lane] : 0.f);
  __syncthreads();
  return r;
}

template <typename TY, typename TO>
__global__ void __launch_bounds__(kCombineThreads)
    combine_rows_kernel(const TY* __restrict__ y, const float* __restrict__ w, const int32_t* __restrict__ map, int S,
                        int64_t cols, TO* __restrict__ out) {
  __shared__ int64_t rows[kMaxCombineSlots];
  __shared__ float ws[kMaxCombineSlots];
  const int64_t t = blockIdx.x;
  for (int s = threadIdx.x; s < S; s += kCombineThreads) {
    rows[s] = map[t * S + s];
    ws[s] = w != nullptr ? w[t * S + s] : 1.f;
  }
  __syncthreads();
  for (int64_t c = threadIdx.x; c < cols; c += kCombineThreads) {
    float acc = 0.f;  // slot order: the same sum every run
    for (int s = 0; s < S; ++s) acc += ws[s] * to_float(y[rows[s] * cols + c]);
    out[t * cols + c] = from_float<TO>(acc);
  }
}

template <typename TY, typename TO>
__global__ void __launch_bounds__(kCombineThreads)
    combine_rows_backward_kernel(const TO* __restrict__ grad_out, const TY* __restrict__ y, const float* __restrict__ w,
                                 const int32_t* __restrict__ map, int S, int64_t cols, TY* __restrict__ grad_y,
                                 float* __restrict__ grad_w) {
  __shared__ int64_t rows[kMaxCombineSlots];
  __shared__ float ws[kMaxCombineSlots];
  __shared__ float partial[kCombineThreads / 32];
  const int64_t t = blockIdx.x;
  for (int s = threadIdx.x; s < S; s += kCombineThreads) {
    rows[s] = map[t * S + s];
    ws[s] = w[t * S + s];
  }
  __syncthreads();
  const TO* g = grad_out + t * cols;
  for (int s = 0; s < S; ++s) {
    const int64_t base = rows[s] * cols;
    float dot = 0.f;
    for (int64_t c = threadIdx.x; c < cols; c += kCombineThreads) {
      const float gc = to_float(g[c]);
      if (grad_y != nullptr) grad_y[base + c] = from_float<TY>(ws[s] * gc);
      if (grad_w != nullptr) dot += gc * to_float(y[base + c]);
    }
    if (grad_w != nullptr) {  // uniform across the block
      const float total = block_sum(dot, partial);
      if (threadIdx.x == 0) grad_w[t * S + s] = total;
    }
  }
}

// ---- empty groups ------------------------------------------------------------------------
template <typename U>
__global__ void zero_empty_groups_kernel(U* __restrict__ data, int64_t units, const int32_t* __restrict__ ends) {
  const int g = blockIdx.y;
  const int32_t count = ends[g] - (g > 0 ? ends[g - 1] : 0);
  if (count != 0) return;
  U* p = data + g * units;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < units;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    p[i] = U{};
  }
}

// ---- launch helpers ----------------------------------------------------------------------
// The widest power-of-two unit (<= 16 bytes) dividing the size and both addresses.
int copy_unit(int64_t bytes, const void* a, const void* b) {
  int unit = 16;
  while (unit > 1 && (bytes % unit != 0 || reinterpret_cast<uintptr_t>(a) % unit != 0 ||
                      reinterpret_cast<uintptr_t>(b) % unit != 0)) {
    unit /= 2;
  }
  return unit;
}

template <typename U>
cudaError_t launch_gather(const void* x, const int32_t* r2t, int64_t rows, int64_t row_bytes, void* out,
                          cudaStream_t s) {
  gather_rows_kernel<U><<<static_cast<unsigned>(rows), kGatherThreads, 0, s>>>(
      static_cast<const U*>(x), r2t, row_bytes / static_cast<int64_t>(sizeof(U)), static_cast<U*>(out));
  return cudaGetLastError();
}

template <typename U>
cudaError_t launch_zero(void* data, int64_t group_bytes, const int32_t* ends, int groups, cudaStream_t s) {
  const int64_t units = group_bytes / static_cast<int64_t>(sizeof(U));
  const int64_t want = (units + 255) / 256;
  const dim3 grid(static_cast<unsigned>(want < 128 ? (want < 1 ? 1 : want) : 128), static_cast<unsigned>(groups));
  zero_empty_groups_kernel<U><<<grid, 256, 0, s>>>(static_cast<U*>(data), units, ends);
  return cudaGetLastError();
}

template <typename TY, typename TO>
cudaError_t launch_combine(const void* y, const float* w, const int32_t* map, int64_t T, int S, int64_t cols, void* out,
                           cudaStream_t s) {
  combine_rows_kernel<TY, TO><<<static_cast<unsigned>(T), kCombineThreads, 0, s>>>(static_cast<const TY*>(y), w, map, S,
                                                                                   cols, static_cast<TO*>(out));
  return cudaGetLastError();
}

template <typename TY, typename TO>
cudaError_t launch_combine_backward(const void* grad_out, const void* y, const float* w, const int32_t* map, int64_t T,
                                    int S, int64_t cols, void* grad_y, float* grad_w, cudaStream_t s) {
  combine_rows_backward_kernel<TY, TO><<<static_cast<unsigned>(T), kCombineThreads, 0, s>>>(
      static_cast<const TO*>(grad_out), static_cast<const TY*>(y), w, map, S, cols, static_cast<TY*>(grad_y), grad_w);
  return cudaGetLastError();
}

int64_t chunks_for(int64_t M) { return (M + kChunk - 1) / kChunk; }

}  // namespace

size_t moe_permute_workspace_bytes(int64_t T, int S, int E) {
  if (T < 0 || S < 1 || E < 1) return 0;
  return static_cast<size_t>(chunks_for(T * S)) * static_cast<size_t>(E) * sizeof(int32_t);
}

cudaError_t moe_build_permutation(const int32_t* experts, int64_t T, int S, int E, int32_t* row_to_token,
                                  int32_t* token_slot_to_row, int32_t* offsets_end, void* workspace,
                                  size_t workspace_bytes, cudaStream_t stream) {
  if (T < 0 || S < 1 || E < 1 || E > kMaxPermuteExperts || T * S > 0x7fffffffLL) return cudaErrorInvalidValue;
  if (workspace_bytes < moe_permute_workspace_bytes(T, S, E)) return cudaErrorInvalidValue;
  const int64_t M = T * S, chunks = chunks_for(M);
  auto* chunk_counts = static_cast<int32_t*>(workspace);
  const size_t e_bytes = sizeof(int32_t) * static_cast<size_t>(E);
  if (chunks > 0) {
    permute_histogram_kernel<<<static_cast<unsigned>(chunks), kPermThreads, e_bytes, stream>>>(experts, M, E,
                                                                                               chunk_counts);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  // Also with no pair at all, so that offsets_end is written (all zero).
  permute_scan_kernel<<<1, kPermThreads, e_bytes, stream>>>(chunk_counts, chunks, E, offsets_end);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess || chunks == 0) return e;
  permute_scatter_kernel<<<static_cast<unsigned>(chunks), kPermThreads, e_bytes*(1 + kPermWarps), stream>>>(
      experts, M, S, E, chunk_counts, row_to_token, token_slot_to_row);
  return cudaGetLastError();
}

cudaError_t moe_gather_rows(const void* x, const int32_t* row_to_token, int64_t rows, int64_t row_bytes, void* out,
                            cudaStream_t stream) {
  if (rows < 0 || rows > 0x7fffffffLL || row_bytes < 1) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  switch (copy_unit(row_bytes, x, out)) {
    case 16: return launch_gather<uint4>(x, row_to_token, rows, row_bytes, out, stream);
    case 8: return launch_gather<uint2>(x, row_to_token, rows, row_bytes, out, stream);
    case 4: return launch_gather<uint32_t>(x, row_to_token, rows, row_bytes, out, stream);
    case 2: return launch_gather<uint16_t>(x, row_to_token, rows, row_bytes, out, stream);
    default: return launch_gather<uint8_t>(x, row_to_token, rows, row_bytes, out, stream);
  }
}

cudaError_t moe_combine_rows(const void* y, DType y_dtype, const float* weights, const int32_t* token_slot_to_row,
                             int64_t T, int S, int64_t cols, void* out, DType out_dtype, cudaStream_t stream) {
  if (T < 0 || T > 0x7fffffffLL || S < 1 || S > kMaxCombineSlots || cols < 1) return cudaErrorInvalidValue;
  if (T == 0) return cudaSuccess;
  if (out_dtype != DType::kFloat32 && out_dtype != y_dtype) return cudaErrorInvalidValue;
  const bool f32_out = out_dtype == DType::kFloat32;
#define XFT_COMBINE(TY, TO) launch_combine<TY, TO>(y, weights, token_slot_to_row, T, S, cols, out, stream)
  switch (y_dtype) {
    case DType::kFloat32: return XFT_COMBINE(float, float);
    case DType::kFloat16: return f32_out ? XFT_COMBINE(__half, float) : XFT_COMBINE(__half, __half);
    case DType::kBFloat16:
      return f32_out ? XFT_COMBINE(__nv_bfloat16, float) : XFT_COMBINE(__nv_bfloat16, __nv_bfloat16);
  }
#undef XFT_COMBINE
  return cudaErrorInvalidValue;
}

cudaError_t moe_combine_rows_backward(const void* grad_out, DType out_dtype, const void* y, DType y_dtype,
                                      const float* weights, const int32_t* token_slot_to_row, int64_t T, int S,
                                      int64_t cols, void* grad_y, float* grad_weights, cudaStream_t stream) {
  if (T < 0 || T > 0x7fffffffLL || S < 1 || S > kMaxCombineSlots || cols < 1) return cudaErrorInvalidValue;
  if (T == 0 || (grad_y == nullptr && grad_weights == nullptr)) return cudaSuccess;
  if (out_dtype != DType::kFloat32 && out_dtype != y_dtype) return cudaErrorInvalidValue;
  const bool f32_out = out_dtype == DType::kFloat32;
#define XFT_COMBINE_BWD(TY, TO) \
  launch_combine_backward<TY, TO>(grad_out, y, weights, token_slot_to_row, T, S, cols, grad_y, grad_weights, stream)
  switch (y_dtype) {
    case DType::kFloat32: return XFT_COMBINE_BWD(float, float);
    case DType::kFloat16: return f32_out ? XFT_COMBINE_BWD(__half, float) : XFT_COMBINE_BWD(__half, __half);
    case DType::kBFloat16:
      return f32_out ? XFT_COMBINE_BWD(__nv_bfloat16, float) : XFT_COMBINE_BWD(__nv_bfloat16, __nv_bfloat16);
  }
#undef XFT_COMBINE_BWD
  return cudaErrorInvalidValue;
}

cudaError_t moe_zero_empty_groups(void* data, int64_t group_bytes, const int32_t* offsets_end, int groups,
                                  cudaStream_t stream) {
  if (groups < 1 || groups > kMaxPermuteExperts || group_bytes < 0) return cudaErrorInvalidValue;
  if (group_bytes == 0) return cudaSuccess;
  switch (copy_unit(group_bytes, data, data)) {
    case 16: return launch_zero<uint4>(data, group_bytes, offsets_end, groups, stream);
    case 8: return launch_zero<uint2>(data, group_bytes, offsets_end, groups, stream);
    case 4: return launch_zero<uint32_t>(data, group_bytes, offsets_end, groups, stream);
    case 2: return launch_zero<uint16_t>(data, group_bytes, offsets_end, groups, stream);
    default: return launch_zero<uint8_t>(data, group_bytes, offsets_end, groups, stream);
  }
}

}  // namespace xft::kernels
