#include "xft/model/llama.h"
#include "xft/model/mlp.h"
#include "xft/moe/moe_layer.h"

namespace xft {

std::shared_ptr<FeedForwardImpl> make_feed_forward(const ModelConfig& c) {
  if (c.moe) return std::make_shared<MoeLayerImpl>(c.hidden_size, c.intermediate_size, *c.moe);
  return std::make_shared<MlpImpl>(c.hidden_size, c.intermediate_size, c.mlp_bias);
}

}  // namespace xft
