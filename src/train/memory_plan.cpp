#include "xft/train/memory_plan.h"

#include <vector>

#include "xft/core/error.h"

namespace xft {

namespace {

// Weights of one shape: `count` tensors of [stack, rows, cols] (cols 0: a vector of rows).
struct Weights {
  double count, stack, rows, cols;
  bool trainable;
  double elements() const { return count * stack * rows * (cols > 0 ? cols : 1); }
  // Adafactor's fp32 state: the row and column means of each matrix, a full vector otherwise.
  double adafactor_elements() const { return cols > 0 ? count * stack * (rows + cols) : elements(); }
};

// Everything but the FFNs: embeddings, attention, norms, head.
std::vector<Weights> trunk(const ModelConfig& c, bool trainable) {
  const double D = static_cast<double>(c.hidden_size), L = static_cast<double>(c.num_hidden_layers);
  const double q = static_cast<double>(c.num_attention_heads * c.head_dim);
  const double kv = static_cast<double>(c.num_key_value_heads * c.head_dim);
  const double norms = c.use_parallel_residual ? 1 : 2;
  const double norm_tensors = c.norm_kind() == NormKind::kLayerNorm ? 2 : 1;
  std::vector<Weights> w = {{1, 1, static_cast<double>(c.vocab_size), D, trainable},
                            {L, 1, q, D, trainable},
                            {2 * L, 1, kv, D, trainable},
                            {L, 1, D, q, trainable},
                            {L * norms * norm_tensors + norm_tensors, 1, D, 0, trainable}};
  if (!c.tie_word_embeddings) w.push_back({1, 1, static_cast<double>(c.vocab_size), D, trainable});
  if (c.qkv_bias()) w.push_back({L, 1, q + 2 * kv, 0, trainable});
  return w;
}

double bytes_of_compute(Precision p) { return p == Precision::kFp32 ? 4.0 : 2.0; }

// Elements a layer keeps per token for its backward, attention and norms (no FFN): two norms'
// inputs and outputs, q after RoPE, k and v (repeated to every head under GQA), the attention
// output and the o_proj input.
double attention_saved(const ModelConfig& c) {
  const double D = static_cast<double>(c.hidden_size);
  const double q = static_cast<double>(c.num_attention_heads * c.head_dim);
  const double kv =
      c.num_key_value_heads == c.num_attention_heads ? static_cast<double>(c.num_key_value_heads * c.head_dim) : q;
  return 4 * D + 3 * q + 2 * kv;
}

struct Activations {
  double layer = 0;  // bytes per token of one layer
  double head = 0;   // bytes per token of the final norm, the logits, the loss and the first backward transients
};

Activations activations_per_token(const MemoryPlanInput& in) {
  const auto& c = in.dense;
  const double a = bytes_of_compute(in.train.precision);
  const double D = static_cast<double>(c.hidden_size), F = static_cast<double>(c.intermediate_size);
  const double V = static_cast<double>(c.vocab_size);
  // SwiGLU: gate, silu(gate), up, their product (the down_proj input).
  double ffn = 4 * F * a;
  if (in.kind == StageKind::kMoe) {
    const auto& m = *in.moe;
    const double slots = static_cast<double>(m.top_k);  // the shared expert's slot included
    // Per slot: the gathered input row, the SwiGLU tensors, and the fp32 output the weighting keeps.
    ffn = slots * ((4 * F + D) * a + 4 * D) + 4 * static_cast<double>(m.num_routed()) * 4;
  }
  Activations out;
  out.layer = attention_saved(c) * a + ffn;
  // Final norm (input and output) and the fp32 log-softmax the loss keeps; at the start of the
  // backward the loss's gradient, the log-softmax backward's temporary and its result (fp32),
  // and the logits' gradient at the compute width when that is not fp32.
  out.head = 2 * D * a + 4 * V * 4 + (a < 4 ? V * a : 0);
  return out;
}

}  // namespace

StageMemory plan_stage_memory(const MemoryPlanInput& in) {
  const auto& c = in.dense;
  XFT_CHECK(in.kind == StageKind::kDense || in.moe.has_value(),
            "memory plan: an MoE or merge stage needs the moe section");
  XFT_CHECK(in.expert_parallel >= 1, "memory plan: expert_parallel must be >= 1, got ", in.expert_parallel);
  XFT_CHECK(in.merge_shards >= 1, "memory plan: merge_shards must be >= 1, got ", in.merge_shards);
  const double w = in.train.precision == Precision::kBf16 ? 2.0 : 4.0;
  const double D = static_cast<double>(c.hidden_size), F = static_cast<double>(c.intermediate_size);
  const double L = static_cast<double>(c.num_hidden_layers);
  auto weights = trunk(c, in.kind != StageKind::kMerge);
  StageMemory s;
  if (in.kind == StageKind::kDense) {
    weights.push_back({3 * L, 1, F, D, true});
  } else {
    const auto& m = *in.moe;
    const double R = static_cast<double>(m.num_routed());
    if (in.kind == StageKind::kMoe) {
      const double local = (m.shared_expert ? 1 : 0) +
                           static_cast<double>((m.num_routed() + in.expert_parallel - 1) / in.expert_parallel);
      weights.push_back({3 * L, local, F, D, true});
      weights.push_back({L, 1, R, D, true});  // the router (linear, or the MLP's first matrix)
      if (m.router == RouterKind::kMlp) weights.push_back({L, 1, R, R, true});
      if (m.router_noise) weights.push_back({L, 1, R, D, true});
    } else {
      weights.push_back({L, 1, static_cast<double>(m.num_experts), 0, true});  // the merge logits
      // Frozen stacks (this rank's block when sharded: the busiest holds ceil(N / shards)), and
      // each layer's merged fp32 W (kept for the backward).
      const double held = static_cast<double>((m.num_experts + in.merge_shards - 1) / in.merge_shards);
      s.expert_stacks = L * 3 * held * F * D * static_cast<double>(in.stack_bytes) + L * 3 * F * D * 4;
    }
  }
  for (const auto& t : weights) {
    s.parameters += t.elements() * w;
    if (!t.trainable) continue;
    s.gradients += t.elements() * w;
    s.optimizer += (in.train.optimizer == OptimizerKind::kAdamW ? 2 * t.elements() : t.adafactor_elements()) * 4;
  }
  const double tokens = static_cast<double>(in.train.micro_batch * in.max_length);
  const auto act = activations_per_token(in);
  const double a = bytes_of_compute(in.train.precision);
  s.activations = tokens * (L * act.layer + act.head);
  s.layer_activations = tokens * act.layer;
  s.layer_inputs = tokens * L * D * a;
  s.activations_checkpointed = s.layer_inputs + tokens * act.head;
  return s;
}

}  // namespace xft
