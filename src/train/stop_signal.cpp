#include "xft/train/stop_signal.h"

#include <signal.h>
#include <unistd.h>

#include "xft/distributed/distributed.h"

namespace xft {

namespace {

// Written by the handler, read by the training loop: sig_atomic_t is what a handler may touch.
volatile sig_atomic_t g_received = 0;
volatile sig_atomic_t g_handled = 0;

extern "C" void on_stop_signal(int sig) {
  if (g_received != 0) {  // the second signal: the default action, now
    ::signal(sig, SIG_DFL);
    ::raise(sig);
    return;
  }
  g_received = sig;
  static const char msg[] =
      "\nxft: stop requested: finishing the current step and writing a checkpoint "
      "(send the signal again to stop at once)\n";
  [[maybe_unused]] const ssize_t n = ::write(STDERR_FILENO, msg, sizeof msg - 1);  // async-signal-safe
}

constexpr int kSignals[] = {SIGTERM, SIGINT};

}  // namespace

struct StopSignals::Saved {
  struct sigaction previous[2];
};

StopSignals::StopSignals() : saved_(new Saved) {
  // Any earlier signal was either acted on (Stopped) or raised again when its stage ended.
  g_received = 0;
  g_handled = 0;
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // reads and writes in flight continue instead of failing with EINTR
  for (int i = 0; i < 2; ++i) ::sigaction(kSignals[i], &sa, &saved_->previous[i]);
}

StopSignals::~StopSignals() {
  for (int i = 0; i < 2; ++i) ::sigaction(kSignals[i], &saved_->previous[i], nullptr);
  const int pending = g_received;
  const bool handled = g_handled;
  delete saved_;
  if (pending != 0 && !handled) {
    g_received = 0;
    ::raise(pending);  // arrived after the last check: the previous handler (default: exit) acts
  }
}

int StopSignals::received() { return g_received; }

bool StopSignals::requested(const Distributed& dist) const {
  if (!dist.has_group(Distributed::Group::kWorld)) return g_received != 0;
  std::vector<torch::Tensor> flag = {
      torch::full({1}, g_received != 0 ? 1.0f : 0.0f, torch::TensorOptions().device(dist.comm_device()))};
  dist.all_reduce_sum(flag, Distributed::Group::kWorld, "agreeing on a stop request");
  return flag[0].item<float>() > 0;
}

void StopSignals::stop(const std::string& message) const {
  g_handled = 1;
  throw Stopped(message, g_received != 0 ? static_cast<int>(g_received) : SIGTERM);
}

std::string signal_name(int signal) {
  if (signal == SIGTERM) return "SIGTERM";
  if (signal == SIGINT) return "SIGINT";
  return "signal " + std::to_string(signal);
}

}  // namespace xft
