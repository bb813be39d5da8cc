#include "xft/moe/moe_layer.h"

#include "cuda/cuda_ops.h"
#include "moe/routing_cuda.h"
#include "xft/core/error.h"
#include "xft/model/activation_checkpoint.h"
#include "xft/model/llama.h"
#include "xft/moe/load_balancing.h"

namespace xft {

MoeLayerImpl::MoeLayerImpl(int64_t hidden, int64_t intermediate, const MoeConfig& c) : config_(c) {
  router = register_module("router", Router(hidden, c));
  experts = register_module("experts", Experts(c.num_experts, hidden, intermediate));
}

namespace {

// route(), and on CUDA the slots per expert the fused routing kernel counts anyway ([N] int64;
// undefined on the ATen path).
std::pair<Routing, torch::Tensor> route_and_count(const torch::Tensor& logits_TR, const MoeConfig& c) {
  if (logits_TR.is_cuda() && cuda_ops_available() && route_cuda_supports(logits_TR, c)) {
    auto full = route_cuda_full(logits_TR, c);
    return {full.routing, full.counts_N.to(torch::kInt64)};
  }
  return {route(logits_TR, c), torch::Tensor()};
}

}  // namespace

FfnOutput MoeLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& token_mask) {
  auto x_TD = x.reshape({-1, x.size(-1)});
  const auto logits = router->forward(x_TD);
  auto [routing, counts_N] = route_and_count(logits.noisy_TR, config_);
  torch::Tensor y_TD;
  auto combine = [&](const torch::Tensor& e_TS, const torch::Tensor& w_TS) {
    return moe_dispatch(*experts, x_TD, e_TS, w_TS, sharding_.get());
  };
  if (config_.shared_expert) {
    // Slot 0 is expert 0 for every token: one dense product instead of a gather of all rows.
    const int64_t S = routing.experts_TS.size(1);
    auto shared = experts->expert_forward(0, x_TD).to(combine_dtype(x_TD)) * routing.weights_TS.narrow(1, 0, 1);
    auto routed = combine(routing.experts_TS.narrow(1, 1, S - 1), routing.weights_TS.narrow(1, 1, S - 1));
    y_TD = (shared + routed).to(x.scalar_type());
  } else {
    y_TD = combine(routing.experts_TS, routing.weights_TS).to(x.scalar_type());
  }
  // Padding is routed (the batch keeps its shape) but weighs 0 in the counts and the aux loss,
  // unless the config asks for the authors' behaviour (every position counts).
  const auto valid_T = token_mask.defined() && !config_.aux_counts_padding
                           ? token_mask.reshape(-1).to(routing.weights_TS.scalar_type())
                           : torch::Tensor();
  // On the device either way: bincount would sync the host twice per layer on CUDA.
  if (valid_T.defined() || !counts_N.defined()) {
    const auto flat = routing.experts_TS.reshape(-1);
    const auto ones = valid_T.defined()
                          ? valid_T.to(torch::kInt64).unsqueeze(1).expand_as(routing.experts_TS).reshape(-1)
                          : torch::ones_like(flat);
    counts_N = torch::zeros({config_.num_experts}, flat.options()).scatter_add_(0, flat, ones);
  }
  last_counts_ = counts_N;
  if (!is_training()) return {y_TD.view(x.sizes()), {}};
  auto aux = load_balancing_loss(routing, logits, config_, valid_T);
  // A checkpointed layer's backward runs this forward again: count its routing once.
  if (!recomputing()) record_telemetry(routing, aux, valid_T);
  return {y_TD.view(x.sizes()), aux};
}

void MoeLayerImpl::record_telemetry(const Routing& routing, const torch::Tensor& aux, const torch::Tensor& valid_T) {
  torch::NoGradGuard ng;
  const auto opts = torch::TensorOptions().dtype(torch::kFloat64).device(routing.weights_TS.device());
  const auto s = routing.probs_TR.to(torch::kFloat64);
  const auto valid = valid_T.defined() ? valid_T.to(torch::kFloat64) : torch::Tensor();
  const auto real_sum = [&](const torch::Tensor& v_T) { return (valid.defined() ? v_T * valid : v_T).sum(); };
  const auto entropy =
      valid.defined() ? real_sum(-(s * s.clamp_min(1e-30).log()).sum(1)) : -(s * s.clamp_min(1e-30).log()).sum();
  const auto shared =
      config_.shared_expert ? real_sum(routing.weights_TS.select(1, 0).to(torch::kFloat64)) : torch::zeros({}, opts);
  const auto tokens =
      valid.defined() ? valid.sum() : torch::full({}, static_cast<double>(routing.weights_TS.size(0)), opts);
  const auto tail =
      torch::stack({tokens, shared, entropy, aux.defined() ? aux.detach().to(torch::kFloat64) : torch::zeros({}, opts),
                    torch::ones({}, opts)});
  auto sample = torch::cat({last_counts_.to(torch::kFloat64), tail});
  telemetry_ = telemetry_.defined() ? telemetry_ + sample : sample;
}

torch::Tensor MoeLayerImpl::take_telemetry() {
  auto out = telemetry_;
  telemetry_ = torch::Tensor();
  return out;
}

std::vector<std::shared_ptr<MoeLayerImpl>> moe_layers(CausalLMImpl& model, const std::string& who) {
  std::vector<std::shared_ptr<MoeLayerImpl>> out;
  for (int64_t l = 0; l < model.config().num_hidden_layers; ++l) {
    auto m = std::dynamic_pointer_cast<MoeLayerImpl>(model.layer(l)->mlp);
    XFT_CHECK(m != nullptr, who, ": layer ", l, " has no MoE layer");
    out.push_back(m);
  }
  return out;
}

}  // namespace xft
