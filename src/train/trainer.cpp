#include "xft/train/trainer.h"

#include <chrono>
#include <filesystem>

#include "train/data_parallel.h"
#include "train/train_step.h"
#include "xft/core/error.h"
#include "xft/train/lr_schedule.h"
#include "xft/train/metrics_log.h"
#include "xft/train/optimizer.h"
#include "xft/train/resume_state.h"
#include "xft/train/step_profiler.h"
#include "xft/train/stop_signal.h"

namespace fs = std::filesystem;

namespace xft {

namespace {

std::unique_ptr<Optimizer> make_optimizer(const TrainConfig& c, const NamedTensors& params) {
  // Biases and norms are exempt from weight decay, as in the Hugging Face Trainer.
  std::vector<std::string> no_decay;
  for (const auto& [n, _] : params)
    if (!hf_applies_weight_decay(n)) no_decay.push_back(n);
  if (c.optimizer == OptimizerKind::kAdamW) {
    AdamWOptions o;
    o.lr = c.lr;
    o.weight_decay = c.weight_decay;
    o.no_decay = no_decay;
    o.fused = c.fused_optimizer;
    return make_adamw(params, o);
  }
  AdafactorOptions o;
  o.lr = c.lr;
  o.weight_decay = c.weight_decay;
  o.no_decay = no_decay;
  return make_adafactor(params, o);
}

BatchSampler make_sampler(const InstructionDataset& data, const TrainConfig& c) {
  std::vector<int64_t> lengths;
  for (size_t i = 0; i < data.size(); ++i) lengths.push_back(static_cast<int64_t>(data[i].input_ids.size()));
  return BatchSampler(lengths, c.global_batch, c.seed, c.group_by_length, /*drop_last=*/false);
}

// Wall time of the stage, the interrupted runs' included.
class StageClock {
 public:
  StageClock(double before_s, int64_t first_step) : before_s_(before_s), first_step_(first_step) {}
  double elapsed_s() const { return before_s_ + since(start_); }
  double per_step_s(int64_t step) const { return since(start_) / std::max<int64_t>(1, step - first_step_); }
  void start_step() { step_start_ = now(); }
  double step_s() const { return since(step_start_); }

 private:
  using Clock = std::chrono::steady_clock;
  static Clock::time_point now() { return Clock::now(); }
  static double since(Clock::time_point t) { return std::chrono::duration<double>(now() - t).count(); }
  double before_s_;
  int64_t first_step_;
  Clock::time_point start_ = now(), step_start_ = now();
};

std::string stop_message(const std::string& stage, int64_t step, int64_t total, const std::string& checkpoint) {
  const int sig = StopSignals::received();
  return stage + ": stopped by " + (sig != 0 ? signal_name(sig) : "a signal to another rank") + " after step " +
         std::to_string(step) + " of " + std::to_string(total) + "; checkpoint " + checkpoint +
         " holds it: rerun with --resume to continue";
}

}  // namespace

Trainer::Trainer(std::string name, CausalLM model, NamedTensors trainable, const InstructionDataset& data,
                 TrainConfig config, std::string stage_dir, int64_t pad_id)
    : name_(std::move(name)),
      model_(std::move(model)),
      trainable_(std::move(trainable)),
      data_(data),
      config_(std::move(config)),
      dir_(std::move(stage_dir)),
      pad_id_(pad_id) {
  XFT_CHECK(!trainable_.empty(), name_, ": nothing to train");
  XFT_CHECK(data_.size() > 0, name_, ": the training data set is empty");
  const int64_t per_epoch =
      (static_cast<int64_t>(data_.size()) + config_.global_batch - 1) / config_.global_batch;  // last partial kept
  total_steps_ = config_.max_steps > 0 ? config_.max_steps : per_epoch * config_.epochs;
}

TrainResult Trainer::run(bool resume) {
  const StopSignals stop;  // from here a signal waits for the step in progress
  if (dist_->is_lead()) fs::create_directories(dir_);
  const ResumeState checkpoints(name_, dir_, config_, total_steps_, dist_, sharding_);
  checkpoints.refuse_overwrite(resume);
  BatchSampler sampler = make_sampler(data_, config_);
  auto opt = make_optimizer(config_, trainable_);
  const LrSchedule schedule{config_.schedule, config_.warmup, total_steps_, config_.lr};
  schedule.validate();
  // Each rank its own stream of training-time randomness (noisy routing); rank 0's is the
  // single-process run's.
  if (checkpoints.checkpoints().empty()) torch::manual_seed(config_.seed + static_cast<uint64_t>(dist_->rank()));
  double elapsed = 0.0;
  int64_t step = resume ? checkpoints.restore(trainable_, *opt, sampler, &elapsed) : 0;
  const DataParallel parallel(trainable_, dist_, sharding_);
  if (step == 0) parallel.broadcast_parameters();
  MetricsLog log(dir_, name_, total_steps_, dist_->is_lead(), step, tensorboard_dir_);
  TrainStep train_step(name_, dir_, model_, data_, config_, pad_id_, dist_, lockstep_ || sharding_ != nullptr,
                       parallel.reducer(), packing_row_length_);
  model_->set_activation_checkpointing(config_.activation_checkpointing);
  StageClock clock(elapsed, step);
  model_->train();
  StepStats stats;
  StepProfiler profiler(name_);
  while (step < total_steps_) {
    profiler.before_step(step);
    clock.start_step();
    const int64_t epoch = sampler.epoch();
    const auto indices = sampler.next();
    opt->set_lr(schedule.at(step));
    opt->zero_grad();
    stats = train_step.run(indices, step, epoch);
    stats.grad_norm = parallel.clip_and_norm(config_.max_grad_norm);
    opt->step();
    ++step;
    profiler.after_step(step);
    if (after_step_) after_step_(step, total_steps_);
    stats.lr = schedule.at(step - 1);
    stats.seconds = clock.step_s();
    stats.elapsed_s = clock.elapsed_s();
    if (step % config_.log_every == 0 || step == total_steps_) {
      if (telemetry_) stats.telemetry = telemetry_();
      log.write(stats, clock.per_step_s(step));
    }
    // SIGTERM / SIGINT: this step is done; checkpoint it and stop (every rank at the same step).
    const bool stopping = stop.requested(*dist_);
    if ((config_.save_every > 0 && step % config_.save_every == 0) || step == total_steps_ || stopping)
      checkpoints.save(step, trainable_, *opt, sampler, stats.elapsed_s);
    if (stopping) stop.stop(stop_message(name_, step, total_steps_, checkpoints.path_of(step)));
  }
  parallel.verify_replicas(name_, step);
  return {step, stats.loss};
}

}  // namespace xft
