// defines: MergeMethod, MergeConfig, MergedFeedForwardImpl / MergedFeedForward (the learnable merge of one
//          MoE layer, paper 3.2), attach_merge (swap every MoE layer of a model for its merge),
//          merge_coefficients_json, export_merged (the dense checkpoint of the base architecture)
//
// Eq. 5: W = lambda * W_shared + sum_{i>=1} alpha_i W_i, alpha = (1 - lambda) * softmax(logits);
// the same coefficients mix gate, up and down; only the logits train (Eq. 6). lambda is fixed.
// Without a fixed rate (the "learned soup", Eq. 3-4): alpha = softmax(logits) over all N.
// The forward builds W once per call and runs one dense SwiGLU: per-token cost is the dense
// model's. The expert stacks are frozen buffers and may stay in the checkpoint's dtype (bf16:
// half the memory of the reference code's fp32 copies); W is mixed in fp32 (fp64 for fp64).
//
// Sharded (distributed.shard_merge, world > 1): rank r keeps only the rows of its block of the
// N experts (BlockSplit over the world, the shared expert 0 in rank 0's block like any other
// row), computes its part W_r = sum_{i in block r} c_i W_i, and one all-reduce per layer and
// forward (sum_across_ranks, gate, up and down in one buffer) gives every rank the whole W of
// Eq. 5. Backward: that all-reduce sums dL/dW over the ranks' micro-batches, so each rank's
// dL/dc_i = <dL/dW, W_i> is the whole run's for its own experts and zero for the others, from
// its local stacks alone; the logits' gradient (softmax Jacobian times dL/dc) is then partial
// per rank, and the data-parallel all-reduce of the logits' gradients adds the parts, which is
// the single-process gradient: each expert's term is counted on exactly one rank. Every rank
// must run the same number of forwards per step (Trainer::set_lockstep).
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "xft/distributed/block_split.h"
#include "xft/distributed/distributed.h"
#include "xft/model/config.h"
#include "xft/model/feed_forward.h"
#include "xft/model/llama.h"

namespace xft {

// How the merge stage folds the tuned MoE into a dense model:
//   learned          Eq. 5-6: the mixing logits train (the paper's XFT; the default);
//   init             Eq. 5 at the initial coefficients, no training (the paper's XFT (INIT));
//   task_arithmetic  the routed experts' differences from the shared expert added to it (Ilharco
//                    et al. 2023), TIES (Yadav et al. 2023) and DARE (Yu et al. 2024): the standard
//                    merge baselines, elementwise (methods/task_vector_merge.h).
enum class MergeMethod { kLearned, kInit, kTaskArithmetic, kTies, kDare };
const char* to_string(MergeMethod method);  // "learned", "init", "task_arithmetic", "ties", "dare"

struct MergeConfig {
  MergeMethod method = MergeMethod::kLearned;
  double shared_rate = 0.75;      // lambda (0.75 DeepSeek-Coder, 0.85 StableCode / TinyLlama)
  bool fixed_shared_rate = true;  // false: the learned soup over all N experts
  // The task-vector methods' parameters, with mergekit's defaults: the fraction of each task
  // vector kept (ties: the largest magnitudes; dare: a random keep, rescaled by 1 / density), the
  // scale of the summed task vectors (Task Arithmetic's lambda), and the seed of DARE's draws.
  double density = 1.0;
  double scaling = 1.0;
  uint64_t seed = 0;
  void validate(const std::string& source) const;
  static MergeConfig from_json(const nlohmann::json& j, const std::string& source);
  nlohmann::json to_json() const;
};

// Which experts' rows a rank keeps in a sharded merge: block `dist->rank()` of the N experts
// over the world.
struct MergeSharding {
  std::shared_ptr<const Distributed> dist;
  BlockSplit split;
  MergeSharding(std::shared_ptr<const Distributed> d, int64_t num_experts)
      : dist(std::move(d)), split(num_experts, dist->world()) {}
  int64_t first() const { return split.begin(dist->rank()); }
  int64_t rows() const { return split.size(dist->rank()); }
};

class MergedFeedForwardImpl : public FeedForwardImpl {
 public:
  // gate/up [N, F, D], down [N, D, F]: the MoE layer's experts (expert 0 shared), whole; with
  // `sharding` only this rank's rows are kept.
  MergedFeedForwardImpl(const torch::Tensor& gate, const torch::Tensor& up, const torch::Tensor& down,
                        const MergeConfig& config, std::shared_ptr<const MergeSharding> sharding = nullptr);
  using FeedForwardImpl::forward;
  FfnOutput forward(const torch::Tensor& x, const torch::Tensor& token_mask) override;

  torch::Tensor coefficients() const;  // [N], fp32, sums to 1: what multiplies each expert
  // The merged dense FFN weights {gate [F, D], up [F, D], down [D, F]}. Collective when sharded.
  std::array<torch::Tensor, 3> merged_weights() const;
  const MergeSharding* sharding() const { return sharding_.get(); }
  int64_t num_experts() const { return logits.size(0) + (config_.fixed_shared_rate ? 1 : 0); }

  torch::Tensor logits;                            // the only trainable parameter: [N-1] (fixed rate) or [N]
  torch::Tensor gate_stack, up_stack, down_stack;  // frozen buffers: [N, ...], or this rank's rows when sharded

 private:
  MergeConfig config_;
  std::shared_ptr<const MergeSharding> sharding_;
};
TORCH_MODULE(MergedFeedForward);

// Replaces every MoE layer of `model` by its merge; freezes everything but the merge logits.
// `stack_dtype` (e.g. the checkpoint's bf16) stores the frozen expert stacks; default: as they are.
// `shard_over`: a multi-rank context whose world splits the stacks (each rank keeps its rows);
// null or one rank: every rank keeps them whole. Returns the trainable logits under their module names.
std::vector<std::pair<std::string, torch::Tensor>> attach_merge(
    CausalLMImpl& model, const MergeConfig& config, std::optional<torch::Dtype> stack_dtype = {},
    std::shared_ptr<const Distributed> shard_over = nullptr);

// Bytes of the frozen expert stacks this rank holds (all layers): what sharding divides.
int64_t merge_stack_bytes(CausalLMImpl& model);

// {"shared_rate": .., "fixed_shared_rate": .., "layers": [[c_0 .. c_{N-1}], ...]}
nlohmann::json merge_coefficients_json(CausalLMImpl& model, const MergeConfig& config);

// A dense checkpoint of the base architecture: every merged layer's W as
// model.layers.L.mlp.{gate,up,down}_proj.weight, everything else copied; config without `moe`.
// Sharded: collective, every rank calls it and rank 0 writes.
void export_merged(CausalLMImpl& model, const std::string& dir, torch::Dtype save_dtype);

}  // namespace xft
