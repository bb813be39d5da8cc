// NCCL backend construction (GPU collectives), built with XFT_WITH_CUDA.
#include <cstdlib>

#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include "distributed/process_groups.h"

namespace xft::detail {

bool nccl_available() { return true; }

c10::intrusive_ptr<c10d::Backend> make_nccl_group(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                                  std::chrono::milliseconds timeout, int device_index) {
  c10::cuda::set_device(static_cast<c10::DeviceIndex>(device_index));
  // Blocking waits: Work::wait then blocks the host until the collective is done or the timeout
  // has passed, and raises in the waiting thread, where Distributed::wait turns it into an error
  // naming the collective. Without it a dead peer is found by the watchdog thread, which tears
  // the process down with its own message. A value the user set is kept.
  ::setenv("TORCH_NCCL_BLOCKING_WAIT", "1", /*overwrite=*/0);
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, options);
}

}  // namespace xft::detail
