// defines: ResumeState (a training stage's checkpoints: save, find, restore exactly)
//
// A checkpoint is <stage_dir>/checkpoints/step-NNNNNNNN/, written whole or not at all:
//   trainable.safetensors  the trained tensors, whole whatever the expert layout
//   optimizer.safetensors  the optimizer state (whole stacks too)
//   rng.safetensors        every rank's CPU generator ("cpu", "cpu.rank1", ...)
//   trainer.json           stage, step, epoch, sampler position, elapsed time, config, world size
//   checksums.json         size and CRC32 of each file above (core/manifest.h)
// The newest keep_last are kept. Restoring puts back the parameters, the optimizer, the RNG and
// the sampler position, so a resumed run continues the interrupted one exactly. A checkpoint
// whose files disagree with its checksums is reported on stderr and skipped for the newest
// intact one; one written before checksums existed is trusted as it is.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "xft/core/named_tensors.h"
#include "xft/data/batcher.h"
#include "xft/distributed/expert_sharding.h"
#include "xft/train/optimizer.h"
#include "xft/train/train_config.h"

namespace xft {

class ResumeState {
 public:
  ResumeState(std::string stage, std::string stage_dir, TrainConfig config, int64_t total_steps,
              std::shared_ptr<const Distributed> dist, std::shared_ptr<const ExpertSharding> sharding);

  // <stage_dir>/checkpoints/step-NNNNNNNN, where save(step, ...) writes.
  std::string path_of(int64_t step) const;
  // Whole checkpoints, oldest first.
  std::vector<std::string> checkpoints() const;
  // Without `resume`, an existing checkpoint is an error (no silent overwrite of a run).
  void refuse_overwrite(bool resume) const;
  // Collective (every rank calls it): gathers expert shards and RNG states; rank 0 writes.
  void save(int64_t step, const NamedTensors& trainable, const Optimizer& opt, const BatchSampler& sampler,
            double elapsed_s) const;
  // Restores the newest intact checkpoint into trainable, opt, the RNG and sampler; returns its
  // step (0 when there is none) and its elapsed time in *elapsed_s. Every one damaged is an error.
  int64_t restore(const NamedTensors& trainable, Optimizer& opt, BatchSampler& sampler, double* elapsed_s) const;
  // What is wrong with a checkpoint directory's files ("" when whole or unverifiable).
  static std::string damage(const std::string& checkpoint);

 private:
  int64_t restore_from(const std::string& checkpoint, const NamedTensors& trainable, Optimizer& opt,
                       BatchSampler& sampler, double* elapsed_s) const;
  // After saving `saved` (a step-NNNNNNNN name): drops newer, damaged ones and all but keep_last.
  void prune(const std::string& saved) const;
  std::string stage_, dir_;
  TrainConfig config_;
  int64_t total_steps_;
  std::shared_ptr<const Distributed> dist_;
  std::shared_ptr<const ExpertSharding> sharding_;
};

}  // namespace xft
