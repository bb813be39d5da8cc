// defines: LrSchedule
//
// The learning-rate schedules of transformers.get_scheduler that XFT's recipes use, with the
// Trainer's convention: the optimizer step with 0-based index s runs at lr = peak * factor(s),
// so the very first step runs at factor(0) (0 when there is warmup).
#pragma once
#include <cstdint>
#include <string>

namespace xft {

enum class ScheduleKind {
  kLinear,              // "linear"  get_linear_schedule_with_warmup:
                        //   s < warmup ? s / max(1, warmup) : max(0, (total - s) / max(1, total - warmup))
  kConstant,            // "constant"  get_constant_schedule: 1
  kConstantWithWarmup,  // "constant_with_warmup"  get_constant_schedule_with_warmup: s < warmup ? s / max(1, warmup) :
                        // 1
};
const char* to_string(ScheduleKind kind);

struct LrSchedule {
  ScheduleKind kind = ScheduleKind::kLinear;
  int64_t warmup = 0;
  int64_t total = 1;  // number of optimizer steps in the run
  double peak = 5e-5;

  // lr for optimizer step `step` (>= 0; past `total` the linear schedule stays at 0).
  double at(int64_t step) const;
  // Throws xft::Error for warmup < 0, total < 1, or a negative/non-finite peak.
  void validate() const;
};

}  // namespace xft
