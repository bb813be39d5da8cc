// defines: xft::kernels::DType (the element types the kernels take), and for device code
//          to_float / from_float (conversions through fp32, where all kernels accumulate)
#pragma once

namespace xft::kernels {

enum class DType { kFloat32, kFloat16, kBFloat16 };

}  // namespace xft::kernels

#ifdef __CUDACC__
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace xft::kernels {

template <typename T>
__device__ __forceinline__ float to_float(T v) {
  return static_cast<float>(v);
}
template <>
__device__ __forceinline__ float to_float(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
template <>
__device__ __forceinline__ float to_float(__half v) {
  return __half2float(v);
}
template <typename T>
__device__ __forceinline__ T from_float(float v) {
  return static_cast<T>(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float(float v) {
  return __float2bfloat16(v);
}
template <>
__device__ __forceinline__ __half from_float(float v) {
  return __float2half(v);
}

}  // namespace xft::kernels
#endif
