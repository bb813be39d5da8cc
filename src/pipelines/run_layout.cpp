#include "xft/pipelines/run_layout.h"

#include "xft/core/error.h"

namespace xft {

namespace fs = std::filesystem;

RunLayout::RunLayout(const ExperimentConfig& c)
    : sft(fs::path(c.run_dir) / "sft"),
      xft(fs::path(c.run_dir) / "xft"),
      xft_moe_init(xft / "moe-init"),
      moe(xft / "moe"),
      merge(xft / c.merge_name),
      ewa(fs::path(c.run_dir) / "ewa"),
      ewa_moe_init(ewa / "moe-init") {}

fs::path RunLayout::dir(Stage stage) const {
  switch (stage) {
    case Stage::kSft: return sft;
    case Stage::kMoe: return moe;
    case Stage::kMerge: return merge;
    case Stage::kEwa: return ewa;
  }
  fail("run layout: stage ", static_cast<int>(stage), " is not one of Stage's values");
}

TrainedStage RunLayout::trained(Stage stage) const {
  return {dir(stage), stage == Stage::kEwa ? ewa_moe_init : dir(stage) / "final"};
}

fs::path Arm::model(const ExperimentConfig& c, const RunLayout& run) const {
  return made_by ? run.dir(*made_by) / leaf : fs::path(c.base_model);
}

std::vector<TrainedStage> Arm::stages(const RunLayout& run) const {
  std::vector<TrainedStage> out;
  for (const auto stage : trained_by) out.push_back(run.trained(stage));
  return out;
}

const std::vector<Arm>& arms() {
  using E = ExperimentConfig;
  static const std::vector<Arm> table = {
      {"base", Pipeline::kNone, std::nullopt, "", {}, &E::sft_train},
      {"sft", Pipeline::kSft, Stage::kSft, "final", {Stage::kSft}, &E::sft_train},
      {"moe", Pipeline::kXft, Stage::kMoe, "final", {Stage::kMoe}, &E::moe_train},
      {"xft", Pipeline::kXft, Stage::kMerge, "final", {Stage::kMoe, Stage::kMerge}, &E::merge_train},
      {"xft_init", Pipeline::kXft, Stage::kMerge, "init", {Stage::kMoe}, &E::merge_train},
      // EWA trains the upcycled MoE (and averages its experts into the dense model at the end).
      {"ewa", Pipeline::kEwa, Stage::kEwa, "final", {Stage::kEwa}, &E::ewa_train},
  };
  return table;
}

const Arm& find_arm(const std::string& name, const std::string& where) {
  for (const auto& a : arms())
    if (name == a.name) return a;
  fail(where, ": unknown arm '", name, "' (known: ", arm_list(), ")");
}

std::vector<std::string> arm_names(bool with_base) {
  std::vector<std::string> out;
  for (const auto& a : arms())
    if (with_base || a.pipeline != Pipeline::kNone) out.emplace_back(a.name);
  return out;
}

std::string arm_list(bool with_base) {
  std::string out;
  for (const auto& name : arm_names(with_base)) out += (out.empty() ? "" : ", ") + name;
  return out;
}

}  // namespace xft
