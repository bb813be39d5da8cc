// defines: ExpertSharding (which rows of an expert stack a rank holds), RowBlock / row_blocks
//          (the rows of a parameter by the group that broadcasts and reduces them), all_to_all
//
// Expert parallelism for the MoE stage. Each MoE layer's stacks [N, F, D] keep their first
// `replicated` rows (the shared expert 0, paper 3.1) on every rank, data parallel like the rest
// of the model; the R routed experts are split into contiguous blocks over the expert group
// (P = expert_parallel ranks) by BlockSplit (block_split.h): the first R % P ranks hold one
// expert more, and ranks beyond R hold none (they still route, run the shared expert and take
// part in every all-to-all and reduction). Rank g of the group holds global experts
//   replicated + begin(g) .. replicated + begin(g) + size(g) - 1
// after its replicated rows, so its local stack is [replicated + size(g), F, D] under the same
// name. Checkpoints and exports always hold the whole stacks (gather / slice below).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "xft/core/named_tensors.h"
#include "xft/distributed/block_split.h"
#include "xft/distributed/distributed.h"

namespace xft {

// Rows [begin, begin + length) of a tensor (length < 0: the whole tensor, 0-dim ones included),
// broadcast and reduced over `group`.
struct RowBlock {
  int64_t begin = 0, length = -1;
  Distributed::Group group = Distributed::Group::kWorld;
  torch::Tensor of(const torch::Tensor& t) const { return length < 0 ? t : t.narrow(0, begin, length); }
};

class ExpertSharding {
 public:
  // This rank's place in dist's expert group.
  ExpertSharding(std::shared_ptr<const Distributed> dist, int64_t num_experts, int64_t replicated);
  // Rank `rank` of an expert group of `size` (the layout alone; collectives still go through
  // dist, so only slice() and the layout queries make sense when dist's group differs).
  ExpertSharding(std::shared_ptr<const Distributed> dist, int64_t num_experts, int64_t replicated, int size, int rank);
  int64_t replicated() const { return replicated_; }
  const BlockSplit& split() const { return split_; }                          // the routed experts over the group
  int64_t local_routed() const { return split_.size(rank_); }                 // 0 on a rank beyond the routed experts
  int64_t first_routed() const { return replicated_ + split_.begin(rank_); }  // global index of local row `replicated`
  // The group rank holding each of `experts` (global ids of routed experts, any shape, int64).
  torch::Tensor holder_of(const torch::Tensor& experts) const;
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
  BlockSplit split_;
  torch::Tensor holder_R_;  // [R] int64, CPU: the group rank of each routed expert
};

// The rows of parameter `name` by group: a sharded stack's replicated rows over the world, its
// own routed rows over the ranks holding the same experts; anything else (or everything, when
// `sharding` is null) one block over the world. A rank without routed experts still gets its
// (empty) routed block, so that every rank cuts its gradient buckets at the same places.
std::vector<RowBlock> row_blocks(const ExpertSharding* sharding, const std::string& name, const torch::Tensor& t);

// Rows of x (dim 0) to the ranks of `group`: send_counts[g] rows go to member g, recv_counts[g]
// arrive from it. Differentiable (the backward sends the gradients back the same way).
torch::Tensor all_to_all(const torch::Tensor& x, const std::vector<int64_t>& send_counts,
                         const std::vector<int64_t>& recv_counts, const Distributed& dist, Distributed::Group group);
// The same exchange for tensors that need no gradient (counts, expert ids).
torch::Tensor exchange_rows(const torch::Tensor& x, const std::vector<int64_t>& send_counts,
                            const std::vector<int64_t>& recv_counts, const Distributed& dist, Distributed::Group group,
                            const char* what);

}  // namespace xft
