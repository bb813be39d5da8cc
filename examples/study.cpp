// xft-study: every arm for every seed on one base, per-example held-out losses, paired
// comparisons with bootstrap intervals and Wilcoxon p-values, training budgets.
//   xft-study --config configs/tiny.json --seeds 1,2,3 [--arms sft,moe,xft,xft_init,ewa] --out DIR
//             [--set key=value ...] [--ablation NAME[@ARM]:OVERLAY.json|key=value,... ...] [--resume]
#include <CLI/CLI.hpp>
#include <iostream>

#include "xft/study/study.h"

int main(int argc, char** argv) {
  CLI::App app{"a multi-seed study of XFT against its baselines, with significance tests"};
  xft::StudyOptions o;
  app.add_option("--config", o.config_path, "experiment config (JSON); held-out data required")->required();
  app.add_option("--out", o.out_dir, "study directory (a run directory per seed, results.json, results.md)")
      ->required();
  app.add_option("--seeds", o.seeds, "seeds, e.g. 1,2,3")->delimiter(',')->capture_default_str();
  std::vector<std::string> ablations;
  app.add_option("--arms", o.arms, xft::arm_list())->delimiter(',')->capture_default_str();
  app.add_option("--ablation", ablations,
                 "an ablation arm, NAME[@ARM]:ITEM[,ITEM...] with ITEM an overlay .json or key=value; "
                 "scored as ARM (default xft) and compared with it (repeatable)");
  app.add_option("--set", o.overrides, "override a config field for every arm and seed (repeatable)");
  app.add_option("--bootstrap", o.bootstrap_resamples, "bootstrap resamples")->capture_default_str();
  app.add_flag("--resume", o.resume, "continue interrupted stages from their checkpoints");
  CLI11_PARSE(app, argc, argv);
  try {
    for (const auto& a : ablations) o.ablations.push_back(xft::Ablation::parse(a));
    xft::run_study(o);
    std::cout << "xft-study: results in " << o.out_dir << "/results.md\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "xft-study: error: " << e.what() << "\n";
    return 1;
  }
}
