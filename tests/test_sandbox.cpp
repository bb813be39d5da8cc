// Tests for xft/sandbox.h: limits, cleanup, scratch directories, no network, and programs that try
// to escape (SandboxEscape.*), each checked from outside after it returns.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"
#include "xft/core/error.h"
#include "xft/eval/sandbox.h"

using xft::test::expect_error;
namespace fs = std::filesystem;

namespace {

using xft::test::test_limits;

// The host PIDs of running processes whose command line contains `token` (zombies excluded: a
// zombie runs nothing). The programs below exec `sleep` or `sh` with the token in their
// arguments, so that their descendants can be found from outside whatever PID they see inside.
std::vector<pid_t> processes_with(const std::string& token) {
  std::vector<pid_t> found;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return found;
  while (const dirent* e = ::readdir(proc)) {
    const pid_t pid = static_cast<pid_t>(std::atol(e->d_name));
    if (pid <= 0) continue;
    std::ifstream cmd("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(cmd)), std::istreambuf_iterator<char>());
    if (text.find(token) == std::string::npos) continue;
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string all;
    std::getline(stat, all);
    const size_t paren = all.rfind(')');
    if (paren != std::string::npos && all.size() > paren + 2 && all[paren + 2] != 'Z' && all[paren + 2] != 'X')
      found.push_back(pid);
  }
  ::closedir(proc);
  return found;
}

// A token for one test's processes: a `sleep` duration no other process uses.
std::string sleep_token() {
  static int n = 0;
  return std::to_string(600 + (::getpid() % 1000)) + "." + std::to_string(100000 + ++n) + "1";
}

void expect_no_process_with(const std::string& token) {
  const auto left = processes_with(token);
  EXPECT_TRUE(left.empty()) << left.size() << " process(es) outlived their sandbox, e.g. PID " << left.front();
  for (pid_t pid : left) ::kill(pid, SIGKILL);
}

// The scratch directory a program printed as "CWD <path>".
std::string printed_cwd(const std::string& output) {
  const size_t at = output.find("CWD ");
  if (at == std::string::npos) return "";
  return output.substr(at + 4, output.find('\n', at) - at - 4);
}

}  // namespace

TEST(Sandbox, ReportsFailuresWithOutputTail) {
  const auto ok = xft::run_python("print('hello')\n", {});  // the default: python3 from PATH
  EXPECT_TRUE(ok.passed);
  EXPECT_EQ(ok.status, "passed");
  EXPECT_EQ(ok.exit_code, 0);
  EXPECT_EQ(ok.output_tail, "hello\n");

  const auto bad = xft::run_python("import sys\nprint('x' * 10000)\nassert 1 == 2, 'boom'\n", test_limits());
  EXPECT_FALSE(bad.passed);
  EXPECT_EQ(bad.status, "failed");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_LE(bad.output_tail.size(), 2048u);
  EXPECT_NE(bad.output_tail.find("AssertionError: boom"), std::string::npos) << bad.output_tail;

  EXPECT_EQ(xft::run_python("def f(:\n", test_limits()).status, "failed");  // a syntax error is the program's failure
  const auto killed = xft::run_python("import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n", test_limits());
  EXPECT_EQ(killed.status, "failed");
  EXPECT_EQ(killed.exit_code, 128 + SIGTERM);
}

TEST(Sandbox, MissingInterpreterIsAnErrorNotAFailure) {
  xft::SandboxLimits limits;
  limits.python = "/nonexistent/python3";
  const auto r = xft::run_python("print(1)\n", limits);
  EXPECT_EQ(r.status, "error");
  EXPECT_NE(r.output_tail.find("/nonexistent/python3"), std::string::npos);
  limits.timeout_s = 0;
  expect_error([&] { xft::run_python("", limits); }, {"timeout_s"});
}

// `--python .venv/bin/python`: a relative path names the interpreter from the caller's directory,
// not from the scratch directory the program runs in.
TEST(Sandbox, RelativeInterpreterPathIsTheCallersFile) {
  xft::SandboxLimits limits = xft::test::test_limits();
  limits.python = std::filesystem::relative(std::filesystem::canonical(limits.python)).string();
  ASSERT_NE(limits.python.find('/'), std::string::npos) << limits.python;
  ASSERT_NE(limits.python.front(), '/') << limits.python;
  EXPECT_EQ(xft::isolation_problem(limits.python), xft::isolation_problem(xft::test::test_limits().python));
  const auto r = xft::run_python("print(6 * 7)\n", limits);
  EXPECT_TRUE(r.passed) << r.status << ": " << r.output_tail;
  EXPECT_NE(r.output_tail.find("42"), std::string::npos);
}

TEST(Sandbox, InfiniteLoopIsKilledAtTheTimeout) {
  const auto direct = xft::run_python("while True:\n    pass\n", test_limits(1.0));
  EXPECT_EQ(direct.status, "timeout");
  EXPECT_GE(direct.seconds, 1.0);
  EXPECT_LT(direct.seconds, 4.0);
}

TEST(SandboxEscape, UnboundedAllocationFailsAsMemory) {
  xft::SandboxLimits limits = test_limits();
  limits.memory_bytes = 256LL << 20;
  const auto r = xft::run_python("chunks = []\nwhile True:\n    chunks.append(bytearray(32 * 1024 * 1024))\n", limits);
  EXPECT_FALSE(r.passed);
  EXPECT_EQ(r.status, "memory") << r.output_tail;
  EXPECT_LT(r.seconds, 10.0);
}

TEST(Sandbox, ForkedChildrenDoNotOutliveTheRun) {
  const std::string token = sleep_token();
  const std::string forker =
      "import os, time\n"
      "for _ in range(3):\n"
      "    if os.fork() == 0:\n"
      "        os.execv('/bin/sleep', ['sleep', '" +
      token +
      "'])\n"
      "time.sleep(0.3)\n"
      "print('STARTED', flush=True)\n";
  // The program ends at once, then never ends (killed at the timeout): no child may survive either.
  for (const auto& [program, status] :
       {std::pair{forker, "passed"}, std::pair{forker + "time.sleep(600)\n", "timeout"}}) {
    const auto r = xft::run_python(program, test_limits(1.5));
    EXPECT_EQ(r.status, status) << r.output_tail;
    EXPECT_NE(r.output_tail.find("STARTED"), std::string::npos) << r.output_tail;
    expect_no_process_with(token);
  }
}

TEST(Sandbox, FilesStayInTheScratchDirWhichIsRemoved) {
  const std::string program =
      "import os, tempfile\n"
      "open('out.txt', 'w').write('x')\n"
      "os.makedirs('sub/dir')\n"
      "open('sub/dir/f.txt', 'w').write('y')\n"
      "fd, name = tempfile.mkstemp()\n"
      "os.chmod('sub', 0o500)\n"  // removal must cope with what the program did to its directory
      "print('CWD', os.getcwd())\n"
      "print('HOME', os.environ['HOME'])\n"
      "print('TMP', os.path.dirname(name))\n";
  const auto r = xft::run_python(program, test_limits());
  ASSERT_TRUE(r.passed) << r.output_tail;
  std::istringstream in(r.output_tail);
  std::string tag, cwd, home, tmp;
  in >> tag >> cwd >> tag >> home >> tag >> tmp;
  EXPECT_NE(cwd.find("xft-sandbox-"), std::string::npos) << cwd;
  EXPECT_EQ(home, cwd);
  EXPECT_EQ(tmp, cwd);
  EXPECT_FALSE(fs::exists(cwd)) << "scratch dir left behind";
  EXPECT_FALSE(fs::exists(fs::current_path() / "out.txt"));
}

TEST(Sandbox, NoNetwork) {
  const auto r = xft::run_python(
      "import socket\n"
      "try:\n"
      "    socket.create_connection(('1.1.1.1', 80), timeout=2)\n"
      "    print('CONNECTED')\n"
      "except OSError as e:\n"
      "    print('refused', e)\n"
      "print('interfaces', [n for _, n in socket.if_nameindex()])\n",
      test_limits());
  EXPECT_TRUE(r.passed) << r.output_tail;
  EXPECT_EQ(r.output_tail.find("CONNECTED"), std::string::npos) << r.output_tail;
  if (::geteuid() == 0 && xft::test::run("unshare --net true 2>/dev/null") == 0) {
    EXPECT_NE(r.output_tail.find("interfaces ['lo']"), std::string::npos)
        << "expected a fresh network namespace: " << r.output_tail;
  }
}

TEST(Sandbox, RunManyKeepsOrderAcrossThreads) {
  std::vector<std::string> programs;
  for (int i = 0; i < 12; ++i)
    programs.push_back(i % 3 == 0 ? "raise SystemExit(3)\n" : "print(" + std::to_string(i) + ")\n");
  const auto results = xft::run_many(programs, test_limits(), 4);
  ASSERT_EQ(results.size(), programs.size());
  for (int i = 0; i < 12; ++i) {
    if (i % 3 == 0) {
      EXPECT_EQ(results[i].exit_code, 3);
    } else {
      EXPECT_EQ(results[i].output_tail, std::to_string(i) + "\n");
    }
  }
  expect_error([&] { xft::run_many(programs, test_limits(), 0); }, {"parallelism"});
}

TEST(Sandbox, UnsafeModeRunsWithoutNamespacesWhenAskedTo) {
  xft::SandboxLimits limits = test_limits();
  limits.unsafe_no_isolation = true;
  const auto r = xft::run_python("import os\nprint('PID', os.getpid())\n", limits);
  ASSERT_TRUE(r.passed) << r.output_tail;
  EXPECT_GT(std::stol(r.output_tail.substr(4)), 2) << "a host PID, not PID 2 of a namespace: " << r.output_tail;
}

TEST(Sandbox, IsolatedProgramsSeeOnlyTheirOwnNamespaces) {
  XFT_REQUIRE_ISOLATION();
  const auto r = xft::run_python(
      "import os, socket\n"
      "print('PID', os.getpid(), 'UID', os.getuid())\n"
      "print('CAPS', open('/proc/self/status').read().split('CapEff:')[1].split()[0])\n"
      "print('NNP', open('/proc/self/status').read().split('NoNewPrivs:')[1].split()[0])\n"
      "print('PROCS', sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n"
      "print('UP', [n for _, n in socket.if_nameindex()])\n",
      test_limits());
  ASSERT_TRUE(r.passed) << r.output_tail;
  EXPECT_NE(r.output_tail.find("PID 2 UID 1000"), std::string::npos) << r.output_tail;
  EXPECT_NE(r.output_tail.find("CAPS 0000000000000000"), std::string::npos) << r.output_tail;
  EXPECT_NE(r.output_tail.find("NNP 1"), std::string::npos) << r.output_tail;
  EXPECT_NE(r.output_tail.find("PROCS [1, 2]"), std::string::npos)
      << "only the init and the program: " << r.output_tail;
  EXPECT_NE(r.output_tail.find("UP ['lo']"), std::string::npos) << r.output_tail;
}

TEST(SandboxEscape, WritesOutsideTheScratchDirFail) {
  XFT_REQUIRE_ISOLATION();
  const auto outside = xft::test::scratch_dir("outside");
  const std::string home = std::getenv("HOME") ? std::getenv("HOME") : "/root";
  const std::string marker = "xft-escape-" + std::to_string(::getpid());
  const std::vector<std::string> targets = {outside + "/" + marker, "/tmp/" + marker, home + "/" + marker,
                                            "/dev/shm/" + marker, "/var/tmp/" + marker};
  std::string program = "import os\nprint('CWD', os.getcwd())\nfor path in [";
  for (const auto& t : targets) program += "'" + t + "', ";
  program +=
      "]:\n"
      "    for how in (lambda: open(path, 'w').write('x'), lambda: os.mkdir(path), lambda: os.symlink('/etc', path)):\n"
      "        try:\n"
      "            how()\n"
      "            print('WROTE', path)\n"
      "        except OSError as e:\n"
      "            pass\n"
      "os.chmod('.', 0o777)\n";
  const auto r = xft::run_python(program, test_limits());
  EXPECT_TRUE(r.passed) << r.output_tail;
  EXPECT_EQ(r.output_tail.find("WROTE"), std::string::npos) << r.output_tail;
  for (const auto& t : targets) EXPECT_FALSE(fs::exists(fs::symlink_status(t))) << t << " was written from the sandbox";
  const std::string cwd = printed_cwd(r.output_tail);
  EXPECT_FALSE(cwd.empty()) << r.output_tail;
  EXPECT_FALSE(fs::exists(cwd)) << "scratch dir left behind";
}

TEST(SandboxEscape, DaemonStartedWithSetsidAndDoubleForkDiesWithTheProgram) {
  XFT_REQUIRE_ISOLATION();
  const auto outside = xft::test::scratch_dir("daemon");
  const std::string token = sleep_token();
  const std::string late = outside + "/written-2s-later";
  const std::string late_in_scratch = "late.txt";
  const auto r = xft::run_python(
      "import os\n"
      "print('CWD', os.getcwd(), flush=True)\n"
      "if os.fork() == 0:\n"
      "    os.setsid()\n"
      "    if os.fork() == 0:\n"
      "        os.execv('/bin/sh', ['sh', '-c', 'sleep 2; echo x > " +
          late + "; echo x > " + late_in_scratch + "; sleep " + token +
          "'])\n"
          "    os._exit(0)\n"
          "os.wait()\n",
      test_limits());
  EXPECT_TRUE(r.passed) << r.output_tail;
  expect_no_process_with(token);
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  expect_no_process_with(token);
  EXPECT_FALSE(fs::exists(late)) << "the daemon outlived its sandbox and wrote " << late;
  const std::string cwd = printed_cwd(r.output_tail);
  EXPECT_FALSE(cwd.empty() || fs::exists(cwd)) << "scratch dir " << cwd << " left behind (or recreated)";
}

TEST(SandboxEscape, ChildLeftRunningAfterTheProgramExitsIsKilled) {
  XFT_REQUIRE_ISOLATION();
  const std::string token = sleep_token();
  const auto r = xft::run_python(
      "import os, signal, subprocess\n"
      "subprocess.Popen(['/bin/sleep', '" +
          token +
          "'], start_new_session=True)\n"
          "subprocess.Popen(['/bin/sleep', '" +
          token + "'], preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))\n",
      test_limits());
  EXPECT_TRUE(r.passed) << r.output_tail;
  expect_no_process_with(token);
}

TEST(SandboxEscape, LoopbackListenerOfTheHostIsUnreachable) {
  XFT_REQUIRE_ISOLATION();
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener, 8), 0);
  socklen_t len = sizeof addr;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  const std::string port = std::to_string(ntohs(addr.sin_port));
  const auto r = xft::run_python(
      "import socket\n"
      "for host in ('127.0.0.1', 'localhost', '::1'):\n"
      "    try:\n"
      "        s = socket.create_connection((host, " +
          port +
          "), timeout=2)\n"
          "        s.sendall(b'escaped')\n"
          "        print('CONNECTED', host)\n"
          "    except OSError as e:\n"
          "        print('refused', host, e)\n",
      test_limits());
  EXPECT_TRUE(r.passed) << r.output_tail;
  EXPECT_EQ(r.output_tail.find("CONNECTED"), std::string::npos) << r.output_tail;
  EXPECT_LT(::accept(listener, nullptr, nullptr), 0) << "the sandbox reached the host's loopback listener";
  ::close(listener);
}

TEST(SandboxEscape, KillingItsParentsLeavesTheEvaluatorRunning) {
  XFT_REQUIRE_ISOLATION();
  const std::string me = std::to_string(::getpid());
  const auto r = xft::run_python(
      "import os, signal\n"
      "for target in (os.getppid(), 1, " +
          me +
          ", -1, 0):\n"
          "    try:\n"
          "        os.kill(target, signal.SIGKILL)\n"
          "    except OSError:\n"
          "        pass\n"
          "print('still here')\n",
      test_limits());
  // kill(-1) and kill(0) reach the program itself; nothing outside its namespace.
  EXPECT_EQ(r.status, "memory") << "SIGKILL counts as running out of memory: " << r.output_tail;
  EXPECT_EQ(r.exit_code, 128 + SIGKILL);
  EXPECT_TRUE(xft::run_python("print(1)\n", test_limits()).passed) << "the evaluator still runs programs";
}

TEST(SandboxEscape, FloodingStdoutKeepsOnlyTheTail) {
  XFT_REQUIRE_ISOLATION();
  const auto r =
      xft::run_python("import os\nchunk = b'x' * 65536\nwhile True:\n    os.write(1, chunk)\n", test_limits(2.0));
  EXPECT_EQ(r.status, "timeout");
  EXPECT_LE(r.output_tail.size(), 2048u);
  EXPECT_LT(r.seconds, 6.0);
}

TEST(SandboxEscape, TwoHundredSleepingChildrenAreAllKilled) {
  XFT_REQUIRE_ISOLATION();
  const std::string token = sleep_token();
  const auto r = xft::run_python(
      "import os\n"
      "for _ in range(200):\n"
      "    if os.fork() == 0:\n"
      "        os.execv('/bin/sleep', ['sleep', '" +
          token +
          "'])\n"
          "print('FORKED')\n",
      test_limits());
  EXPECT_TRUE(r.passed) << r.output_tail;
  expect_no_process_with(token);
}
