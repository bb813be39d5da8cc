// defines: MoeLayerImpl / MoeLayer, the upcycled FFN (paper 3.1): router, N stacked experts
//          (expert 0 shared when configured), routing (Eq. 2), dropless dispatch, aux loss.
#pragma once
#include <memory>

#include "xft/config.h"
#include "xft/experts.h"
#include "xft/feed_forward.h"
#include "xft/router.h"
#include "xft/routing.h"

namespace xft {

class MoeLayerImpl : public FeedForwardImpl {
 public:
  MoeLayerImpl(int64_t hidden, int64_t intermediate, const MoeConfig& config);
  FfnOutput forward(const torch::Tensor& x) override;

  const MoeConfig& config() const { return config_; }
  // Tokens sent to each expert by the last forward ([N], int64), for metrics and tests.
  const torch::Tensor& last_expert_counts() const { return last_counts_; }

  // Expert parallelism (see expert_parallel.h): the stacks hold this rank's rows and routed
  // tokens travel by all-to-all. Null: every expert is local.
  void set_expert_sharding(std::shared_ptr<const class ExpertSharding> sharding) { sharding_ = std::move(sharding); }

  Router router{nullptr};
  Experts experts{nullptr};

 private:
  MoeConfig config_;
  torch::Tensor last_counts_;
  std::shared_ptr<const class ExpertSharding> sharding_;
};
TORCH_MODULE(MoeLayer);

}  // namespace xft
