// defines: StageKind, MemoryPlanInput, StageMemory, plan_stage_memory (what one rank of a
//          training stage holds: the figures `xft-tool plan` prints)
//
// Bytes per rank, from the shapes alone (nothing is allocated):
//   parameters   every weight the stage's model holds, in the stage's weight dtype (bf16 for
//                precision "bf16", else fp32); expert parallel splits the routed experts
//                (ceil(R / E) per rank) and replicates the rest;
//   gradients    the trainable parameters' gradients, in the weight dtype (alive from the
//                backward to the optimizer step: they count at the backward's end, see step_peak);
//   optimizer    fp32 state: AdamW two moments per trainable weight; Adafactor (no momentum)
//                a row and a column mean per matrix, a full second moment per vector;
//   expert stacks  the merge stage's frozen expert stacks (N x [gate, up, down] per layer, in
//                the saved dtype; ceil(N / merge_shards) experts per rank when the merge is
//                sharded, distributed.shard_merge) and its fp32 merged FFN weights per layer;
//   activations  what a micro-batch of micro_batch x max_length tokens keeps for its backward
//                (a count of the tensors each op saves, at the compute width: 2 bytes under
//                bf16 or autocast, 4 in fp32), plus the loss's fp32 log-softmax and its
//                backward's transients at the head; with activation checkpointing only each
//                layer's input is kept, plus one layer's activations during its recompute.
// Packing does not change the bound: a packed row is at most max_length tokens, and a
// micro-batch has at most micro_batch rows.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "xft/model/config.h"
#include "xft/train/train_config.h"

namespace xft {

enum class StageKind { kDense, kMoe, kMerge };

struct MemoryPlanInput {
  ModelConfig dense;             // the base model (dense shapes)
  std::optional<MoeConfig> moe;  // required for kMoe and kMerge
  TrainConfig train;
  int64_t max_length = 1024;
  StageKind kind = StageKind::kDense;
  int64_t expert_parallel = 1;  // ranks the routed experts are split over (kMoe); any split,
                                // the busiest rank holds ceil(R / expert_parallel)
  int64_t merge_shards = 1;     // ranks the merge's frozen stacks are split over (kMerge)
  int64_t stack_bytes = 2;      // bytes per element of the merge stage's frozen stacks
};

struct StageMemory {
  double parameters = 0, gradients = 0, optimizer = 0, expert_stacks = 0;
  double activations = 0;               // kept at the start of the backward, without activation checkpointing
  double activations_checkpointed = 0;  // the same with it (each layer's input instead of its activations)
  double layer_activations = 0;         // one layer's, the one the end of the backward still holds
  double layer_inputs = 0;              // the layers' inputs checkpointing keeps
  // Live bytes at the worst moment of a step: the start of the backward (activations, no
  // gradient yet: the trainer frees gradients at each step) or its end (every gradient, and the
  // last layer's activations, recomputed under checkpointing while the inputs are still held).
  double step_peak(bool checkpointing) const {
    const double start = checkpointing ? activations_checkpointed : activations;
    const double end = gradients + layer_activations + (checkpointing ? layer_inputs : 0.0);
    return start > end ? start : end;
  }
  // Everything one rank holds at that moment.
  double total(bool checkpointing) const { return parameters + optimizer + expert_stacks + step_peak(checkpointing); }
};

StageMemory plan_stage_memory(const MemoryPlanInput& input);

}  // namespace xft
