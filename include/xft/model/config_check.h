// defines: ImpliedTensor, implied_tensors, check_config_against_tensors
//
// A config.json says how big every tensor is; the safetensors headers say how big they really
// are. Comparing the two before a model is built means a wrong or hostile config
// (`hidden_size: 1000000000000`, `num_hidden_layers: 100000000`) is refused by an error naming
// the field, the tensor and both shapes, instead of an allocation that aborts or never ends.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "xft/core/safetensors.h"
#include "xft/model/config.h"

namespace xft {

// One tensor the config implies: its checkpoint name, its shape, and the config fields that
// size it ("vocab_size x hidden_size"), for the error message.
struct ImpliedTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::string fields;
};

// The tensors of decoder layer `layer` (attention, norms, dense FFN or MoE experts and router);
// layer < 0 gives the model's own (embedding, final norm, untied head). A size product that
// overflows int64 is an error naming `config_file`.
std::vector<ImpliedTensor> implied_tensors(const ModelConfig& config, int64_t layer, const std::string& config_file);

// Throws before anything is allocated when the checkpoint in `dir` cannot be the model that
// `config` describes: more layers than the checkpoint holds, a tensor the config implies that is
// absent, or one whose shape differs. Tensors the config does not imply are left to
// load_weights (they cost no memory).
void check_config_against_tensors(const ModelConfig& config, const TensorDirectory& dir,
                                  const std::string& config_file);

}  // namespace xft
