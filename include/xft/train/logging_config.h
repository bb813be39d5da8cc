// defines: LoggingConfig (the "logging" section of an experiment config: where a run's curves go
//          besides each stage's metrics.jsonl)
//
// {"tensorboard": "runs/tb"}
//   tensorboard  a directory (relative: to the working directory); empty: none (the default).
//                Rank 0 of every training stage writes its logged steps there as TensorBoard
//                scalars while it trains, flushed at each step, in a subdirectory named after the
//                stage's directory under run_dir ('/' as '_': sft, xft_moe, xft_merge, ewa, as
//                scripts/plot_run.py --tensorboard names them), so `tensorboard --logdir DIR`
//                shows each stage as its own run, live. The tags and what a resumed stage does
//                to the steps already written: src/train/tensorboard_log.h.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

namespace xft {

struct LoggingConfig {
  std::string tensorboard;

  static LoggingConfig from_json(const nlohmann::json& j, const std::string& source);
  nlohmann::json to_json() const;
  // The event directory of the stage writing to `stage_dir` in the run at `run_dir`; "" when
  // tensorboard is off.
  std::string tensorboard_dir(const std::string& run_dir, const std::string& stage_dir) const;
};

}  // namespace xft
