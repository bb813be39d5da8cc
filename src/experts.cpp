#include "xft/experts.h"

#include "xft/cuda_ops.h"
#include "xft/error.h"
#include "xft/mlp.h"
#include "xft/moe_cuda.h"

namespace xft {

ExpertsImpl::ExpertsImpl(int64_t E, int64_t D, int64_t F) {
  gate_proj = register_parameter("gate_proj", torch::randn({E, F, D}) * 0.02);
  up_proj = register_parameter("up_proj", torch::randn({E, F, D}) * 0.02);
  down_proj = register_parameter("down_proj", torch::randn({E, D, F}) * 0.02);
}

torch::Dtype combine_dtype(const torch::Tensor& x) {
  return x.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
}

torch::Tensor ExpertsImpl::expert_forward(int64_t e, const torch::Tensor& x_MD) const {
  auto h_MF = swiglu(torch::linear(x_MD, gate_proj[e]), torch::linear(x_MD, up_proj[e]));
  return torch::linear(h_MF, down_proj[e]);
}

torch::Tensor moe_combine(const ExpertsImpl& experts, const torch::Tensor& x_TD, const torch::Tensor& experts_TS,
                          const torch::Tensor& weights_TS) {
  XFT_CHECK(x_TD.dim() == 2 && experts_TS.dim() == 2 && experts_TS.sizes() == weights_TS.sizes() &&
                experts_TS.size(0) == x_TD.size(0),
            "moe_combine: expected x [T, D], experts and weights [T, S]; got ", x_TD.sizes(), ", ",
            experts_TS.sizes(), ", ", weights_TS.sizes());
  // No host sync on sm90 bf16 (grouped products); fp64 stays on the ATen path below.
  if (x_TD.is_cuda() && cuda_ops_available() && moe_combine_cuda_supports(experts, x_TD, experts_TS)) {
    return moe_combine_cuda(experts, x_TD, experts_TS, weights_TS);
  }
  const int64_t S = experts_TS.size(1), E = experts.num_experts();
  auto flat_e = experts_TS.reshape(-1);
  auto order = flat_e.argsort(/*stable=*/true);                 // rows grouped by expert, token order within
  auto token_of_row = order.div(S, "floor");
  const auto acc = combine_dtype(x_TD);
  auto weight_of_row = weights_TS.reshape(-1).index_select(0, order).to(acc);
  auto counts = flat_e.bincount({}, E).cpu();                   // the CPU path may sync
  auto x_rows = x_TD.index_select(0, token_of_row);
  std::vector<torch::Tensor> y_rows;
  int64_t offset = 0;
  const auto* count = counts.data_ptr<int64_t>();
  for (int64_t e = 0; e < E; ++e) {
    if (count[e] == 0) continue;                               // an expert with no token costs nothing
    y_rows.push_back(experts.expert_forward(e, x_rows.narrow(0, offset, count[e])));
    offset += count[e];
  }
  auto out = torch::zeros({x_TD.size(0), x_TD.size(1)}, x_TD.options().dtype(acc));
  if (y_rows.empty()) return out;
  auto y = torch::cat(y_rows).to(acc) * weight_of_row.unsqueeze(1);
  return out.index_add(0, token_of_row, y);
}

torch::Tensor moe_combine_naive(const ExpertsImpl& experts, const torch::Tensor& x_TD, const torch::Tensor& G_TN) {
  const auto acc = combine_dtype(x_TD);
  auto out = torch::zeros({x_TD.size(0), x_TD.size(1)}, x_TD.options().dtype(acc));
  for (int64_t e = 0; e < experts.num_experts(); ++e) {
    out = out + G_TN.select(1, e).unsqueeze(1).to(acc) * experts.expert_forward(e, x_TD).to(acc);
  }
  return out;
}

}  // namespace xft
