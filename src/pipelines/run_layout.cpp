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

const std::vector<Arm>& arms() {
  using C = const ExperimentConfig&;
  using R = const RunLayout&;
  using Stages = std::vector<TrainedStage>;
  static const std::vector<Arm> table = {
      {"base", Pipeline::kNone, [](C c, R) { return fs::path(c.base_model); }, [](R) { return Stages{}; },
       &ExperimentConfig::sft_train, false},
      {"sft", Pipeline::kSft, [](C, R r) { return r.sft / "final"; },
       [](R r) {
         return Stages{{r.sft, r.sft / "final"}};
       },
       &ExperimentConfig::sft_train, false},
      {"moe", Pipeline::kXft, [](C, R r) { return r.moe / "final"; },
       [](R r) {
         return Stages{{r.moe, r.moe / "final"}};
       },
       &ExperimentConfig::moe_train, false},
      {"xft", Pipeline::kXft, [](C, R r) { return r.merge / "final"; },
       [](R r) {
         return Stages{{r.moe, r.moe / "final"}, {r.merge, r.merge / "final"}};
       },
       &ExperimentConfig::merge_train, true},
      {"xft_init", Pipeline::kXft, [](C, R r) { return r.merge / "init"; },
       [](R r) {
         return Stages{{r.moe, r.moe / "final"}};
       },
       &ExperimentConfig::merge_train, true},
      // EWA trains the upcycled MoE (and averages its experts into the dense model at the end).
      {"ewa", Pipeline::kEwa, [](C, R r) { return r.ewa / "final"; },
       [](R r) {
         return Stages{{r.ewa, r.ewa_moe_init}};
       },
       &ExperimentConfig::ewa_train, false},
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
