#include "xft/train/precision.h"

namespace xft {

void prepare_model(CausalLMImpl& model, const TrainConfig& c) {
  const torch::Device device(c.device);
  model.to(device, c.precision == Precision::kBf16 ? torch::kBFloat16 : torch::kFloat32);
}

}  // namespace xft
