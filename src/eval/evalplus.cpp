#include "xft/eval/evalplus.h"

#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "eval/evalplus_harness.h"
#include "eval/python_program.h"
#include "xft/core/error.h"
#include "xft/core/files.h"

namespace fs = std::filesystem;

namespace xft {

namespace {

using nlohmann::json;

// The expected outputs of a task can be large (long lists, big strings): room for all of them.
constexpr int64_t kReportBytes = int64_t{1} << 30;
// The canonical solutions are trusted to end: a generous limit, only against a hang.
constexpr double kTruthTimeout = 600.0;

// "humaneval" | "mbpp": the dataset names EvalPlus' checker switches its special oracles on.
std::string dataset_of(const Problem& p) { return p.kind == "mbpp+" ? "mbpp" : "humaneval"; }

std::string harness_program(const json& args) { return python_program(args, evalplus_harness()); }

// What the harness wrote: whether it got ready to run the solution, and its report (the first
// JSON object other than the ready line), null when it wrote none.
struct HarnessOutput {
  bool ready = false;
  json report;
};

HarnessOutput output_of(const SandboxResult& r) {
  HarnessOutput out;
  std::istringstream in(r.output);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] != '{') continue;
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) continue;
    if (j.contains("ready")) {
      out.ready = true;
    } else {
      out.report = std::move(j);
      break;
    }
  }
  return out;
}

// The evaluator's own failures stop the evaluation: they say nothing about the sample.
void check_harness(const HarnessOutput& h, const SandboxResult& r, const std::string& task, const std::string& what,
                   const SandboxLimits& limits) {
  const std::string where =
      "evalplus: the evaluator failed on " + task + " (" + what + ", interpreter " + limits.python + "): ";
  XFT_CHECK(!(h.report.is_object() && h.report.contains("error")), where, h.report.value("error", std::string()),
            ". This is not a verdict on the sample; nothing was scored");
  XFT_CHECK(h.ready || h.report.is_object(), where, "the harness ended (", r.status, ", exit ", r.exit_code,
            ") before it could run the sample; nothing was scored. Output: ", r.output_tail);
}

std::vector<double> times_of(const json& j, const char* key, const std::string& task) {
  XFT_CHECK(j.contains(key) && j.at(key).is_array(), "evalplus: expected outputs of ", task, " lack '", key, "'");
  return j.at(key).get<std::vector<double>>();
}

std::string cache_path(const std::vector<Problem>& problems, const PlusOptions& o) {
  return o.cache_dir.empty()
             ? ""
             : (fs::path(o.cache_dir) / ("evalplus-expected-" + dataset_key(problems) + ".jsonl")).string();
}

// The cached expected outputs, or an empty map when the cache is missing, unreadable or incomplete.
std::map<std::string, GroundTruth> read_cache(const std::string& path, const std::vector<Problem>& problems) {
  std::map<std::string, GroundTruth> truth;
  std::ifstream in(path);
  std::string line;
  while (in && std::getline(in, line)) {
    const json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("task_id")) return {};
    GroundTruth t;
    try {
      t.base = j.at("base").get<std::string>();
      t.plus = j.at("plus").get<std::string>();
      t.base_time = j.at("base_time").get<std::vector<double>>();
      t.plus_time = j.at("plus_time").get<std::vector<double>>();
    } catch (const json::exception&) {
      return {};
    }
    truth[j.at("task_id").get<std::string>()] = std::move(t);
  }
  for (const auto& p : problems) {
    if (is_evalplus(p) && !truth.count(p.task_id)) return {};
  }
  return truth;
}

void write_cache(const std::string& path, const std::map<std::string, GroundTruth>& truth) {
  std::string text;
  for (const auto& [task, t] : truth) {
    text += json{{"task_id", task},
                 {"base", t.base},
                 {"plus", t.plus},
                 {"base_time", t.base_time},
                 {"plus_time", t.plus_time}}
                .dump() +
            "\n";
  }
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty()) fs::create_directories(parent);
  write_file_atomic(path, text);
}

std::vector<double> time_limits(const std::vector<double>& canonical, const PlusOptions& o) {
  std::vector<double> limits;
  for (double t : canonical) limits.push_back(std::max(o.min_time_limit, o.time_limit_factor * t));
  return limits;
}

}  // namespace

int64_t evalplus_memory_cap() {
  const int64_t physical =
      static_cast<int64_t>(::sysconf(_SC_PHYS_PAGES)) * static_cast<int64_t>(::sysconf(_SC_PAGESIZE));
  const int64_t cap = int64_t{4} << 30;
  return physical > 0 ? std::min(cap, physical) : cap;
}

std::string dataset_key(const std::vector<Problem>& problems) {
  // The harness's text is part of the key: a change to how outputs are computed is a new cache.
  const std::string harness = evalplus_harness();
  const uLong harness_crc = ::crc32(::crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(harness.data()),
                                    static_cast<uInt>(harness.size()));
  uLong crc = ::crc32(0L, Z_NULL, 0);
  uint64_t bytes = 0, count = 0;
  for (const auto& p : problems) {
    if (!is_evalplus(p)) continue;
    const std::string line = p.record + "\n";
    crc = ::crc32(crc, reinterpret_cast<const Bytef*>(line.data()), static_cast<uInt>(line.size()));
    bytes += line.size();
    ++count;
  }
  char key[64];
  std::snprintf(key, sizeof key, "h%08lx-%08lx-%llu-%llu", static_cast<unsigned long>(harness_crc),
                static_cast<unsigned long>(crc), static_cast<unsigned long long>(count),
                static_cast<unsigned long long>(bytes));
  return key;
}

std::map<std::string, GroundTruth> ground_truth(const std::vector<Problem>& problems, const PlusOptions& o) {
  const std::string cache = cache_path(problems, o);
  if (!cache.empty() && fs::exists(cache)) {
    auto cached = read_cache(cache, problems);
    if (!cached.empty()) return cached;
  }
  std::vector<const Problem*> tasks;
  std::vector<std::string> programs;
  for (const auto& p : problems) {
    if (!is_evalplus(p)) continue;
    tasks.push_back(&p);
    programs.push_back(harness_program({{"mode", "truth"}, {"dataset", dataset_of(p)}, {"record", p.record}}));
  }
  SandboxLimits limits = o.limits;
  limits.timeout_s = kTruthTimeout;
  limits.memory_bytes = o.memory_bytes;
  limits.capture_bytes = kReportBytes;
  const auto results = run_many(programs, limits, o.parallelism);
  std::map<std::string, GroundTruth> truth;
  for (size_t i = 0; i < tasks.size(); ++i) {
    const HarnessOutput h = output_of(results[i]);
    check_harness(h, results[i], tasks[i]->task_id, "expected outputs", limits);
    const json& j = h.report;
    XFT_CHECK(j.is_object() && j.contains("base") && j.contains("plus"), "evalplus: the canonical solution of ",
              tasks[i]->task_id, " did not produce its outputs (", results[i].status, "): ", results[i].output_tail);
    GroundTruth t;
    t.base = j.at("base").get<std::string>();
    t.plus = j.at("plus").get<std::string>();
    t.base_time = times_of(j, "base_time", tasks[i]->task_id);
    t.plus_time = times_of(j, "plus_time", tasks[i]->task_id);
    truth[tasks[i]->task_id] = std::move(t);
  }
  if (!cache.empty()) write_cache(cache, truth);
  return truth;
}

std::vector<PlusVerdict> check_solutions(const std::vector<const Problem*>& problems,
                                         const std::vector<std::string>& solutions,
                                         const std::map<std::string, GroundTruth>& truth, const PlusOptions& o) {
  XFT_CHECK(problems.size() == solutions.size(), "evalplus: ", problems.size(), " problems for ", solutions.size(),
            " solutions (expected one problem per solution)");
  std::vector<std::string> programs;
  std::vector<SandboxLimits> limits;
  for (size_t i = 0; i < problems.size(); ++i) {
    const Problem& p = *problems[i];
    XFT_CHECK(is_evalplus(p), "evalplus: ", p.task_id, " is a ", p.kind, " problem, not HumanEval+ or MBPP+");
    const auto it = truth.find(p.task_id);
    XFT_CHECK(it != truth.end(), "evalplus: no expected outputs for ", p.task_id);
    for (const bool plus : {false, true}) {
      const auto per_input = time_limits(plus ? it->second.plus_time : it->second.base_time, o);
      double sum = 0.0;
      for (double t : per_input) sum += t;
      programs.push_back(harness_program({{"mode", "check"},
                                          {"dataset", dataset_of(p)},
                                          {"record", p.record},
                                          {"split", plus ? "plus" : "base"},
                                          {"solution", solutions[i]},
                                          {"expected", plus ? it->second.plus : it->second.base},
                                          {"time_limits", per_input},
                                          {"memory", o.memory_bytes}}));
      SandboxLimits l = o.limits;
      // EvalPlus joins its checker after min(60, sum) + 1 + 1 seconds (fast check).
      l.timeout_s = std::min(o.task_timeout, sum) + 2.0 + o.startup_allowance;
      l.memory_bytes = o.memory_bytes;
      l.capture_bytes = 4096;
      limits.push_back(l);
    }
  }
  const auto results = run_many(programs, limits, o.parallelism);
  std::vector<PlusVerdict> verdicts(problems.size());
  for (size_t i = 0; i < problems.size(); ++i) {
    for (const bool plus : {false, true}) {
      const SandboxResult& r = results[2 * i + (plus ? 1 : 0)];
      XFT_CHECK(r.status != "error", "evalplus: cannot run the check of ", problems[i]->task_id, ": ", r.output_tail);
      const HarnessOutput h = output_of(r);
      check_harness(h, r, problems[i]->task_id, plus ? "plus check" : "base check", limits[2 * i + (plus ? 1 : 0)]);
      // Ready but no report: the sample crashed or was killed at the timeout, which EvalPlus calls a timeout too.
      const std::string status = h.report.is_object() ? h.report.value("status", std::string("timeout")) : "timeout";
      (plus ? verdicts[i].plus : verdicts[i].base) = status;
    }
  }
  return verdicts;
}

}  // namespace xft
