// sandbox_bench: times run_many over HumanEval's 164 canonical solutions (the programs
// `xft-tool eval` runs for a model that answers every problem right). Built outside CMake by
// bench/sandbox_overhead.sh against two versions of the sandbox, so it uses only what both have.
//   sandbox_bench HumanEval.jsonl.gz PYTHON PARALLELISM
// prints: "<seconds> <passed>/<total>"
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "xft/eval/problems.h"
#include "xft/eval/sandbox.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: sandbox_bench HumanEval.jsonl.gz PYTHON PARALLELISM\n");
    return 2;
  }
  const auto problems = xft::load_problems(argv[1]);
  std::vector<std::string> programs;
  for (const auto& p : problems) programs.push_back(xft::test_program(p, p.prompt + p.canonical_solution));
  xft::SandboxLimits limits;
  limits.python = argv[2];
  limits.timeout_s = 10.0;
  const auto start = std::chrono::steady_clock::now();
  const auto results = xft::run_many(programs, limits, std::atoll(argv[3]));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  size_t passed = 0;
  for (const auto& r : results) passed += r.passed ? 1 : 0;
  std::printf("%.3f %zu/%zu\n", seconds, passed, results.size());
  return passed == results.size() ? 0 : 1;
}
