#include "xft/methods/ewa.h"

#include "core/config_reader.h"
#include "xft/core/error.h"
#include "xft/methods/fold_experts.h"
#include "xft/model/model_io.h"
#include "xft/moe/moe_layer.h"

namespace xft {

namespace {
const EnumNames<EwaSchedule> kScheduleNames = {{"constant", EwaSchedule::kConstant}, {"linear", EwaSchedule::kLinear}};

const ConfigReader<EwaConfig>& ewa_reader() {
  static const ConfigReader<EwaConfig> r = ConfigReader<EwaConfig>("ewa")
                                               .field("beta", &EwaConfig::beta)
                                               .field("schedule", &EwaConfig::schedule, kScheduleNames);
  return r;
}
}  // namespace

EwaConfig EwaConfig::from_json(const nlohmann::json& j, const std::string& source) {
  EwaConfig e = ewa_reader().read(j, source);
  XFT_CHECK(e.beta >= 0.0 && e.beta <= 1.0, source, ": ewa.beta must be in [0, 1], got ", e.beta);
  return e;
}

nlohmann::json EwaConfig::to_json() const { return ewa_reader().write(*this); }

double ewa_beta(const EwaConfig& c, int64_t step, int64_t total) {
  if (c.schedule == EwaSchedule::kConstant) return c.beta;
  return c.beta * std::min(1.0, static_cast<double>(step) / std::max<int64_t>(1, total));
}

void ewa_pull(CausalLMImpl& model, double beta) {
  torch::NoGradGuard ng;
  for (auto& m : moe_layers(model, "ewa")) {
    for (auto* w : {&m->experts->gate_proj, &m->experts->up_proj, &m->experts->down_proj}) {
      // Mean in fp32 so bf16 stacks do not lose the pull to rounding before it is applied.
      auto mean = w->to(torch::kFloat32).mean(0, /*keepdim=*/true);
      w->copy_((beta * mean + (1.0 - beta) * w->to(torch::kFloat32)).to(w->scalar_type()));
    }
  }
}

void export_averaged(CausalLMImpl& model, const std::string& dir, torch::Dtype save_dtype) {
  torch::NoGradGuard ng;
  moe_layers(model, "ewa");  // every layer an MoE layer, or an error naming the first that is not
  const int64_t N = model.config().moe->num_experts;
  // The uniform average: every expert's coefficient 1/N.
  const auto uniform = torch::full({N}, 1.0 / static_cast<double>(N), torch::kFloat64);
  save_model_tensors(model.config().dense(), fold_experts(model_tensors(model), uniform), dir, save_dtype);
}

}  // namespace xft
