#include "xft/moe/dispatch.h"

#include "cuda/cuda_ops.h"
#include "moe/dispatch_cuda.h"
#include "xft/core/error.h"

namespace xft {

torch::Dtype combine_dtype(const torch::Tensor& x) {
  return x.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
}

ExpertOrder sort_by_expert(const torch::Tensor& experts_TS) {
  const int64_t S = experts_TS.size(1);
  auto flat_e = experts_TS.reshape(-1);
  ExpertOrder o;
  o.order = flat_e.argsort(/*stable=*/true);
  o.token_of_row = o.order.div(S, "floor");
  o.expert_of_row = flat_e.index_select(0, o.order);
  return o;
}

namespace {

// Rows (already in expert order, `count` of them per expert) through their experts.
torch::Tensor run_experts(const ExpertsImpl& experts, const torch::Tensor& x_rows, const torch::Tensor& counts_E) {
  const auto counts = counts_E.cpu();  // the CPU path may sync
  const auto* count = counts.data_ptr<int64_t>();
  std::vector<torch::Tensor> y_rows;
  int64_t offset = 0;
  for (int64_t e = 0; e < counts.numel(); ++e) {
    if (count[e] == 0) continue;  // an expert with no token costs nothing
    y_rows.push_back(experts.expert_forward(e, x_rows.narrow(0, offset, count[e])));
    offset += count[e];
  }
  return y_rows.empty() ? torch::Tensor() : torch::cat(y_rows);
}

// Weighted rows summed back into their tokens, in `acc`.
torch::Tensor scatter_to_tokens(const torch::Tensor& y_rows, const ExpertOrder& o, const torch::Tensor& weights_TS,
                                const torch::Tensor& x_TD, torch::Dtype acc) {
  auto out = torch::zeros({x_TD.size(0), x_TD.size(1)}, x_TD.options().dtype(acc));
  if (!y_rows.defined()) return out;
  auto weight_of_row = weights_TS.reshape(-1).index_select(0, o.order).to(acc);
  return out.index_add(0, o.token_of_row, y_rows.to(acc) * weight_of_row.unsqueeze(1));
}

std::vector<int64_t> to_vector(const torch::Tensor& t) {
  auto c = t.to(torch::kCPU, torch::kLong).contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

// Rows travel to the ranks holding their experts, run there through the local path, and come
// back to be weighted and summed as the local path does.
torch::Tensor combine_expert_parallel(const ExpertsImpl& local, const torch::Tensor& x_TD,
                                      const torch::Tensor& experts_TS, const torch::Tensor& weights_TS,
                                      const ExpertSharding& sh) {
  using Group = Distributed::Group;
  const auto& dist = sh.dist();
  const int P = sh.size();
  // 1. Rows sorted by expert, hence grouped by the rank that holds the expert (contiguous
  // blocks, possibly uneven or empty: expert_sharding.h).
  const auto o = sort_by_expert(experts_TS);
  auto dest = sh.holder_of(o.expert_of_row);
  auto send_t = dest.bincount({}, P);
  // 2. How many rows each member sends to each other member.
  auto recv_t = exchange_rows(send_t.to(x_TD.device()), std::vector<int64_t>(P, 1), std::vector<int64_t>(P, 1), dist,
                              Group::kExpert, "all-to-all of expert row counts");
  const auto send = to_vector(send_t), recv = to_vector(recv_t);
  // 3. Rows and their expert ids to the holders; each holder runs its local experts on them.
  auto x_recv = all_to_all(x_TD.index_select(0, o.token_of_row), send, recv, dist, Group::kExpert);
  auto e_recv = exchange_rows(o.expert_of_row, send, recv, dist, Group::kExpert, "all-to-all of expert ids");
  auto local_row = e_recv - sh.first_routed() + sh.replicated();
  auto ones = torch::ones({x_recv.size(0), 1}, weights_TS.options());
  auto y_recv = moe_combine(local, x_recv, local_row.unsqueeze(1), ones);  // FFN_e(row), in acc
  // A rank that received no row (no token chose its experts, or it holds none) computed plain
  // zeros; tie them to x_recv so that its backward still runs both all-to-alls its peers wait in.
  if (x_recv.requires_grad() && !y_recv.requires_grad()) y_recv = y_recv + x_recv.sum().to(y_recv.scalar_type()) * 0;
  // 4. Outputs back to the tokens' ranks.
  auto y_rows = all_to_all(y_recv, recv, send, dist, Group::kExpert);
  return scatter_to_tokens(y_rows, o, weights_TS, x_TD, combine_dtype(x_TD));
}

}  // namespace

torch::Tensor moe_combine(const ExpertsImpl& experts, const torch::Tensor& x_TD, const torch::Tensor& experts_TS,
                          const torch::Tensor& weights_TS) {
  XFT_CHECK(x_TD.dim() == 2 && experts_TS.dim() == 2 && experts_TS.sizes() == weights_TS.sizes() &&
                experts_TS.size(0) == x_TD.size(0),
            "moe_combine: expected x [T, D], experts and weights [T, S]; got ", x_TD.sizes(), ", ", experts_TS.sizes(),
            ", ", weights_TS.sizes());
  // No host sync on sm90 bf16 (grouped products); fp64 stays on the ATen path below.
  if (x_TD.is_cuda() && cuda_ops_available() && moe_combine_cuda_supports(experts, x_TD, experts_TS)) {
    return moe_combine_cuda(experts, x_TD, experts_TS, weights_TS);
  }
  const auto o = sort_by_expert(experts_TS);
  auto counts = o.expert_of_row.bincount({}, experts.num_experts());
  auto y_rows = run_experts(experts, x_TD.index_select(0, o.token_of_row), counts);
  return scatter_to_tokens(y_rows, o, weights_TS, x_TD, combine_dtype(x_TD));
}

torch::Tensor moe_dispatch(const ExpertsImpl& experts, const torch::Tensor& x_TD, const torch::Tensor& experts_TS,
                           const torch::Tensor& weights_TS, const ExpertSharding* sharding) {
  return sharding ? combine_expert_parallel(experts, x_TD, experts_TS, weights_TS, *sharding)
                  : moe_combine(experts, x_TD, experts_TS, weights_TS);
}

}  // namespace xft
