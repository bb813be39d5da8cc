// defines: required_modules, fallback_interpreters, interpreter_with, drop_unavailable_frameworks
//
// The interpreter a benchmark's programs run with must have what the benchmark's checker imports
// (numpy for EvalPlus' float comparisons). Without it every such task would fail for a reason
// that has nothing to do with the sample: a silent under-score. So an evaluation first asks the
// sandbox's interpreter for those modules, falls back to one that has them (the project's venv),
// and otherwise stops with an error naming the interpreter, the module and the fix.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "xft/eval/problems.h"
#include "xft/eval/sandbox.h"

namespace xft {

// The Python modules scoring `problems` imports: numpy for HumanEval+ / MBPP+; for DS-1000 the
// modules of its libraries (numpy, pandas, scipy, sklearn, matplotlib) except the deep-learning
// frameworks, which drop_unavailable_frameworks handles; none for plain HumanEval / MBPP.
std::vector<std::string> required_modules(const std::vector<Problem>& problems);

// DS-1000's Pytorch and Tensorflow problems need torch / tensorflow in the interpreter: where it
// cannot import one, that library's problems are removed from `problems` and counted (library ->
// problems left out), to be reported as skipped rather than scored as failures.
std::map<std::string, int64_t> drop_unavailable_frameworks(std::vector<Problem>& problems, const SandboxLimits& limits);

// Interpreters to fall back to, in order: $XFT_PYTHON, then the project's venv the library was
// built with (scripts/setup.sh), where each exists.
std::vector<std::string> fallback_interpreters();

// `limits` with `python` set to the absolute path of the first interpreter (limits.python, then
// each of `fallbacks`) that the sandbox runs and that imports every module, checked inside the
// sandbox with the same isolation. Says on stderr when it falls back. Errors: limits.python does
// not run at all ("the sandbox cannot run"); none has the modules, naming limits.python, the
// missing modules with Python's own message, the fallbacks tried, and the fix.
SandboxLimits interpreter_with(const SandboxLimits& limits, const std::vector<std::string>& modules,
                               const std::vector<std::string>& fallbacks = fallback_interpreters());

}  // namespace xft
