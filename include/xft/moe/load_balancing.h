// defines: cv_squared, load_balancing_loss
//
// cv2: Shazeer et al.'s importance + load loss, as the reference code (LLaMA-MoE) computes it:
//      cv2(importance) + cv2(load), cv2(x) = var(x, unbiased) / (mean(x)^2 + 1e-10),
//      importance_i = sum over tokens of routed expert i's gate weight, load_i = its token count.
// switch: R * sum_i f_i P_i, f_i = fraction of routed slots sent to expert i, P_i = mean prob.
// Both cover the routed experts only (the shared expert sees every token by construction).
#pragma once
#include <torch/types.h>

#include "xft/model/config.h"
#include "xft/moe/routing.h"

namespace xft {

torch::Tensor cv_squared(const torch::Tensor& x);

// Returns the loss times config.aux_loss_coef (a scalar), or an undefined tensor for "none".
torch::Tensor load_balancing_loss(const Routing& routing, const MoeConfig& config);

}  // namespace xft
