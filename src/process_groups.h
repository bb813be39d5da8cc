// Internal: constructors of the c10d backends (Gloo always, NCCL with CUDA), kept out of the
// public headers so that users of xft need neither gloo's nor NCCL's headers.
#pragma once
#include <chrono>

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

namespace xft::detail {

c10::intrusive_ptr<c10d::Backend> make_gloo_group(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                                  std::chrono::milliseconds timeout);
// Throws xft::Error when xft was built without CUDA.
c10::intrusive_ptr<c10d::Backend> make_nccl_group(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                                  std::chrono::milliseconds timeout, int device_index);
bool nccl_available();

}  // namespace xft::detail
