// defines: CodeEvalConfig (the "code_eval" section of an experiment config: a problems file that
//          a study scores every arm on, and how it generates and runs the programs)
//
// {"problems": "HumanEvalPlus-v0.1.10.jsonl.gz", "limit": 0, "samples": 1, "max_new_tokens": 512,
//  "batch": 8, "parallelism": 2, "timeout_s": 10, "memory_mb": 1024, "python": "python3",
//  "unsafe_no_isolation": false, "prompt": "instruction", "base_prompt": ""}
// Greedy decoding with one sample per problem is the paper's pass@1 setting (section 4.2).
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "xft/eval/code_eval.h"
#include "xft/eval/generation.h"
#include "xft/eval/prompt.h"

namespace xft {

struct CodeEvalConfig {
  std::string problems;      // HumanEval(+) / MBPP(+) file; empty: no code evaluation
  int64_t limit = 0;         // > 0: only the first `limit` problems
  int64_t samples = 1;       // completions per problem (> 1 samples at temperature)
  double temperature = 0.0;  // 0: greedy; must be > 0 when samples > 1
  int64_t max_new_tokens = 512;
  int64_t batch = 8;        // prompts per generation batch
  int64_t parallelism = 2;  // test programs run at once
  double timeout_s = 10.0;
  int64_t memory_mb = 1024;
  std::string python = "python3";
  bool unsafe_no_isolation = false;  // run the programs without namespaces where these are refused
  // How every arm is asked (prompt.h): "instruction" (the paper's), "completion" or "chat" (the
  // base model's own template).
  std::string prompt = "instruction";
  // The base arm alone, when it needs a prompt it understands (an instruct base: "chat"; a
  // pretrained base: "completion"); empty: `prompt`.
  std::string base_prompt;

  bool enabled() const { return !problems.empty(); }
  static CodeEvalConfig from_json(const nlohmann::json& j, const std::string& source);
  nlohmann::json to_json() const;
  // The scoring options (pass@1, and pass@samples when samples > 1) and the decoding settings.
  EvalOptions eval_options() const;
  // The generation settings for an arm asked in `mode` (its stop sequences).
  GenerationConfig generation(PromptMode mode) const;
  // The mode of the base arm (base = true) or of the others.
  PromptMode prompt_mode(bool base) const;
};

}  // namespace xft
