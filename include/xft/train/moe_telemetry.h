// defines: moe_telemetry (what the routers did since the last logged step, per MoE layer),
//          summarize_telemetry (a stage's metrics.jsonl averaged, for its eval.json)
//
// Per MoE layer, over the training forwards since the last call, summed over the ranks:
//   load            fraction of tokens each expert received (expert 0, the shared one, 1.0)
//   shared_weight   the shared expert's mean weight, 1 - s_max (paper Eq. 2)
//   entropy         the routers' mean entropy -sum_i s_i log s_i (nats) over the routed experts
//   aux_loss        the mean load-balancing loss (times its coefficient)
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "xft/distributed/distributed.h"
#include "xft/model/llama.h"

namespace xft {

// {"moe": [{"load": [...], "shared_weight": x, "entropy": y, "aux_loss": z}, ...]}, or an empty
// object for a model without MoE layers. Collective (every rank calls it at the same steps).
nlohmann::json moe_telemetry(CausalLMImpl& model, const Distributed& dist);

// Each layer's telemetry averaged over the logged rows of `metrics_jsonl`, and the merge
// coefficients of the last row that has them: {"moe": [...], "coefficients": [...]}, keys
// present when the rows have them.
nlohmann::json summarize_telemetry(const std::string& metrics_jsonl);

}  // namespace xft
