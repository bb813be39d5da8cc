#include "xft/eval/interpreter.h"

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "xft/core/error.h"

namespace fs = std::filesystem;

namespace xft {

namespace {

using nlohmann::json;

struct Probe {
  std::string executable;  // sys.executable, resolved behind any shim; empty when it did not run
  std::map<std::string, std::string> missing;  // module -> why it cannot be imported
  std::string failure;     // why the interpreter did not run at all
};

// Runs the interpreter in the sandbox (as the benchmark's programs will run) and tries each import.
Probe probe(const SandboxLimits& limits, const std::vector<std::string>& modules) {
  std::string program = "import importlib, json, sys\nmissing = {}\nfor m in " + json(modules).dump() +
                        ":\n    try:\n        importlib.import_module(m)\n"
                        "    except BaseException as e:\n        missing[m] = '%s: %s' % (type(e).__name__, e)\n"
                        "print(json.dumps({'executable': sys.executable, 'missing': missing}))\n";
  SandboxLimits l = limits;
  l.timeout_s = 120.0;  // importing numpy on a loaded machine
  l.memory_bytes = std::max<int64_t>(l.memory_bytes, int64_t{2} << 30);
  l.capture_bytes = 1 << 16;
  const SandboxResult r = run_python(program, l);
  Probe p;
  if (!r.passed) {
    p.failure = "it does not run in the sandbox (" + r.status + "): " + r.output_tail;
    return p;
  }
  std::istringstream in(r.output);
  std::string line;
  while (std::getline(in, line)) {
    const json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("missing")) continue;
    p.executable = j.value("executable", std::string());
    for (const auto& [m, why] : j.at("missing").items()) p.missing[m] = why.get<std::string>();
    return p;
  }
  p.failure = "its probe printed no report: " + r.output_tail;
  return p;
}

// Probes are cached per interpreter and module list: an evaluation asks once per run, a study many times.
Probe cached_probe(const SandboxLimits& limits, const std::vector<std::string>& modules) {
  static std::mutex mutex;
  static std::map<std::string, Probe> cache;
  const std::string key = limits.python + "\n" + json(modules).dump() + (limits.unsafe_no_isolation ? "\nunsafe" : "");
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  Probe p = probe(limits, modules);
  std::lock_guard<std::mutex> lock(mutex);
  return cache.emplace(key, std::move(p)).first->second;
}

std::string describe(const std::string& python, const Probe& p) {
  if (!p.failure.empty()) return "'" + python + "': " + p.failure;
  std::string s = "'" + python + "' (" + p.executable + ") cannot import ";
  bool first = true;
  for (const auto& [m, why] : p.missing) {
    s += (first ? "" : ", ") + m + " (" + why + ")";
    first = false;
  }
  return s;
}

}  // namespace

std::vector<std::string> required_modules(const std::vector<Problem>& problems) {
  for (const auto& p : problems) {
    if (is_evalplus(p)) return {"numpy"};
  }
  return {};
}

std::vector<std::string> fallback_interpreters() {
  std::vector<std::string> out;
  if (const char* env = std::getenv("XFT_PYTHON"); env && *env) out.emplace_back(env);
#ifdef XFT_PROJECT_PYTHON
  std::error_code ec;
  if (fs::exists(XFT_PROJECT_PYTHON, ec)) out.emplace_back(XFT_PROJECT_PYTHON);
#endif
  return out;
}

SandboxLimits interpreter_with(const SandboxLimits& limits, const std::vector<std::string>& modules,
                               const std::vector<std::string>& fallbacks) {
  std::vector<std::string> tried;
  std::vector<std::string> candidates = {limits.python};
  candidates.insert(candidates.end(), fallbacks.begin(), fallbacks.end());
  for (size_t i = 0; i < candidates.size(); ++i) {
    SandboxLimits l = limits;
    l.python = candidates[i];
    const Probe p = cached_probe(l, modules);
    // An interpreter that does not run at all is the caller's mistake, not a missing module:
    // say so rather than quietly run another.
    XFT_CHECK(i > 0 || p.failure.empty(), "eval: the sandbox cannot run '", limits.python, "': ", p.failure);
    if (p.failure.empty() && p.missing.empty()) {
      // Run the interpreter itself from now on: a pyenv-style shim in front of it costs ~0.2 s per start.
      if (!p.executable.empty() && p.executable[0] == '/' && fs::exists(p.executable)) l.python = p.executable;
      if (i > 0) std::cerr << "eval: " << tried.front() << "; using " << l.python << " instead\n";
      return l;
    }
    tried.push_back(describe(candidates[i], p));
  }
  std::string fallback_text;
  for (size_t i = 1; i < tried.size(); ++i) fallback_text += "; fallback " + tried[i];
  if (fallbacks.empty()) fallback_text = "; no fallback interpreter exists ($XFT_PYTHON unset, no project venv)";
  std::string names;
  for (const auto& m : modules) names += (names.empty() ? "" : " ") + m;
  fail("eval: the interpreter ", tried.front(), fallback_text,
           ". Scoring needs it: without it every such task would be counted as failed. Fix: '",
           limits.python, " -m pip install ", names, "', or pass --python with an interpreter that has ",
           names.empty() ? std::string("a working sandbox") : names, " (the project's: .venv/bin/python after scripts/setup.sh)");
}

}  // namespace xft
