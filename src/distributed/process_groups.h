// Internal: the c10d side of Distributed (its process groups, the wait on a collective) and the
// constructors of the c10d backends (Gloo always, NCCL with CUDA), kept out of the public
// headers so that users of xft need neither c10d's, gloo's nor NCCL's headers.
#pragma once
#include <chrono>
#include <string>

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include "xft/distributed/distributed.h"

namespace xft {

struct Distributed::Groups {
  c10::intrusive_ptr<c10d::Backend> world, expert, expert_dp;
};

// Null in the single-process context.
c10::intrusive_ptr<c10d::Backend> process_group(const Distributed& dist, Distributed::Group g);
// Waits for `work` at most distributed.timeout_s, turning a timeout or a peer's death into an
// xft::Error naming `what` and the group.
void wait_for(const Distributed& dist, const c10::intrusive_ptr<c10d::Work>& work, const std::string& what,
              Distributed::Group g);

}  // namespace xft

namespace xft::detail {

c10::intrusive_ptr<c10d::Backend> make_gloo_group(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                                  std::chrono::milliseconds timeout);
// Throws xft::Error when xft was built without CUDA.
c10::intrusive_ptr<c10d::Backend> make_nccl_group(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                                  std::chrono::milliseconds timeout, int device_index);
bool nccl_available();

}  // namespace xft::detail
