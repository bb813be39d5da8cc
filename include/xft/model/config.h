// defines: Architecture, NormKind, RopeScaling, MoeConfig, ModelConfig (a Hugging Face
//          config.json of a supported architecture, plus an optional `moe` section for upcycled
//          models)
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "xft/core/files.h"

namespace xft {

// The Hugging Face architectures xft builds. They share one decoder (model/llama.h); what differs
// is a handful of ModelConfig fields (the norm, the rotary fraction, biases, qk norm, residual).
enum class Architecture {
  kLlama,     // model_type "llama", LlamaForCausalLM
  kStableLm,  // model_type "stablelm", StableLmForCausalLM (StableCode 3B)
};
const char* model_type_name(Architecture a);     // "llama" | "stablelm"
const char* architecture_class(Architecture a);  // "LlamaForCausalLM" | "StableLmForCausalLM"

// RMSNorm with a weight (Llama) or LayerNorm with weight and bias (StableLM).
enum class NormKind { kRms, kLayerNorm };

struct RopeScaling {
  std::string type = "default";  // default | linear | llama3
  double factor = 1.0;
  // llama3 only
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

// Routing weights (paper Eq. 1-2); the values are shared with kernels/route_mode.h (checked in
// src/moe/routing_cuda.cpp). Adding a rule: docs/extending.md.
enum class RoutingMode { kXft = 0, kSharedNoNorm = 1, kVanilla = 2 };
// Whether the rule puts the shared expert 0 in slot 0 of every token (xft, shared_no_norm) or
// routes over all N experts (vanilla, Eq. 1): moe.shared_expert must agree.
bool routing_has_shared_expert(RoutingMode mode);
enum class RouterKind { kLinear, kMlp };
enum class AuxLossKind { kCv2, kSwitch, kNone };
// The smooth load of noisy gating (moe/load_balancing.h): "shazeer" compares the noisy logit
// with the threshold (Shazeer et al. 2017); "reference" compares the noise alone, as the
// authors' code does.
enum class LoadEstimate { kShazeer, kReference };

// The config spellings of the enums above ("xft", "mlp", "cv2", ...).
const char* to_string(RoutingMode mode);
const char* to_string(RouterKind kind);
const char* to_string(AuxLossKind kind);
const char* to_string(LoadEstimate rule);
// The reverse, as a config file's reader parses them: an unknown spelling throws xft::Error
// naming `where` and the known spellings.
RoutingMode routing_mode_from_string(const std::string& text, const std::string& where);
RouterKind router_kind_from_string(const std::string& text, const std::string& where);

// The MoE layer replacing every FFN after upcycling (paper 3.1).
struct MoeConfig {
  int64_t num_experts = 8;    // N, including the shared expert 0 when shared_expert
  int64_t top_k = 6;          // K active per token, including the shared expert
  bool shared_expert = true;  // expert 0 sees every token
  RoutingMode routing =
      RoutingMode::kXft;  // "xft" (Eq. 2) | "shared_no_norm" | "vanilla" (Eq. 1; default without a shared expert)
  // vanilla only: the chosen K weights renormalised to sum 1 (= a softmax over the top-K logits,
  // what the reference code ran for Table 4's "- Shared Expert", so the fresh MoE is the dense
  // model); false: the raw scores of Eq. 1.
  bool vanilla_renormalize = true;
  RouterKind router = RouterKind::kLinear;  // "linear" | "mlp" (W2 tanh(W1 x))
  bool router_noise = false;                // training-time noisy gating; never at eval (ON in the authors' runs)
  LoadEstimate load_estimate = LoadEstimate::kShazeer;  // with router_noise: "shazeer" | "reference"
  double router_init_std = 0.02;
  AuxLossKind aux_loss = AuxLossKind::kCv2;  // "cv2" (importance + load, Shazeer) | "switch" | "none"
  double aux_loss_coef = 0.01;
  // false: padding tokens are routed but weigh 0 in the aux loss, the counts and the telemetry;
  // true: they count like real tokens, as in the authors' code (compat "reference" sets it).
  bool aux_counts_padding = false;

  int64_t num_routed() const { return shared_expert ? num_experts - 1 : num_experts; }
  int64_t routed_k() const { return shared_expert ? top_k - 1 : top_k; }
  void validate(const std::string& source) const;  // throws xft::Error naming source
  nlohmann::json to_json() const;
  static MoeConfig from_json(const nlohmann::json& j, const std::string& source);
};

struct ModelConfig {
  Architecture architecture = Architecture::kLlama;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;
  double rms_norm_eps = 1e-6;    // llama
  double layer_norm_eps = 1e-5;  // stablelm
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  // Only the first rotary_dim() = int(head_dim * partial_rotary_factor) dims of each q/k head
  // rotate (StableLM: 0.25); the rest pass through. 1.0 for Llama.
  double partial_rotary_factor = 1.0;
  int64_t max_position_embeddings = 2048;
  bool tie_word_embeddings = false;
  bool attention_bias = false;         // llama: bias on q, k, v and o
  bool use_qkv_bias = false;           // stablelm: bias on q, k, v only
  bool qk_layernorm = false;           // stablelm: per-head LayerNorm (no bias) on q and k before RoPE
  bool use_parallel_residual = false;  // stablelm: x + attn(n(x)) + mlp(n(x)), one norm per layer
  bool mlp_bias = false;
  std::optional<int64_t> bos_token_id;
  std::optional<int64_t> eos_token_id;
  std::string torch_dtype = "float32";
  std::optional<MoeConfig> moe;  // present for an upcycled MoE model

  // The config.json this came from, so fields this project does not use survive a save.
  nlohmann::json raw = nlohmann::json::object();

  static ModelConfig from_json(const nlohmann::json& j, const std::string& source);
  // `path` is a model directory (reads path/config.json) or a config file.
  static ModelConfig load(const std::string& path);
  nlohmann::json to_json() const;
  void save(const std::string& dir) const;  // dir/config.json, written atomically

  // The dense config of the same model (moe removed): what merge and EWA export.
  ModelConfig dense() const;

  // The seam the model is built from (model/llama.h reads these, never `architecture`).
  NormKind norm_kind() const { return architecture == Architecture::kStableLm ? NormKind::kLayerNorm : NormKind::kRms; }
  double norm_eps() const { return norm_kind() == NormKind::kRms ? rms_norm_eps : layer_norm_eps; }
  bool qkv_bias() const { return attention_bias || use_qkv_bias; }
  // int() truncation, as StableLmAttention computes rotary_ndims.
  int64_t rotary_dim() const { return static_cast<int64_t>(static_cast<double>(head_dim) * partial_rotary_factor); }
  bool o_proj_bias() const { return attention_bias; }
};

}  // namespace xft
