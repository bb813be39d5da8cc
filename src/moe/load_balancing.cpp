#include "xft/moe/load_balancing.h"

#include <cmath>

#include "xft/core/error.h"

namespace xft {

torch::Tensor cv_squared(const torch::Tensor& x) {
  if (x.numel() < 2) return torch::zeros({}, x.options());
  return x.var(/*unbiased=*/true) / (x.mean().pow(2) + 1e-10);
}

torch::Tensor noisy_topk_load(const torch::Tensor& clean_TR, const torch::Tensor& noisy_TR,
                              const torch::Tensor& scale_TR, int64_t k, LoadEstimate rule,
                              const torch::Tensor& valid_T) {
  const int64_t R = noisy_TR.size(1);
  XFT_CHECK(k >= 1 && k < R, "noisy_topk_load: k must be in [1, ", R, "), got ", k);
  auto top_TM = std::get<0>(noisy_TR.topk(k + 1, /*dim=*/1));  // sorted, differentiable values
  auto thr_in_T1 = top_TM.narrow(1, k, 1);
  auto thr_out_T1 = top_TM.narrow(1, k - 1, 1);
  const auto compared = rule == LoadEstimate::kShazeer ? noisy_TR : noisy_TR - clean_TR;
  auto is_in_TR = compared.gt(thr_in_T1);
  auto phi = [](const torch::Tensor& z) { return 0.5 * (1.0 + torch::erf(z / std::sqrt(2.0))); };
  auto p_in = phi((clean_TR - thr_in_T1) / scale_TR);
  auto p_out = phi((clean_TR - thr_out_T1) / scale_TR);
  auto p_TR = torch::where(is_in_TR, p_in, p_out);
  return (valid_T.defined() ? p_TR * valid_T.to(p_TR.scalar_type()).unsqueeze(1) : p_TR).sum(0);
}

torch::Tensor load_balancing_loss(const Routing& r, const RouterLogits& logits, const MoeConfig& c,
                                  const torch::Tensor& valid_T) {
  if (c.aux_loss == AuxLossKind::kNone || c.aux_loss_coef == 0.0) return {};
  const int64_t R = c.num_routed(), k = c.routed_k();
  // Routed slots only: drop slot 0 (the shared expert) and shift expert ids to 0..R-1.
  const int64_t first = c.shared_expert ? 1 : 0;
  auto w_TK = r.weights_TS.narrow(1, first, r.weights_TS.size(1) - first);
  auto e_TK = r.experts_TS.narrow(1, first, r.experts_TS.size(1) - first) - first;
  // Padding weighs 0 in every sum over tokens (valid_T), without a host sync to drop it.
  const auto valid_T1 = valid_T.defined() ? valid_T.to(w_TK.scalar_type()).unsqueeze(1) : torch::Tensor();
  const auto real = [&](const torch::Tensor& v_TK) { return valid_T1.defined() ? v_TK * valid_T1 : v_TK; };
  auto counts_R =
      torch::zeros({R}, w_TK.options()).scatter_add(0, e_TK.reshape(-1), real(torch::ones_like(w_TK)).reshape(-1));
  torch::Tensor loss;
  if (c.aux_loss == AuxLossKind::kCv2) {
    // The scores the reference scatters: raw s with a shared expert, the renormalised weights without.
    auto scores_TK = c.shared_expert ? r.probs_TR.gather(1, e_TK) : w_TK;
    auto importance_R = torch::zeros({R}, w_TK.options()).scatter_add(0, e_TK.reshape(-1), real(scores_TK).reshape(-1));
    const bool smooth = logits.noise_scale_TR.defined() && k < R;
    auto load_R =
        smooth ? noisy_topk_load(logits.clean_TR, logits.noisy_TR, logits.noise_scale_TR, k, c.load_estimate, valid_T)
               : counts_R;
    loss = cv_squared(importance_R) + cv_squared(load_R);
  } else {
    if (valid_T1.defined()) {
      const auto tokens = valid_T1.sum().clamp_min(1.0);
      auto fraction_R = counts_R / (tokens * static_cast<double>(e_TK.size(1)));
      loss = static_cast<double>(R) * (fraction_R * (r.probs_TR * valid_T1).sum(0) / tokens).sum();
    } else {
      auto fraction_R = counts_R / std::max<int64_t>(1, e_TK.numel());
      loss = static_cast<double>(R) * (fraction_R * r.probs_TR.mean(0)).sum();
    }
  }
  return loss * c.aux_loss_coef;
}

}  // namespace xft
