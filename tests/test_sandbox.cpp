// Tests for xft/sandbox.h: limits, process-group cleanup, scratch directories, no network.
#include <gtest/gtest.h>
#include <signal.h>
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

// Gone, or a zombie waiting for whoever inherited it: either way nothing runs any more.
bool process_gone(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return true;
  std::string all;
  std::getline(stat, all);
  const size_t paren = all.rfind(')');
  return paren == std::string::npos || all.size() < paren + 3 || all[paren + 2] == 'Z' || all[paren + 2] == 'X';
}

// The numbers following `tag` in a program's output.
std::vector<pid_t> pids_after(const std::string& output, const std::string& tag) {
  std::vector<pid_t> pids;
  std::istringstream in(output);
  std::string word;
  while (in >> word) {
    if (word == tag && in >> word) pids.push_back(static_cast<pid_t>(std::stol(word)));
  }
  return pids;
}

void expect_all_gone(const std::vector<pid_t>& pids) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (pid_t pid : pids) {
    while (!process_gone(pid) && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_TRUE(process_gone(pid)) << "process " << pid << " outlived its sandbox";
    if (!process_gone(pid)) ::kill(pid, SIGKILL);
  }
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

TEST(Sandbox, InfiniteLoopIsKilledAtTheTimeout) {
  const auto direct = xft::run_python("while True:\n    pass\n", test_limits(1.0));
  EXPECT_EQ(direct.status, "timeout");
  EXPECT_GE(direct.seconds, 1.0);
  EXPECT_LT(direct.seconds, 4.0);
}

TEST(Sandbox, UnboundedAllocationFailsAsMemory) {
  xft::SandboxLimits limits = test_limits();
  limits.memory_bytes = 256LL << 20;
  const auto r = xft::run_python("chunks = []\nwhile True:\n    chunks.append(bytearray(32 * 1024 * 1024))\n", limits);
  EXPECT_FALSE(r.passed);
  EXPECT_EQ(r.status, "memory") << r.output_tail;
  EXPECT_LT(r.seconds, 10.0);
}

TEST(Sandbox, ForkedChildrenDoNotOutliveTheRun) {
  const std::string forker =
      "import os, time\n"
      "for _ in range(3):\n"
      "    pid = os.fork()\n"
      "    if pid == 0:\n"
      "        time.sleep(600)\n"
      "        os._exit(0)\n"
      "    print('CHILD', pid, flush=True)\n";
  // The program ends at once, then never ends (killed at the timeout): no child may survive either.
  for (const auto& [program, status] : {std::pair{forker, "passed"}, std::pair{forker + "time.sleep(600)\n", "timeout"}}) {
    const auto r = xft::run_python(program, test_limits(1.5));
    EXPECT_EQ(r.status, status) << r.output_tail;
    const auto pids = pids_after(r.output_tail, "CHILD");
    EXPECT_EQ(pids.size(), 3u) << r.output_tail;
    expect_all_gone(pids);
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
    EXPECT_NE(r.output_tail.find("interfaces ['lo']"), std::string::npos) << "expected a fresh network namespace: " << r.output_tail;
  }
}

TEST(Sandbox, RunManyKeepsOrderAcrossThreads) {
  std::vector<std::string> programs;
  for (int i = 0; i < 12; ++i) programs.push_back(i % 3 == 0 ? "raise SystemExit(3)\n" : "print(" + std::to_string(i) + ")\n");
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
