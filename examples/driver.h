// The command line the three drivers share: --config FILE [--set key=value ...] [--resume].
// A group restarted by torchrun (TORCHELASTIC_RESTART_COUNT > 0) resumes by itself.
// Exit codes: 0 done, 1 error, 75 (kExitStopped) stopped by SIGTERM / SIGINT after a checkpoint.
#pragma once
#include <CLI/CLI.hpp>
#include <csignal>
#include <functional>
#include <iostream>

#include "xft/core/error.h"
#include "xft/distributed/distributed.h"
#include "xft/pipelines/pipelines.h"
#include "xft/train/stop_signal.h"

namespace xft::driver {

using Pipeline = std::function<std::string(const ExperimentConfig&, Workspace&, bool)>;

inline int main(int argc, char** argv, const std::string& name, const std::string& about, const Pipeline& run) {
  CLI::App app{about};
  std::string config_path;
  std::vector<std::string> overrides;
  bool resume = false;
  app.add_option("--config", config_path, "experiment config (JSON), e.g. configs/tiny.json")->required();
  app.add_option("--set", overrides, "override a config field: --set moe_train.lr=1e-4 (repeatable)");
  app.add_flag("--resume", resume, "continue an interrupted run from its latest checkpoint");
  CLI11_PARSE(app, argc, argv);
  try {
    // Under torchrun --max-restarts, a restarted group continues from the newest checkpoints
    // (a checkpoint on disk is always whole), as --resume would: the agent reruns the same
    // command line, which has no --resume.
    if (const auto env = LaunchEnv::from_environment(); env.restart > 0 && !resume) {
      resume = true;
      if (env.rank == 0)
        std::cerr << "[distributed] restart " << env.restart << " of the run: resuming from the newest checkpoints\n";
    }
    // Past a file size limit (ulimit -f) a write fails with EFBIG, which xft reports with the
    // file's name and a whole previous checkpoint, instead of SIGXFSZ killing the process.
    std::signal(SIGXFSZ, SIG_IGN);
    auto config = ExperimentConfig::load(config_path, overrides);
    auto ws = load_workspace(config);
    const auto out = run(config, ws, resume);
    if (ws.dist->is_lead()) std::cout << name << ": final model in " << out << "\n";
    return 0;
  } catch (const Stopped& e) {          // SIGTERM / SIGINT: a checkpoint of the last step is on disk
    const std::string what = e.what();  // begins with the stage's name, which may be `name`
    std::cerr << (what.rfind(name + ":", 0) == 0 ? "" : name + ": ") << what << "\n";
    return kExitStopped;
  } catch (const std::exception& e) {
    std::cerr << name << ": error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace xft::driver
