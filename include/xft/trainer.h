// defines: TrainConfig, Trainer (one training stage: optimizer, schedule, accumulation,
//          precision, metrics, progress, atomic checkpoints, exact resume), TrainResult,
//          language_model_loss, evaluate_loss
#pragma once
#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "xft/batcher.h"
#include "xft/checkpoint.h"
#include "xft/distributed.h"
#include "xft/expert_parallel.h"
#include "xft/instruction_data.h"
#include "xft/llama.h"

namespace xft {

struct TrainConfig {
  int64_t epochs = 1;
  int64_t max_steps = -1;          // > 0: stop after this many optimizer steps (overrides epochs)
  int64_t global_batch = 64;       // examples per optimizer step
  int64_t micro_batch = 8;         // examples per forward/backward (global_batch % micro_batch == 0)
  std::string optimizer = "adafactor";  // adafactor (the reference recipe) | adamw
  double lr = 5e-5;
  double weight_decay = 0.0;
  std::string schedule = "linear"; // linear | constant | constant_with_warmup
  int64_t warmup = 0;
  double max_grad_norm = 0.0;      // 0: no clipping (the reference recipe)
  std::string precision = "fp32";  // fp32 | bf16 (bf16 weights) | bf16_autocast (fp32 weights, bf16 compute)
  std::string device = "cpu";      // cpu | cuda | cuda:N
  int64_t save_every = 0;          // optimizer steps between checkpoints (0: only at the end)
  int64_t keep_last = 2;           // checkpoints kept
  int64_t log_every = 1;
  bool group_by_length = false;
  uint64_t seed = 42;

  static TrainConfig from_json(const nlohmann::json& j, const std::string& source);
  nlohmann::json to_json() const;
};

struct TrainResult {
  int64_t steps = 0;
  double final_loss = 0.0;  // mean of the last logged step
};

// Called after every optimizer step with (steps done, total steps): EWA's averaging lives here.
using AfterStep = std::function<void(int64_t step, int64_t total)>;

class Trainer {
 public:
  // `trainable`: the parameters to train, under their module names (they are what checkpoints
  // hold; frozen parameters come from the stage's input). The model is moved to the device
  // and precision of `config` by the caller (see prepare_model).
  Trainer(std::string name, CausalLM model, NamedTensors trainable, const InstructionDataset& data,
          TrainConfig config, std::string stage_dir, int64_t pad_id);
  void set_after_step(AfterStep hook) { after_step_ = std::move(hook); }
  // Data parallel over dist's world (and expert parallel when `sharding` is set, the model's
  // expert stacks already split by shard_experts): each rank runs its share of every global
  // batch's micro-batches, gradients are all-reduced, rank 0 alone writes metrics and
  // checkpoints (whole tensors, whatever the layout). Every rank calls run().
  void set_parallel(std::shared_ptr<const Distributed> dist, std::shared_ptr<const ExpertSharding> sharding = nullptr) {
    dist_ = std::move(dist);
    sharding_ = std::move(sharding);
  }
  // Trains to the end. With resume, continues from the newest checkpoint in stage_dir, if any;
  // without it, an existing checkpoint is an error (no silent overwrite of a run).
  TrainResult run(bool resume);
  int64_t total_steps() const { return total_steps_; }

 private:
  void save_checkpoint(int64_t step, class Optimizer& opt, class BatchSampler& sampler, double elapsed);
  int64_t load_checkpoint(class Optimizer& opt, class BatchSampler& sampler, double* elapsed);
  void broadcast_parameters();
  void verify_replicas(int64_t step);
  double clip_and_norm();
  bool lead() const { return dist_->is_lead(); }

  std::string name_;
  CausalLM model_;
  NamedTensors trainable_;
  const InstructionDataset& data_;
  TrainConfig config_;
  std::string dir_;
  int64_t pad_id_;
  int64_t total_steps_ = 0;
  AfterStep after_step_;
  std::shared_ptr<const Distributed> dist_ = std::make_shared<Distributed>();
  std::shared_ptr<const ExpertSharding> sharding_;
};

// Moves the model to config.device and config.precision's weight dtype.
void prepare_model(CausalLMImpl& model, const TrainConfig& config);

// Sum of token cross-entropies (labels -100 ignored; position t predicts label t+1) and the count.
std::pair<torch::Tensor, int64_t> language_model_loss(const torch::Tensor& logits, const torch::Tensor& labels);

// Mean cross-entropy per response token over `data`, in eval mode without gradients.
double evaluate_loss(CausalLMImpl& model, const InstructionDataset& data, int64_t batch_size, int64_t pad_id,
                     const std::string& precision = "fp32");

}  // namespace xft
