// defines: StepStats (what one optimizer step measured), MetricsLog (metrics.jsonl, one JSON
//          line per logged step, and the live progress line on stderr)
#pragma once
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace xft {

struct StepStats {
  int64_t step = 0, epoch = 0;  // 1-based, after the step
  double loss = 0.0, aux_loss = 0.0, lr = 0.0, grad_norm = 0.0;
  double tokens = 0.0;                           // attended tokens of the step over all ranks
  double seconds = 0.0;                          // wall time of the step
  double elapsed_s = 0.0;                        // of the whole stage, resumed runs included
  int world_size = 0;                            // > 0 under a launcher
  int64_t buckets = -1, buckets_overlapped = 0;  // gradient all-reduce buckets (-1: none)
  nlohmann::json telemetry;                      // an object whose keys join the row (moe_telemetry.h), or null
};

class TensorboardLog;  // src/train/tensorboard_log.h (internal)

class MetricsLog {
 public:
  // On rank 0 (`lead`): a fresh run starts a new file; a run resumed at `resumed_step` keeps
  // the lines of steps <= resumed_step, so the curve continues. Elsewhere it writes nothing.
  // A non-empty `tensorboard_dir` also gets every row as TensorBoard scalars, resumed alike.
  MetricsLog(const std::string& stage_dir, std::string stage, int64_t total_steps, bool lead, int64_t resumed_step,
             const std::string& tensorboard_dir = "");
  ~MetricsLog();
  // One JSON line, and the progress line with tokens/s and ETA (ETA from `per_step_s`).
  void write(const StepStats& s, double per_step_s);

 private:
  std::string stage_;
  int64_t total_steps_;
  bool lead_, tty_;
  std::string path_;
  std::ofstream file_;
  std::unique_ptr<TensorboardLog> tensorboard_;
};

}  // namespace xft
