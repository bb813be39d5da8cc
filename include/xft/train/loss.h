// defines: language_model_loss, cross_entropy_sum, scored_labels (summed token cross-entropy
//          over the response tokens),
//          evaluate_loss (held-out mean loss per response token), example_losses
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include <torch/types.h>

#include "xft/data/instruction_data.h"
#include "xft/model/llama.h"
#include "xft/train/train_config.h"

namespace xft {

// Sum of token cross-entropies (labels -100 ignored; position t predicts label t+1) and the count.
std::pair<torch::Tensor, int64_t> language_model_loss(const torch::Tensor& logits, const torch::Tensor& labels);
// The sum alone, with no host read (the count above syncs a GPU): what the trainer takes, counting
// on the host labels it collated.
torch::Tensor cross_entropy_sum(const torch::Tensor& logits, const torch::Tensor& labels);
// The labels a batch's cross_entropy_sum scores (labels [B, T] on any device; position 0 never is).
int64_t scored_labels(const torch::Tensor& labels);

// Mean cross-entropy per response token over `data`, in eval mode without gradients (the
// model's mode comes back afterwards, also on an error).
double evaluate_loss(CausalLMImpl& model, const InstructionDataset& data, int64_t batch_size, int64_t pad_id,
                     Precision precision = Precision::kFp32);

// Each example's mean cross-entropy per response token (examples without one give NaN), in eval
// mode without gradients: what a paired comparison of two models tests.
std::vector<double> example_losses(CausalLMImpl& model, const InstructionDataset& data, int64_t batch_size,
                                   int64_t pad_id, Precision precision = Precision::kFp32);

}  // namespace xft
