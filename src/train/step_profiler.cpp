#include "xft/train/step_profiler.h"

#include <torch/csrc/autograd/profiler_kineto.h>
#include <torch/cuda.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "xft/core/error.h"

namespace xft {

namespace prof = torch::autograd::profiler;
namespace impl = torch::profiler::impl;

StepProfiler::StepProfiler(const std::string& stage) {
  const char* dir = std::getenv("XFT_PROFILE");
  if (!dir || !*dir) return;
  int64_t steps = 3;
  if (const char* s = std::getenv("XFT_PROFILE_STEPS"); s && *s) {
    char* end = nullptr;
    steps = std::strtoll(s, &end, 10);
    XFT_CHECK(end && *end == '\0' && steps >= 1, "XFT_PROFILE_STEPS='", s, "': expected a whole number >= 1");
  }
  std::filesystem::create_directories(dir);
  path_ = (std::filesystem::path(dir) / (stage + ".trace.json")).string();
  last_ = first_ + steps;
}

StepProfiler::~StepProfiler() {
  if (running_) {
    try {
      stop();
    } catch (const std::exception& e) {
      std::cerr << "xft: profiler: " << e.what() << "\n";
    }
  }
}

void StepProfiler::before_step(int64_t step) {
  if (path_.empty() || running_ || step != first_) return;
  std::set<impl::ActivityType> activities{impl::ActivityType::CPU};
  if (torch::cuda::is_available()) activities.insert(impl::ActivityType::CUDA);
  const impl::ProfilerConfig config(impl::ProfilerState::KINETO, /*report_input_shapes=*/true);
  prof::prepareProfiler(config, activities);
  prof::enableProfiler(config, activities);
  running_ = true;
}

void StepProfiler::after_step(int64_t step) {
  if (running_ && step >= last_) stop();
}

void StepProfiler::stop() {
  running_ = false;
  auto result = prof::disableProfiler();
  result->save(path_);
  std::cerr << "xft: profile of steps " << first_ + 1 << ".." << last_ << " in " << path_ << "\n";
}

}  // namespace xft
