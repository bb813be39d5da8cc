#include "xft/distributed/sum_across_ranks.h"

#include <torch/torch.h>

namespace xft {

namespace {

using Group = Distributed::Group;

torch::Tensor summed(const torch::Tensor& x, const Distributed& dist, Group group, const std::string& what) {
  std::vector<torch::Tensor> v{x.contiguous().clone()};
  dist.all_reduce_sum(v, group, what);
  return v[0];
}

struct SumAcrossRanksFn : public torch::autograd::Function<SumAcrossRanksFn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const Distributed* dist,
                               int64_t group, std::string what) {
    // The context outlives every autograd graph of the run (the trainer owns both).
    ctx->saved_data["dist"] = reinterpret_cast<int64_t>(dist);
    ctx->saved_data["group"] = group;
    ctx->saved_data["what"] = what;
    return summed(x, *dist, static_cast<Group>(group), what);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto* dist = reinterpret_cast<const Distributed*>(ctx->saved_data["dist"].toInt());
    auto g = summed(grads[0], *dist, static_cast<Group>(ctx->saved_data["group"].toInt()),
                    ctx->saved_data["what"].toStringRef() + " (gradient)");
    return {g, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor sum_across_ranks(const torch::Tensor& x, const Distributed& dist, Group group, const std::string& what) {
  if (!dist.has_group(group)) return x;
  return SumAcrossRanksFn::apply(x, &dist, static_cast<int64_t>(group), what);
}

}  // namespace xft
