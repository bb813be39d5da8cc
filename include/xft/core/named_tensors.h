// defines: NamedTensors (tensors under their checkpoint names, in order)
#pragma once
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

namespace xft {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

}  // namespace xft
