// defines: run_sft, run_xft, run_ewa (the three pipelines end to end), Workspace, load_workspace
//
// Layout of a run directory (named once in run_layout.h; each `final/` is a Hugging Face model
// directory; a stage whose final/ exists is finished and is not redone; a stage with checkpoints
// resumes with --resume):
//   experiment.json                 the config after overrides
//   sft/{checkpoints,metrics.jsonl,final,eval.json}
//   xft/moe-init/                   the upcycled MoE (paper 3.1)
//   xft/moe/{checkpoints,metrics.jsonl,final,eval.json}
//   xft/merge/{checkpoints,metrics.jsonl,init,final,coefficients.json,eval.json}
//        init/  = the INIT ablation (initial coefficients), final/ = the XFT model (Eq. 5-6)
//   ewa/{moe-init,checkpoints,metrics.jsonl,final,eval.json}
// Under torchrun every rank runs the same pipeline: training is data parallel (the MoE stage
// also expert parallel with distributed.expert_parallel > 1); rank 0 alone upcycles, exports,
// evaluates and writes files, the others wait for it at barriers. The run directory must be on
// a file system every rank sees.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "xft/data/tokenizer.h"
#include "xft/pipelines/experiment.h"

namespace xft {

struct Workspace {
  std::unique_ptr<Tokenizer> tokenizer;  // null for pre-tokenised data
  std::optional<InstructionDataset> train, heldout;
  int64_t pad_id = 0;
  std::shared_ptr<const Distributed> dist = std::make_shared<Distributed>();  // single process
};

// Tokenizer + data (+ the held-out split), with the data report printed to stderr; joins the
// multi-process run when a launcher (torchrun) set the environment.
Workspace load_workspace(const ExperimentConfig& config);

// Each returns the directory of its final dense model.
std::string run_sft(const ExperimentConfig& config, Workspace& ws, bool resume);
std::string run_xft(const ExperimentConfig& config, Workspace& ws, bool resume);
std::string run_ewa(const ExperimentConfig& config, Workspace& ws, bool resume);

}  // namespace xft
