#include "xft/eval/sandbox.h"

#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <mutex>
#include <thread>

#include "xft/core/error.h"
#include "xft/core/files.h"

namespace xft {

namespace {

constexpr size_t kTailBytes = 2048;
constexpr rlim_t kFileSizeLimit = 16u << 20;
// Proxies pointed at the discard port: the fallback when no network namespace can be made.
constexpr const char* kDeadProxy = "http://127.0.0.1:9";

using Clock = std::chrono::steady_clock;

// Everything the child needs, prepared by the parent. The child shares the parent's memory until
// it execs (CLONE_VM | CLONE_VFORK, as glibc's posix_spawn does: fork would copy the page tables of
// a process holding LibTorch and a model, ~0.1 s a program), so it may only make system calls and
// touch its own stack: no allocation, no locks, nothing written outside.
struct ChildPlan {
  const char* python;
  char* const* argv;
  char* const* envp;
  const char* cwd;
  rlim_t memory_bytes;
  rlim_t cpu_seconds;
  int out_fd;
  int err_fd;
};

[[noreturn]] void child_main(const ChildPlan& plan) {
  ::setsid();  // own session and process group: the parent kills the group as a whole
  // The parent's handlers must not run here (they would act on the parent's memory), and the
  // program starts with default dispositions for what it may rely on. Signals are still blocked.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) == 0 && old.sa_handler != SIG_IGN && old.sa_handler != SIG_DFL) {
      ::sigaction(sig, &dfl, nullptr);
    }
  }
  for (int sig : {SIGPIPE, SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGCHLD, SIGXCPU, SIGXFSZ}) ::sigaction(sig, &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);

  const int devnull = ::open("/dev/null", O_RDONLY);
  if (devnull >= 0) ::dup2(devnull, 0);
  ::dup2(plan.out_fd, 1);
  ::dup2(plan.out_fd, 2);
  ::dup2(plan.err_fd, 3);  // reports a failed exec; closes itself on a successful one
  ::fcntl(3, F_SETFD, FD_CLOEXEC);
  // Descriptors other threads opened without O_CLOEXEC must not reach the program.
  if (::close_range(4, ~0u, 0) != 0) {
    for (int fd = 4; fd < 65536; ++fd) ::close(fd);
  }

  int err = 0;
  if (::chdir(plan.cwd) != 0) err = errno;
  ::unshare(CLONE_NEWNET);  // a fresh namespace has only a down loopback; fails without privileges
  const struct rlimit as {plan.memory_bytes, plan.memory_bytes};
  const struct rlimit cpu {plan.cpu_seconds, plan.cpu_seconds + 1};
  const struct rlimit fsize {kFileSizeLimit, kFileSizeLimit};
  const struct rlimit core {0, 0};
  if (err == 0 && (::setrlimit(RLIMIT_AS, &as) != 0 || ::setrlimit(RLIMIT_CPU, &cpu) != 0 ||
                   ::setrlimit(RLIMIT_FSIZE, &fsize) != 0 || ::setrlimit(RLIMIT_CORE, &core) != 0)) {
    err = errno;
  }
  if (err == 0) {
    ::execve(plan.python, plan.argv, plan.envp);
    err = errno;
  }
  [[maybe_unused]] const ssize_t w = ::write(3, &err, sizeof err);
  ::_exit(127);
}

int child_entry(void* plan) { child_main(*static_cast<const ChildPlan*>(plan)); }

// Starts child_main on a stack of its own (with a guard page below it); returns the pid, or -1
// with errno set. The calling thread resumes once the child has exec'd or exited.
pid_t spawn_child(ChildPlan* plan) {
  constexpr size_t kStack = 256 << 10;
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  void* mem = ::mmap(nullptr, kStack + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (mem == MAP_FAILED) return -1;
  ::mprotect(mem, page, PROT_NONE);
  // Blocked across the clone so that no handler of the parent runs on the child's stack before
  // child_main has reset them.
  sigset_t all, saved;
  sigfillset(&all);
  ::pthread_sigmask(SIG_BLOCK, &all, &saved);
  const pid_t pid = ::clone(child_entry, static_cast<char*>(mem) + page + kStack, CLONE_VM | CLONE_VFORK | SIGCHLD, plan);
  const int clone_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  ::munmap(mem, kStack + page);
  errno = clone_errno;
  return pid;
}

std::string resolve_executable(const std::string& name) {
  if (name.find('/') != std::string::npos) return ::access(name.c_str(), X_OK) == 0 ? name : "";
  const char* path = std::getenv("PATH");
  const std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  for (size_t b = 0; b <= dirs.size();) {
    size_t e = dirs.find(':', b);
    if (e == std::string::npos) e = dirs.size();
    const std::string dir = e > b ? dirs.substr(b, e - b) : ".";
    const std::string candidate = dir + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    b = e + 1;
  }
  return "";
}

// pipe2 with both ends moved to descriptors >= 10, so the child's dup2 onto 0..3 cannot clobber them.
bool make_pipe(int fds[2]) {
  int raw[2];
  if (::pipe2(raw, O_CLOEXEC) != 0) return false;
  for (int i = 0; i < 2; ++i) {
    fds[i] = ::fcntl(raw[i], F_DUPFD_CLOEXEC, 10);
    ::close(raw[i]);
  }
  if (fds[0] >= 0 && fds[1] >= 0) return true;
  if (fds[0] >= 0) ::close(fds[0]);
  if (fds[1] >= 0) ::close(fds[1]);
  return false;
}

void keep_tail(std::string* tail, const char* data, size_t n) {
  tail->append(data, n);
  if (tail->size() > 2 * kTailBytes) tail->erase(0, tail->size() - kTailBytes);
}

// Reads what is available without blocking; false once the pipe is at EOF.
bool drain(int fd, std::string* tail) {
  char buf[8192];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      keep_tail(tail, buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return n < 0;  // EAGAIN: open but empty; 0: EOF; other errors count as EOF
  }
}

// The program may have made its directory unwritable; give it back to the owner and try again.
void remove_scratch(const std::string& dir) {
  try {
    remove_tree(dir);
    return;
  } catch (const Error&) {
  }
  ::nftw(dir.c_str(), [](const char* p, const struct stat* st, int, struct FTW*) {
    if (S_ISDIR(st->st_mode)) ::chmod(p, 0700);
    return 0;
  }, 16, FTW_PHYS);
  try {
    remove_tree(dir);
  } catch (const Error&) {
    // Left behind (a process that escaped the group may still be writing): never fatal to the caller.
  }
}

SandboxResult error_result(const std::string& why, Clock::time_point start) {
  SandboxResult r;
  r.status = "error";
  r.output_tail = why;
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return r;
}

bool contains(const std::string& s, const char* what) { return s.find(what) != std::string::npos; }

void check_limits(const SandboxLimits& limits) {
  XFT_CHECK(limits.timeout_s > 0 && limits.timeout_s <= 1e6, "sandbox: timeout_s must be a number of seconds in (0, 1e6], got ",
            limits.timeout_s);
  XFT_CHECK(limits.memory_bytes >= (16LL << 20), "sandbox: memory_bytes must be at least 16 MiB (the interpreter needs it), got ",
            limits.memory_bytes);
  XFT_CHECK(!limits.python.empty(), "sandbox: python must name an interpreter");
}

// The program's whole environment: its scratch as HOME and TMPDIR, no proxy that works.
std::vector<std::string> child_environment(const std::string& dir) {
  const char* parent_path = std::getenv("PATH");
  std::vector<std::string> env = {"PATH=" + std::string(parent_path ? parent_path : "/usr/local/bin:/usr/bin:/bin"),
                                  "HOME=" + dir, "TMPDIR=" + dir, "TMP=" + dir, "TEMP=" + dir,
                                  "LANG=C.UTF-8", "LC_ALL=C.UTF-8",
                                  // BLAS pools reserve memory per thread and would trip RLIMIT_AS.
                                  "OMP_NUM_THREADS=1", "OPENBLAS_NUM_THREADS=1", "MKL_NUM_THREADS=1",
                                  "no_proxy=", "NO_PROXY="};
  for (const char* var : {"http_proxy", "https_proxy", "ftp_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "ALL_PROXY"}) {
    env.push_back(std::string(var) + "=" + kDeadProxy);
  }
  return env;
}

struct Watch {
  bool timed_out = false, lost = false;
  int wstatus = 0;
};

// Collects the child's output until it exits (its whole process group killed at `deadline`),
// then kills whatever it left in its group and reaps it.
Watch watch_child(pid_t pid, int out_fd, Clock::time_point deadline, std::string* tail) {
  ::fcntl(out_fd, F_SETFL, ::fcntl(out_fd, F_GETFL) | O_NONBLOCK);
  bool open = true;
  Watch w;
  for (;;) {
    if (open) {
      struct pollfd pfd {out_fd, POLLIN, 0};
      ::poll(&pfd, 1, 10);
      open = drain(out_fd, tail);
    } else {
      ::usleep(2000);
    }
    // WNOWAIT leaves the child a zombie, so its pid (= the group id) cannot be reused before the
    // group is killed below.
    siginfo_t info{};
    const int got = ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT);
    if (got == 0 && info.si_pid == pid) break;
    if (got < 0 && errno == ECHILD) {  // reaped elsewhere (SIGCHLD ignored, a waitpid(-1) in another thread)
      w.lost = true;
      break;
    }
    if (!w.timed_out && Clock::now() >= deadline) {
      w.timed_out = true;
      ::kill(-pid, SIGKILL);
    }
  }
  if (!w.lost) {
    ::kill(-pid, SIGKILL);  // whatever the program left running in its group
    while (::waitpid(pid, &w.wstatus, 0) < 0 && errno == EINTR) {
    }
  }
  if (open) drain(out_fd, tail);
  return w;
}

// passed | failed | timeout | memory, from how the program ended and what it printed last.
SandboxResult classify(int wstatus, bool timed_out, std::string tail, Clock::time_point start) {
  SandboxResult r;
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (tail.size() > kTailBytes) tail.erase(0, tail.size() - kTailBytes);
  r.output_tail = std::move(tail);
  const int sig = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0;
  r.exit_code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + sig;
  if (timed_out || sig == SIGXCPU) {
    r.status = "timeout";
  } else if (WIFEXITED(wstatus) && r.exit_code == 0) {
    r.status = "passed";
    r.passed = true;
  } else if (contains(r.output_tail, "MemoryError") || contains(r.output_tail, "std::bad_alloc") ||
             contains(r.output_tail, "Cannot allocate memory") || sig == SIGKILL || sig == SIGSEGV || sig == SIGBUS) {
    // Under RLIMIT_AS Python raises MemoryError; allocations failing in C code crash instead.
    r.status = "memory";
  } else {
    r.status = "failed";
  }
  return r;
}

}  // namespace

SandboxResult run_python(const std::string& program, const SandboxLimits& limits) {
  check_limits(limits);
  const auto start = Clock::now();
  const std::string python = resolve_executable(limits.python);
  if (python.empty()) return error_result("sandbox: cannot find an executable '" + limits.python + "' (PATH)", start);

  const char* tmp = std::getenv("TMPDIR");
  std::string dir = std::string(tmp && *tmp ? tmp : "/tmp") + "/xft-sandbox-XXXXXX";
  if (::mkdtemp(dir.data()) == nullptr) return error_result("sandbox: mkdtemp " + dir + ": " + std::strerror(errno), start);
  {
    std::ofstream out(dir + "/program.py", std::ios::binary);
    out << program;
    out.close();
    if (!out) {
      remove_scratch(dir);
      return error_result("sandbox: cannot write the program into " + dir, start);
    }
  }

  // -I: no user site-packages or PYTHON* variables; -u: output survives a SIGKILL at the timeout.
  std::vector<std::string> args = {python, "-I", "-u", "program.py"};
  std::vector<std::string> env = child_environment(dir);
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  const auto cpu = static_cast<rlim_t>(std::ceil(limits.timeout_s)) + 1;
  int out[2], err[2];
  if (!make_pipe(out)) {
    remove_scratch(dir);
    return error_result(std::string("sandbox: pipe: ") + std::strerror(errno), start);
  }
  if (!make_pipe(err)) {
    ::close(out[0]);
    ::close(out[1]);
    remove_scratch(dir);
    return error_result(std::string("sandbox: pipe: ") + std::strerror(errno), start);
  }
  ChildPlan plan{python.c_str(), argv.data(), envp.data(), dir.c_str(), static_cast<rlim_t>(limits.memory_bytes), cpu,
                 out[1], err[1]};
  const pid_t pid = spawn_child(&plan);
  const int fork_errno = errno;
  ::close(out[1]);
  ::close(err[1]);
  if (pid < 0) {
    ::close(out[0]);
    ::close(err[0]);
    remove_scratch(dir);
    return error_result(std::string("sandbox: cannot start a process: ") + std::strerror(fork_errno), start);
  }

  // The error pipe closes at exec (O_CLOEXEC) or carries errno; either way setsid() has happened.
  int exec_errno = 0;
  ssize_t got = 0;
  do {
    got = ::read(err[0], &exec_errno, sizeof exec_errno);
  } while (got < 0 && errno == EINTR);
  ::close(err[0]);
  if (got == static_cast<ssize_t>(sizeof exec_errno)) {
    ::waitpid(pid, nullptr, 0);
    ::close(out[0]);
    remove_scratch(dir);
    return error_result("sandbox: cannot start " + python + " in " + dir + ": " + std::strerror(exec_errno), start);
  }

  std::string tail;
  const auto deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(limits.timeout_s));
  const Watch watch = watch_child(pid, out[0], deadline, &tail);
  ::close(out[0]);
  remove_scratch(dir);
  if (watch.lost) return error_result("sandbox: the exit status of " + python + " was collected elsewhere", start);
  return classify(watch.wstatus, watch.timed_out, std::move(tail), start);
}

std::vector<SandboxResult> run_many(const std::vector<std::string>& programs, const SandboxLimits& limits,
                                    int64_t parallelism) {
  XFT_CHECK(parallelism >= 1, "sandbox: parallelism must be at least 1, got ", parallelism);
  check_limits(limits);
  std::vector<SandboxResult> results(programs.size());
  std::atomic<size_t> next{0};
  std::mutex error_mutex;
  std::exception_ptr error;
  auto worker = [&] {
    for (size_t i; (i = next.fetch_add(1)) < programs.size();) {
      try {
        results[i] = run_python(programs[i], limits);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
      }
    }
  };
  const size_t n_threads = std::min<size_t>(static_cast<size_t>(parallelism), programs.size());
  std::vector<std::thread> threads;
  for (size_t t = 1; t < n_threads; ++t) threads.emplace_back(worker);
  worker();
  for (auto& t : threads) t.join();
  if (error) std::rethrow_exception(error);
  return results;
}

}  // namespace xft
