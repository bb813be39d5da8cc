#include "xft/moe/load_balancing.h"

namespace xft {

torch::Tensor cv_squared(const torch::Tensor& x) {
  if (x.numel() < 2) return torch::zeros({}, x.options());
  return x.var(/*unbiased=*/true) / (x.mean().pow(2) + 1e-10);
}

torch::Tensor load_balancing_loss(const Routing& r, const MoeConfig& c) {
  if (c.aux_loss == AuxLossKind::kNone || c.aux_loss_coef == 0.0) return {};
  const int64_t R = c.num_routed();
  // Routed slots only: drop slot 0 (the shared expert) and shift expert ids to 0..R-1.
  const int64_t first = c.shared_expert ? 1 : 0;
  auto w_TK = r.weights_TS.narrow(1, first, r.weights_TS.size(1) - first);
  auto e_TK = r.experts_TS.narrow(1, first, r.experts_TS.size(1) - first) - first;
  auto counts_R = torch::zeros({R}, w_TK.options()).scatter_add(0, e_TK.reshape(-1), torch::ones_like(w_TK).reshape(-1));
  torch::Tensor loss;
  if (c.aux_loss == AuxLossKind::kCv2) {
    auto importance_R = torch::zeros({R}, w_TK.options()).scatter_add(0, e_TK.reshape(-1), w_TK.reshape(-1));
    loss = cv_squared(importance_R) + cv_squared(counts_R);
  } else {
    auto fraction_R = counts_R / std::max<int64_t>(1, e_TK.numel());
    loss = static_cast<double>(R) * (fraction_R * r.probs_TR.mean(0)).sum();
  }
  return loss * c.aux_loss_coef;
}

}  // namespace xft
