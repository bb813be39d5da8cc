// defines: xft::kernels::RouteMode, route_mode_known, route_mode_has_shared (the routing rules
//          kernels/moe_routing.cu implements; plain C++, so that the ATen glue can name them on a
//          build without CUDA)
//
// Every function here dispatches with a switch and no default: -Wswitch names each place a new
// rule must be handled, and a value outside the enum is refused rather than run as another rule.
#pragma once

namespace xft::kernels {

// The routing rules of paper Eq. 1-2 the fused router knows. The values equal xft::RoutingMode's
// (checked by static_assert where the MoE layer maps its config onto them:
// src/moe/routing_cuda.cpp); a rule the kernel does not implement has no value here.
enum class RouteMode { kXft = 0, kSharedNoNorm = 1, kVanilla = 2 };

// True for the values above; the launchers refuse any other with cudaErrorInvalidValue.
constexpr bool route_mode_known(RouteMode mode) {
  switch (mode) {
    case RouteMode::kXft:
    case RouteMode::kSharedNoNorm:
    case RouteMode::kVanilla: return true;
  }
  return false;
}

// Whether slot 0 is the shared expert 0 (xft, shared_no_norm: expert ids shift by one) or every
// slot is a routed expert (vanilla, Eq. 1).
constexpr bool route_mode_has_shared(RouteMode mode) {
  switch (mode) {
    case RouteMode::kXft:
    case RouteMode::kSharedNoNorm: return true;
    case RouteMode::kVanilla: return false;
  }
  return false;
}

}  // namespace xft::kernels
