// Helpers shared by the tests: fixture paths, scratch directories, running programs.
#pragma once
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "xft/core/error.h"
#include "xft/core/files.h"
#include "xft/core/safetensors.h"
#include "xft/eval/sandbox.h"
#include "xft/model/config.h"

namespace xft::test {

// Paths come from the build (compile definitions), overridable through the environment.
inline std::string env_or_empty(const char* name) {
  if (const char* v = std::getenv(name)) return v;
  const std::string n = name;
#ifdef XFT_TEST_FIXTURES
  if (n == "XFT_FIXTURES") return XFT_TEST_FIXTURES;
  if (n == "XFT_PYTHON") return XFT_TEST_PYTHON;
  if (n == "XFT_TOOL") return XFT_TEST_TOOL;
  if (n == "XFT_SOURCE_DIR") return XFT_TEST_SOURCE_DIR;
  if (n == "XFT_BIN_DIR") return XFT_TEST_BIN_DIR;
#endif
  return "";
}

// Directory of transformers-made fixtures (tests/python/make_llama_fixtures.py, run by CTest).
inline std::string fixture(const std::string& name) {
  const auto root = env_or_empty("XFT_FIXTURES");
  if (root.empty()) ADD_FAILURE() << "XFT_FIXTURES is not set: run the tests through ctest";
  const auto p = std::filesystem::path(root) / name;
  if (!std::filesystem::exists(p)) ADD_FAILURE() << p << " missing: the make_llama_fixtures CTest step must run first";
  return p.string();
}

// A fresh, empty scratch directory for one test.
inline std::string scratch_dir(const std::string& tag) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  auto p = std::filesystem::temp_directory_path() /
           ("xft-test-" + std::to_string(::getpid()) + "-" + info->test_suite_name() + "-" + info->name() + "-" + tag);
  xft::remove_tree(p.string());
  std::filesystem::create_directories(p);
  return p.string();
}

inline int run(const std::string& command) {
  const int rc = std::system(command.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// A file's bytes ("" when it cannot be read).
inline std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Every line of a JSON-lines file, parsed (a line that is not JSON fails the test with its text).
inline std::vector<nlohmann::json> read_json_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> out;
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
  return out;
}

// Column `key` of every row of a trainer's metrics.jsonl, in order.
inline std::vector<double> metric(const std::string& metrics, const std::string& key) {
  std::vector<double> out;
  for (const auto& row : read_json_lines(metrics)) out.push_back(row.at(key).get<double>());
  return out;
}
inline std::vector<double> losses(const std::string& metrics) { return metric(metrics, "loss"); }

inline double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

// Expects `f` to throw xft::Error whose message contains every one of `parts`.
template <typename F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "expected an xft::Error";
  } catch (const xft::Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message lacks '" << p << "': " << msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected an xft::Error, got another exception: " << e.what();
  }
}

// tests/python/check_hf_load.py: transformers' `hf_class` loads `model_dir` with no missing,
// unexpected or misshapen tensor, and its logits on `ids` are within `tol` of `logits` (xft's).
// `scratch` receives the file handed over. Returns the script's exit status (0: they agree).
inline int check_hf_load(const std::string& model_dir, const torch::Tensor& ids, const torch::Tensor& logits,
                         const std::string& hf_class, const std::string& scratch, double tol = 1e-4) {
  const auto py = env_or_empty("XFT_PYTHON"), src = env_or_empty("XFT_SOURCE_DIR");
  if (py.empty() || src.empty()) {
    ADD_FAILURE() << "run through ctest (XFT_PYTHON, XFT_SOURCE_DIR)";
    return -1;
  }
  const auto file = scratch + "/xft_logits.safetensors";
  xft::save_safetensors(file, {{"input_ids", ids.contiguous()}, {"logits", logits.detach().contiguous()}});
  return run(py + " " + src + "/tests/python/check_hf_load.py " + model_dir + " " + file + " " + std::to_string(tol) +
             " " + hf_class);
}

// The config spellings of the routing modes and routers, read by the config's own parser: a
// misspelt or unknown name fails the test instead of running as another mode.
inline RoutingMode routing_mode(const std::string& name) { return routing_mode_from_string(name, "test routing"); }
inline RouterKind router_kind(const std::string& name) { return router_kind_from_string(name, "test router"); }

// An MoE config for routing tests: `mode` xft | shared_no_norm | vanilla (no shared expert).
inline MoeConfig config(const std::string& mode, int64_t N, int64_t K, bool renorm = false) {
  MoeConfig c;
  c.num_experts = N;
  c.top_k = K;
  c.routing = routing_mode(mode);
  c.shared_expert = routing_has_shared_expert(c.routing);
  c.vanilla_renormalize = renorm;
  return c;
}

// Sandbox limits with the project's interpreter (the venv's, as CTest passes it): quick to
// start, unlike a pyenv shim. Where the kernel refuses the sandbox's namespaces (a CI container
// without user namespaces) the tests of scoring opt out of isolation explicitly, so that they
// still run; the tests of the isolation itself skip there (isolation_or_skip).
inline SandboxLimits test_limits(double timeout_s = 10.0) {
  SandboxLimits limits;
  limits.timeout_s = timeout_s;
  const std::string python = env_or_empty("XFT_PYTHON");
  if (!python.empty()) limits.python = python;
  limits.unsafe_no_isolation = !isolation_problem(limits.python).empty();
  return limits;
}

// GTEST_SKIP with the reason where programs cannot be isolated on this machine.
#define XFT_REQUIRE_ISOLATION()                                                            \
  do {                                                                                     \
    const std::string why = ::xft::isolation_problem(::xft::test::test_limits().python);   \
    if (!why.empty()) GTEST_SKIP() << "the sandbox cannot isolate programs here: " << why; \
  } while (0)

}  // namespace xft::test
