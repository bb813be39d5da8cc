// defines: Trainer (one training stage, its loop on one page), TrainResult, AfterStep
//
// The parts, each in its own file and testable alone:
//   train_config.h   the stage's settings          loss.h          the LM loss, held-out loss
//   optimizer.h      AdamW, Adafactor               lr_schedule.h   warmup + decay
//   precision.h      bf16 weights / autocast        resume_state.h  checkpoints, exact resume
//   metrics_log.h    metrics.jsonl + progress       src/train/train_step.h    one global batch
//   src/train/data_parallel.h  broadcast, all-reduce, global norm, replica check
#pragma once
#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "xft/core/named_tensors.h"
#include "xft/data/instruction_data.h"
#include "xft/distributed/expert_sharding.h"
#include "xft/model/llama.h"
#include "xft/train/loss.h"
#include "xft/train/precision.h"
#include "xft/train/train_config.h"

namespace xft {

struct TrainResult {
  int64_t steps = 0;
  double final_loss = 0.0;  // loss of the last step
};

// Called after every optimizer step with (steps done, total steps): EWA's averaging lives here.
using AfterStep = std::function<void(int64_t step, int64_t total)>;
// Called on every rank at each logged step; its JSON object joins the metrics row (routing
// statistics of the MoE stage, the merge coefficients). May run collectives.
using Telemetry = std::function<nlohmann::json()>;

class Trainer {
 public:
  // `trainable`: the parameters to train, under their module names (they are what checkpoints
  // hold; frozen parameters come from the stage's input). The model is moved to the device
  // and precision of `config` by the caller (see prepare_model).
  Trainer(std::string name, CausalLM model, NamedTensors trainable, const InstructionDataset& data, TrainConfig config,
          std::string stage_dir, int64_t pad_id);
  void set_after_step(AfterStep hook) { after_step_ = std::move(hook); }
  void set_telemetry(Telemetry telemetry) { telemetry_ = std::move(telemetry); }
  // Data parallel over dist's world (and expert parallel when `sharding` is set, the model's
  // expert stacks already split by shard_experts): each rank runs its share of every global
  // batch's micro-batches, gradients are all-reduced, rank 0 alone writes metrics and
  // checkpoints (whole tensors, whatever the layout). Every rank calls run().
  void set_parallel(std::shared_ptr<const Distributed> dist, std::shared_ptr<const ExpertSharding> sharding = nullptr) {
    dist_ = std::move(dist);
    sharding_ = std::move(sharding);
  }
  // Every rank runs the same number of forward/backward passes per step (a rank short of
  // micro-batches repeats one at zero weight): needed when the forward itself communicates, as
  // the sharded merge's does. Expert parallelism implies it.
  void set_lockstep(bool lockstep) { lockstep_ = lockstep; }
  // data.packing: each micro-batch's examples packed into rows of at most `row_length` tokens
  // (data/packing.h; the config's data.max_length). 0: one example per row (the default).
  void set_packing(int64_t row_length) { packing_row_length_ = row_length; }
  // logging.tensorboard: rank 0 also writes every logged step as TensorBoard scalars under
  // `dir` (src/train/tensorboard_log.h), flushed at each step. Empty: none (the default).
  void set_tensorboard(std::string dir) { tensorboard_dir_ = std::move(dir); }
  // Trains to the end. With resume, continues from the newest checkpoint in stage_dir, if any;
  // without it, an existing checkpoint is an error (no silent overwrite of a run).
  TrainResult run(bool resume);
  int64_t total_steps() const { return total_steps_; }

 private:
  std::string name_;
  CausalLM model_;
  NamedTensors trainable_;
  const InstructionDataset& data_;
  TrainConfig config_;
  std::string dir_;
  int64_t pad_id_;
  int64_t total_steps_ = 0;
  int64_t packing_row_length_ = 0;
  std::string tensorboard_dir_;
  bool lockstep_ = false;
  AfterStep after_step_;
  Telemetry telemetry_;
  std::shared_ptr<const Distributed> dist_ = std::make_shared<Distributed>();
  std::shared_ptr<const ExpertSharding> sharding_;
};

}  // namespace xft
