// defines: MoeLayerImpl / MoeLayer, the upcycled FFN (paper 3.1): router, N stacked experts
//          (expert 0 shared when configured), routing (Eq. 2), dropless dispatch, aux loss.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "xft/model/config.h"
#include "xft/model/feed_forward.h"
#include "xft/moe/dispatch.h"
#include "xft/moe/experts.h"
#include "xft/moe/router.h"
#include "xft/moe/routing.h"

namespace xft {

class MoeLayerImpl : public FeedForwardImpl {
 public:
  MoeLayerImpl(int64_t hidden, int64_t intermediate, const MoeConfig& config);
  using FeedForwardImpl::forward;
  FfnOutput forward(const torch::Tensor& x, const torch::Tensor& token_mask) override;

  const MoeConfig& config() const { return config_; }
  // Tokens sent to each expert by the last forward ([N], int64; real tokens only when the forward
  // had a token mask), for metrics and tests. On CUDA without a mask, the routing kernel's counts.
  const torch::Tensor& last_expert_counts() const { return last_counts_; }
  // Routing statistics summed over the training forwards since the last call, then reset (on
  // the device, no host sync; real tokens only): fp64 [N + 5] = slots per expert (N), tokens, sum of the shared
  // expert's weight (1 - s_max), sum of the router entropy -sum_i s_i log s_i, sum of the aux
  // loss, forwards. Undefined when nothing ran. train/moe_telemetry.h turns it into metrics.
  torch::Tensor take_telemetry();

  // Expert parallelism (moe/expert_parallel.h): the stacks hold this rank's rows and routed
  // tokens travel by all-to-all. Null: every expert is local.
  void set_expert_sharding(std::shared_ptr<const ExpertSharding> sharding) { sharding_ = std::move(sharding); }

  Router router{nullptr};
  Experts experts{nullptr};

 private:
  void record_telemetry(const Routing& routing, const torch::Tensor& aux, const torch::Tensor& valid_T);

  MoeConfig config_;
  torch::Tensor last_counts_;
  torch::Tensor telemetry_;
  std::shared_ptr<const ExpertSharding> sharding_;
};
TORCH_MODULE(MoeLayer);

class CausalLMImpl;
// Every layer's MoE FFN, in layer order; an error naming `who` and the first layer without one.
std::vector<std::shared_ptr<MoeLayerImpl>> moe_layers(CausalLMImpl& model, const std::string& who);

}  // namespace xft
