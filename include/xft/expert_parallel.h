// defines: ExpertSharding (which rows of an expert stack a rank holds), shard_experts /
//          unshard_experts, moe_combine_expert_parallel (all-to-all dispatch), all_to_all
//
// Expert parallelism for the MoE stage. Each MoE layer's stacks [N, F, D] keep their first
// `replicated` rows (the shared expert 0, paper 3.1) on every rank, data parallel like the rest
// of the model; the R routed experts are split into equal contiguous blocks over the expert
// group (expert_parallel ranks). Rank g of the group holds global experts
//   replicated + g*R/P .. replicated + (g+1)*R/P - 1
// after its replicated rows, so its local stack is [replicated + R/P, F, D] under the same name.
// Tokens travel to the rank of each chosen expert and back with all-to-all (differentiable);
// checkpoints and exports always hold the whole stacks (gather / slice below).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "xft/checkpoint.h"
#include "xft/distributed.h"

namespace xft {

class CausalLMImpl;
class ExpertsImpl;

class ExpertSharding {
 public:
  ExpertSharding(std::shared_ptr<const Distributed> dist, int64_t num_experts, int64_t replicated);

  int64_t replicated() const { return replicated_; }
  int64_t local_routed() const { return (num_experts_ - replicated_) / size_; }
  int64_t first_routed() const { return replicated_ + rank_ * local_routed(); }  // global index of local row `replicated`
  int size() const { return size_; }
  int rank() const { return rank_; }
  const Distributed& dist() const { return *dist_; }

  // An expert stack (…experts.gate_proj/up_proj/down_proj) or one of its optimizer slots
  // ("<stack>/exp_avg", …; scalars such as "<stack>/step" are not sharded).
  bool is_sharded(const std::string& name, const torch::Tensor& t) const;
  // Whole stack -> this rank's rows.
  torch::Tensor slice(const torch::Tensor& full) const;
  // This rank's rows -> whole stack (collective over the expert group: every member calls it in
  // the same order).
  torch::Tensor gather(const torch::Tensor& local, const std::string& name) const;
  // gather() applied to every sharded entry; the others pass through.
  NamedTensors gather_all(const NamedTensors& local) const;

 private:
  std::shared_ptr<const Distributed> dist_;
  int64_t num_experts_, replicated_;
  int size_, rank_;
};

// Splits every MoE layer's expert stacks over the expert group and switches the layers to the
// all-to-all dispatch. Returns null (and changes nothing) when the expert group has one rank.
// Throws when the routed experts do not divide evenly over the group.
std::shared_ptr<const ExpertSharding> shard_experts(CausalLMImpl& model, std::shared_ptr<const Distributed> dist);
// Gathers the whole stacks back (collective) and returns the layers to local dispatch.
void unshard_experts(CausalLMImpl& model, const ExpertSharding& sharding);

// Rows of x (dim 0) to the ranks of `group`: send_counts[g] rows go to member g, recv_counts[g]
// arrive from it. Differentiable (the backward sends the gradients back the same way).
torch::Tensor all_to_all(const torch::Tensor& x, const std::vector<int64_t>& send_counts,
                         const std::vector<int64_t>& recv_counts, const Distributed& dist, Distributed::Group group);

// moe_combine over experts spread on the expert group: experts_TS holds global indices of
// routed experts only (slots of replicated experts are computed locally by the caller).
torch::Tensor moe_combine_expert_parallel(const ExpertsImpl& local, const torch::Tensor& x_TD,
                                          const torch::Tensor& experts_TS, const torch::Tensor& weights_TS,
                                          const ExpertSharding& sharding);

}  // namespace xft
