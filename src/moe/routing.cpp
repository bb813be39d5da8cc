#include "xft/moe/routing.h"

#include <torch/autograd.h>

#include <limits>

#include "cuda/cuda_ops.h"
#include "moe/routing_cuda.h"
#include "moe/routing_weights.h"
#include "xft/core/error.h"

namespace xft {

namespace {

// Top-k by a stable descending sort: equal scores keep index order, so ties go to the lower index.
std::pair<torch::Tensor, torch::Tensor> stable_topk(const torch::Tensor& s_TR, int64_t k) {
  auto [vals, idx] = s_TR.sort(/*stable=*/true, /*dim=*/-1, /*descending=*/true);
  return {vals.narrow(-1, 0, k), idx.narrow(-1, 0, k)};
}

// fp32 at least (Eq. 2's softmax is never taken in bf16); double stays double for gradient checks.
torch::Dtype compute_dtype(const torch::Tensor& z) {
  return z.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
}

// The rule for non-finite logits (routing.h), shared with kernels/moe_routing.cu: clamp to
// the finite range of the compute dtype, NaN to its lowest value. Element-wise: no host sync.
torch::Tensor finite_logits(const torch::Tensor& z) {
  const auto dtype = compute_dtype(z);
  const double lo = dtype == torch::kFloat64 ? std::numeric_limits<double>::lowest()
                                             : static_cast<double>(std::numeric_limits<float>::lowest());
  const double hi = dtype == torch::kFloat64 ? std::numeric_limits<double>::max()
                                             : static_cast<double>(std::numeric_limits<float>::max());
  return z.to(dtype).nan_to_num(lo, hi, lo);
}

void check_inputs(const torch::Tensor& z, const MoeConfig& c) {
  XFT_CHECK(z.dim() == 2, "route: logits must be [tokens, routed experts], got ", z.sizes());
  XFT_CHECK(z.size(1) == c.num_routed(), "route: logits have ", z.size(1), " experts, config has ", c.num_routed(),
            " routed experts");
  XFT_CHECK(z.is_floating_point(), "route: logits must be floating point");
}

// Slot 0 = the shared expert 0 with weight 1 - s_max (s_max = v_0, the largest chosen score);
// slots 1.. = the chosen routed experts, their ids shifted past expert 0, with `routed_TK`.
RoutingWeights with_shared_expert(RoutingWeights r, const torch::Tensor& routed_TK) {
  auto smax_T1 = r.v_TK.narrow(-1, 0, 1);
  r.w_TS = torch::cat({1 - smax_T1, routed_TK}, -1);
  r.e_TS = torch::cat({torch::zeros_like(r.idx_TK.narrow(-1, 0, 1)), r.idx_TK + 1}, -1);
  return r;
}

}  // namespace

torch::Tensor routing_probs(const torch::Tensor& z) { return torch::softmax(finite_logits(z), -1); }

// One case per routing rule, no default: -Wswitch names this place when a rule is added.
RoutingWeights routing_weights(const torch::Tensor& s_TR, const MoeConfig& c) {
  // Indices come from the detached scores; the values are gathered so that, when s carries
  // gradient (the tests' route_reference), autograd sees the same function as route()'s backward.
  auto idx_TK = stable_topk(s_TR.detach(), c.routed_k()).second;
  auto v_TK = s_TR.gather(-1, idx_TK);
  RoutingWeights r{{}, {}, v_TK, idx_TK};
  switch (c.routing) {
    case RoutingMode::kXft:  // Eq. 2: softmax over the chosen scores, times s_max
      return with_shared_expert(r, torch::softmax(v_TK, -1) * v_TK.narrow(-1, 0, 1));
    case RoutingMode::kSharedNoNorm:  // Eq. 2 without the normalisation: the raw chosen scores
      return with_shared_expert(r, v_TK);
    case RoutingMode::kVanilla:  // Eq. 1: the top K of all N experts, no shared expert
      r.w_TS = c.vanilla_renormalize ? v_TK / v_TK.sum(-1, true) : v_TK;
      r.e_TS = idx_TK;
      return r;
  }
  fail("route: routing mode ", static_cast<int>(c.routing), " is not one of RoutingMode's values");
}

namespace {

struct RouteFunction : public torch::autograd::Function<RouteFunction> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& z_TR,
                                                const MoeConfig& c) {
    auto s_TR = routing_probs(z_TR);
    auto r = routing_weights(s_TR, c);
    ctx->save_for_backward({s_TR, r.v_TK, r.idx_TK, r.w_TS});
    ctx->saved_data["mode"] = static_cast<int64_t>(c.routing);
    ctx->saved_data["renorm"] = c.vanilla_renormalize;
    ctx->saved_data["dtype"] = static_cast<int64_t>(z_TR.scalar_type());
    ctx->mark_non_differentiable({r.e_TS});
    return {r.w_TS, r.e_TS, s_TR};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto& s_TR = saved[0];
    const auto& v_TK = saved[1];
    const auto& idx_TK = saved[2];
    const auto& w_TS = saved[3];
    const auto mode = static_cast<RoutingMode>(ctx->saved_data["mode"].toInt());
    auto ds_TR = grads[2].defined() ? grads[2].to(s_TR.scalar_type()).clone() : torch::zeros_like(s_TR);
    if (grads[0].defined()) {
      auto g_TS = grads[0].to(s_TR.scalar_type());
      // d loss / d v (the chosen scores), one case per routing rule (no default: -Wswitch).
      torch::Tensor dv_TK;
      switch (mode) {
        case RoutingMode::kXft: {
          // w_i = p_i m with p = softmax(v), m = v_0:
          // dv_j = m p_j (gw_j - <gw, p>) + [j = 0] <gw, p>
          auto gw_TK = g_TS.narrow(-1, 1, g_TS.size(1) - 1);
          auto m_T1 = v_TK.narrow(-1, 0, 1);
          auto p_TK = torch::softmax(v_TK, -1);
          auto gp_T1 = (gw_TK * p_TK).sum(-1, true);
          dv_TK = m_T1 * p_TK * (gw_TK - gp_T1);
          dv_TK.narrow(-1, 0, 1).add_(gp_T1);
          break;
        }
        case RoutingMode::kSharedNoNorm:  // w_i = v_i
          dv_TK = g_TS.narrow(-1, 1, g_TS.size(1) - 1).clone();
          break;
        case RoutingMode::kVanilla:
          // w = v / sum(v): dv_j = (g_j - sum_i g_i w_i) / sum(v); raw scores: w = v
          dv_TK = ctx->saved_data["renorm"].toBool() ? (g_TS - (g_TS * w_TS).sum(-1, true)) / v_TK.sum(-1, true) : g_TS;
          break;
      }
      XFT_CHECK(dv_TK.defined(), "route: routing mode ", static_cast<int>(mode), " is not one of RoutingMode's values");
      // The shared weight 1 - m depends on v_0 only.
      if (routing_has_shared_expert(mode)) dv_TK.narrow(-1, 0, 1).sub_(g_TS.narrow(-1, 0, 1));
      ds_TR.scatter_add_(-1, idx_TK, dv_TK);
    }
    // Softmax backward: dz = s * (ds - <ds, s>).
    auto dz_TR = s_TR * (ds_TR - (ds_TR * s_TR).sum(-1, true));
    const auto dtype = static_cast<c10::ScalarType>(ctx->saved_data["dtype"].toInt());
    return {dz_TR.to(dtype), torch::Tensor()};
  }
};

}  // namespace

Routing route(const torch::Tensor& logits_TR, const MoeConfig& config) {
  check_inputs(logits_TR, config);
  // The fused kernel (same function, same backward); fp64, R > 64 and a rule the kernel does
  // not implement stay on the ATen path.
  if (logits_TR.is_cuda() && cuda_ops_available() && route_cuda_supports(logits_TR, config)) {
    return route_cuda(logits_TR, config);
  }
  auto out = RouteFunction::apply(logits_TR, config);
  return {out[0], out[1], out[2]};
}

}  // namespace xft
