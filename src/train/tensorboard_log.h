// defines: TensorboardLog (a stage's metrics rows as live TensorBoard scalars), tensorboard_scalars
//
// The tags, as scripts/plot_run.py --tensorboard names them from metrics.jsonl afterwards:
//   loss, aux_loss, lr, grad_norm, tokens_per_s
//   moe/layer<L>/entropy, moe/layer<L>/shared_weight, moe/layer<L>/aux_loss,
//   moe/layer<L>/load_expert<E>           (MoE stages, moe_telemetry.h)
//   merge/layer<L>/expert<E>              (the merge stage's mixing coefficients)
//
// Resuming: a resumed stage's metrics.jsonl keeps the rows of steps up to its checkpoint (those
// a stopped run logged after it are dropped, their steps are trained again). The event files
// follow it: the stage's directory starts over with one new file holding those kept rows, then
// the live ones, so every step shows once and a run restarted from an older checkpoint does not
// leave its abandoned steps behind in the curves. The kept rows' wall times are reconstructed
// from their elapsed_s (training time, not the dates the first run wrote them).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "train/tensorboard_writer.h"

namespace xft {

// The scalars of one metrics row under the tags above (keys a row lacks give no tag).
Scalars tensorboard_scalars(const nlohmann::json& row);

class TensorboardLog {
 public:
  // Removes the event files an earlier run left in `dir` (created if missing) and starts a new
  // one holding `kept_rows` (the metrics rows a resumed stage keeps; empty for a fresh one).
  TensorboardLog(const std::string& dir, const std::vector<nlohmann::json>& kept_rows);
  void write(const nlohmann::json& row);

 private:
  std::unique_ptr<TensorboardWriter> writer_;
};

}  // namespace xft
