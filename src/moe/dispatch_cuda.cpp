// The expert side of the CUDA dispatch: which stacks the grouped products take, and the chain
// index build -> gather -> experts -> SwiGLU -> combine over cuda/moe_cuda.h.
#include "moe/dispatch_cuda.h"

#include <c10/core/DeviceGuard.h>

#include <vector>

#include "cuda/moe_cuda.h"
#include "xft/core/error.h"
#include "xft/model/mlp.h"

namespace xft {

bool moe_grouped_path_available(const ExpertsImpl& experts, const torch::Tensor& x_TD) {
  if (!x_TD.is_cuda() || x_TD.dim() != 2 || experts.gate_proj.dim() != 3) return false;
  // gate and up map D -> F, down F -> D: the same alignment rule covers all three.
  return experts.gate_proj.size(2) == x_TD.size(1) && grouped_linear_cuda_supports(x_TD, experts.gate_proj) &&
         grouped_linear_cuda_supports(x_TD, experts.up_proj) && grouped_linear_cuda_supports(x_TD, experts.down_proj);
}

bool moe_combine_cuda_supports(const ExpertsImpl& experts, const torch::Tensor& x_TD, const torch::Tensor& experts_TS) {
  return experts_TS.dim() == 2 && moe_dispatch_cuda_supports(x_TD, experts_TS.size(1), experts.num_experts());
}

torch::Tensor moe_combine_cuda(const ExpertsImpl& experts, const torch::Tensor& x_TD, const torch::Tensor& experts_TS,
                               const torch::Tensor& weights_TS, MoeCudaPath path) {
  XFT_CHECK(x_TD.dim() == 2 && experts_TS.dim() == 2 && experts_TS.sizes() == weights_TS.sizes() &&
                experts_TS.size(0) == x_TD.size(0),
            "moe_combine_cuda: expected x [T, D], experts and weights [T, S]; got ", x_TD.sizes(), ", ",
            experts_TS.sizes(), ", ", weights_TS.sizes());
  XFT_CHECK(moe_combine_cuda_supports(experts, x_TD, experts_TS),
            "moe_combine_cuda: expected float, half or bfloat16 x on a CUDA device, at most ", kMoeCudaMaxSlots,
            " slots and ", kMoeCudaMaxExperts, " experts; got ", x_TD.scalar_type(), " on ", x_TD.device(), ", ",
            experts_TS.size(1), " slots, ", experts.num_experts(), " experts");
  const bool grouped_ok = moe_grouped_path_available(experts, x_TD);
  XFT_CHECK(path != MoeCudaPath::kGrouped || grouped_ok,
            "moe_combine_cuda: the grouped path needs bf16 x and expert stacks on an sm90/sm100 GPU, hidden and "
            "intermediate sizes multiples of 8");
  c10::DeviceGuard guard(x_TD.device());
  const int64_t T = x_TD.size(0), D = x_TD.size(1), E = experts.num_experts();
  if (T == 0 || experts_TS.size(1) == 0) return torch::zeros({T, D}, x_TD.options().dtype(torch::kFloat32));

  auto perm = moe_permutation_cuda(experts_TS, E);
  auto x_rows = moe_gather_rows_cuda(x_TD, perm);
  torch::Tensor y_rows;
  if (grouped_ok && path != MoeCudaPath::kLoop) {
    // Three grouped products over all experts at once; experts without a token cost nothing.
    // The offsets come from the index build: trusted, so no host sync.
    const auto& offs = perm.offsets_end;
    auto g = grouped_linear_cuda(x_rows, experts.gate_proj, offs, OffsetsCheck::kTrusted);
    auto u = grouped_linear_cuda(x_rows, experts.up_proj, offs, OffsetsCheck::kTrusted);
    y_rows = grouped_linear_cuda(swiglu(g, u), experts.down_proj, offs, OffsetsCheck::kTrusted);
  } else {
    // The loop reads the offsets on the host: the one sync of the CUDA path, in this fallback only.
    auto ends = perm.offsets_end.to(torch::kCPU);
    const auto* end = ends.data_ptr<int32_t>();
    std::vector<torch::Tensor> parts;
    int64_t begin = 0;
    for (int64_t e = 0; e < E; ++e) {
      if (end[e] > begin) parts.push_back(experts.expert_forward(e, x_rows.narrow(0, begin, end[e] - begin)));
      begin = end[e];
    }
    y_rows = torch::cat(parts);
  }
  return moe_combine_rows_cuda(y_rows, weights_TS, perm);
}

}  // namespace xft
