#include "xft/train/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "xft/core/error.h"

namespace xft {

const char* to_string(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::kLinear: return "linear";
    case ScheduleKind::kConstant: return "constant";
    case ScheduleKind::kConstantWithWarmup: return "constant_with_warmup";
  }
  return "?";
}

void LrSchedule::validate() const {
  XFT_CHECK(warmup >= 0, "lr schedule: warmup must be >= 0, got ", warmup);
  XFT_CHECK(total >= 1, "lr schedule: total must be >= 1, got ", total);
  XFT_CHECK(std::isfinite(peak) && peak >= 0, "lr schedule: peak must be finite and >= 0, got ", peak);
}

double LrSchedule::at(int64_t step) const {
  validate();
  XFT_CHECK(step >= 0, "lr schedule: step must be >= 0, got ", step);
  // transformers/optimization.py lr lambdas, in doubles like Python's float(); LambdaLR then
  // multiplies base_lr * factor.
  double factor = 1.0;
  if (kind != ScheduleKind::kConstant && step < warmup) {
    factor = static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warmup));
  } else if (kind == ScheduleKind::kLinear) {
    const auto decay_steps = static_cast<double>(std::max<int64_t>(1, total - warmup));
    factor = std::max(0.0, static_cast<double>(total - step) / decay_steps);
  }
  return peak * factor;
}

}  // namespace xft
