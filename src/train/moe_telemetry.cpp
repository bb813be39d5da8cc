#include "xft/train/moe_telemetry.h"

#include <fstream>

#include "xft/moe/moe_layer.h"

namespace xft {

nlohmann::json moe_telemetry(CausalLMImpl& model, const Distributed& dist) {
  if (!model.config().moe) return nlohmann::json::object();
  const int64_t N = model.config().moe->num_experts;
  std::vector<torch::Tensor> rows;
  for (auto& layer : moe_layers(model, "telemetry")) {
    auto t = layer->take_telemetry();
    // A rank that ran no forward (idle in this step) still takes part in the sum.
    rows.push_back(t.defined() ? t.cpu() : torch::zeros({N + 5}, torch::kFloat64));
  }
  std::vector<torch::Tensor> all{torch::stack(rows).to(dist.comm_device())};
  dist.all_reduce_sum(all, Distributed::Group::kWorld, "MoE telemetry");
  const auto sums = all[0].cpu().contiguous();
  nlohmann::json layers = nlohmann::json::array();
  for (int64_t l = 0; l < sums.size(0); ++l) {
    const auto* v = sums[l].data_ptr<double>();
    const double tokens = std::max(v[N], 1.0), forwards = std::max(v[N + 4], 1.0);
    std::vector<double> load(v, v + N);
    for (auto& x : load) x /= tokens;
    layers.push_back({{"load", load},
                      {"shared_weight", v[N + 1] / tokens},
                      {"entropy", v[N + 2] / tokens},
                      {"aux_loss", v[N + 3] / forwards}});
  }
  return {{"moe", layers}};
}

nlohmann::json summarize_telemetry(const std::string& metrics_jsonl) {
  std::ifstream in(metrics_jsonl);
  std::string line;
  nlohmann::json sum, last_coefficients;
  int64_t rows = 0;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded()) continue;
    if (j.contains("coefficients")) last_coefficients = j["coefficients"];
    if (!j.contains("moe") || !j["moe"].is_array()) continue;
    if (rows == 0)
      sum = j["moe"];
    else
      for (size_t l = 0; l < sum.size() && l < j["moe"].size(); ++l)
        for (auto& [k, v] : sum[l].items()) {
          if (v.is_array())
            for (size_t e = 0; e < v.size(); ++e) v[e] = v[e].get<double>() + j["moe"][l][k][e].get<double>();
          else
            v = v.get<double>() + j["moe"][l][k].get<double>();
        }
    ++rows;
  }
  nlohmann::json out = nlohmann::json::object();
  if (rows > 0) {
    for (auto& layer : sum)
      for (auto& [k, v] : layer.items()) {
        if (v.is_array())
          for (auto& x : v) x = x.get<double>() / static_cast<double>(rows);
        else
          v = v.get<double>() / static_cast<double>(rows);
      }
    out["moe"] = sum;
    out["logged_steps"] = rows;
  }
  if (!last_coefficients.is_null()) out["coefficients"] = last_coefficients;
  return out;
}

}  // namespace xft
