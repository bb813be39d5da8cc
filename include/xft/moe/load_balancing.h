// defines: cv_squared, noisy_topk_load, load_balancing_loss
//
// cv2: Shazeer et al.'s importance + load loss, as the reference code (LLaMA-MoE, XFT's gate)
//      computes it: coef * (cv2(importance) + cv2(load)), cv2(x) = var(x, unbiased) / (mean(x)^2 + 1e-10);
//      importance_i = sum over tokens of the RAW score s_i of routed expert i where chosen (the
//      softmax over the routed logits, before Eq. 2's renormalisation; for vanilla routing the
//      chosen weights, which the reference takes as a softmax over the top-K logits);
//      load_i = its token count without noise, or with noisy gating the smooth estimate below.
// switch: R * sum_i f_i P_i, f_i = fraction of routed slots sent to expert i, P_i = mean prob.
// Both cover the routed experts only (the shared expert sees every token by construction).
// With valid_T (1 for a real token, 0 for padding), sums and means run over the real tokens
// only: padding is routed (the batch keeps its shape) but never counted.
#pragma once
#include <torch/types.h>

#include "xft/model/config.h"
#include "xft/moe/router.h"
#include "xft/moe/routing.h"

namespace xft {

torch::Tensor cv_squared(const torch::Tensor& x);

// The load under noisy top-k gating (Shazeer et al. 2017, "noisy top-k gating"): per token t
// and routed expert i, the probability over the noise that i is among the top k:
//   thr_in = the (k+1)-th largest noisy logit, thr_out = the k-th largest
//   in_ti  = noisy_ti > thr_in          (LoadEstimate::kShazeer)
//          = noise_ti > thr_in           (LoadEstimate::kReference: the authors' code compares
//                                          the noise alone, noise = noisy - clean)
//   p_ti   = Phi((clean_ti - thr_in) / scale_ti) if in_ti, else Phi((clean_ti - thr_out) / scale_ti)
// Returns load_R = sum_t p_t, differentiable w.r.t. clean, scale and (through the thresholds)
// noisy. Needs 1 <= k < R.
torch::Tensor noisy_topk_load(const torch::Tensor& clean_TR, const torch::Tensor& noisy_TR,
                              const torch::Tensor& scale_TR, int64_t k, LoadEstimate rule,
                              const torch::Tensor& valid_T = {});

// Returns the loss times config.aux_loss_coef (a scalar), or an undefined tensor for "none".
// valid_T: [T] in the weights' dtype, or undefined (every token real).
torch::Tensor load_balancing_loss(const Routing& routing, const RouterLogits& logits, const MoeConfig& config,
                                  const torch::Tensor& valid_T = {});

}  // namespace xft
