#include "train/data_parallel.h"

#include <cstdio>

#include <torch/torch.h>

#include "xft/core/error.h"
#include "xft/train/optimizer.h"

namespace xft {

using Group = Distributed::Group;

DataParallel::DataParallel(NamedTensors trainable, std::shared_ptr<const Distributed> dist,
                           std::shared_ptr<const ExpertSharding> sharding)
    : trainable_(std::move(trainable)), dist_(std::move(dist)), sharding_(std::move(sharding)) {
  if (!dist_->active()) return;
  std::vector<GradReducer::Slice> slices;
  for (const auto& [n, t] : trainable_)
    for (const auto& b : row_blocks(sharding_.get(), n, t)) slices.push_back({n, t, b.begin, b.length, b.group});
  reducer_ = std::make_unique<GradReducer>(std::move(slices), dist_, dist_->config().bucket_mb);
}

void DataParallel::broadcast_parameters() const {
  torch::NoGradGuard ng;
  std::vector<torch::Tensor> world, expert_dp;
  for (const auto& [n, t] : trainable_)
    for (const auto& b : row_blocks(sharding_.get(), n, t))
      (b.group == Group::kWorld ? world : expert_dp).push_back(b.of(t));
  dist_->broadcast(world, Group::kWorld, "broadcast of the initial parameters");
  dist_->broadcast(expert_dp, Group::kExpertDp, "broadcast of the initial expert parameters");
}

double DataParallel::clip_and_norm(double max_norm) const {
  if (!sharding_) return clip_grad_norm(trainable_, max_norm);
  // The norm over the whole model: rows every rank holds count once, each rank's own expert
  // rows are summed over the expert group.
  torch::NoGradGuard ng;
  const auto opts = torch::TensorOptions().dtype(torch::kFloat).device(dist_->comm_device());
  auto replicated = torch::zeros({}, opts), own = torch::zeros({1}, opts);
  auto sq = [&](const torch::Tensor& g) {
    return torch::linalg_vector_norm(g, 2, c10::nullopt, false, torch::kFloat).square().to(opts.device());
  };
  for (const auto& [n, t] : trainable_) {
    const auto& g = t.grad();
    if (!g.defined()) continue;
    for (const auto& b : row_blocks(sharding_.get(), n, t)) {
      if (b.group == Group::kWorld)
        replicated = replicated + sq(b.of(g));
      else
        own = own + sq(b.of(g));
    }
  }
  std::vector<torch::Tensor> v{own};
  dist_->all_reduce_sum(v, Group::kExpert, "gradient norm");
  const auto total = (replicated + own[0]).sqrt();
  clip_grads_to_norm(trainable_, total, max_norm);
  return total.item<double>();
}

void DataParallel::verify_replicas(const std::string& stage, int64_t step) const {
  if (!dist_->active()) return;
  // Data parallelism keeps replicated parameters bitwise equal (the all-reduced sum is the same
  // everywhere, the update is deterministic).
  torch::NoGradGuard ng;
  double sum = 0.0, sq = 0.0;
  for (const auto& [n, t] : trainable_)
    for (const auto& b : row_blocks(sharding_.get(), n, t)) {
      if (b.group != Group::kWorld) continue;
      auto d = b.of(t).to(torch::kDouble);
      sum += d.sum().item<double>();
      sq += d.square().sum().item<double>();
    }
  auto mine = torch::tensor({sum, sq}, torch::kDouble).to(dist_->comm_device()).unsqueeze(0);
  auto all = dist_->all_gather_cat(mine, Group::kWorld, "replica check").cpu();
  for (int r = 1; r < dist_->world(); ++r)
    if (!all[r].equal(all[0])) {
      char buf[96];
      std::snprintf(buf, sizeof buf, "%.17g vs %.17g", all[r][0].item<double>(), all[0][0].item<double>());
      fail(stage, ": after step ", step, " the replicated parameters of rank ", r, " differ from rank 0's (sums ", buf,
           ")");
    }
}

}  // namespace xft
