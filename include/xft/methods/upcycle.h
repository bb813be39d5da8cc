// defines: upcycle (dense state dict + config -> MoE state dict + config, a pure function),
//          upcycle_directory (the same on Hugging Face directories)
//
// Paper 3.1: every expert of every layer is an exact copy of the dense SwiGLU FFN; embeddings,
// attention, norms and head are copied; the routers are new, N(0, router_init_std).
// With routing "xft" the routing weights sum to 1 (Eq. 2), so the MoE computes exactly the
// dense function at this point.
//
// MoE tensor names (one loader serves dense and MoE: these are the MoeLayer's parameter names):
//   model.layers.L.mlp.experts.{gate_proj,up_proj} [N, F, D], ...experts.down_proj [N, D, F]
//   model.layers.L.mlp.router.weight [N-1, D]             (router "linear")
//   model.layers.L.mlp.router.{w1 [N-1, D], w2 [N-1, N-1]} (router "mlp")
//   model.layers.L.mlp.router.noise_weight [N-1, D]        (router_noise; N(0, router_init_std))
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "xft/model/config.h"
#include "xft/model/model_io.h"

namespace xft {

// The experiment's "upcycle" section.
struct UpcycleConfig {
  uint64_t seed = 0;  // router initialisation
  // 0: the base model's rope_theta (right). The authors' MoE attention ignored the checkpoint's
  // value and used 10000, which then flowed into the merged XFT model (DeepSeek-Coder's is
  // 100000): set 10000 to reproduce the published MoE / XFT runs (method notes, "Upcycling").
  double rope_theta = 0.0;
  bool drop_rope_scaling = false;  // true: rope_scaling null in the MoE (and so in XFT's model)

  static UpcycleConfig from_json(const nlohmann::json& j, const std::string& source);
  nlohmann::json to_json() const;
};

struct UpcycleResult {
  ModelConfig config;
  NamedTensors tensors;
};

UpcycleResult upcycle(const ModelConfig& dense_config, const NamedTensors& dense_tensors, const MoeConfig& moe,
                      const UpcycleConfig& options);
inline UpcycleResult upcycle(const ModelConfig& dense_config, const NamedTensors& dense_tensors, const MoeConfig& moe,
                             uint64_t seed) {
  UpcycleConfig options;
  options.seed = seed;
  return upcycle(dense_config, dense_tensors, moe, options);
}

// Reads dense_dir, writes out_dir (atomically) in the dense checkpoint's dtype.
void upcycle_directory(const std::string& dense_dir, const std::string& out_dir, const MoeConfig& moe,
                       const UpcycleConfig& options);
inline void upcycle_directory(const std::string& dense_dir, const std::string& out_dir, const MoeConfig& moe,
                              uint64_t seed) {
  UpcycleConfig options;
  options.seed = seed;
  upcycle_directory(dense_dir, out_dir, moe, options);
}

}  // namespace xft
