#include "xft/eval/interpreter.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "xft/core/error.h"

namespace fs = std::filesystem;

namespace xft {

namespace {

using nlohmann::json;

struct Probe {
  std::string executable;                      // sys.executable, resolved behind any shim; empty when it did not run
  std::map<std::string, std::string> missing;  // module -> why it cannot be imported
  std::string failure;                         // why the interpreter did not run at all
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

namespace {

// DS-1000's libraries (metadata.library) and the modules their problems import.
const std::map<std::string, std::string>& library_modules() {
  static const std::map<std::string, std::string> m = {
      {"Numpy", "numpy"},           {"Pandas", "pandas"}, {"Scipy", "scipy"},          {"Sklearn", "sklearn"},
      {"Matplotlib", "matplotlib"}, {"Pytorch", "torch"}, {"Tensorflow", "tensorflow"}};
  return m;
}

bool framework(const std::string& library) { return library == "Pytorch" || library == "Tensorflow"; }

}  // namespace

std::vector<std::string> required_modules(const std::vector<Problem>& problems) {
  std::set<std::string> modules;
  for (const auto& p : problems) {
    if (is_evalplus(p)) modules.insert("numpy");
    if (p.kind != "ds1000") continue;
    // Every DS-1000 context imports numpy; its own library's module besides.
    modules.insert("numpy");
    const auto it = library_modules().find(p.group);
    XFT_CHECK(it != library_modules().end(), p.task_id, ": unknown DS-1000 library '", p.group,
              "' (expected Numpy, Pandas, Scipy, Sklearn, Matplotlib, Pytorch or Tensorflow)");
    if (!framework(p.group)) modules.insert(it->second);
  }
  return {modules.begin(), modules.end()};
}

std::map<std::string, int64_t> drop_unavailable_frameworks(std::vector<Problem>& problems,
                                                           const SandboxLimits& limits) {
  std::map<std::string, int64_t> skipped;
  std::set<std::string> libraries;
  for (const auto& p : problems)
    if (p.kind == "ds1000" && framework(p.group)) libraries.insert(p.group);
  for (const auto& library : libraries) {
    const Probe probe = cached_probe(limits, {library_modules().at(library)});
    if (probe.failure.empty() && probe.missing.empty()) continue;
    const auto gone = std::remove_if(problems.begin(), problems.end(),
                                     [&](const Problem& p) { return p.kind == "ds1000" && p.group == library; });
    skipped[library] = std::distance(gone, problems.end());
    problems.erase(gone, problems.end());
    std::cerr << "eval: " << skipped[library] << " " << library
              << " problems skipped: " << describe(limits.python, probe) << "\n";
  }
  return skipped;
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
       ". Scoring needs it: without it every such task would be counted as failed. Fix: '", limits.python,
       " -m pip install ", names, "', or pass --python with an interpreter that has ",
       names.empty() ? std::string("a working sandbox") : names,
       " (the project's: .venv/bin/python after scripts/setup.sh)");
}

}  // namespace xft
