// defines: ScoreOptions, TaskScore, ScoreReport, score_tasks, report_scores, score_samples
//
// Scoring solutions, wherever they came from: HumanEval+ / MBPP+ with the EvalPlus protocol
// (evalplus.h: base and plus verdicts), plain HumanEval / MBPP with their own tests (base only),
// and pass@k over tasks the way EvalPlus reports it (eval_results.json): the unbiased estimator
// per task, averaged, for k = 1, 10, 100 when every task has at least k samples.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "xft/eval/evalplus.h"
#include "xft/eval/problems.h"
#include "xft/eval/samples.h"

namespace xft {

struct ScoreOptions {
  PlusOptions plus;          // sandbox (interpreter, isolation), parallelism, EvalPlus limits and cache
  double timeout_s = 10.0;   // plain HumanEval / MBPP: seconds per test program
  std::string results_path;  // per-task JSON lines, written atomically; empty: none
};

struct TaskScore {
  std::string task_id;
  std::vector<std::string> base_status;  // per sample: "pass" | "fail" | "timeout"
  std::vector<std::string> plus_status;  // EvalPlus problems only, per sample
  int64_t n() const { return static_cast<int64_t>(base_status.size()); }
  int64_t base_correct() const;
  int64_t plus_correct() const;  // base and plus both "pass"
};

struct ScoreReport {
  int64_t problems = 0;
  bool plus = false;                         // EvalPlus problems: plus_pass_at_k is filled
  std::map<int64_t, double> base_pass_at_k;  // k -> mean pass@k on the base tests
  std::map<int64_t, double> plus_pass_at_k;  // k -> mean pass@k on base + plus tests
  // Problems with a group (DS-1000's libraries): group -> {problems, mean pass@1 on the base tests},
  // as the paper's Table 3 reports them; and the groups left out (drop_unavailable_frameworks).
  std::map<std::string, std::pair<int64_t, double>> group_pass_at_1;
  std::map<std::string, int64_t> skipped;
  // "pass@1 base 0.8232 plus 0.7744 (164 problems)"; "pass@1 base 0.8232 (164 problems)" without
  // plus; then a line per group ("  Numpy: pass@1 0.4545 (220 problems)") and per skipped group.
  std::string summary() const;
};

// pass@1 per group of tasks[i]->group (tasks without a group are left out): group -> {problems, mean pass@1}.
std::map<std::string, std::pair<int64_t, double>> group_pass_at_1(const std::vector<const Problem*>& tasks,
                                                                  const std::vector<int64_t>& n,
                                                                  const std::vector<int64_t>& correct);

// Scores solutions[i] (one or more whole programs) for tasks[i]. EvalPlus tasks need their
// expected outputs in `truth` (ground_truth()); plain ones run their test program.
std::vector<TaskScore> score_tasks(const std::vector<const Problem*>& tasks,
                                   const std::vector<std::vector<std::string>>& solutions,
                                   const std::map<std::string, GroundTruth>& truth, const ScoreOptions& options);

// pass@k for k in {1, 10, 100} that every task has samples for. Errors: no tasks.
ScoreReport report_scores(const std::vector<TaskScore>& scores, bool plus);

// Scores every task that has samples (in the problems file's order), writing per-task results to
// options.results_path: {"task_id", "n", "base_correct", "base_status"[, "plus_correct", "plus_status"]}.
ScoreReport score_samples(const std::vector<Problem>& problems, const std::vector<Sample>& samples,
                          const ScoreOptions& options);

}  // namespace xft
