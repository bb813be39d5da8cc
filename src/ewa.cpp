#include "xft/ewa.h"

#include "xft/checkpoint.h"
#include "xft/error.h"
#include "xft/moe_layer.h"

namespace xft {

EwaConfig EwaConfig::from_json(const nlohmann::json& j, const std::string& source) {
  EwaConfig e;
  for (const auto& [k, v] : j.items()) {
    if (k == "beta") e.beta = v.get<double>();
    else if (k == "schedule") e.schedule = v.get<std::string>();
    else fail(source, ": unknown ewa field '", k, "' (expected beta, schedule)");
  }
  XFT_CHECK(e.beta >= 0.0 && e.beta <= 1.0, source, ": ewa.beta must be in [0, 1], got ", e.beta);
  XFT_CHECK(e.schedule == "constant" || e.schedule == "linear", source,
            ": ewa.schedule must be constant or linear, got '", e.schedule, "'");
  return e;
}

nlohmann::json EwaConfig::to_json() const { return {{"beta", beta}, {"schedule", schedule}}; }

double ewa_beta(const EwaConfig& c, int64_t step, int64_t total) {
  if (c.schedule == "constant") return c.beta;
  return c.beta * std::min(1.0, static_cast<double>(step) / std::max<int64_t>(1, total));
}

namespace {
std::vector<std::shared_ptr<MoeLayerImpl>> moe_layers(CausalLMImpl& model) {
  std::vector<std::shared_ptr<MoeLayerImpl>> out;
  for (int64_t l = 0; l < model.config().num_hidden_layers; ++l) {
    auto m = std::dynamic_pointer_cast<MoeLayerImpl>(model.layer(l)->mlp);
    XFT_CHECK(m != nullptr, "ewa: layer ", l, " has no MoE layer");
    out.push_back(m);
  }
  return out;
}
}  // namespace

void ewa_pull(CausalLMImpl& model, double beta) {
  torch::NoGradGuard ng;
  for (auto& m : moe_layers(model)) {
    for (auto* w : {&m->experts->gate_proj, &m->experts->up_proj, &m->experts->down_proj}) {
      // Mean in fp32 so bf16 stacks do not lose the pull to rounding before it is applied.
      auto mean = w->to(torch::kFloat32).mean(0, /*keepdim=*/true);
      w->copy_((beta * mean + (1.0 - beta) * w->to(torch::kFloat32)).to(w->scalar_type()));
    }
  }
}

void export_averaged(CausalLMImpl& model, const std::string& dir, torch::Dtype save_dtype) {
  torch::NoGradGuard ng;
  NamedTensors out;
  for (const auto& [name, t] : model_tensors(model)) {
    if (name.find(".mlp.") == std::string::npos) out.emplace_back(name, t);
  }
  auto layers = moe_layers(model);
  for (size_t l = 0; l < layers.size(); ++l) {
    const std::string base = "model.layers." + std::to_string(l) + ".mlp.";
    const auto& e = *layers[l]->experts;
    out.emplace_back(base + "gate_proj.weight", e.gate_proj.to(torch::kFloat32).mean(0));
    out.emplace_back(base + "up_proj.weight", e.up_proj.to(torch::kFloat32).mean(0));
    out.emplace_back(base + "down_proj.weight", e.down_proj.to(torch::kFloat32).mean(0));
  }
  save_model_tensors(model.config().dense(), out, dir, save_dtype);
}

}  // namespace xft
