#include "xft/methods/upcycle.h"

#include <ATen/CPUGeneratorImpl.h>
#include <map>

#include <cmath>

#include "core/config_reader.h"
#include "xft/core/error.h"
#include "xft/core/manifest.h"

namespace xft {

namespace {
bool is_dense_mlp(const std::string& name, int64_t* layer, std::string* proj) {
  // model.layers.L.mlp.{gate,up,down}_proj.weight
  static const std::string prefix = "model.layers.";
  if (name.rfind(prefix, 0) != 0) return false;
  const size_t dot = name.find('.', prefix.size());
  if (dot == std::string::npos) return false;
  const std::string rest = name.substr(dot);
  for (const char* p : {"gate_proj", "up_proj", "down_proj"}) {
    if (rest == std::string(".mlp.") + p + ".weight") {
      *layer = std::stoll(name.substr(prefix.size(), dot - prefix.size()));
      *proj = p;
      return true;
    }
  }
  return false;
}
}  // namespace

namespace {
const ConfigReader<UpcycleConfig>& upcycle_reader() {
  static const ConfigReader<UpcycleConfig> r = ConfigReader<UpcycleConfig>("upcycle")
                                                   .field("seed", &UpcycleConfig::seed)
                                                   .field("rope_theta", &UpcycleConfig::rope_theta)
                                                   .field("drop_rope_scaling", &UpcycleConfig::drop_rope_scaling);
  return r;
}
}  // namespace

UpcycleConfig UpcycleConfig::from_json(const nlohmann::json& j, const std::string& source) {
  auto c = upcycle_reader().read(j, source);
  XFT_CHECK(c.rope_theta == 0.0 || (c.rope_theta > 0.0 && std::isfinite(c.rope_theta)), source,
            ": upcycle.rope_theta must be 0 (keep the base model's) or a positive number, got ", c.rope_theta);
  return c;
}

nlohmann::json UpcycleConfig::to_json() const { return upcycle_reader().write(*this); }

UpcycleResult upcycle(const ModelConfig& dense, const NamedTensors& tensors, const MoeConfig& moe,
                      const UpcycleConfig& options) {
  const uint64_t seed = options.seed;
  XFT_CHECK(!dense.moe, "upcycle: the input model is already an MoE (its config has a 'moe' section)");
  XFT_CHECK(!dense.mlp_bias, "upcycle: dense models with mlp_bias are not supported (experts carry no bias)");
  moe.validate("upcycle");
  const int64_t L = dense.num_hidden_layers, N = moe.num_experts, R = moe.num_routed();
  const int64_t D = dense.hidden_size, F = dense.intermediate_size;

  UpcycleResult out;
  out.config = dense;
  out.config.moe = moe;
  if (options.rope_theta > 0.0) out.config.rope_theta = options.rope_theta;
  if (options.drop_rope_scaling) out.config.rope_scaling = RopeScaling{};
  std::map<std::pair<int64_t, std::string>, torch::Tensor> ffn;
  for (const auto& [name, t] : tensors) {
    int64_t layer;
    std::string proj;
    if (is_dense_mlp(name, &layer, &proj)) {
      XFT_CHECK(layer >= 0 && layer < L, "upcycle: tensor '", name, "' names layer ", layer, " but the config has ", L,
                " layers");
      ffn[{layer, proj}] = t;
    } else {
      out.tensors.emplace_back(name, t);  // embeddings, attention, norms, head: copied
    }
  }
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (int64_t l = 0; l < L; ++l) {
    const std::string base = "model.layers." + std::to_string(l) + ".mlp.";
    for (const char* proj : {"gate_proj", "up_proj", "down_proj"}) {
      auto it = ffn.find({l, proj});
      XFT_CHECK(it != ffn.end(), "upcycle: the dense checkpoint has no '", base, proj,
                ".weight' (every layer needs its gate_proj, up_proj and down_proj)");
      const auto want = std::string(proj) == "down_proj" ? std::vector<int64_t>{D, F} : std::vector<int64_t>{F, D};
      XFT_CHECK(it->second.sizes() == c10::IntArrayRef(want), "upcycle: '", base, proj, ".weight' has shape ",
                it->second.sizes(), ", expected ", c10::IntArrayRef(want));
      // Every expert, the shared one included, is an exact copy of the dense FFN.
      out.tensors.emplace_back(base + "experts." + proj, it->second.unsqueeze(0).expand({N, want[0], want[1]}).clone());
    }
    const auto dtype = ffn.at({l, "gate_proj"}).scalar_type();
    auto normal = [&](std::vector<int64_t> shape) {
      return at::normal(0.0, moe.router_init_std, shape, gen, torch::TensorOptions().dtype(torch::kFloat32)).to(dtype);
    };
    if (moe.router == RouterKind::kMlp) {
      out.tensors.emplace_back(base + "router.w1", normal({R, D}));
      out.tensors.emplace_back(base + "router.w2", normal({R, R}));
    } else {
      out.tensors.emplace_back(base + "router.weight", normal({R, D}));
    }
    // N(0, std) like the other router weights: what the reference's conversion ends up with
    // (its noise weight is a missing key that transformers initialises so).
    if (moe.router_noise) out.tensors.emplace_back(base + "router.noise_weight", normal({R, D}));
  }
  return out;
}

void upcycle_directory(const std::string& dense_dir, const std::string& out_dir, const MoeConfig& moe,
                       const UpcycleConfig& options) {
  verify_manifest(dense_dir);  // a base model xft exported carries checksums
  auto config = ModelConfig::load(dense_dir);
  auto files = TensorDirectory::open(dense_dir);
  // Tensors stay in the checkpoint's dtype (a bf16 1.3B model times 8 experts is 13 GB; fp32
  // would double it). Non-FFN tensors are copied as they are and checked when the MoE loads.
  NamedTensors dense;
  for (const auto& name : files.names()) dense.emplace_back(name, files.get(name));
  auto result = upcycle(config, dense, moe, options);
  save_model_tensors(result.config, result.tensors, out_dir, dtype_from_name(config.torch_dtype));
}

}  // namespace xft
