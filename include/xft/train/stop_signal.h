// defines: StopSignals (SIGTERM / SIGINT during training: finish the step, checkpoint, stop),
//          Stopped (what the trainer throws then), kExitStopped (the drivers' exit code for it)
//
// A scheduler's preemption (SIGTERM) or Ctrl-C (SIGINT) in the middle of a training stage
// should cost nothing: the handler only records the signal; the trainer, after the optimizer
// step in progress completes, writes a checkpoint of that step and throws Stopped, which a
// driver turns into a message and exit code 75, so `--resume` continues with no finished step
// lost. A second signal stops at once (the default action), for a run that must die now.
// Outside a training stage the default actions apply: every file xft writes is atomic, so a
// run killed there resumes from its last checkpoint or finished stage.
#pragma once
#include <cstdint>
#include <string>

#include "xft/core/error.h"

namespace xft {

class Distributed;

// EX_TEMPFAIL of sysexits.h: "a temporary failure; retry later" (here: rerun with --resume).
inline constexpr int kExitStopped = 75;

class Stopped : public Error {
 public:
  Stopped(const std::string& what, int signal) : Error(what), signal_(signal) {}
  int signal() const { return signal_; }

 private:
  int signal_;
};

// Installs the handlers for its lifetime (one training stage); restores the previous ones after.
// A signal that arrived but was never acted on is raised again then, with the previous
// handler in place, so it is not lost between stages.
class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  // The signal received on this process (0: none).
  static int received();
  // Collective when dist is active: whether any rank received one, so that every rank stops
  // after the same step (one rank stopping alone would leave the others in a collective).
  bool requested(const Distributed& dist) const;
  // Marks the signal as handled (no re-raise at destruction) and throws Stopped with `message`.
  [[noreturn]] void stop(const std::string& message) const;

 private:
  struct Saved;
  Saved* saved_;
};

// "SIGTERM", "SIGINT", or "signal N".
std::string signal_name(int signal);

}  // namespace xft
