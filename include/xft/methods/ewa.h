// defines: EwaConfig, ewa_beta, ewa_pull (experts weights averaging after each optimizer step),
//          export_averaged (the final uniform average of the experts as a dense checkpoint)
//
// Paper 2.3 and A.2: after every update, W_i <- beta * mean_j(W_j) + (1 - beta) * W_i for every
// expert of every layer (beta 0.3, constant schedule; the linear schedule ramps beta from 0 to
// its value over training and was unstable in the paper). After training the experts are
// averaged uniformly into one FFN.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "xft/model/llama.h"

namespace xft {

enum class EwaSchedule { kConstant, kLinear };

struct EwaConfig {
  double beta = 0.3;
  EwaSchedule schedule = EwaSchedule::kConstant;  // "constant" | "linear" (beta ramps up over the run)
  static EwaConfig from_json(const nlohmann::json& j, const std::string& source);
  nlohmann::json to_json() const;
};

// beta at optimizer step `step` (1-based count of steps done) of `total`.
double ewa_beta(const EwaConfig& config, int64_t step, int64_t total);

// Pulls every MoE layer's experts toward their mean, in place.
void ewa_pull(CausalLMImpl& model, double beta);

// Dense checkpoint: each layer's FFN = the uniform mean of its experts; config without `moe`.
void export_averaged(CausalLMImpl& model, const std::string& dir, torch::Dtype save_dtype);

}  // namespace xft
