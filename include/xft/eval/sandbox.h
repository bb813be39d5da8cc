// defines: SandboxLimits, SandboxResult, run_python, run_many
//
// Runs untrusted model-written Python in a child process that cannot take the caller down:
// its own session and process group (killed whole when it ends or times out), rlimits on address
// space, CPU time and file size, a fresh scratch directory as cwd/HOME/TMPDIR (removed afterwards),
// and no network (a new network namespace where the kernel allows it; otherwise proxies pointed at
// a closed port, which is best-effort only). It is not a security boundary against a determined
// attacker: the child runs as the caller's user and can read and write what that user can.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace xft {

struct SandboxLimits {
  double timeout_s = 10.0;            // wall clock; CPU time is capped at timeout + 1 s as well
  int64_t memory_bytes = 1LL << 30;   // RLIMIT_AS of the interpreter
  std::string python = "python3";     // a path, or a name looked up in PATH
};

struct SandboxResult {
  bool passed = false;   // exited with status 0 within the limits
  std::string status;    // "passed" | "failed" | "timeout" | "memory" | "error" (could not run at all)
  int exit_code = -1;    // the exit status; 128 + signal when killed by a signal; -1 when it never ran
  std::string output_tail;  // the last 2 KB of stdout and stderr, interleaved as written
  double seconds = 0.0;     // wall clock
};

// Runs `program` with `python -I`; safe to call from several threads at once.
SandboxResult run_python(const std::string& program, const SandboxLimits& limits);

// run_python over all programs, `parallelism` at a time; results in the order of `programs`.
std::vector<SandboxResult> run_many(const std::vector<std::string>& programs, const SandboxLimits& limits,
                                    int64_t parallelism);

}  // namespace xft
