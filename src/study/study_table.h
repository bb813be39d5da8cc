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
  nlohmann::json about;                     // an ablation's definition (null for a main arm)
};

// `order`: the arms in table order. `comparisons`: (a, b) pairs; those whose arms were not run
// are left out.
nlohmann::json study_table(const std::string& config, const std::vector<uint64_t>& seeds,
                           const std::vector<std::string>& order, const std::map<std::string, ArmScores>& arms,
                           const std::vector<std::pair<std::string, std::string>>& comparisons,
                           int64_t bootstrap_resamples);
std::string study_markdown(const nlohmann::json& table);

}  // namespace xft
