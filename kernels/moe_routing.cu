// Fused routing (paper Eq. 2; Eq. 1 for vanilla), forward and backward: one warp per token, the
// R <= 64 routed logits in two registers per lane, all arithmetic in fp32.
#include "moe_routing.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cfloat>

namespace xft::kernels {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kThreads = kWarpsPerBlock * 32;
constexpr unsigned kFullMask = 0xffffffffu;

// Butterfly reductions: every lane ends with the same value (a + b == b + a bitwise), so the
// result does not depend on the lane and is the same run to run.
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

// xft::route's rule for non-finite logits (include/xft/moe/routing.h): +inf becomes the largest
// finite float, -inf and NaN the lowest. Then the row maximum is finite, exp(0) = 1 makes the
// softmax denominator >= 1, no score is NaN, and the argmax rounds below see a total order (a
// NaN compares false both ways, which let two rounds pick one expert).
__device__ __forceinline__ float finite_logit(float z) {
  if (isnan(z)) return -FLT_MAX;
  return fminf(fmaxf(z, -FLT_MAX), FLT_MAX);
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    route_forward_kernel(const T* __restrict__ z, int64_t tokens, int R, int k, RouteMode mode, bool renorm,
                         float* __restrict__ w, int32_t* __restrict__ ids, float* __restrict__ probs,
                         int32_t* __restrict__ counts) {
  const bool shared = route_mode_has_shared(mode);
  const int off = shared ? 1 : 0;  // slot of the first routed expert, and the id shift
  const int S = k + off, N = R + off;
  __shared__ int block_counts[kMaxRoutedExperts + 1];
  for (int i = threadIdx.x; i < N; i += kThreads) block_counts[i] = 0;
  __syncthreads();

  const int lane = threadIdx.x % 32;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (t < tokens) {  // uniform within the warp: the shuffles below see all 32 lanes
    // Lane l holds experts l and l + 32.
    const int i0 = lane, i1 = lane + 32;
    const bool has0 = i0 < R, has1 = i1 < R;
    const T* zr = z + t * R;
    const float z0 = has0 ? finite_logit(to_float(zr[i0])) : -INFINITY;  // -inf: padding, never read back
    const float z1 = has1 ? finite_logit(to_float(zr[i1])) : -INFINITY;
    // Eq. 2's softmax over the routed logits, in fp32.
    const float zmax = warp_max(fmaxf(z0, z1));
    const float e0 = has0 ? expf(z0 - zmax) : 0.f;
    const float e1 = has1 ? expf(z1 - zmax) : 0.f;
    const float denom = warp_sum(e0 + e1);
    const float s0 = e0 / denom, s1 = e1 / denom;
    if (has0) probs[t * R + i0] = s0;
    if (has1) probs[t * R + i1] = s1;

    // Top-k as k rounds of argmax with the winner knocked out; equal scores go to the lower
    // index, which is the order of a stable descending sort (xft::route on the CPU).
    // -1 marks an absent or taken expert (scores are >= 0).
    float c0 = has0 ? s0 : -1.f, c1 = has1 ? s1 : -1.f;
    float v0 = 0.f, v1 = 0.f;  // lane l keeps round l's winner (v0) and round l + 32's (v1)
    int idx0 = 0, idx1 = 0;
    for (int r = 0; r < k; ++r) {
      float bv = c0;
      int bi = i0;
      if (c1 > bv) {
        bv = c1;
        bi = i1;
      }
      for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(kFullMask, bv, o);
        const int oi = __shfl_xor_sync(kFullMask, bi, o);
        if (ov > bv || (ov == bv && oi < bi)) {
          bv = ov;
          bi = oi;
        }
      }
      if (bi == i0) c0 = -1.f;
      if (bi == i1) c1 = -1.f;
      if (r == lane) {
        v0 = bv;
        idx0 = bi;
      } else if (r == lane + 32) {
        v1 = bv;
        idx1 = bi;
      }
    }
    const bool own0 = lane < k, own1 = lane + 32 < k;
    const float smax = __shfl_sync(kFullMask, v0, 0);  // round 0's winner: s_max
    float w0 = v0, w1 = v1;
    switch (mode) {  // uniform within the warp: the reductions below see all 32 lanes
      case RouteMode::kXft: {
        // Eq. 2: softmax over the chosen scores (v_0 is their max), times s_max.
        const float p0 = own0 ? expf(v0 - smax) : 0.f, p1 = own1 ? expf(v1 - smax) : 0.f;
        const float psum = warp_sum(p0 + p1);
        w0 = p0 / psum * smax;
        w1 = p1 / psum * smax;
        break;
      }
      case RouteMode::kSharedNoNorm:  // the chosen experts keep their raw scores
        break;
      case RouteMode::kVanilla:
        if (renorm) {
          const float vsum = warp_sum((own0 ? v0 : 0.f) + (own1 ? v1 : 0.f));
          w0 = v0 / vsum;
          w1 = v1 / vsum;
        }
        break;
    }
    float* wr = w + t * S;
    int32_t* er = ids + t * S;
    if (shared && lane == 0) {
      wr[0] = 1.f - smax;  // the shared expert's weight: the routed ones sum to s_max (xft)
      er[0] = 0;
      atomicAdd(&block_counts[0], 1);
    }
    if (own0) {
      wr[lane + off] = w0;
      er[lane + off] = idx0 + off;
      atomicAdd(&block_counts[idx0 + off], 1);
    }
    if (own1) {
      wr[lane + 32 + off] = w1;
      er[lane + 32 + off] = idx1 + off;
      atomicAdd(&block_counts[idx1 + off], 1);
    }
  }
  __syncthreads();
  // Integer sums: the totals do not depend on the order of the atomics.
  if (counts != nullptr) {
    for (int i = threadIdx.x; i < N; i += kThreads) {
      if (block_counts[i] != 0) atomicAdd(&counts[i], block_counts[i]);
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    route_backward_kernel(const float* __restrict__ probs, const int32_t* __restrict__ ids, const float* __restrict__ w,
                          const float* __restrict__ gw, const float* __restrict__ gp, int64_t tokens, int R, int k,
                          RouteMode mode, bool renorm, T* __restrict__ dz) {
  __shared__ float ds_shared[kWarpsPerBlock][kMaxRoutedExperts];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp;
  if (t >= tokens) return;  // the whole warp leaves; no block-wide barrier follows
  const bool shared = route_mode_has_shared(mode);
  const int off = shared ? 1 : 0;
  const int S = k + off;
  const int i0 = lane, i1 = lane + 32;
  const bool has0 = i0 < R, has1 = i1 < R;
  const float* sr = probs + t * R;
  const float s0 = has0 ? sr[i0] : 0.f, s1 = has1 ? sr[i1] : 0.f;
  float* ds = ds_shared[warp];  // d loss / d s for this token
  ds[i0] = has0 && gp != nullptr ? gp[t * R + i0] : 0.f;
  ds[i1] = has1 && gp != nullptr ? gp[t * R + i1] : 0.f;
  __syncwarp();
  if (gw != nullptr) {
    // Lane l owns the chosen experts of rounds l and l + 32 (routed slots l + off, l + 32 + off).
    const float* gr = gw + t * S;
    const int32_t* er = ids + t * S;
    const float* wr = w + t * S;
    const bool own0 = lane < k, own1 = lane + 32 < k;
    const int idx0 = own0 ? er[lane + off] - off : 0, idx1 = own1 ? er[lane + 32 + off] - off : 0;
    const float v0 = own0 ? sr[idx0] : 0.f, v1 = own1 ? sr[idx1] : 0.f;
    const float g0 = own0 ? gr[lane + off] : 0.f, g1 = own1 ? gr[lane + 32 + off] : 0.f;
    float d0 = g0, d1 = g1;  // d loss / d v
    switch (mode) {          // uniform within the warp: the reductions below see all 32 lanes
      case RouteMode::kXft: {
        // w_j = p_j m with p = softmax(v), m = v_0 = s_max:
        // dv_j = m p_j (g_j - <g, p>) + [j = 0] <g, p>
        const float m = __shfl_sync(kFullMask, v0, 0);
        const float e0 = own0 ? expf(v0 - m) : 0.f, e1 = own1 ? expf(v1 - m) : 0.f;
        const float esum = warp_sum(e0 + e1);
        const float p0 = e0 / esum, p1 = e1 / esum;
        const float gdotp = warp_sum(g0 * p0 + g1 * p1);
        d0 = m * p0 * (g0 - gdotp);
        d1 = m * p1 * (g1 - gdotp);
        if (lane == 0) d0 += gdotp;
        break;
      }
      case RouteMode::kSharedNoNorm:  // w_j = v_j
        break;
      case RouteMode::kVanilla:
        if (renorm) {
          // w = v / sum(v): dv_j = (g_j - sum_i g_i w_i) / sum(v)
          const float vsum = warp_sum(v0 + v1);
          const float gdotw = warp_sum((own0 ? g0 * wr[lane] : 0.f) + (own1 ? g1 * wr[lane + 32] : 0.f));
          d0 = (g0 - gdotw) / vsum;
          d1 = (g1 - gdotw) / vsum;
        }
        break;
    }
    if (shared && lane == 0) d0 -= gr[0];  // the shared weight 1 - s_max depends on v_0 only
    // The chosen experts are distinct: no two lanes add to one entry.
    if (own0) ds[idx0] += d0;
    if (own1) ds[idx1] += d1;
    __syncwarp();
  }
  // Softmax backward: dz = s * (ds - <ds, s>).
  const float a0 = has0 ? ds[i0] : 0.f, a1 = has1 ? ds[i1] : 0.f;
  const float dot = warp_sum(a0 * s0 + a1 * s1);
  T* dr = dz + t * R;
  if (has0) dr[i0] = from_float<T>(s0 * (a0 - dot));
  if (has1) dr[i1] = from_float<T>(s1 * (a1 - dot));
}

bool args_ok(int64_t T, int R, int k, RouteMode mode) {
  return T >= 0 && T <= 0x7fffffffLL && R >= 1 && R <= kMaxRoutedExperts && k >= 1 && k <= R && route_mode_known(mode);
}

unsigned blocks_for(int64_t T) { return static_cast<unsigned>((T + kWarpsPerBlock - 1) / kWarpsPerBlock); }

template <typename T>
cudaError_t launch_forward(const void* z, int64_t tokens, int R, int k, RouteMode mode, bool renorm, float* w,
                           int32_t* ids, float* probs, int32_t* counts, cudaStream_t s) {
  route_forward_kernel<T><<<blocks_for(tokens), kThreads, 0, s>>>(static_cast<const T*>(z), tokens, R, k, mode, renorm,
                                                                  w, ids, probs, counts);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_backward(const float* probs, const int32_t* ids, const float* w, const float* gw, const float* gp,
                            int64_t tokens, int R, int k, RouteMode mode, bool renorm, void* dz, cudaStream_t s) {
  route_backward_kernel<T>
      <<<blocks_for(tokens), kThreads, 0, s>>>(probs, ids, w, gw, gp, tokens, R, k, mode, renorm, static_cast<T*>(dz));
  return cudaGetLastError();
}

}  // namespace

cudaError_t moe_route_forward(const void* logits, DType dtype, int64_t T, int R, int k, RouteMode mode,
                              bool renormalize, float* weights, int32_t* experts, float* probs, int32_t* counts,
                              cudaStream_t stream) {
  if (!args_ok(T, R, k, mode)) return cudaErrorInvalidValue;
  if (counts != nullptr) {
    const int N = route_mode_has_shared(mode) ? R + 1 : R;
    const cudaError_t e = cudaMemsetAsync(counts, 0, sizeof(int32_t) * N, stream);
    if (e != cudaSuccess) return e;
  }
  if (T == 0) return cudaSuccess;
  switch (dtype) {
    case DType::kFloat32:
      return launch_forward<float>(logits, T, R, k, mode, renormalize, weights, experts, probs, counts, stream);
    case DType::kFloat16:
      return launch_forward<__half>(logits, T, R, k, mode, renormalize, weights, experts, probs, counts, stream);
    case DType::kBFloat16:
      return launch_forward<__nv_bfloat16>(logits, T, R, k, mode, renormalize, weights, experts, probs, counts, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t moe_route_backward(const float* probs, const int32_t* experts, const float* weights,
                               const float* grad_weights, const float* grad_probs, int64_t T, int R, int k,
                               RouteMode mode, bool renormalize, void* grad_logits, DType dtype, cudaStream_t stream) {
  if (!args_ok(T, R, k, mode)) return cudaErrorInvalidValue;
  if (T == 0) return cudaSuccess;
  switch (dtype) {
    case DType::kFloat32:
      return launch_backward<float>(probs, experts, weights, grad_weights, grad_probs, T, R, k, mode, renormalize,
                                    grad_logits, stream);
    case DType::kFloat16:
      return launch_backward<__half>(probs, experts, weights, grad_weights, grad_probs, T, R, k, mode, renormalize,
                                     grad_logits, stream);
    case DType::kBFloat16:
      return launch_backward<__nv_bfloat16>(probs, experts, weights, grad_weights, grad_probs, T, R, k, mode,
                                            renormalize, grad_logits, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace xft::kernels
