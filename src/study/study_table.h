// defines: ArmScores, study_table, study_markdown (a study's numbers: per arm the mean and std
//          over seeds, per comparison the paired difference over held-out examples with its
//          bootstrap interval and Wilcoxon p-value)
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace xft {

struct ArmScores {
  std::vector<std::vector<double>> losses;  // seed -> held-out example -> loss
  nlohmann::json budget;                    // stages: epochs, tokens, FLOPs
  double params = 0.0;                      // parameters of the scored model
  // With a problems file (code_eval): seed -> task -> fraction of its samples that passed (the
  // task's pass@1), tasks in task_ids' order. Empty without one.
  std::vector<std::vector<double>> passes;
  std::vector<std::string> task_ids;
  nlohmann::json about;  // an ablation's definition (null for a main arm)
};

// `order`: the arms in table order. `comparisons`: (a, b) pairs; those whose arms were not run
// are left out. Arms with passes also get pass@1 (mean and std over seeds, per task averaged
// over seeds) and each comparison a paired one over tasks ("task_comparisons").
nlohmann::json study_table(const std::string& config, const std::vector<uint64_t>& seeds,
                           const std::vector<std::string>& order, const std::map<std::string, ArmScores>& arms,
                           const std::vector<std::pair<std::string, std::string>>& comparisons,
                           int64_t bootstrap_resamples);
std::string study_markdown(const nlohmann::json& table);

}  // namespace xft
