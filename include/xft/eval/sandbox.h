// defines: SandboxLimits, SandboxResult, run_python, run_many, isolation_problem
//
// Runs untrusted model-written Python isolated from the machine, in namespaces of its own (made
// with clone(2) directly, as bubblewrap would, at a fraction of bwrap's start-up cost): a user
// namespace where it is an unprivileged user with no capabilities and no new privileges; a PID
// namespace (every descendant dies with the program; nothing outside is visible or signalable);
// a mount namespace where every mount is read-only except a private scratch directory that is
// its cwd, HOME and TMPDIR (removed afterwards); a network namespace with no interface up
// (loopback included); IPC, UTS and cgroup namespaces. On top: rlimits on address space, CPU time
// and file size, and a wall-clock timeout. If the evaluator dies, its sandboxes die too.
//
// Where the kernel refuses the namespaces (a container without user namespaces), running
// programs is an error unless SandboxLimits::unsafe_no_isolation is set; then they run with the
// rlimits, their own process group and scratch directory only, which is no security boundary.
// Never a silent downgrade.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace xft {

struct SandboxLimits {
  double timeout_s = 10.0;           // wall clock; CPU time is capped at timeout + 1 s as well
  int64_t memory_bytes = 1LL << 30;  // RLIMIT_AS of the interpreter
  std::string python = "python3";    // a path, or a name looked up in PATH
  // Run without namespaces where they are refused (the caller's explicit choice, e.g.
  // `--unsafe-no-isolation`): rlimits, a process group and a scratch directory only.
  bool unsafe_no_isolation = false;
  // > 0: SandboxResult::output keeps the first capture_bytes of the output (a harness's report).
  int64_t capture_bytes = 0;
};

struct SandboxResult {
  bool passed = false;      // exited with status 0 within the limits
  std::string status;       // "passed" | "failed" | "timeout" | "memory" | "error" (could not run at all)
  int exit_code = -1;       // the exit status; 128 + signal when killed by a signal; -1 when it never ran
  std::string output_tail;  // the last 2 KB of stdout and stderr, interleaved as written
  double seconds = 0.0;     // wall clock
  std::string output;       // the first capture_bytes of the output (empty when capture_bytes = 0)
};

// Runs `program` with `python -I`; safe to call from several threads at once. Errors: bad limits;
// isolation refused (isolation_problem() not empty) without limits.unsafe_no_isolation.
SandboxResult run_python(const std::string& program, const SandboxLimits& limits);

// run_python over all programs, `parallelism` at a time; results in the order of `programs`.
std::vector<SandboxResult> run_many(const std::vector<std::string>& programs, const SandboxLimits& limits,
                                    int64_t parallelism);
// The same with limits of their own per program (limits[i] for programs[i]).
std::vector<SandboxResult> run_many(const std::vector<std::string>& programs, const std::vector<SandboxLimits>& limits,
                                    int64_t parallelism);

// Empty when programs can be isolated on this machine; otherwise why not (the kernel refusing
// user namespaces, a /proc that cannot be mounted afresh, ...), found by running an empty
// program with `python` (a path or a name in PATH). Probed once per interpreter and cached.
std::string isolation_problem(const std::string& python = "python3");

}  // namespace xft
