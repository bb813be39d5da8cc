// defines: DataParallel (the trained tensors' side of a multi-process stage: the initial
//          broadcast, the bucketed gradient all-reduce, the global gradient norm, the replica check)
//
// Internal to the trainer. Every tensor is split by row_blocks (distributed/expert_sharding.h):
// replicated rows go over the world, a rank's own expert rows over the ranks holding the same
// experts. In the single-process context every method is a local no-op or the plain computation.
#pragma once
#include <memory>
#include <string>

#include "distributed/grad_reducer.h"
#include "xft/core/named_tensors.h"
#include "xft/distributed/expert_sharding.h"

namespace xft {

class DataParallel {
 public:
  DataParallel(NamedTensors trainable, std::shared_ptr<const Distributed> dist,
               std::shared_ptr<const ExpertSharding> sharding);
  // Rank 0's values everywhere (a fresh start).
  void broadcast_parameters() const;
  // The gradient all-reduce, or null in the single-process context.
  GradReducer* reducer() const { return reducer_.get(); }
  // Clips to max_norm (0: no clipping) and returns the L2 norm of the whole model's gradient.
  double clip_and_norm(double max_norm) const;
  // Throws when the replicated parameters differ between ranks (a bug worth stopping for).
  void verify_replicas(const std::string& stage, int64_t step) const;

 private:
  NamedTensors trainable_;
  std::shared_ptr<const Distributed> dist_;
  std::shared_ptr<const ExpertSharding> sharding_;
  std::unique_ptr<GradReducer> reducer_;
};

}  // namespace xft
