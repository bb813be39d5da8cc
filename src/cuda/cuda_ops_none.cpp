// Built when XFT_WITH_CUDA is off: the CUDA ops report themselves unavailable.
#include "cuda/cuda_ops.h"
#include "cuda/moe_cuda.h"
#include "xft/core/error.h"

namespace xft {

namespace {
[[noreturn]] void no_cuda(const char* what) {
  fail(what, ": this build of xft has no CUDA kernels (configured with XFT_WITH_CUDA=OFF)");
}
}  // namespace

bool cuda_ops_available() { return false; }

torch::Tensor rms_norm_cuda(const torch::Tensor&, const torch::Tensor&, double) { no_cuda("rms_norm_cuda"); }

bool route_logits_cuda_supports(const torch::Tensor&, int64_t, kernels::RouteMode) { return false; }
RoutedLogits route_logits_cuda(const torch::Tensor&, int64_t, kernels::RouteMode, bool) {
  no_cuda("route_logits_cuda");
}

MoePermutation moe_permutation_cuda(const torch::Tensor&, int64_t) { no_cuda("moe_permutation_cuda"); }
torch::Tensor moe_gather_rows_cuda(const torch::Tensor&, const MoePermutation&) { no_cuda("moe_gather_rows_cuda"); }
torch::Tensor moe_combine_rows_cuda(const torch::Tensor&, const torch::Tensor&, const MoePermutation&) {
  no_cuda("moe_combine_rows_cuda");
}
torch::Tensor grouped_linear_cuda(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&, OffsetsCheck) {
  no_cuda("grouped_linear_cuda");
}
void moe_zero_empty_groups_cuda(const torch::Tensor&, const torch::Tensor&) { no_cuda("moe_zero_empty_groups_cuda"); }
bool grouped_linear_cuda_supports(const torch::Tensor&, const torch::Tensor&) { return false; }
bool moe_dispatch_cuda_supports(const torch::Tensor&, int64_t, int64_t) { return false; }

}  // namespace xft
