// Without CUDA there is no NCCL backend: asking for it is a configuration error.
#include "distributed/process_groups.h"
#include "xft/core/error.h"

namespace xft::detail {

bool nccl_available() { return false; }

c10::intrusive_ptr<c10d::Backend> make_nccl_group(const c10::intrusive_ptr<c10d::Store>&, int, int,
                                                  std::chrono::milliseconds, int) {
  fail("distributed: backend 'nccl' needs xft built with CUDA (-DXFT_WITH_CUDA=ON); use backend 'gloo'");
}

}  // namespace xft::detail
