// defines: TrainStep (forward and backward of one global batch over this rank's micro-batches)
//
// Internal to the trainer. Loss (train_config.h loss_reduction): "token", the mean cross-entropy
// over the global batch's response tokens: each micro-batch adds its token sum divided by the
// global count; "micro_batch", each micro-batch adds its own token mean divided by the number of
// micro-batches of a step. Either way accumulation and the split over ranks change nothing (the
// ranks' gradients are summed). Every rank holds the data,
// so each counts the global tokens itself and collates only its own micro-batches, a contiguous
// block of the single-process run's.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "distributed/grad_reducer.h"
#include "xft/data/batcher.h"
#include "xft/data/instruction_data.h"
#include "xft/model/llama.h"
#include "xft/train/metrics_log.h"
#include "xft/train/train_config.h"

namespace xft {

class TrainStep {
 public:
  // `lockstep`: every rank runs the same number of passes (collectives in the forward, the expert
  // all-to-all or the sharded merge's all-reduce, need all of them); a rank short of
  // micro-batches repeats one with zero weight. `reducer` may be null.
  // `packing_row_length` > 0: micro-batches are packed into rows of that many tokens (data/packing.h).
  TrainStep(std::string stage, std::string stage_dir, CausalLM model, const InstructionDataset& data,
            const TrainConfig& config, int64_t pad_id, std::shared_ptr<const Distributed> dist, bool lockstep,
            GradReducer* reducer, int64_t packing_row_length = 0);

  // Accumulates the gradients of global batch `indices` (step `step`, 0-based, of epoch
  // `epoch`) and returns loss, aux loss and tokens over all ranks. A non-finite loss on any rank
  // stops every rank with an error naming the step, the micro-batch and its examples.
  StepStats run(const std::vector<int64_t>& indices, int64_t step, int64_t epoch);

 private:
  // This rank's micro-batches of one step. The losses stay on the device until the step is
  // done: run() reads them in one transfer (a read per micro-batch would sync the GPU each time).
  struct Pass {
    std::vector<torch::Tensor> loss, aux;  // per micro-batch, detached fp64 scalars (aux 0 without one)
    double tokens = 0.0;
    int64_t first_micro_batch = 0;  // the global index of loss[0]
  };
  Pass backward_passes(const std::vector<int64_t>& indices);
  Batch collate_micro_batch(const std::vector<int64_t>& indices) const;
  std::string describe_bad(double loss, const std::vector<int64_t>& indices, int64_t m, int64_t M, int64_t step,
                           int64_t epoch) const;

  std::string stage_, dir_;
  CausalLM model_;
  const InstructionDataset& data_;
  TrainConfig config_;
  int64_t pad_id_;
  std::shared_ptr<const Distributed> dist_;
  bool lockstep_;
  GradReducer* reducer_;
  int64_t packing_row_length_;
};

}  // namespace xft
