// defines: MergeConfig, MergedFeedForwardImpl / MergedFeedForward (the learnable merge of one
//          MoE layer, paper 3.2), attach_merge (swap every MoE layer of a model for its merge),
//          merge_coefficients_json, export_merged (the dense checkpoint of the base architecture)
//
// Eq. 5: W = lambda * W_shared + sum_{i>=1} alpha_i W_i, alpha = (1 - lambda) * softmax(logits);
// the same coefficients mix gate, up and down; only the logits train (Eq. 6). lambda is fixed.
// Without a fixed rate (the "learned soup", Eq. 3-4): alpha = softmax(logits) over all N.
// The forward builds W once per call and runs one dense SwiGLU: per-token cost is the dense
// model's. The expert stacks are frozen buffers and may stay in the checkpoint's dtype (bf16:
// half the memory of the reference code's fp32 copies); W is mixed in fp32 (fp64 for fp64).
#pragma once
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "xft/model/config.h"
#include "xft/model/feed_forward.h"
#include "xft/model/llama.h"

namespace xft {

struct MergeConfig {
  double shared_rate = 0.75;       // lambda (0.75 DeepSeek-Coder, 0.85 StableCode / TinyLlama)
  bool fixed_shared_rate = true;   // false: the learned soup over all N experts
  void validate(const std::string& source) const;
  static MergeConfig from_json(const nlohmann::json& j, const std::string& source);
  nlohmann::json to_json() const;
};

class MergedFeedForwardImpl : public FeedForwardImpl {
 public:
  // gate/up [N, F, D], down [N, D, F]: the MoE layer's experts (expert 0 shared).
  MergedFeedForwardImpl(const torch::Tensor& gate, const torch::Tensor& up, const torch::Tensor& down,
                        const MergeConfig& config);
  using FeedForwardImpl::forward;
  FfnOutput forward(const torch::Tensor& x, const torch::Tensor& token_mask) override;

  torch::Tensor coefficients() const;  // [N], fp32, sums to 1: what multiplies each expert
  // The merged dense FFN weights {gate [F, D], up [F, D], down [D, F]}.
  std::array<torch::Tensor, 3> merged_weights() const;

  torch::Tensor logits;                      // the only trainable parameter: [N-1] (fixed rate) or [N]
  torch::Tensor gate_stack, up_stack, down_stack;  // frozen buffers

 private:
  MergeConfig config_;
};
TORCH_MODULE(MergedFeedForward);

// Replaces every MoE layer of `model` by its merge; freezes everything but the merge logits.
// `stack_dtype` (e.g. the checkpoint's bf16) stores the frozen expert stacks; default: as they are.
// Returns the trainable logits under their module names.
std::vector<std::pair<std::string, torch::Tensor>> attach_merge(CausalLMImpl& model, const MergeConfig& config,
                                                                std::optional<torch::Dtype> stack_dtype = {});

// {"shared_rate": .., "fixed_shared_rate": .., "layers": [[c_0 .. c_{N-1}], ...]}
nlohmann::json merge_coefficients_json(CausalLMImpl& model, const MergeConfig& config);

// A dense checkpoint of the base architecture: every merged layer's W as
// model.layers.L.mlp.{gate,up,down}_proj.weight, everything else copied; config without `moe`.
void export_merged(CausalLMImpl& model, const std::string& dir, torch::Dtype save_dtype);

}  // namespace xft
