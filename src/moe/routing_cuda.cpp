// The config side of the fused router: MoeConfig's routing rule onto the kernel's, the result
// onto Routing.
#include "moe/routing_cuda.h"

#include <optional>

#include "cuda/moe_cuda.h"
#include "xft/core/error.h"

namespace xft {

// route()'s CPU path saves the rule in its autograd context as an integer and the kernel glue
// hands it over the same way: the two enums keep one numbering.
static_assert(static_cast<int>(RoutingMode::kXft) == static_cast<int>(kernels::RouteMode::kXft) &&
                  static_cast<int>(RoutingMode::kSharedNoNorm) == static_cast<int>(kernels::RouteMode::kSharedNoNorm) &&
                  static_cast<int>(RoutingMode::kVanilla) == static_cast<int>(kernels::RouteMode::kVanilla),
              "xft::RoutingMode (model/config.h) and kernels::RouteMode (kernels/route_mode.h) disagree");

namespace {

// The kernel's spelling of a routing rule, or none where the kernel does not implement it.
// A switch without default: a new RoutingMode must be placed here (-Wswitch), as a kernel rule
// or as std::nullopt (then route() keeps it on the ATen path).
std::optional<kernels::RouteMode> kernel_mode(RoutingMode mode) {
  switch (mode) {
    case RoutingMode::kXft: return kernels::RouteMode::kXft;
    case RoutingMode::kSharedNoNorm: return kernels::RouteMode::kSharedNoNorm;
    case RoutingMode::kVanilla: return kernels::RouteMode::kVanilla;
  }
  return std::nullopt;  // a value outside the enum
}

}  // namespace

bool route_cuda_supports(const torch::Tensor& logits_TR, const MoeConfig& config) {
  const auto mode = kernel_mode(config.routing);
  return mode && route_logits_cuda_supports(logits_TR, config.routed_k(), *mode);
}

CudaRouting route_cuda_full(const torch::Tensor& logits_TR, const MoeConfig& config) {
  XFT_CHECK(route_cuda_supports(logits_TR, config),
            "route_cuda: expected CUDA float, half or bfloat16 logits [T, R] with 1 <= routed k = ", config.routed_k(),
            " <= R <= ", kRouteCudaMaxRouted, " and a routing rule the kernel implements ('", to_string(config.routing),
            "'); got ", logits_TR.scalar_type(), " ", logits_TR.sizes(), " on ", logits_TR.device());
  XFT_CHECK(logits_TR.size(1) == config.num_routed(), "route_cuda: logits have ", logits_TR.size(1),
            " experts, config has ", config.num_routed(), " routed experts");
  auto r = route_logits_cuda(logits_TR, config.routed_k(), *kernel_mode(config.routing), config.vanilla_renormalize);
  return {{r.weights_TS, r.experts_TS, r.probs_TR}, r.experts_TS_i32, r.counts_N};
}

Routing route_cuda(const torch::Tensor& logits_TR, const MoeConfig& config) {
  return route_cuda_full(logits_TR, config).routing;
}

}  // namespace xft
