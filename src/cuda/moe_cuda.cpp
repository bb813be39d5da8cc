// ATen glue for kernels/moe_routing.cu and kernels/moe_permute.cu: device guards, dtype and
// layout checks, the current stream, and the autograd Functions of the CUDA MoE path, in
// tensors only (the MoE layer's side is src/moe/routing_cuda.cpp and src/moe/dispatch_cuda.cpp).
#include "cuda/moe_cuda.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/autograd.h>

#include "cuda/cuda_glue.h"
#include "moe_permute.cuh"
#include "moe_routing.cuh"
#include "xft/core/error.h"

namespace xft {

static_assert(kMoeCudaMaxSlots == kernels::kMaxCombineSlots, "moe_cuda.h and kernels/moe_permute.cuh disagree");
static_assert(kMoeCudaMaxExperts == kernels::kMaxPermuteExperts, "moe_cuda.h and kernels/moe_permute.cuh disagree");
static_assert(kRouteCudaMaxRouted == kernels::kMaxRoutedExperts, "moe_cuda.h and kernels/moe_routing.cuh disagree");

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

cudaStream_t current_stream() { return at::cuda::getCurrentCUDAStream(); }

const float* f32_or_null(const torch::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; }

// ---- routing -------------------------------------------------------------------------------

struct RouteCudaFunction : public torch::autograd::Function<RouteCudaFunction> {
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& z_TR, int64_t k, int64_t mode, bool renorm) {
    c10::cuda::CUDAGuard guard(z_TR.device());
    const auto kmode = static_cast<kernels::RouteMode>(mode);
    const int64_t off = kernels::route_mode_has_shared(kmode) ? 1 : 0;
    auto z = z_TR.contiguous();
    const int64_t T = z.size(0), R = z.size(1);
    auto w = torch::empty({T, k + off}, z.options().dtype(torch::kFloat32));
    auto ids = torch::empty({T, k + off}, z.options().dtype(torch::kInt32));
    auto probs = torch::empty({T, R}, z.options().dtype(torch::kFloat32));
    auto counts = torch::empty({R + off}, ids.options());
    check_cuda(
        kernels::moe_route_forward(z.data_ptr(), kernel_dtype(z, "route_cuda"), T, static_cast<int>(R),
                                   static_cast<int>(k), kmode, renorm, w.data_ptr<float>(), ids.data_ptr<int32_t>(),
                                   probs.data_ptr<float>(), counts.data_ptr<int32_t>(), current_stream()),
        "route_cuda");
    auto ids64 = ids.to(torch::kInt64);
    ctx->save_for_backward({probs, ids, w});
    ctx->saved_data["k"] = k;
    ctx->saved_data["mode"] = mode;
    ctx->saved_data["renorm"] = renorm;
    ctx->saved_data["dtype"] = static_cast<int64_t>(z_TR.scalar_type());
    ctx->mark_non_differentiable({ids64, ids, counts});
    return {w, ids64, probs, ids, counts};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    if (!grads[0].defined() && !grads[2].defined())
      return {torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
    auto saved = ctx->get_saved_variables();
    const auto& probs = saved[0];
    const auto& ids = saved[1];
    const auto& w = saved[2];
    c10::cuda::CUDAGuard guard(probs.device());
    auto gw = grads[0].defined() ? grads[0].to(torch::kFloat32).contiguous() : torch::Tensor();
    auto gp = grads[2].defined() ? grads[2].to(torch::kFloat32).contiguous() : torch::Tensor();
    const auto dtype = static_cast<c10::ScalarType>(ctx->saved_data["dtype"].toInt());
    auto dz = torch::empty(probs.sizes(), probs.options().dtype(dtype));
    check_cuda(
        kernels::moe_route_backward(
            probs.data_ptr<float>(), ids.data_ptr<int32_t>(), w.data_ptr<float>(), f32_or_null(gw), f32_or_null(gp),
            probs.size(0), static_cast<int>(probs.size(1)), static_cast<int>(ctx->saved_data["k"].toInt()),
            static_cast<kernels::RouteMode>(ctx->saved_data["mode"].toInt()), ctx->saved_data["renorm"].toBool(),
            dz.data_ptr(), kernel_dtype(dz, "route_cuda backward"), current_stream()),
        "route_cuda backward");
    return {dz, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

// ---- dispatch ------------------------------------------------------------------------------

struct GatherRowsFunction : public torch::autograd::Function<GatherRowsFunction> {
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& x_TD, const torch::Tensor& row_to_token,
                               const torch::Tensor& token_slot_to_row, int64_t slots) {
    c10::cuda::CUDAGuard guard(x_TD.device());
    auto x = x_TD.contiguous();
    const int64_t M = row_to_token.numel(), D = x.size(1);
    auto rows = torch::empty({M, D}, x.options());
    check_cuda(kernels::moe_gather_rows(x.data_ptr(), row_to_token.data_ptr<int32_t>(), M, D * x.element_size(),
                                        rows.data_ptr(), current_stream()),
               "moe_gather_rows_cuda");
    ctx->save_for_backward({token_slot_to_row});
    ctx->saved_data["tokens"] = x.size(0);
    ctx->saved_data["slots"] = slots;
    return {rows};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto map = ctx->get_saved_variables()[0];
    c10::cuda::CUDAGuard guard(map.device());
    auto g = grads[0].contiguous();
    const int64_t T = ctx->saved_data["tokens"].toInt(), S = ctx->saved_data["slots"].toInt(), D = g.size(1);
    auto gx = torch::empty({T, D}, g.options());
    const auto dt = kernel_dtype(g, "moe_gather_rows_cuda backward");
    // Each token sums its own rows' gradients in slot order: the scatter-add without atomics.
    check_cuda(kernels::moe_combine_rows(g.data_ptr(), dt, nullptr, map.data_ptr<int32_t>(), T, static_cast<int>(S), D,
                                         gx.data_ptr(), dt, current_stream()),
               "moe_gather_rows_cuda backward");
    return {gx, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

struct CombineRowsFunction : public torch::autograd::Function<CombineRowsFunction> {
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& y_MD, const torch::Tensor& w_TS,
                               const torch::Tensor& token_slot_to_row) {
    c10::cuda::CUDAGuard guard(y_MD.device());
    auto y = y_MD.contiguous();
    auto w = w_TS.contiguous();
    const int64_t T = w.size(0), S = w.size(1), D = y.size(1);
    auto out = torch::empty({T, D}, y.options().dtype(torch::kFloat32));
    check_cuda(kernels::moe_combine_rows(y.data_ptr(), kernel_dtype(y, "moe_combine_rows_cuda"), w.data_ptr<float>(),
                                         token_slot_to_row.data_ptr<int32_t>(), T, static_cast<int>(S), D,
                                         out.data_ptr(), kernels::DType::kFloat32, current_stream()),
               "moe_combine_rows_cuda");
    ctx->save_for_backward({y, w, token_slot_to_row});
    return {out};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto& y = saved[0];
    const auto& w = saved[1];
    const auto& map = saved[2];
    c10::cuda::CUDAGuard guard(y.device());
    auto g = grads[0].to(torch::kFloat32).contiguous();
    const int64_t T = w.size(0), S = w.size(1), D = y.size(1);
    auto gy = ctx->needs_input_grad(0) ? torch::empty_like(y) : torch::Tensor();
    auto gw = ctx->needs_input_grad(1) ? torch::empty({T, S}, w.options()) : torch::Tensor();
    check_cuda(kernels::moe_combine_rows_backward(g.data_ptr(), kernels::DType::kFloat32, y.data_ptr(),
                                                  kernel_dtype(y, "moe_combine_rows_cuda"), w.data_ptr<float>(),
                                                  map.data_ptr<int32_t>(), T, static_cast<int>(S), D,
                                                  gy.defined() ? gy.data_ptr() : nullptr,
                                                  gw.defined() ? gw.data_ptr<float>() : nullptr, current_stream()),
               "moe_combine_rows_cuda backward");
    return {gy, gw, torch::Tensor()};
  }
};

struct GroupedLinearFunction : public torch::autograd::Function<GroupedLinearFunction> {
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& x_MK, const torch::Tensor& w_ENK,
                               const torch::Tensor& offs) {
    c10::cuda::CUDAGuard guard(x_MK.device());
    ctx->save_for_backward({x_MK, w_ENK, offs});
    // mat2 = W^T viewed [E, K, N] with strides (N*K, 1, K): column-major, as at::_grouped_mm wants.
    return {at::_grouped_mm(x_MK, w_ENK.transpose(-2, -1), offs)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& w = saved[1];
    const auto& offs = saved[2];
    c10::cuda::CUDAGuard guard(x.device());
    auto g = grads[0].to(x.scalar_type()).contiguous();
    torch::Tensor dx, dw;
    if (ctx->needs_input_grad(0)) dx = at::_grouped_mm(g, w, offs);  // [M, N] x [E, N, K] -> [M, K]
    if (ctx->needs_input_grad(1)) {
      // [N, M] (strides (1, N)) x [M, K] -> [E, N, K]: the 2-D x 2-D layout (A column-major,
      // B row-major) whose kernel accepts empty groups. It may leave an empty group's output
      // unwritten, so those are zeroed: an expert without a token gets an exact zero gradient.
      // dw is contiguous: _grouped_mm pads only a last dim (K) that is not a multiple of 8.
      dw = at::_grouped_mm(g.t(), x, offs);
      moe_zero_empty_groups_cuda(dw, offs);
    }
    return {dx, dw, torch::Tensor()};
  }
};

bool grouped_operand_ok(const torch::Tensor& w, const torch::Tensor& x) {
  return w.defined() && w.is_cuda() && w.device() == x.device() && w.scalar_type() == torch::kBFloat16 &&
         w.dim() == 3 && w.is_contiguous() && reinterpret_cast<uintptr_t>(w.data_ptr()) % 16 == 0;
}

}  // namespace

// ---- routing -------------------------------------------------------------------------------

bool route_logits_cuda_supports(const torch::Tensor& z, int64_t routed_k, kernels::RouteMode mode) {
  return z.defined() && z.is_cuda() && z.dim() == 2 && kernel_dtype_ok(z) && z.size(1) >= 1 &&
         z.size(1) <= kRouteCudaMaxRouted && z.size(0) <= 0x7fffffffLL && routed_k >= 1 && routed_k <= z.size(1) &&
         kernels::route_mode_known(mode);
}

RoutedLogits route_logits_cuda(const torch::Tensor& logits_TR, int64_t routed_k, kernels::RouteMode mode,
                               bool renormalize) {
  XFT_CHECK(route_logits_cuda_supports(logits_TR, routed_k, mode),
            "route_cuda: expected CUDA float, half or bfloat16 logits [T, R] with 1 <= routed k = ", routed_k,
            " <= R <= ", kRouteCudaMaxRouted, " and a routing rule the kernel knows (mode ", static_cast<int>(mode),
            "); got ", logits_TR.scalar_type(), " ", logits_TR.sizes(), " on ", logits_TR.device());
  auto out = RouteCudaFunction::apply(logits_TR, routed_k, static_cast<int64_t>(mode), renormalize);
  return {out[0], out[1], out[2], out[3], out[4]};
}

// ---- dispatch ------------------------------------------------------------------------------

MoePermutation moe_permutation_cuda(const torch::Tensor& experts_TS, int64_t E) {
  XFT_CHECK(experts_TS.is_cuda() && experts_TS.dim() == 2 && !experts_TS.is_floating_point(),
            "moe_permutation_cuda: expected integer expert ids [T, S] on a CUDA device, got ", experts_TS.scalar_type(),
            " ", experts_TS.sizes(), " on ", experts_TS.device());
  XFT_CHECK(E >= 1 && E <= kernels::kMaxPermuteExperts, "moe_permutation_cuda: ", E, " experts (1 to ",
            kernels::kMaxPermuteExperts, " supported)");
  const int64_t T = experts_TS.size(0), S = experts_TS.size(1), M = T * S;
  XFT_CHECK(S >= 1 && M <= 0x7fffffffLL, "moe_permutation_cuda: ", T, " tokens x ", S,
            " slots (needs at least one slot and fewer than 2^31 rows)");
  c10::cuda::CUDAGuard guard(experts_TS.device());
  auto ids = experts_TS.to(torch::kInt32).contiguous();
  auto opts = ids.options();
  MoePermutation p{torch::empty({M}, opts), torch::empty({M}, opts), torch::empty({E}, opts), T, S};
  const size_t bytes = kernels::moe_permute_workspace_bytes(T, static_cast<int>(S), static_cast<int>(E));
  auto workspace = torch::empty({static_cast<int64_t>(bytes / sizeof(int32_t)) + 1}, opts);
  check_cuda(
      kernels::moe_build_permutation(ids.data_ptr<int32_t>(), T, static_cast<int>(S), static_cast<int>(E),
                                     p.row_to_token.data_ptr<int32_t>(), p.token_slot_to_row.data_ptr<int32_t>(),
                                     p.offsets_end.data_ptr<int32_t>(), workspace.data_ptr(), bytes, current_stream()),
      "moe_permutation_cuda");
  return p;
}

torch::Tensor moe_gather_rows_cuda(const torch::Tensor& x_TD, const MoePermutation& perm) {
  // First, before any device work: the backward (a combine without weights) stages a token's
  // slots in shared memory and would fail only when the gradient arrives.
  XFT_CHECK(perm.slots >= 1 && perm.slots <= kMoeCudaMaxSlots,
            "moe_gather_rows_cuda: the permutation has S = ", perm.slots,
            " slots per token; the gather's backward takes 1 to ", kMoeCudaMaxSlots);
  XFT_CHECK(x_TD.is_cuda() && x_TD.dim() == 2 && x_TD.size(0) == perm.tokens && x_TD.size(1) >= 1 &&
                kernel_dtype_ok(x_TD) && x_TD.device() == perm.row_to_token.device(),
            "moe_gather_rows_cuda: expected float, half or bfloat16 x [", perm.tokens,
            ", D] on the permutation's device, got ", x_TD.scalar_type(), " ", x_TD.sizes(), " on ", x_TD.device());
  return GatherRowsFunction::apply(x_TD, perm.row_to_token, perm.token_slot_to_row, perm.slots)[0];
}

torch::Tensor moe_combine_rows_cuda(const torch::Tensor& y_MD, const torch::Tensor& weights_TS,
                                    const MoePermutation& perm) {
  XFT_CHECK(y_MD.is_cuda() && y_MD.dim() == 2 && y_MD.size(0) == perm.tokens * perm.slots && y_MD.size(1) >= 1 &&
                kernel_dtype_ok(y_MD) && y_MD.device() == perm.row_to_token.device(),
            "moe_combine_rows_cuda: expected float, half or bfloat16 rows [", perm.tokens * perm.slots,
            ", D] on the permutation's device, got ", y_MD.scalar_type(), " ", y_MD.sizes(), " on ", y_MD.device());
  XFT_CHECK(weights_TS.dim() == 2 && weights_TS.size(0) == perm.tokens && weights_TS.size(1) == perm.slots &&
                weights_TS.device() == y_MD.device() && perm.slots <= kernels::kMaxCombineSlots,
            "moe_combine_rows_cuda: expected weights [", perm.tokens, ", ", perm.slots, "] on ", y_MD.device(),
            " (at most ", kernels::kMaxCombineSlots, " slots), got ", weights_TS.sizes(), " on ", weights_TS.device());
  return CombineRowsFunction::apply(y_MD, weights_TS.to(torch::kFloat32), perm.token_slot_to_row)[0];
}

namespace {

// The offsets' values, on the host (the one sync of OffsetsCheck::kValidate): inclusive ends,
// >= 0, non-decreasing, the last one M (every row in exactly one group).
void check_offset_values(const torch::Tensor& offsets_end, int64_t M) {
  const auto ends = offsets_end.to(torch::kCPU);
  const auto* end = ends.data_ptr<int32_t>();
  const int64_t E = ends.numel();
  XFT_CHECK(end[0] >= 0, "grouped_linear_cuda: offsets_end [", E, "] must be >= 0, got ", end[0], " at index 0");
  for (int64_t e = 1; e < E; ++e) {
    XFT_CHECK(end[e] >= end[e - 1], "grouped_linear_cuda: offsets_end [", E, "] must be non-decreasing, got ",
              end[e - 1], " then ", end[e], " at index ", e);
  }
  XFT_CHECK(end[E - 1] == M, "grouped_linear_cuda: offsets_end [", E, "] must end at M = ", M, " (the rows of x), got ",
            end[E - 1]);
}

}  // namespace

torch::Tensor grouped_linear_cuda(const torch::Tensor& x_MK, const torch::Tensor& w_ENK,
                                  const torch::Tensor& offsets_end, OffsetsCheck check) {
  XFT_CHECK(
      x_MK.is_cuda() && x_MK.dim() == 2 && x_MK.scalar_type() == torch::kBFloat16 && grouped_operand_ok(w_ENK, x_MK),
      "grouped_linear_cuda: expected bf16 x [M, K] and contiguous 16-byte aligned bf16 w [E, N, K] on one "
      "CUDA device, got ",
      x_MK.scalar_type(), " ", x_MK.sizes(), " and ", w_ENK.scalar_type(), " ", w_ENK.sizes());
  XFT_CHECK(w_ENK.size(2) == x_MK.size(1) && x_MK.size(1) % 8 == 0 && w_ENK.size(1) % 8 == 0,
            "grouped_linear_cuda: K = ", x_MK.size(1), " and N = ", w_ENK.size(1),
            " must match the weights and be multiples of 8 (16-byte rows)");
  const int64_t E = w_ENK.size(0);
  XFT_CHECK(E >= 1 && E < kMoeCudaMaxExperts, "grouped_linear_cuda: w has ", E, " groups (1 to ",
            kMoeCudaMaxExperts - 1, " supported)");
  XFT_CHECK(offsets_end.device() == x_MK.device() && offsets_end.scalar_type() == torch::kInt32 &&
                offsets_end.dim() == 1 && offsets_end.size(0) == E && offsets_end.is_contiguous(),
            "grouped_linear_cuda: expected contiguous int32 offsets_end [", E, "] (one per group of w) on ",
            x_MK.device(), ", got ", offsets_end.scalar_type(), " ", offsets_end.sizes(),
            offsets_end.is_contiguous() ? "" : " (not contiguous)", " on ", offsets_end.device());
  if (check == OffsetsCheck::kValidate) check_offset_values(offsets_end, x_MK.size(0));
  return GroupedLinearFunction::apply(x_MK.contiguous(), w_ENK, offsets_end)[0];
}

void moe_zero_empty_groups_cuda(const torch::Tensor& data_E, const torch::Tensor& offsets_end) {
  XFT_CHECK(data_E.is_cuda() && data_E.dim() >= 1 && data_E.is_contiguous(),
            "moe_zero_empty_groups_cuda: expected contiguous data [E, ...] on a CUDA device, got ", data_E.sizes(),
            " on ", data_E.device(), data_E.is_contiguous() ? "" : " (not contiguous)");
  const int64_t E = data_E.size(0);
  XFT_CHECK(E >= 1 && E <= kMoeCudaMaxExperts && offsets_end.device() == data_E.device() &&
                offsets_end.scalar_type() == torch::kInt32 && offsets_end.dim() == 1 && offsets_end.size(0) == E &&
                offsets_end.is_contiguous(),
            "moe_zero_empty_groups_cuda: expected contiguous int32 offsets_end [", E, "] on ", data_E.device(),
            " for data ", data_E.sizes(), " (1 to ", kMoeCudaMaxExperts, " groups), got ", offsets_end.scalar_type(),
            " ", offsets_end.sizes(), " on ", offsets_end.device());
  c10::cuda::CUDAGuard guard(data_E.device());
  const int64_t group_bytes = data_E.numel() / E * data_E.element_size();
  check_cuda(kernels::moe_zero_empty_groups(data_E.data_ptr(), group_bytes, offsets_end.data_ptr<int32_t>(),
                                            static_cast<int>(E), current_stream()),
             "moe_zero_empty_groups_cuda");
}

bool grouped_linear_cuda_supports(const torch::Tensor& x, const torch::Tensor& w_ENK) {
  if (!x.defined() || !x.is_cuda() || x.scalar_type() != torch::kBFloat16 || !grouped_operand_ok(w_ENK, x))
    return false;
  if (w_ENK.size(0) < 1 || w_ENK.size(0) >= kMoeCudaMaxExperts) return false;
  if (w_ENK.size(1) % 8 != 0 || w_ENK.size(2) % 8 != 0) return false;
  // at::_grouped_mm's fast path (no host sync): sm90 and sm100 only.
  const auto* prop = at::cuda::getDeviceProperties(x.get_device());
  return prop->major == 9 || prop->major == 10;
}

bool moe_dispatch_cuda_supports(const torch::Tensor& x_TD, int64_t slots, int64_t num_experts) {
  return x_TD.defined() && x_TD.is_cuda() && kernel_dtype_ok(x_TD) && slots <= kernels::kMaxCombineSlots &&
         num_experts >= 1 && num_experts <= kernels::kMaxPermuteExperts;
}

}  // namespace xft
