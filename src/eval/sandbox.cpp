#include "xft/eval/sandbox.h"

#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
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
  int in_fd;  // the program's stdin: carries the go-ahead, then EOF
  int out_fd;
  int err_fd;
  int status_fd;        // isolated: the init reports the program's exit status here (as descriptor 4)
  bool isolated;        // cloned into new user, mount, PID, network, IPC, UTS and cgroup namespaces
  const char* uid_map;  // "1000 <uid> 1": the program's user inside is not root, so exec drops
  const char* gid_map;  // the capabilities the namespaces' creator holds until then
};

// What the child reports through the error pipe when it cannot exec.
enum ChildStep : int { kStepExec = 0, kStepIdMaps, kStepPrivate, kStepProc, kStepBind, kStepReadOnly, kStepScratch };
const char* const kStepNames[] = {"exec",
                                  "write uid_map/gid_map",
                                  "make mounts private",
                                  "mount a fresh /proc",
                                  "bind the scratch directory",
                                  "make the filesystem read-only",
                                  "make the scratch directory writable"};
struct ChildError {
  int step;
  int err;
};

// The child side (from clone to exec) runs on a stack AddressSanitizer did not allocate, in the
// parent's memory (CLONE_VM): its no-return bookkeeping there misreads that stack and reports a
// false stack-buffer-overflow (google/sanitizers#189), so these functions are left uninstrumented.
#define XFT_CHILD_SIDE __attribute__((no_sanitize("address")))

XFT_CHILD_SIDE bool write_proc(const char* path, const char* text) {
  const int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const ssize_t n = static_cast<ssize_t>(std::strlen(text));
  const bool ok = ::write(fd, text, static_cast<size_t>(n)) == n;
  ::close(fd);
  return ok;
}

// Inside fresh namespaces (this process is PID 1 of its own PID namespace): map the user, give
// the PID namespace its own /proc, make every mount read-only except the scratch directory, and
// keep all mount events private. Returns the step that failed (errno set), or -1.
XFT_CHILD_SIDE int enter_isolation(const ChildPlan& plan) {
  if (!write_proc("/proc/self/setgroups", "deny") || !write_proc("/proc/self/uid_map", plan.uid_map) ||
      !write_proc("/proc/self/gid_map", plan.gid_map)) {
    return kStepIdMaps;
  }
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return kStepPrivate;
  if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) return kStepProc;
  if (::mount(plan.cwd, plan.cwd, nullptr, MS_BIND, nullptr) != 0) return kStepBind;
  struct mount_attr ro {};
  ro.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID;
  if (::mount_setattr(AT_FDCWD, "/", AT_RECURSIVE, &ro, sizeof ro) != 0) return kStepReadOnly;
  struct mount_attr rw {};
  rw.attr_clr = MOUNT_ATTR_RDONLY;
  if (::mount_setattr(AT_FDCWD, plan.cwd, 0, &rw, sizeof rw) != 0) return kStepScratch;
  return -1;
}

[[noreturn]] XFT_CHILD_SIDE void child_main(const ChildPlan& plan) {
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
  for (int sig : {SIGPIPE, SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGCHLD, SIGXCPU, SIGXFSZ})
    ::sigaction(sig, &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);

  ::dup2(plan.in_fd, 0);
  ::dup2(plan.out_fd, 1);
  ::dup2(plan.out_fd, 2);
  ::dup2(plan.err_fd, 3);  // reports a failed exec; closes itself on a successful one
  ::fcntl(3, F_SETFD, FD_CLOEXEC);
  if (plan.isolated) ::dup2(plan.status_fd, 4);
  // Descriptors other threads opened without O_CLOEXEC must not reach the program.
  const int first_closed = plan.isolated ? 5 : 4;
  if (::close_range(static_cast<unsigned>(first_closed), ~0u, 0) != 0) {
    for (int fd = first_closed; fd < 65536; ++fd) ::close(fd);
  }

  ChildError e{kStepExec, 0};
  if (plan.isolated) {
    const int failed = enter_isolation(plan);
    if (failed >= 0) e = {failed, errno};
  } else {
    ::unshare(CLONE_NEWNET);  // unsafe mode: no network where the user may make a namespace
  }
  // After the mounts: a cwd taken before would still point below the scratch bind mount.
  if (e.err == 0 && ::chdir(plan.cwd) != 0) e.err = errno;
  // Nothing the program execs gains privileges (setuid binaries); and if the thread that started
  // it dies (the evaluator killed), the sandbox dies with it instead of running on unwatched.
  ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  const struct rlimit as { plan.memory_bytes, plan.memory_bytes };
  const struct rlimit cpu { plan.cpu_seconds, plan.cpu_seconds + 1 };
  const struct rlimit fsize { kFileSizeLimit, kFileSizeLimit };
  const struct rlimit core { 0, 0 };
  if (e.err == 0 && (::setrlimit(RLIMIT_AS, &as) != 0 || ::setrlimit(RLIMIT_CPU, &cpu) != 0 ||
                     ::setrlimit(RLIMIT_FSIZE, &fsize) != 0 || ::setrlimit(RLIMIT_CORE, &core) != 0)) {
    e.err = errno;
  }
  if (e.err == 0) {
    ::execve(plan.python, plan.argv, plan.envp);
    e.err = errno;
  }
  [[maybe_unused]] const ssize_t w = ::write(3, &e, sizeof e);
  ::_exit(127);
}

XFT_CHILD_SIDE int child_entry(void* plan) { child_main(*static_cast<const ChildPlan*>(plan)); }

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
  constexpr int kNamespaces =
      CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP;
  const int flags = CLONE_VM | CLONE_VFORK | SIGCHLD | (plan->isolated ? kNamespaces : 0);
  const pid_t pid = ::clone(child_entry, static_cast<char*>(mem) + page + kStack, flags, plan);
  const int clone_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  ::munmap(mem, kStack + page);
  errno = clone_errno;
  return pid;
}

std::string resolve_executable(const std::string& name) {
  // A relative path names a file from here, not from the scratch directory the program runs in.
  if (name.find('/') != std::string::npos)
    return ::access(name.c_str(), X_OK) == 0 ? std::filesystem::absolute(name).string() : "";
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
  for (int i = 0; i < 2; ++i) {
    if (fds[i] >= 0) ::close(fds[i]);
    fds[i] = -1;
  }
  return false;
}

// What the program printed: the last kTailBytes (for failure messages), and the first `head_limit`
// bytes when the caller asked for them (a harness's report).
struct Captured {
  std::string tail;
  std::string head;
  size_t head_limit = 0;
};

void keep(Captured* c, const char* data, size_t n) {
  if (c->head.size() < c->head_limit) c->head.append(data, std::min(n, c->head_limit - c->head.size()));
  c->tail.append(data, n);
  if (c->tail.size() > 2 * kTailBytes) c->tail.erase(0, c->tail.size() - kTailBytes);
}

// Reads what is available without blocking; false once the pipe is at EOF.
bool drain(int fd, Captured* c) {
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      keep(c, buf, static_cast<size_t>(n));
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
  ::nftw(
      dir.c_str(),
      [](const char* p, const struct stat* st, int, struct FTW*) {
        if (S_ISDIR(st->st_mode)) ::chmod(p, 0700);
        return 0;
      },
      16, FTW_PHYS);
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
  XFT_CHECK(limits.timeout_s > 0 && limits.timeout_s <= 1e6,
            "sandbox: timeout_s must be a number of seconds in (0, 1e6], got ", limits.timeout_s);
  XFT_CHECK(limits.memory_bytes >= (16LL << 20),
            "sandbox: memory_bytes must be at least 16 MiB (the interpreter needs it), got ", limits.memory_bytes);
  XFT_CHECK(!limits.python.empty(), "sandbox: python must name an interpreter");
}

// The program's whole environment: its scratch as HOME and TMPDIR, no proxy that works.
std::vector<std::string> child_environment(const std::string& dir) {
  const char* parent_path = std::getenv("PATH");
  std::vector<std::string> env = {
      "PATH=" + std::string(parent_path ? parent_path : "/usr/local/bin:/usr/bin:/bin"), "HOME=" + dir, "TMPDIR=" + dir,
      "TMP=" + dir, "TEMP=" + dir, "LANG=C.UTF-8", "LC_ALL=C.UTF-8",
      // BLAS pools reserve memory per thread and would trip RLIMIT_AS.
      "OMP_NUM_THREADS=1", "OPENBLAS_NUM_THREADS=1", "MKL_NUM_THREADS=1", "no_proxy=", "NO_PROXY="};
  for (const char* var :
       {"http_proxy", "https_proxy", "ftp_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "ALL_PROXY"}) {
    env.push_back(std::string(var) + "=" + kDeadProxy);
  }
  return env;
}

struct Watch {
  bool timed_out = false, lost = false;
  bool exiting = false;  // the init reported the status and is taking the namespaces down: reap it later
  int wstatus = 0;
};

// Reads the init's report ("<status>\n") without blocking; true once it is complete or the pipe
// is at EOF (the init died without one).
bool read_status(int fd, std::string* text) {
  char buf[32];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      text->append(buf, static_cast<size_t>(n));
      if (text->find('\n') != std::string::npos) return true;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return n == 0;
  }
}

// Collects the child's output until it exits (its whole process group killed at `deadline`),
// then kills whatever it left in its group and reaps it. With a status pipe (isolated), returns
// as soon as the init reports the program's status: tearing the namespaces down takes the kernel
// a few milliseconds (an RCU grace period), which the caller overlaps with the next program.
Watch watch_child(pid_t pid, int out_fd, int status_fd, Clock::time_point deadline, Captured* tail) {
  ::fcntl(out_fd, F_SETFL, ::fcntl(out_fd, F_GETFL) | O_NONBLOCK);
  if (status_fd >= 0) ::fcntl(status_fd, F_SETFL, ::fcntl(status_fd, F_GETFL) | O_NONBLOCK);
  bool open = true;
  std::string status;
  Watch w;
  for (;;) {
    struct pollfd pfd[2] = {{open ? out_fd : -1, POLLIN, 0}, {status_fd, POLLIN, 0}};
    if (open || status_fd >= 0) {
      ::poll(pfd, 2, 10);
    } else {
      ::usleep(2000);
    }
    if (open) open = drain(out_fd, tail);
    if (status_fd >= 0 && read_status(status_fd, &status)) {
      char* end = nullptr;
      const long code = std::strtol(status.c_str(), &end, 10);
      if (!w.timed_out && end != status.c_str() && *end == '\n' && code >= 0 && code < 256) {
        w.wstatus = W_EXITCODE(static_cast<int>(code), 0);
        w.exiting = true;
        if (open) drain(out_fd, tail);  // what the program wrote before it ended
        return w;
      }
      status_fd = -1;  // no report: wait for the exit itself
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
SandboxResult classify(int wstatus, bool timed_out, bool isolated, Captured out, Clock::time_point start) {
  SandboxResult r;
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::string tail = std::move(out.tail);
  if (tail.size() > kTailBytes) tail.erase(0, tail.size() - kTailBytes);
  r.output_tail = std::move(tail);
  r.output = std::move(out.head);
  int sig = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0;
  r.exit_code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + sig;
  // The isolated program's init exits with 128 + the signal that killed the program.
  if (isolated && sig == 0 && r.exit_code > 128 && r.exit_code < 128 + NSIG) sig = r.exit_code - 128;
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

// A fresh scratch directory under $TMPDIR (or /tmp); empty with errno set when none can be made.
std::string make_scratch() {
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = std::string(tmp && *tmp ? tmp : "/tmp") + "/xft-sandbox-XXXXXX";
  return ::mkdtemp(dir.data()) == nullptr ? std::string() : dir;
}

// The interpreter starts before its program is known (run_many overlaps the namespaces' and the
// interpreter's start-up with the previous program) and waits on stdin; one byte says go, and it
// runs program.py in __main__ as `python program.py` would.
constexpr const char* kLoader =
    "import sys\n"
    "if __import__('os').read(0, 1) == b'g':\n"
    "    sys.argv[:] = ['program.py']\n"
    "    __file__ = 'program.py'\n"
    "    exec(compile(open('program.py', 'rb').read(), 'program.py', 'exec'))\n";

// Isolated, the first process is PID 1 of its namespace, which no process inside can signal and
// whose exit takes the namespace down: a shell (tiny, so its fork is cheap, unlike an
// interpreter's) that starts the interpreter, reaps orphans and exits with the program's status
// (128 + signal when killed). The `exit` keeps the shell from exec'ing the interpreter in its place.
// It reports the status on descriptor 4 (closed for the interpreter) before exiting.
constexpr const char* kInit = "\"$0\" -I -u -c \"$1\" 4>&-; s=$?; echo $s >&4; exit $s";

// A sandbox started ahead of its program: the interpreter, in its namespaces, waiting for the
// go-ahead on go_fd. Owns the process, the pipes and the scratch dir.
class Prepared {
 public:
  Prepared() = default;
  Prepared(const Prepared&) = delete;
  Prepared& operator=(const Prepared&) = delete;
  Prepared(Prepared&& o) noexcept { *this = std::move(o); }
  Prepared& operator=(Prepared&& o) noexcept {
    std::swap(pid_, o.pid_), std::swap(out_fd_, o.out_fd_), std::swap(go_fd_, o.go_fd_),
        std::swap(status_fd_, o.status_fd_);
    std::swap(dir_, o.dir_), std::swap(error_, o.error_), std::swap(limits_, o.limits_),
        std::swap(isolated_, o.isolated_);
    return *this;
  }
  ~Prepared() { abandon(); }

  static Prepared start(const SandboxLimits& limits, bool isolated);
  // Runs the program; may return while its namespaces are still being taken down (reap()).
  SandboxResult run(const std::string& program);
  // Kills what is left and, once it is gone (at once when `block`), removes the scratch
  // directory; true when nothing is left.
  bool reap(bool block);

 private:
  void abandon() { reap(true); }
  void close_fds() {
    for (int* fd : {&out_fd_, &go_fd_, &status_fd_}) {
      if (*fd >= 0) ::close(*fd);
      *fd = -1;
    }
  }
  pid_t pid_ = -1;
  int out_fd_ = -1, go_fd_ = -1, status_fd_ = -1;
  std::string dir_, error_;
  SandboxLimits limits_;
  bool isolated_ = true;
};

bool Prepared::reap(bool block) {
  close_fds();
  if (pid_ > 0) {
    ::kill(-pid_, SIGKILL);  // PID 1 of its namespace: everything in it goes too
    pid_t got;
    while ((got = ::waitpid(pid_, nullptr, block ? 0 : WNOHANG)) < 0 && errno == EINTR) {
    }
    if (got == 0) return false;
    pid_ = -1;
  }
  if (!dir_.empty()) remove_scratch(dir_);
  dir_.clear();
  return true;
}

Prepared Prepared::start(const SandboxLimits& limits, bool isolated) {
  Prepared p;
  p.limits_ = limits;
  p.isolated_ = isolated;
  const std::string python = resolve_executable(limits.python);
  if (python.empty()) {
    p.error_ = "sandbox: cannot find an executable '" + limits.python + "' (PATH)";
    return p;
  }
  p.dir_ = make_scratch();
  if (p.dir_.empty()) {
    p.error_ = std::string("sandbox: mkdtemp: ") + std::strerror(errno);
    return p;
  }
  // -I: no user site-packages or PYTHON* variables; -u: output survives a SIGKILL at the timeout.
  std::vector<std::string> args = {python, "-I", "-u", "-c", kLoader};
  if (isolated) args = {"/bin/sh", "-c", kInit, python, kLoader};
  std::vector<std::string> env = child_environment(p.dir_);
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, status[2] = {-1, -1};
  if (!make_pipe(in) || !make_pipe(out) || !make_pipe(err) || !make_pipe(status)) {
    p.error_ = std::string("sandbox: pipe: ") + std::strerror(errno);
    for (int fd : {in[0], in[1], out[0], out[1], err[0], err[1], status[0], status[1]})
      if (fd >= 0) ::close(fd);
    return p;
  }
  const auto cpu = static_cast<rlim_t>(std::ceil(limits.timeout_s)) + 1;
  const std::string uid_map = "1000 " + std::to_string(::geteuid()) + " 1";
  const std::string gid_map = "1000 " + std::to_string(::getegid()) + " 1";
  ChildPlan plan{argv[0],  argv.data(),     envp.data(),    p.dir_.c_str(), static_cast<rlim_t>(limits.memory_bytes),
                 cpu,      in[0],           out[1],         err[1],         status[1],
                 isolated, uid_map.c_str(), gid_map.c_str()};
  p.pid_ = spawn_child(&plan);
  const int fork_errno = errno;
  for (int fd : {in[0], out[1], err[1], status[1]}) ::close(fd);
  p.go_fd_ = in[1];
  p.out_fd_ = out[0];
  p.status_fd_ = status[0];
  if (p.pid_ < 0) {
    ::close(err[0]);
    p.error_ = std::string("sandbox: cannot start a process: ") + std::strerror(fork_errno);
    p.abandon();
    return p;
  }
  // The error pipe closes at exec (O_CLOEXEC) or carries the failed step; either way setsid() has happened.
  ChildError e{};
  ssize_t got = 0;
  do {
    got = ::read(err[0], &e, sizeof e);
  } while (got < 0 && errno == EINTR);
  ::close(err[0]);
  if (got == static_cast<ssize_t>(sizeof e)) {
    p.error_ = e.step == kStepExec ? "sandbox: cannot start " + python + " in " + p.dir_ + ": " + std::strerror(e.err)
                                   : std::string("sandbox: cannot ") + kStepNames[e.step] +
                                         " in the namespaces: " + std::strerror(e.err);
    p.abandon();
  }
  return p;
}

SandboxResult Prepared::run(const std::string& program) {
  const auto start = Clock::now();
  if (!error_.empty()) return error_result(error_, start);
  {
    std::ofstream out(dir_ + "/program.py", std::ios::binary);
    out << program;
    out.close();
    if (!out) {
      abandon();
      return error_result("sandbox: cannot write the program into a scratch directory", start);
    }
  }
  const char go = 'g';
  // A failed write means the sandbox died while waiting; its status tells why.
  [[maybe_unused]] const ssize_t w = ::write(go_fd_, &go, 1);
  ::close(go_fd_);
  go_fd_ = -1;
  Captured captured;
  captured.head_limit = static_cast<size_t>(std::max<int64_t>(0, limits_.capture_bytes));
  const auto deadline =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(limits_.timeout_s));
  const Watch watch = watch_child(pid_, out_fd_, isolated_ ? status_fd_ : -1, deadline, &captured);
  if (!watch.exiting) pid_ = -1;  // reaped (or lost) by watch_child
  reap(false);
  if (watch.lost)
    return error_result("sandbox: the exit status of " + limits_.python + " was collected elsewhere", start);
  return classify(watch.wstatus, watch.timed_out, isolated_, std::move(captured), start);
}

// Runs an empty program isolated: the kernel may refuse the namespaces (no user namespaces in a
// container, a masked /proc), or a step inside them may fail.
std::string probe_isolation(const std::string& interpreter) {
  const std::string python = resolve_executable(interpreter);
  if (python.empty()) return "cannot find '" + interpreter + "' (PATH) to probe the sandbox with";
  SandboxLimits limits;
  limits.python = python;
  limits.timeout_s = 30.0;
  const SandboxResult r = Prepared::start(limits, true).run("");
  if (r.passed) return "";
  const bool refused = r.output_tail.find("cannot start a process") != std::string::npos;
  return (refused ? "the kernel refuses new user/PID/mount/network namespaces (" + r.output_tail + ")" : r.output_tail);
}

void warn_unisolated_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    std::cerr << "xft sandbox: WARNING: running untrusted programs WITHOUT isolation (--unsafe-no-isolation): they "
                 "can read and write whatever this user can\n";
  });
}

// Whether to isolate: always, unless the caller opted out; an error where isolation is refused.
bool isolate(const SandboxLimits& limits) {
  if (limits.unsafe_no_isolation) {
    warn_unisolated_once();
    return false;
  }
  // A missing interpreter is the run's error ("error" status), not a verdict on isolation.
  if (resolve_executable(limits.python).empty()) return true;
  const std::string problem = isolation_problem(limits.python);
  XFT_CHECK(
      problem.empty(), "sandbox: refusing to run untrusted code: it cannot be isolated on this machine: ", problem,
      "\nRun where user namespaces are allowed (sysctl kernel.unprivileged_userns_clone / user.max_user_namespaces; "
      "containers may need --security-opt seccomp=unconfined), or pass --unsafe-no-isolation "
      "to run it with rlimits and a scratch directory only (no security boundary)");
  return true;
}

}  // namespace

std::string isolation_problem(const std::string& python) {
  // Probed once per interpreter: the kernel's answer does not change while the process runs.
  static std::mutex mutex;
  static std::map<std::string, std::string> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(python);
  if (it == cache.end()) it = cache.emplace(python, probe_isolation(python)).first;
  return it->second;
}

SandboxResult run_python(const std::string& program, const SandboxLimits& limits) {
  check_limits(limits);
  return Prepared::start(limits, isolate(limits)).run(program);
}

std::vector<SandboxResult> run_many(const std::vector<std::string>& programs, const std::vector<SandboxLimits>& limits,
                                    int64_t parallelism) {
  XFT_CHECK(parallelism >= 1, "sandbox: parallelism must be at least 1, got ", parallelism);
  XFT_CHECK(limits.size() == programs.size(), "sandbox: ", limits.size(), " limits for ", programs.size(),
            " programs (expected one per program)");
  std::vector<char> isolated(programs.size());
  for (size_t i = 0; i < limits.size(); ++i) {
    check_limits(limits[i]);
    isolated[i] = isolate(limits[i]);
  }
  std::vector<SandboxResult> results(programs.size());
  std::atomic<size_t> next{0};
  std::mutex error_mutex;
  std::exception_ptr error;
  // Each worker starts its next sandbox before running the current program, so that the next
  // one's namespaces and interpreter come up while this one runs.
  auto worker = [&] {
    try {
      size_t i = next.fetch_add(1);
      if (i >= programs.size()) return;
      Prepared current = Prepared::start(limits[i], isolated[i]);
      std::vector<Prepared> ending;  // programs done, their namespaces still going down
      for (;;) {
        const size_t j = next.fetch_add(1);
        Prepared upcoming = j < programs.size() ? Prepared::start(limits[j], isolated[j]) : Prepared();
        results[i] = current.run(programs[i]);
        ending.push_back(std::move(current));
        ending.erase(std::remove_if(ending.begin(), ending.end(), [](Prepared& p) { return p.reap(false); }),
                     ending.end());
        if (j >= programs.size()) break;
        i = j;
        current = std::move(upcoming);
      }
      for (auto& p : ending) p.reap(true);  // nothing of these programs outlives run_many
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
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

std::vector<SandboxResult> run_many(const std::vector<std::string>& programs, const SandboxLimits& limits,
                                    int64_t parallelism) {
  return run_many(programs, std::vector<SandboxLimits>(programs.size(), limits), parallelism);
}

}  // namespace xft
