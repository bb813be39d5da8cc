#include "xft/distributed/expert_sharding.h"

#include <numeric>

#include <torch/torch.h>

#include "distributed/process_groups.h"
#include "xft/core/error.h"
#include "xft/model/hf_names.h"

namespace xft {

using Group = Distributed::Group;

ExpertSharding::ExpertSharding(std::shared_ptr<const Distributed> dist, int64_t num_experts, int64_t replicated)
    : ExpertSharding(dist, num_experts, replicated, dist->expert_size(), dist->expert_rank()) {}

ExpertSharding::ExpertSharding(std::shared_ptr<const Distributed> dist, int64_t num_experts, int64_t replicated,
                               int size, int rank)
    : dist_(std::move(dist)),
      num_experts_(num_experts),
      replicated_(replicated),
      size_(size),
      rank_(rank),
      split_(std::max<int64_t>(0, num_experts - replicated), size) {
  // Any split works (uneven blocks, empty ones); only a layer without routed experts has
  // nothing to split.
  XFT_CHECK(num_experts_ - replicated_ > 0, "expert parallel: the MoE layers have ", num_experts_, " experts, ",
            replicated_, " of them shared: no routed expert to split over distributed.expert_parallel = ", size_,
            " ranks");
  XFT_CHECK(rank_ >= 0 && rank_ < size_, "expert parallel: rank ", rank_, " outside an expert group of ", size_);
  std::vector<int64_t> holder(static_cast<size_t>(split_.items));
  for (int64_t r = 0; r < split_.items; ++r) holder[static_cast<size_t>(r)] = split_.owner(r);
  holder_R_ = torch::tensor(holder, torch::kInt64);
}

torch::Tensor ExpertSharding::holder_of(const torch::Tensor& experts) const {
  return holder_R_.to(experts.device()).index_select(0, (experts - replicated_).reshape(-1)).view(experts.sizes());
}

bool ExpertSharding::is_sharded(const std::string& name, const torch::Tensor& t) const {
  return t.dim() > 0 && hf::is_expert_stack(name);
}

torch::Tensor ExpertSharding::slice(const torch::Tensor& full) const {
  XFT_CHECK(full.size(0) == num_experts_, "expert parallel: expected a stack of ", num_experts_, " experts, got ",
            full.sizes());
  return torch::cat({full.narrow(0, 0, replicated_), full.narrow(0, first_routed(), local_routed())}).contiguous();
}

torch::Tensor ExpertSharding::gather(const torch::Tensor& local, const std::string& name) const {
  XFT_CHECK(local.size(0) == replicated_ + local_routed(), "expert parallel: '", name, "' holds ", local.size(0),
            " experts on this rank, expected ", replicated_ + local_routed());
  // all-gather wants one shape from every member: each block padded to the largest, then trimmed.
  const int64_t largest = split_.largest();
  auto mine = local.narrow(0, replicated_, local_routed());
  if (local_routed() < largest) {
    auto pad_sizes = mine.sizes().vec();
    pad_sizes[0] = largest - local_routed();
    mine = torch::cat({mine, torch::zeros(pad_sizes, mine.options())});
  }
  auto padded = dist_->all_gather_cat(mine, Group::kExpert, "gathering the experts of '" + name + "'");
  std::vector<torch::Tensor> parts{local.narrow(0, 0, replicated_)};
  for (int g = 0; g < size_; ++g) parts.push_back(padded.narrow(0, g * largest, split_.size(g)));
  return torch::cat(parts);
}

NamedTensors ExpertSharding::gather_all(const NamedTensors& local) const {
  NamedTensors out;
  for (const auto& [n, t] : local) out.emplace_back(n, is_sharded(n, t) ? gather(t.detach(), n) : t);
  return out;
}

std::vector<RowBlock> row_blocks(const ExpertSharding* sharding, const std::string& name, const torch::Tensor& t) {
  if (!sharding || !sharding->is_sharded(name, t)) return {RowBlock{0, -1, Group::kWorld}};
  const int64_t rep = sharding->replicated();
  std::vector<RowBlock> blocks;
  if (rep > 0) blocks.push_back({0, rep, Group::kWorld});
  blocks.push_back({rep, t.size(0) - rep, Group::kExpertDp});
  return blocks;
}

// ---------------------------------------------------------------- all-to-all

namespace {

torch::Tensor exchange(const torch::Tensor& x, std::vector<int64_t> send, std::vector<int64_t> recv,
                       const Distributed& dist, Group group, const char* what) {
  auto sizes = x.sizes().vec();
  sizes[0] = std::accumulate(recv.begin(), recv.end(), int64_t{0});
  auto out = torch::empty(sizes, x.options());
  auto in = x.contiguous();
  wait_for(dist, process_group(dist, group)->alltoall_base(out, in, recv, send), what, group);
  return out;
}

// Forward sends rows along send/recv; backward returns their gradients along recv/send.
struct AllToAllFn : public torch::autograd::Function<AllToAllFn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, std::vector<int64_t> send,
                               std::vector<int64_t> recv, const Distributed* dist, int64_t group) {
    ctx->saved_data["send"] = send;
    ctx->saved_data["recv"] = recv;
    // The context outlives every autograd graph of the run (the trainer owns both).
    ctx->saved_data["dist"] = reinterpret_cast<int64_t>(dist);
    ctx->saved_data["group"] = group;
    return exchange(x, send, recv, *dist, static_cast<Group>(group), "all-to-all of expert tokens");
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto* dist = reinterpret_cast<const Distributed*>(ctx->saved_data["dist"].toInt());
    auto g = exchange(grads[0], ctx->saved_data["recv"].toIntVector(), ctx->saved_data["send"].toIntVector(), *dist,
                      static_cast<Group>(ctx->saved_data["group"].toInt()), "all-to-all of expert gradients");
    return {g, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor all_to_all(const torch::Tensor& x, const std::vector<int64_t>& send_counts,
                         const std::vector<int64_t>& recv_counts, const Distributed& dist, Group group) {
  XFT_CHECK(static_cast<int>(send_counts.size()) == dist.group_size(group) &&
                static_cast<int>(recv_counts.size()) == dist.group_size(group),
            "all_to_all: expected ", dist.group_size(group), " counts per direction");
  if (!dist.has_group(group)) return x;
  return AllToAllFn::apply(x, send_counts, recv_counts, &dist, static_cast<int64_t>(group));
}

torch::Tensor exchange_rows(const torch::Tensor& x, const std::vector<int64_t>& send_counts,
                            const std::vector<int64_t>& recv_counts, const Distributed& dist, Group group,
                            const char* what) {
  if (!dist.has_group(group)) return x;
  return exchange(x, send_counts, recv_counts, dist, group, what);
}

}  // namespace xft
