// defines: Stage, RunLayout (where the stages of one run write, named once), Pipeline, Arm, arms,
//          find_arm, arm_names, arm_list (the one table of the models a run makes: which pipeline makes
//          each, where it lies, the stages whose training it took, the section that scores it)
//
// The pipelines write the directories (pipelines.h has the layout); a study reads them to score
// each arm and count its training budget. Adding an arm or moving a directory is one edit here.
#pragma once
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "xft/pipelines/experiment.h"

namespace xft {

// The training stages of the pipelines.
enum class Stage { kSft, kMoe, kMerge, kEwa };

// A stage directory whose training an arm's model took, with the model whose active parameters
// count that stage's FLOPs (6 x active parameters x tokens).
using TrainedStage = std::pair<std::filesystem::path, std::filesystem::path>;

// The directories of one run.
struct RunLayout {
  explicit RunLayout(const ExperimentConfig& c);
  std::filesystem::path sft;           // run_dir/sft: the SFT stage
  std::filesystem::path xft;           // run_dir/xft
  std::filesystem::path xft_moe_init;  // run_dir/xft/moe-init: the upcycled MoE (paper 3.1)
  std::filesystem::path moe;           // run_dir/xft/moe: the MoE stage
  std::filesystem::path merge;         // run_dir/xft/<merge_name>: the merge stage (Eq. 5-6)
  std::filesystem::path ewa;           // run_dir/ewa: the EWA stage
  std::filesystem::path ewa_moe_init;  // run_dir/ewa/moe-init: the MoE EWA starts from

  std::filesystem::path dir(Stage stage) const;  // sft, moe, merge or ewa above
  // The stage's directory and the model that counts its FLOPs: its final/ (the dense merged
  // model for the merge), or for EWA the MoE it trains (its final/ is the averaged dense model).
  TrainedStage trained(Stage stage) const;
};

// What makes an arm's model: run_sft, run_xft, run_ewa, or nothing (the base model as given).
enum class Pipeline { kNone, kSft, kXft, kEwa };

struct Arm {
  const char* name;
  Pipeline pipeline;
  std::optional<Stage> made_by;          // the stage whose directory holds its model; none: base_model
  const char* leaf;                      // its model under that directory: "final" or "init"
  std::vector<Stage> trained_by;         // the stages whose training it took, in order
  TrainConfig ExperimentConfig::*train;  // the section whose device and precision score it

  std::filesystem::path model(const ExperimentConfig& c, const RunLayout& run) const;  // its directory
  std::vector<TrainedStage> stages(const RunLayout& run) const;                        // trained_by's
  bool made_by_merge() const { return made_by == Stage::kMerge; }
};

// base, sft, moe, xft, xft_init (merged with the initial coefficients), ewa.
const std::vector<Arm>& arms();
// The arm called `name`; an error naming `where` and the known arms otherwise.
const Arm& find_arm(const std::string& name, const std::string& where);
// The arms' names in the table's order; without base: the arms a pipeline makes.
std::vector<std::string> arm_names(bool with_base = true);
// The same, as a list for messages: "base, sft, moe, xft, xft_init, ewa".
std::string arm_list(bool with_base = true);

}  // namespace xft
