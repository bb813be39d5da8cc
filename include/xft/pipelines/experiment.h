// defines: ExperimentConfig (one JSON file drives the SFT, XFT and EWA drivers), apply_override
//
// {
//   "run_dir": "runs/ds13b",  "base_model": "/models/deepseek-coder-1.3b-base",
//   "tokenizer": "",            // default: base_model's directory
//   "data": {...DataConfig},    "heldout": 0,      // examples held out of data for evaluation
//   "eval_data": "",            // or a separate held-out file, read with data's settings
//   "save_dtype": "bfloat16",   "upcycle": {"seed": 0, "rope_theta": 0, "drop_rope_scaling": false},
//   "moe": {...MoeConfig},      "merge": {"shared_rate": 0.75, "fixed_shared_rate": true},
//   "ewa": {"beta": 0.3, "schedule": "constant"},
//   "sft_train": {...TrainConfig}, "moe_train": {...}, "merge_train": {...}, "ewa_train": {...},
//   "distributed": {...DistributedConfig},  // used when launched by torchrun (distributed.h)
//   "code_eval": {...CodeEvalConfig},       // a problems file a study scores every arm on
//   "logging": {"tensorboard": ""}          // a directory: live TensorBoard curves of every
//                                           // stage, one run each (train/logging_config.h)
// }
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "xft/data/instruction_data.h"
#include "xft/distributed/distributed.h"
#include "xft/eval/code_eval_config.h"
#include "xft/methods/ewa.h"
#include "xft/methods/merge.h"
#include "xft/methods/upcycle.h"
#include "xft/model/config.h"
#include "xft/train/logging_config.h"
#include "xft/train/train_config.h"

namespace xft {

struct ExperimentConfig {
  std::string source;  // where it came from, for error messages
  nlohmann::json raw;  // after overrides, saved into the run directory
  std::string run_dir, base_model, tokenizer, save_dtype = "bfloat16";
  std::string comment;  // free text (what the recipe is, where it comes from)
  // "reference": the authors' code as it ran (noisy gating and its load estimate, micro-batch
  // loss averaging, RoPE base 10000 in the MoE); empty: the corrected method (default).
  std::string compat;
  // The merge stage's directory under run_dir/xft: runs sharing a run_dir share the upcycled and
  // tuned MoE (finished stages are never redone), so a lambda sweep trains the MoE once.
  std::string merge_name = "merge";
  DataConfig data;
  int64_t heldout = 0;
  std::string eval_data;
  UpcycleConfig upcycle;
  MoeConfig moe;
  MergeConfig merge;
  EwaConfig ewa;
  TrainConfig sft_train, moe_train, merge_train, ewa_train;
  DistributedConfig distributed;
  CodeEvalConfig code_eval;
  LoggingConfig logging;

  // Reads `path` over the files it includes ("include": "base.json" or a list, relative to it,
  // objects merged key by key), applies "a.b.c=value" overrides (value parsed as JSON, else
  // taken as a string), then the "compat" settings (the overrides keep the last word), and
  // validates. Other relative paths inside are taken relative to the working directory.
  // `overlays` (JSON objects, e.g. a study's ablation) merge over the file before the overrides.
  static ExperimentConfig load(const std::string& path, const std::vector<std::string>& overrides = {},
                               const std::vector<nlohmann::json>& overlays = {});
  // Every section through its own reader: unknown keys, wrong types and unknown enum values are
  // errors naming the file and section.field.
  static ExperimentConfig from_json(const nlohmann::json& j, const std::string& source);
  nlohmann::json to_json() const;
};

// Sets j at the dotted path of `assignment` ("moe_train.lr=1e-4"); errors name the assignment.
void apply_override(nlohmann::json& j, const std::string& assignment);

}  // namespace xft
