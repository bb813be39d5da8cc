// RMSNorm forward: one block per row, fp32 accumulation, warp-shuffle reduction.
#include "rms_norm.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace xft::kernels {
namespace {

constexpr int kThreads = 256;

// The block's total, in every thread. Only warp 0 reads the per-warp partial sums: it then
// overwrites slot 0 with the total, and a read of slot 0 by another warp at that moment would
// be a (harmless, but reported by compute-sanitizer racecheck) read-write race.
__device__ float block_sum(float v) {
  __shared__ float partial[kThreads / 32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kThreads / 32 ? partial[lane] : 0.f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0) partial[0] = v;
  }
  __syncthreads();
  return partial[0];
}

template <typename T>
__global__ void rms_norm_kernel(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y, int64_t cols,
                                float eps) {
  const T* xr = x + blockIdx.x * cols;
  T* yr = y + blockIdx.x * cols;
  float ss = 0.f;
  for (int64_t c = threadIdx.x; c < cols; c += kThreads) {
    const float v = to_float(xr[c]);
    ss += v * v;
  }
  const float rstd = rsqrtf(block_sum(ss) / static_cast<float>(cols) + eps);
  // As Hugging Face: normalise in fp32, round to T, then multiply by the weight in T.
  for (int64_t c = threadIdx.x; c < cols; c += kThreads) {
    const T normed = from_float<T>(to_float(xr[c]) * rstd);
    yr[c] = from_float<T>(to_float(w[c]) * to_float(normed));
  }
}

template <typename T>
cudaError_t launch(const void* x, const void* w, void* y, int64_t rows, int64_t cols, float eps, cudaStream_t s) {
  if (rows == 0) return cudaSuccess;
  rms_norm_kernel<T><<<static_cast<unsigned>(rows), kThreads, 0, s>>>(
      static_cast<const T*>(x), static_cast<const T*>(w), static_cast<T*>(y), cols, eps);
  return cudaGetLastError();
}

}  // namespace

cudaError_t rms_norm_forward(const void* x, const void* w, void* y, int64_t rows, int64_t cols, float eps, DType dtype,
                             cudaStream_t stream) {
  if (rows < 0 || cols < 1 || rows > 0x7fffffff) return cudaErrorInvalidValue;
  switch (dtype) {
    case DType::kFloat32: return launch<float>(x, w, y, rows, cols, eps, stream);
    case DType::kFloat16: return launch<__half>(x, w, y, rows, cols, eps, stream);
    case DType::kBFloat16: return launch<__nv_bfloat16>(x, w, y, rows, cols, eps, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace xft::kernels
