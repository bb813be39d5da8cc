// defines: StepProfiler (the torch profiler over a few training steps, switched on from the environment)
//
// XFT_PROFILE=DIR profiles steps 2 .. 1 + XFT_PROFILE_STEPS (default 3) of every stage with the
// torch profiler (Kineto, CPU and, on a GPU, CUDA activity) and writes DIR/<stage>.trace.json, a
// Chrome trace as torch.profiler's export_chrome_trace writes it (bench/profile_summary.py turns
// it into a table of self time per op). The first step is left out: it pays for allocation.
#pragma once
#include <cstdint>
#include <string>

namespace xft {

class StepProfiler {
 public:
  explicit StepProfiler(const std::string& stage);
  ~StepProfiler();
  StepProfiler(const StepProfiler&) = delete;
  StepProfiler& operator=(const StepProfiler&) = delete;
  void before_step(int64_t step);  // step: the number of steps done so far
  void after_step(int64_t step);   // step: the number of steps done, this one included

 private:
  void stop();
  std::string path_;
  int64_t first_ = 1, last_ = 0;  // profiled steps: first_ < step <= last_ (steps done)
  bool running_ = false;
};

}  // namespace xft
