#include "xft/moe/expert_parallel.h"

#include <torch/torch.h>

#include "xft/core/error.h"
#include "xft/model/llama.h"
#include "xft/moe/moe_layer.h"

namespace xft {

std::shared_ptr<const ExpertSharding> shard_experts(CausalLMImpl& model, std::shared_ptr<const Distributed> dist) {
  if (dist->expert_size() <= 1) return nullptr;
  auto layers =
      moe_layers(model, "expert parallel (distributed.expert_parallel = " + std::to_string(dist->expert_size()) + ")");
  const auto& c = layers.front()->config();
  auto sharding = std::make_shared<const ExpertSharding>(dist, c.num_experts, c.shared_expert ? 1 : 0);
  torch::NoGradGuard ng;
  for (auto& m : layers) {
    // set_data keeps the registered parameter (and any optimizer's handle on it) while its rows shrink.
    for (auto* w : {&m->experts->gate_proj, &m->experts->up_proj, &m->experts->down_proj})
      w->set_data(sharding->slice(w->detach()));
    m->set_expert_sharding(sharding);
  }
  return sharding;
}

void unshard_experts(CausalLMImpl& model, const ExpertSharding& sharding) {
  torch::NoGradGuard ng;
  int64_t l = 0;
  for (auto& m : moe_layers(model, "expert parallel")) {
    for (auto* w : {&m->experts->gate_proj, &m->experts->up_proj, &m->experts->down_proj})
      w->set_data(sharding.gather(w->detach(), "layer " + std::to_string(l) + " experts"));
    m->set_expert_sharding(nullptr);
    ++l;
  }
}

}  // namespace xft
