#include "xft/merge.h"

#include <cmath>

#include "xft/checkpoint.h"
#include "xft/error.h"
#include "xft/mlp.h"
#include "xft/moe_layer.h"

namespace xft {

void MergeConfig::validate(const std::string& source) const {
  XFT_CHECK(!fixed_shared_rate || (shared_rate >= 0.0 && shared_rate < 1.0), source,
            ": merge.shared_rate must be in [0, 1), got ", shared_rate);
}

MergeConfig MergeConfig::from_json(const nlohmann::json& j, const std::string& source) {
  MergeConfig m;
  for (const auto& [k, v] : j.items()) {
    if (k == "shared_rate") m.shared_rate = v.get<double>();
    else if (k == "fixed_shared_rate") m.fixed_shared_rate = v.get<bool>();
    else fail(source, ": unknown merge field '", k, "' (expected shared_rate, fixed_shared_rate)");
  }
  m.validate(source);
  return m;
}

nlohmann::json MergeConfig::to_json() const {
  return {{"shared_rate", shared_rate}, {"fixed_shared_rate", fixed_shared_rate}};
}

MergedFeedForwardImpl::MergedFeedForwardImpl(const torch::Tensor& gate, const torch::Tensor& up,
                                             const torch::Tensor& down, const MergeConfig& c)
    : config_(c) {
  const int64_t N = gate.size(0);
  XFT_CHECK(N >= 2, "merge: a layer needs at least 2 experts, got ", N);
  gate_stack = register_buffer("gate_stack", gate.detach());
  up_stack = register_buffer("up_stack", up.detach());
  down_stack = register_buffer("down_stack", down.detach());
  torch::Tensor init;
  if (c.fixed_shared_rate) {
    // Equal logits: alpha_i = (1 - lambda) / (N - 1), the paper's uniform initialisation.
    init = torch::zeros({N - 1});
  } else {
    // The learned soup starts where the fixed-rate merge starts (lambda, (1-lambda)/(N-1)),
    // as the paper's Table 5 comparison does.
    init = torch::full({N}, std::log((1.0 - c.shared_rate) / (N - 1)));
    init[0] = std::log(c.shared_rate);
  }
  logits = register_parameter("logits", init);
}

torch::Tensor MergedFeedForwardImpl::coefficients() const {
  auto l = logits.to(torch::kFloat32);
  if (!config_.fixed_shared_rate) return torch::softmax(l, 0);
  auto alpha = (1.0 - config_.shared_rate) * torch::softmax(l, 0);  // Eq. 5
  return torch::cat({torch::full({1}, config_.shared_rate, alpha.options()), alpha});
}

std::array<torch::Tensor, 3> MergedFeedForwardImpl::merged_weights() const {
  const auto acc = gate_stack.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  auto c = coefficients().to(acc);
  // sum_i c_i W_i over the expert dim; the same c for gate, up and down.
  auto mix = [&](const torch::Tensor& stack) { return torch::tensordot(c, stack.to(acc), {0}, {0}); };
  return {mix(gate_stack), mix(up_stack), mix(down_stack)};
}

FfnOutput MergedFeedForwardImpl::forward(const torch::Tensor& x) {
  auto [g, u, d] = merged_weights();
  const auto t = x.scalar_type();  // bf16 weights run in bf16; under autocast linear casts anyway
  return {torch::linear(swiglu(torch::linear(x, g.to(t)), torch::linear(x, u.to(t))), d.to(t)), {}};
}

std::vector<std::pair<std::string, torch::Tensor>> attach_merge(CausalLMImpl& model, const MergeConfig& config,
                                                                std::optional<torch::Dtype> stack_dtype) {
  XFT_CHECK(model.config().moe.has_value(), "merge: the model is not an MoE (its config has no 'moe' section)");
  XFT_CHECK(model.config().moe->shared_expert || !config.fixed_shared_rate,
            "merge: a fixed shared_rate needs a shared expert; set merge.fixed_shared_rate=false for vanilla MoEs");
  config.validate("merge");
  for (auto& p : model.parameters()) p.set_requires_grad(false);
  std::vector<std::pair<std::string, torch::Tensor>> trainable;
  for (int64_t l = 0; l < model.config().num_hidden_layers; ++l) {
    auto layer = model.layer(l);
    auto moe = std::dynamic_pointer_cast<MoeLayerImpl>(layer->mlp);
    XFT_CHECK(moe != nullptr, "merge: layer ", l, " has no MoE layer to merge");
    auto store = [&](const torch::Tensor& t) { return stack_dtype ? t.to(*stack_dtype) : t; };
    auto merged = std::make_shared<MergedFeedForwardImpl>(store(moe->experts->gate_proj), store(moe->experts->up_proj),
                                                          store(moe->experts->down_proj), config);
    merged->to(moe->experts->gate_proj.device());
    layer->set_mlp(merged);
    trainable.emplace_back("model.layers." + std::to_string(l) + ".mlp.logits", merged->logits);
  }
  return trainable;
}

namespace {
MergedFeedForwardImpl& merged_layer(CausalLMImpl& model, int64_t l) {
  auto m = std::dynamic_pointer_cast<MergedFeedForwardImpl>(model.layer(l)->mlp);
  XFT_CHECK(m != nullptr, "merge: layer ", l, " is not merged (call attach_merge first)");
  return *m;
}
}  // namespace

nlohmann::json merge_coefficients_json(CausalLMImpl& model, const MergeConfig& config) {
  nlohmann::json layers = nlohmann::json::array();
  for (int64_t l = 0; l < model.config().num_hidden_layers; ++l) {
    auto c = merged_layer(model, l).coefficients().detach().cpu().to(torch::kFloat64);
    layers.push_back(std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel()));
  }
  auto j = config.to_json();
  j["layers"] = layers;
  return j;
}

void export_merged(CausalLMImpl& model, const std::string& dir, torch::Dtype save_dtype) {
  torch::NoGradGuard ng;
  NamedTensors out;
  for (const auto& [name, t] : model_tensors(model)) {
    if (name.find(".mlp.") == std::string::npos) out.emplace_back(name, t);
  }
  for (int64_t l = 0; l < model.config().num_hidden_layers; ++l) {
    auto w = merged_layer(model, l).merged_weights();
    const std::string base = "model.layers." + std::to_string(l) + ".mlp.";
    out.emplace_back(base + "gate_proj.weight", w[0]);
    out.emplace_back(base + "up_proj.weight", w[1]);
    out.emplace_back(base + "down_proj.weight", w[2]);
  }
  save_model_tensors(model.config().dense(), out, dir, save_dtype);
}

}  // namespace xft
