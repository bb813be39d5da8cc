// Built without gloo's headers: no Gloo backend (multi-process CPU runs are unavailable).
#include "distributed/process_groups.h"
#include "xft/core/error.h"

namespace xft::detail {

c10::intrusive_ptr<c10d::Backend> make_gloo_group(const c10::intrusive_ptr<c10d::Store>&, int, int,
                                                  std::chrono::milliseconds) {
  fail("distributed: xft was built without gloo's headers, so backend 'gloo' is unavailable; run ",
       "scripts/setup.sh (it fetches them) and rebuild, or use backend 'nccl' on GPUs");
}

}  // namespace xft::detail
