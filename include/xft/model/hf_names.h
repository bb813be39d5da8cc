// defines: hf:: — the one home of the Hugging Face tensor names this project reads and writes
//
// Dense Llama FFN:   model.layers.L.mlp.{gate,up,down}_proj.weight
// MoE layer (xft):   model.layers.L.mlp.experts.{gate,up,down}_proj   [N, F, D] / [N, D, F]
//                    model.layers.L.mlp.router.{weight | w1, w2 | noise_weight}
// Merge (training):  model.layers.L.mlp.logits
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>

namespace xft::hf {

// The three SwiGLU projections, in the order gate, up, down.
inline constexpr std::array<const char*, 3> kProjections = {"gate_proj", "up_proj", "down_proj"};

// "model.layers.L.mlp."
inline std::string mlp_prefix(int64_t layer) { return "model.layers." + std::to_string(layer) + ".mlp."; }
// "model.layers.L.mlp.gate_proj.weight"
inline std::string dense_ffn(int64_t layer, const std::string& proj) { return mlp_prefix(layer) + proj + ".weight"; }
// "model.layers.L.mlp.experts.gate_proj"
inline std::string expert_stack(int64_t layer, const std::string& proj) {
  return mlp_prefix(layer) + "experts." + proj;
}
// "model.layers.L.mlp.router." + what ("weight", "w1", "w2", "noise_weight")
inline std::string router(int64_t layer, const std::string& what) { return mlp_prefix(layer) + "router." + what; }
// "model.layers.L.mlp.logits": the merge's trainable mixing logits.
inline std::string merge_logits(int64_t layer) { return mlp_prefix(layer) + "logits"; }

// True for any tensor of a layer's FFN (dense, MoE or merge).
inline bool is_ffn(const std::string& name) { return name.find(".mlp.") != std::string::npos; }

// The layer of a model.layers.L.mlp.* name and what follows "mlp." ("gate_proj.weight",
// "experts.up_proj", "router.weight"); nullopt for other names.
struct FfnName {
  int64_t layer;
  std::string rest;
};
inline std::optional<FfnName> parse_ffn(const std::string& name) {
  static const std::string prefix = "model.layers.";
  if (name.rfind(prefix, 0) != 0) return std::nullopt;
  const size_t dot = name.find('.', prefix.size());
  if (dot == std::string::npos || dot == prefix.size() || name.compare(dot, 5, ".mlp.") != 0) return std::nullopt;
  const std::string digits = name.substr(prefix.size(), dot - prefix.size());
  if (digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  return FfnName{std::stoll(digits), name.substr(dot + 5)};
}

// An expert stack name, or one of its optimizer slots ("<stack>/exp_avg").
inline bool is_expert_stack(const std::string& name) {
  const auto stack = name.substr(0, name.find('/'));
  for (const char* p : kProjections) {
    const std::string s = std::string("experts.") + p;
    if (stack.size() >= s.size() && stack.compare(stack.size() - s.size(), s.size(), s) == 0) return true;
  }
  return false;
}

}  // namespace xft::hf
