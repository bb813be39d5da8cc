// defines: EvalOptions, GenerateFn, TaskOutcome, EvalReport, evaluate_problems
//
// The pass@k scoring loop behind `xft-tool eval`: prompts -> completions (from a caller-supplied
// generator, so decoding stays outside) -> extracted code -> sandboxed test programs -> pass@k.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "xft/eval/evalplus.h"
#include "xft/eval/problems.h"
#include "xft/eval/prompt.h"
#include "xft/eval/sandbox.h"

namespace xft {

struct EvalOptions {
  int64_t samples = 1;            // completions per problem (n); greedy pass@1 uses 1
  std::vector<int64_t> ks = {1};  // each k must be <= samples
  SandboxLimits limits;
  int64_t parallelism = 2;  // test programs run at once
  // Per-problem JSON lines (task_id, n, correct, statuses, failure_output, completions), written
  // atomically at the end; lines are also appended to results_path + ".partial" as problems finish,
  // and that file is removed once the full file is in place. Empty: no files.
  std::string results_path;
  int64_t limit = -1;   // evaluate only the first `limit` problems when > 0
  int64_t chunk = 32;   // problems per generate call (<= 0: all at once); bounds what a crash loses
  bool resume = false;  // reuse the problems already in results_path + ".partial" (same n)
  // The generations in EvalPlus' samples format ({"task_id", "solution"} lines), for
  // `xft-tool score` or EvalPlus itself on another machine. Empty: not written.
  std::string samples_path;
  // HumanEval+ / MBPP+: EvalPlus' time limits, and where the expected outputs are cached (empty:
  // next to results_path; both empty: not cached). limits and parallelism above apply.
  PlusOptions plus;
  // How the model is asked and how its answer becomes a program (prompt.h); the generator must
  // stop at stop_sequences(prompt.mode).
  PromptStyle prompt;
};

// generate(prompts, n) returns, for each prompt, n completions: the text generated after the prompt.
using GenerateFn =
    std::function<std::vector<std::vector<std::string>>(const std::vector<std::string>& prompts, int64_t n)>;

// One problem's outcome: how many of its n completions passed (EvalPlus: base and plus tests).
struct TaskOutcome {
  std::string task_id;
  int64_t n = 0, correct = 0;
};

struct EvalReport {
  int64_t problems = 0;
  std::vector<TaskOutcome> tasks;            // in the problems file's order
  std::map<int64_t, double> pass_at_k;       // k -> mean pass@k over the problems (EvalPlus: base + plus tests)
  std::map<int64_t, double> base_pass_at_k;  // EvalPlus problems only: k -> mean pass@k on the base tests
  // DS-1000: pass@1 per library (group -> {problems, pass@1}) and the libraries left out.
  std::map<std::string, std::pair<int64_t, double>> group_pass_at_1;
  std::map<std::string, int64_t> skipped;
  // "pass@1 = 0.8232 (164 problems)"; EvalPlus problems: "pass@1 base 0.8232 plus 0.7744 (164 problems)".
  std::string summary() const;
};

// Prompts come from model_inputs(problems, options.prompt); the code run is solution_of(p, completion, mode)
// inside test_program(p, code), or, for HumanEval+ / MBPP+, checked with the EvalPlus protocol
// (check_solutions; expected outputs computed first, or read from their cache). Checks first that the sandbox can run
// Python at all, since every problem would otherwise quietly score 0. Errors: bad options, a generator returning the
// wrong number of completions, an unwritable results path.
EvalReport evaluate_problems(const std::vector<Problem>& problems, const GenerateFn& generate,
                             const EvalOptions& options);

}  // namespace xft
