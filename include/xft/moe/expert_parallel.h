// defines: shard_experts / unshard_experts (a model's MoE layers switched to and from expert
//          parallelism)
//
// The layout (which rows a rank holds) is distributed/expert_sharding.h; the token exchange is
// moe/dispatch.h. Here the model's stacks are cut to this rank's rows and its MoE layers told
// to dispatch over the expert group.
#pragma once
#include <memory>

#include "xft/distributed/expert_sharding.h"

namespace xft {

class CausalLMImpl;

// Splits every MoE layer's expert stacks over the expert group and switches the layers to the
// all-to-all dispatch. Returns null (and changes nothing) when the expert group has one rank.
// The blocks may be uneven (7 routed experts over 4 ranks: 2 + 2 + 2 + 1) or empty (over 8).
std::shared_ptr<const ExpertSharding> shard_experts(CausalLMImpl& model, std::shared_ptr<const Distributed> dist);
// Gathers the whole stacks back (collective) and returns the layers to local dispatch.
void unshard_experts(CausalLMImpl& model, const ExpertSharding& sharding);

}  // namespace xft
