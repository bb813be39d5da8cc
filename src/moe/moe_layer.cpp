#include "xft/moe/moe_layer.h"

#include "xft/core/error.h"
#include "xft/model/llama.h"
#include "xft/moe/load_balancing.h"

namespace xft {

MoeLayerImpl::MoeLayerImpl(int64_t hidden, int64_t intermediate, const MoeConfig& c) : config_(c) {
  router = register_module("router", Router(hidden, c));
  experts = register_module("experts", Experts(c.num_experts, hidden, intermediate));
}

FfnOutput MoeLayerImpl::forward(const torch::Tensor& x) {
  auto x_TD = x.reshape({-1, x.size(-1)});
  const auto logits = router->forward(x_TD);
  auto routing = route(logits.noisy_TR, config_);
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
  // Counted on the device (bincount would sync the host twice per layer on CUDA).
  const auto flat = routing.experts_TS.reshape(-1);
  last_counts_ = torch::zeros({config_.num_experts}, flat.options()).scatter_add_(0, flat, torch::ones_like(flat));
  if (!is_training()) return {y_TD.view(x.sizes()), {}};
  auto aux = load_balancing_loss(routing, logits, config_);
  record_telemetry(routing, aux);
  return {y_TD.view(x.sizes()), aux};
}

void MoeLayerImpl::record_telemetry(const Routing& routing, const torch::Tensor& aux) {
  torch::NoGradGuard ng;
  const auto opts = torch::TensorOptions().dtype(torch::kFloat64).device(routing.weights_TS.device());
  const auto s = routing.probs_TR.to(torch::kFloat64);
  const auto entropy = -(s * s.clamp_min(1e-30).log()).sum();
  const auto shared = config_.shared_expert ? routing.weights_TS.select(1, 0).to(torch::kFloat64).sum()
                                            : torch::zeros({}, opts);
  const auto tail = torch::stack({torch::full({}, static_cast<double>(routing.weights_TS.size(0)), opts), shared,
                                  entropy, aux.defined() ? aux.detach().to(torch::kFloat64) : torch::zeros({}, opts),
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
