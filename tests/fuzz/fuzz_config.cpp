// libFuzzer target: arbitrary bytes as a model's config.json (scripts/fuzz.sh config SECONDS),
// read by ModelConfig::from_json and then checked against a real tiny checkpoint's headers as
// load_model does. Every input must end as a config that fits the checkpoint or an xft::Error:
// never a crash, a sanitizer report, another exception type, an allocation the size of the
// config's claims, or a hang.
#include <unistd.h>

#include <cstdint>
#include <string>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "xft/core/error.h"
#include "xft/core/safetensors.h"
#include "xft/model/config.h"
#include "xft/model/config_check.h"

namespace {

const char* kSource = "fuzz/config.json";

// A 2-layer checkpoint with the tensors of a small dense config (zeros: only shapes matter).
const xft::TensorDirectory& checkpoint() {
  static const xft::TensorDirectory dir = [] {
    const auto config = xft::ModelConfig::from_json({{"model_type", "llama"},
                                                     {"vocab_size", 61},
                                                     {"hidden_size", 32},
                                                     {"intermediate_size", 40},
                                                     {"num_hidden_layers", 2},
                                                     {"num_attention_heads", 4},
                                                     {"num_key_value_heads", 2}},
                                                    "seed");
    std::vector<std::pair<std::string, torch::Tensor>> tensors;
    for (int64_t layer = -1; layer < config.num_hidden_layers; ++layer)
      for (const auto& t : xft::implied_tensors(config, layer, "seed"))
        tensors.emplace_back(t.name, torch::zeros(t.shape));
    const std::string path = "/tmp/xft-fuzz-config-" + std::to_string(::getpid());
    xft::save_tensor_directory(path, tensors);
    return xft::TensorDirectory::open(path);
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;  // read_json_file reports syntax errors before from_json
  try {
    const auto config = xft::ModelConfig::from_json(j, kSource);
    xft::check_config_against_tensors(config, checkpoint(), kSource);
    (void)config.to_json().dump();
  } catch (const xft::Error&) {
    // A clear rejection.
  }
  return 0;
}
