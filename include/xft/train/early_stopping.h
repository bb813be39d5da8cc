// defines: EarlyStopping, PlateauResult, train_until_plateau (train while the held-out loss
//          improves, keep the best model: how a pretrained base is made, where "pretrained"
//          means trained until more training stops helping)
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "xft/data/instruction_data.h"
#include "xft/model/llama.h"
#include "xft/train/train_config.h"

namespace xft {

struct EarlyStopping {
  int64_t eval_every = 25;   // optimizer steps between held-out evaluations (and checkpoints)
  int64_t patience = 3;      // evaluations without a new best before stopping
  double min_delta = 0.0;    // a new best must be lower than the old by more than this
  int64_t max_steps = 5000;  // stop here in any case
};

struct PlateauResult {
  int64_t best_step = 0, steps = 0;
  double best_loss = 0.0;
  bool plateaued = false;  // false: max_steps ended it
};

// Trains `model` (every parameter) on `data` in rounds of eval_every steps with `train`'s
// optimizer and a schedule that does not depend on the total (constant or constant_with_warmup:
// the total is not known in advance), scores `heldout` after each round and calls save_best
// with the model whenever it reaches a new best. Checkpoints and `stage_dir`/plateau.jsonl (step,
// held-out loss) make it resumable: with resume, it continues where an interrupted call
// stopped and reaches the same result.
PlateauResult train_until_plateau(CausalLM model, const InstructionDataset& data, const InstructionDataset& heldout,
                                  TrainConfig train, const EarlyStopping& stopping, const std::string& stage_dir,
                                  int64_t pad_id, bool resume, const std::function<void(CausalLMImpl&)>& save_best);

}  // namespace xft
