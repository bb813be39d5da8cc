#include "xft/train/train_config.h"

#include "core/config_reader.h"
#include "xft/core/error.h"

namespace xft {

namespace {

const EnumNames<OptimizerKind> kOptimizerNames = {{"adafactor", OptimizerKind::kAdafactor},
                                                  {"adamw", OptimizerKind::kAdamW}};
const EnumNames<Precision> kPrecisionNames = {
    {"fp32", Precision::kFp32}, {"bf16", Precision::kBf16}, {"bf16_autocast", Precision::kBf16Autocast}};
const EnumNames<LossReduction> kReductionNames = {{"token", LossReduction::kToken},
                                                  {"micro_batch", LossReduction::kMicroBatch}};
const EnumNames<ScheduleKind> kScheduleNames = {{"linear", ScheduleKind::kLinear},
                                                {"constant", ScheduleKind::kConstant},
                                                {"constant_with_warmup", ScheduleKind::kConstantWithWarmup}};

const ConfigReader<TrainConfig>& train_reader() {
  static const ConfigReader<TrainConfig> r =
      ConfigReader<TrainConfig>("training")
          .field("epochs", &TrainConfig::epochs)
          .field("max_steps", &TrainConfig::max_steps)
          .field("global_batch", &TrainConfig::global_batch)
          .field("micro_batch", &TrainConfig::micro_batch)
          .field("loss_reduction", &TrainConfig::loss_reduction, kReductionNames)
          .field("optimizer", &TrainConfig::optimizer, kOptimizerNames)
          .field("lr", &TrainConfig::lr)
          .field("weight_decay", &TrainConfig::weight_decay)
          .field("schedule", &TrainConfig::schedule, kScheduleNames)
          .field("warmup", &TrainConfig::warmup)
          .field("max_grad_norm", &TrainConfig::max_grad_norm)
          .field("precision", &TrainConfig::precision, kPrecisionNames)
          .field("device", &TrainConfig::device)
          .field("save_every", &TrainConfig::save_every)
          .field("keep_last", &TrainConfig::keep_last)
          .field("log_every", &TrainConfig::log_every)
          .field("group_by_length", &TrainConfig::group_by_length)
          .field("activation_checkpointing", &TrainConfig::activation_checkpointing)
          .field("fused_optimizer", &TrainConfig::fused_optimizer)
          .field("seed", &TrainConfig::seed);
  return r;
}

}  // namespace

const char* to_string(OptimizerKind kind) { return enum_name(kOptimizerNames, kind); }
const char* to_string(Precision precision) { return enum_name(kPrecisionNames, precision); }
const char* to_string(LossReduction reduction) { return enum_name(kReductionNames, reduction); }

TrainConfig TrainConfig::from_json(const nlohmann::json& j, const std::string& source, const std::string& section) {
  TrainConfig c = train_reader().read(j, source, TrainConfig{}, section);
  c.validate(source + ": " + section);
  return c;
}

nlohmann::json TrainConfig::to_json() const { return train_reader().write(*this); }

void TrainConfig::validate(const std::string& where) const {
  XFT_CHECK(global_batch > 0 && micro_batch > 0 && global_batch % micro_batch == 0, where, ": global_batch (",
            global_batch, ") must be a positive multiple of micro_batch (", micro_batch, ")");
  XFT_CHECK(epochs > 0 || max_steps > 0, where, ": epochs or max_steps must be positive");
  XFT_CHECK(warmup >= 0, where, ": warmup must be >= 0, got ", warmup);
  XFT_CHECK(lr >= 0, where, ": lr must be >= 0, got ", lr);
  XFT_CHECK(keep_last >= 1, where, ": keep_last must be >= 1");
  XFT_CHECK(log_every >= 1, where, ": log_every must be >= 1");
}

}  // namespace xft
