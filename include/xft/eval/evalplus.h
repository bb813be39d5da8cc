// defines: PlusOptions, GroundTruth, PlusVerdict, evalplus_memory_cap, dataset_key, ground_truth,
//          check_solutions
//
// Scoring HumanEval+ / MBPP+ the way EvalPlus 0.3.1 does (evalplus/evaluate.py, eval/__init__.py):
// the canonical solution (prompt + canonical_solution) runs on every base and plus input to give
// the expected outputs and its time per input; a solution then runs on every base input, and in a
// second process on every plus input, each call under max(min_time_limit, factor x the canonical
// time) seconds, its output compared exactly or, for floats, with np.allclose(atol) (1e-6 when
// the task's atol is 0), a few tasks by special oracles. A split is "pass" when every input
// matched, "fail" at the first input that did not (or raised, or overran its limit), "timeout"
// when the process never reported (killed at min(60, sum of the limits) + 2 s, or crashed).
// Both processes run in the sandbox (sandbox.h); the comparing half is Python
// (evalplus_harness.cpp), since outputs are Python objects.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "xft/eval/problems.h"
#include "xft/eval/sandbox.h"

namespace xft {

// min(4 GiB, physical memory): EvalPlus' address-space cap for a solution (EVALPLUS_MAX_MEMORY_BYTES).
int64_t evalplus_memory_cap();

struct PlusOptions {
  SandboxLimits limits;            // interpreter, isolation; memory_bytes and timeout_s are set per run
  double min_time_limit = 1.0;     // seconds: the floor of every per-input limit
  double time_limit_factor = 4.0;  // x the canonical solution's time on that input
  double task_timeout = 60.0;      // EVALPLUS_TIMEOUT_PER_TASK: cap on a split's summed limits
  // The interpreter's start-up and the decoding of inputs and expected outputs, which EvalPlus'
  // forked checker does not pay inside its timeout: added to the process timeout.
  double startup_allowance = 1.0;
  int64_t memory_bytes = evalplus_memory_cap();
  int64_t parallelism = 2;  // processes at once
  // Expected outputs are cached here, one file per dataset_key (they take minutes for MBPP+);
  // empty: computed every time.
  std::string cache_dir;
};

// One task's expected outputs (pickled by the Python side: opaque here) and the canonical
// solution's seconds per input.
struct GroundTruth {
  std::string base, plus;
  std::vector<double> base_time, plus_time;
};

struct PlusVerdict {
  std::string base = "fail";  // "pass" | "fail" | "timeout", as EvalPlus' base_status
  std::string plus = "fail";  // as EvalPlus' plus_status (computed even when base failed)
  bool base_correct() const { return base == "pass"; }
  bool plus_correct() const { return base == "pass" && plus == "pass"; }  // EvalPlus' "base + extra tests"
};

// The cache key of a set of EvalPlus problems: a CRC32 of their records (what the expected
// outputs depend on), their count and size. The key changes when any record does.
std::string dataset_key(const std::vector<Problem>& problems);

// Expected outputs for every EvalPlus problem, by task_id: read from the cache when it holds all
// of them, computed (and cached) otherwise. Errors: a canonical solution that fails to run or
// whose outputs cannot be pickled (naming the task), a cache file that cannot be written.
std::map<std::string, GroundTruth> ground_truth(const std::vector<Problem>& problems, const PlusOptions& options);

// Checks solutions[i] (a whole program) against problems[i]; a problem may appear several times.
// Errors: a problem that is not EvalPlus or has no entry in `truth`.
std::vector<PlusVerdict> check_solutions(const std::vector<const Problem*>& problems,
                                         const std::vector<std::string>& solutions,
                                         const std::map<std::string, GroundTruth>& truth, const PlusOptions& options);

}  // namespace xft
