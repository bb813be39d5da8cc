// defines: Ablation (a study arm that is a variant of the recipe: config overlays and --set
//          values over the study's config, scored against the arm it varies)
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace xft {

struct Ablation {
  std::string name;                   // the arm's name in the table (letters, digits, . _ -)
  std::string arm = "xft";            // the model of the variant that is scored and compared with
                                      // that arm of the main recipe: sft, moe, xft, xft_init, ewa
  std::vector<std::string> overlays;  // JSON files: their own keys merge over the study's config
                                      // (their include, run_dir, comment and merge_name are
                                      // ignored, so the shipped configs/paper overlays apply to
                                      // any base config)
  std::vector<std::string> sets;      // "key=value" overrides after the overlays

  // "NAME[@ARM]:ITEM[,ITEM...]", each ITEM a path ending in .json (an overlay) or key=value:
  //   no-shared@moe:configs/paper/table4-no-shared-expert.json
  //   lambda-0.5:merge.shared_rate=0.5
  static Ablation parse(const std::string& spec);

  // The overlays read, with the keys that do not apply dropped.
  std::vector<nlohmann::json> overlay_json() const;
  // True when the variant changes nothing but the merge stage (merge, merge_train): it then
  // shares the main recipe's tuned MoE and merges into xft/merge-NAME, as a lambda sweep does.
  bool merge_only() const;
  nlohmann::json to_json() const;
};

}  // namespace xft
