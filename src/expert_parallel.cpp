#include "xft/expert_parallel.h"

#include <numeric>

#include <torch/torch.h>

#include "xft/error.h"
#include "xft/experts.h"
#include "xft/llama.h"
#include "xft/moe_layer.h"

namespace xft {

using Group = Distributed::Group;

ExpertSharding::ExpertSharding(std::shared_ptr<const Distributed> dist, int64_t num_experts, int64_t replicated)
    : dist_(std::move(dist)), num_experts_(num_experts), replicated_(replicated) {
  size_ = dist_->expert_size();
  rank_ = dist_->expert_rank();
  const int64_t routed = num_experts_ - replicated_;
  XFT_CHECK(routed > 0 && routed % size_ == 0, "expert parallel: the ", routed,
            " routed experts of each MoE layer must split evenly over distributed.expert_parallel = ", size_,
            " ranks");
}

bool ExpertSharding::is_sharded(const std::string& name, const torch::Tensor& t) const {
  if (t.dim() == 0) return false;
  const auto stack = name.substr(0, name.find('/'));
  for (const char* suffix : {"experts.gate_proj", "experts.up_proj", "experts.down_proj"}) {
    const std::string s(suffix);
    if (stack.size() >= s.size() && stack.compare(stack.size() - s.size(), s.size(), s) == 0) return true;
  }
  return false;
}

torch::Tensor ExpertSharding::slice(const torch::Tensor& full) const {
  XFT_CHECK(full.size(0) == num_experts_, "expert parallel: expected a stack of ", num_experts_, " experts, got ",
            full.sizes());
  return torch::cat({full.narrow(0, 0, replicated_), full.narrow(0, first_routed(), local_routed())}).contiguous();
}

torch::Tensor ExpertSharding::gather(const torch::Tensor& local, const std::string& name) const {
  XFT_CHECK(local.size(0) == replicated_ + local_routed(), "expert parallel: '", name, "' holds ", local.size(0),
            " experts on this rank, expected ", replicated_ + local_routed());
  auto routed = dist_->all_gather_cat(local.narrow(0, replicated_, local_routed()), Group::kExpert,
                                      "gathering the experts of '" + name + "'");
  return torch::cat({local.narrow(0, 0, replicated_), routed});
}

NamedTensors ExpertSharding::gather_all(const NamedTensors& local) const {
  NamedTensors out;
  for (const auto& [n, t] : local) out.emplace_back(n, is_sharded(n, t) ? gather(t.detach(), n) : t);
  return out;
}

namespace {

std::vector<std::shared_ptr<MoeLayerImpl>> moe_layers_of(CausalLMImpl& model) {
  std::vector<std::shared_ptr<MoeLayerImpl>> out;
  for (int64_t l = 0; l < model.config().num_hidden_layers; ++l)
    if (auto m = std::dynamic_pointer_cast<MoeLayerImpl>(model.layer(l)->mlp)) out.push_back(m);
  return out;
}

}  // namespace

std::shared_ptr<const ExpertSharding> shard_experts(CausalLMImpl& model, std::shared_ptr<const Distributed> dist) {
  if (dist->expert_size() <= 1) return nullptr;
  auto layers = moe_layers_of(model);
  XFT_CHECK(!layers.empty(), "expert parallel: distributed.expert_parallel = ", dist->expert_size(),
            " but the model has no MoE layer");
  const auto& c = layers.front()->config();
  auto sharding = std::make_shared<const ExpertSharding>(dist, c.num_experts, c.shared_expert ? 1 : 0);
  torch::NoGradGuard ng;
  for (auto& m : layers) {
    // set_data keeps the registered parameter (and any optimizer's handle on it) while its rows shrink.
    for (auto* w : {&m->experts->gate_proj, &m->experts->up_proj, &m->experts->down_proj})
      w->set_data(sharding->slice(w->detach()));
    m->set_expert_sharding(sharding);
  }
  return sharding;
}

void unshard_experts(CausalLMImpl& model, const ExpertSharding& sharding) {
  torch::NoGradGuard ng;
  int64_t l = 0;
  for (auto& m : moe_layers_of(model)) {
    for (auto* w : {&m->experts->gate_proj, &m->experts->up_proj, &m->experts->down_proj})
      w->set_data(sharding.gather(w->detach(), "layer " + std::to_string(l) + " experts"));
    m->set_expert_sharding(nullptr);
    ++l;
  }
}

// ---------------------------------------------------------------- all-to-all

namespace {

torch::Tensor exchange(const torch::Tensor& x, std::vector<int64_t> send, std::vector<int64_t> recv,
                       const Distributed& dist, Group group, const char* what) {
  auto sizes = x.sizes().vec();
  sizes[0] = std::accumulate(recv.begin(), recv.end(), int64_t{0});
  auto out = torch::empty(sizes, x.options());
  auto in = x.contiguous();
  auto pg = dist.group(group);
  dist.wait(pg->alltoall_base(out, in, recv, send), what, group);
  return out;
}

// Forward sends rows along send/recv; backward returns their gradients along recv/send.
struct AllToAllFn : public torch::autograd::Function<AllToAllFn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               std::vector<int64_t> send, std::vector<int64_t> recv, const Distributed* dist,
                               int64_t group) {
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

std::vector<int64_t> to_vector(const torch::Tensor& t) {
  auto c = t.to(torch::kCPU, torch::kLong).contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

}  // namespace

torch::Tensor all_to_all(const torch::Tensor& x, const std::vector<int64_t>& send_counts,
                         const std::vector<int64_t>& recv_counts, const Distributed& dist, Group group) {
  XFT_CHECK(static_cast<int>(send_counts.size()) == dist.group_size(group) &&
                static_cast<int>(recv_counts.size()) == dist.group_size(group),
            "all_to_all: expected ", dist.group_size(group), " counts per direction");
  if (!dist.group(group)) return x;
  return AllToAllFn::apply(x, send_counts, recv_counts, &dist, static_cast<int64_t>(group));
}

torch::Tensor moe_combine_expert_parallel(const ExpertsImpl& local, const torch::Tensor& x_TD,
                                          const torch::Tensor& experts_TS, const torch::Tensor& weights_TS,
                                          const ExpertSharding& sh) {
  const auto& dist = sh.dist();
  const int P = sh.size();
  const int64_t S = experts_TS.size(1);
  const auto acc = combine_dtype(x_TD);
  // 1. Rows (token, slot) sorted by expert, hence grouped by the rank that holds the expert.
  auto flat_e = experts_TS.reshape(-1);
  auto order = flat_e.argsort(/*stable=*/true);
  auto token_of_row = order.div(S, "floor");
  auto weight_of_row = weights_TS.reshape(-1).index_select(0, order).to(acc);
  auto expert_of_row = flat_e.index_select(0, order);
  auto dest = (expert_of_row - sh.replicated()).div(sh.local_routed(), "floor");
  auto send_t = dest.bincount({}, P);
  // 2. How many rows each member sends to each other member.
  auto recv_t = exchange(send_t.to(x_TD.device()), std::vector<int64_t>(P, 1), std::vector<int64_t>(P, 1), dist,
                         Group::kExpert, "all-to-all of expert row counts");
  const auto send = to_vector(send_t), recv = to_vector(recv_t);
  // 3. Rows and their expert ids to the holders; each holder runs its local experts on them.
  auto x_recv = all_to_all(x_TD.index_select(0, token_of_row), send, recv, dist, Group::kExpert);
  auto e_recv = exchange(expert_of_row, send, recv, dist, Group::kExpert, "all-to-all of expert ids");
  auto local_row = e_recv - sh.first_routed() + sh.replicated();
  auto ones = torch::ones({x_recv.size(0), 1}, weights_TS.options());
  auto y_recv = moe_combine(local, x_recv, local_row.unsqueeze(1), ones);  // FFN_e(row), in acc
  // 4. Outputs back to the tokens' ranks, weighted and summed as moe_combine does.
  auto y_rows = all_to_all(y_recv, recv, send, dist, Group::kExpert);
  auto out = torch::zeros({x_TD.size(0), x_TD.size(1)}, x_TD.options().dtype(acc));
  return out.index_add(0, token_of_row, y_rows * weight_of_row.unsqueeze(1));
}

}  // namespace xft
