// defines: StudyOptions, run_study (a multi-seed study: arms x seeds on one base, per-example
//          held-out losses (and per-task pass/fail on a problems file), paired comparisons with bootstrap intervals and
//          Wilcoxon p-values, and each arm's training budget, as the paper's appendices A.4 and A.5 report)
//
// Layout of the output directory:
//   seed-S/                      a run directory per seed (the pipelines' layout)
//   seed-S/losses-<arm>.json     that arm's per-example held-out losses, and its per-task pass
//                                counts when the config has a code_eval section (cached: a
//                                rerun reuses it; adding code_eval later scores only the tasks)
//   seed-S/tasks-<arm>.jsonl     per task: completions, statuses, how many passed
//   seed-S/ablation-NAME/        an ablation's run directory (one that changes only the merge
//                                shares seed-S's MoE and merges into seed-S/xft/merge-NAME)
//   results.json, results.md     the table
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "xft/pipelines/run_layout.h"
#include "xft/study/ablation.h"

namespace xft {

struct StudyOptions {
  std::string config_path;
  std::vector<std::string> overrides;  // --set for every arm and seed
  std::vector<uint64_t> seeds = {1, 2, 3};
  // The arms to score (pipelines/run_layout.h): by default every arm a pipeline makes (sft, moe,
  // xft, xft_init, ewa); base is the base model, untrained here.
  std::vector<std::string> arms = arm_names(/*with_base=*/false);
  std::vector<Ablation> ablations;  // more arms, each compared with the arm it varies
  std::string out_dir;
  bool resume = false;
  int64_t bootstrap_resamples = 10000;
};

// Runs (or reuses) every seed's pipelines, scores every arm, writes results.json and
// results.md, and returns the results. The seed changes the data order, the router
// initialisation and the noise of every stage; the base model and the data stay the same.
nlohmann::json run_study(const StudyOptions& options);

}  // namespace xft
