// defines: TrainConfig (one training section: sft_train, moe_train, merge_train, ewa_train),
//          OptimizerKind, Precision
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "xft/train/lr_schedule.h"

namespace xft {

enum class OptimizerKind { kAdafactor, kAdamW };  // "adafactor" (the reference recipe) | "adamw"
// "fp32" | "bf16" (bf16 weights) | "bf16_autocast" (fp32 weights, bf16 compute, as the
// reference merge stage runs)
enum class Precision { kFp32, kBf16, kBf16Autocast };
// How micro-batch losses make the step's loss:
//   "token"       the mean over every response token of the global batch (each token weighs the same);
//   "micro_batch" the token mean within each micro-batch, then the mean over the step's
//                 micro-batches (divided by global_batch / micro_batch, as the Hugging Face Trainer
//                 the authors used divides by its accumulation steps; ranks are averaged the same
//                 way), so every micro-batch weighs the same whatever its length.
enum class LossReduction { kToken, kMicroBatch };
const char* to_string(LossReduction reduction);
const char* to_string(OptimizerKind kind);
const char* to_string(Precision precision);

struct TrainConfig {
  int64_t epochs = 1;
  int64_t max_steps = -1;     // > 0: stop after this many optimizer steps (overrides epochs)
  int64_t global_batch = 64;  // examples per optimizer step
  int64_t micro_batch = 8;    // examples per forward/backward (global_batch % micro_batch == 0)
  LossReduction loss_reduction = LossReduction::kToken;
  OptimizerKind optimizer = OptimizerKind::kAdafactor;
  double lr = 5e-5;
  double weight_decay = 0.0;
  ScheduleKind schedule = ScheduleKind::kLinear;  // "linear" | "constant" | "constant_with_warmup"
  int64_t warmup = 0;
  double max_grad_norm = 0.0;  // 0: no clipping (the reference recipe)
  Precision precision = Precision::kFp32;
  std::string device = "cpu";  // cpu | cuda | cuda:N
  int64_t save_every = 0;      // optimizer steps between checkpoints (0: only at the end)
  int64_t keep_last = 2;       // checkpoints kept
  int64_t log_every = 1;
  bool group_by_length = false;
  // Recompute each decoder layer's forward in the backward instead of keeping its activations
  // (model/activation_checkpoint.h): same loss and gradients, less memory, about one more forward.
  bool activation_checkpointing = false;
  // AdamW as one fused kernel per parameter (torch's _fused_adamw_, what torch.optim.AdamW(fused=True)
  // runs) instead of the single-tensor op sequence: the same update up to rounding, several times
  // fewer passes over the optimizer state. Off: bitwise torch's default AdamW.
  bool fused_optimizer = false;
  uint64_t seed = 42;

  // `section` names it in messages ("sft_train", ...). Unknown keys, wrong types and values
  // outside an enum are errors naming the file and the field; the result is validated.
  static TrainConfig from_json(const nlohmann::json& j, const std::string& source,
                               const std::string& section = "training");
  nlohmann::json to_json() const;
  void validate(const std::string& where) const;
};

}  // namespace xft
