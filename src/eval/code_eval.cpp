#include "xft/eval/code_eval.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>

#include <nlohmann/json.hpp>

#include "xft/core/error.h"
#include "xft/core/files.h"
#include "xft/eval/interpreter.h"
#include "xft/eval/pass_at_k.h"
#include "xft/eval/samples.h"
#include "xft/eval/score.h"

namespace fs = std::filesystem;

namespace xft {

namespace {

using nlohmann::json;

void check_options(const EvalOptions& o) {
  XFT_CHECK(o.samples >= 1, "eval: samples must be at least 1, got ", o.samples);
  XFT_CHECK(!o.ks.empty(), "eval: ks must name at least one k");
  for (int64_t k : o.ks) {
    XFT_CHECK(k >= 1 && k <= o.samples, "eval: pass@", k, " needs 1 <= k <= samples (samples = ", o.samples, ")");
  }
  XFT_CHECK(o.parallelism >= 1, "eval: parallelism must be at least 1, got ", o.parallelism);
}

// Records of an interrupted run (results_path.partial) that can stand for this one: same task, same n.
std::map<std::string, json> read_partial(const std::string& path, int64_t samples) {
  std::map<std::string, json> done;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    // The last line may be cut short by the crash that left the file behind: skip what does not parse.
    const json rec = json::parse(line, nullptr, false);
    if (rec.is_discarded() || !rec.is_object() || !rec.contains("task_id") || !rec.contains("n") ||
        !rec.contains("correct"))
      continue;
    if (!rec["task_id"].is_string() || !rec["n"].is_number_integer() || rec["n"].get<int64_t>() != samples) continue;
    if (!rec["correct"].is_number_integer()) continue;
    done[rec["task_id"].get<std::string>()] = rec;
  }
  return done;
}

// Program output and model text need not be valid UTF-8 (a tail cut mid-character, raw bytes):
// replace bad bytes rather than throw halfway through a run.
std::string json_line(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n"; }

json problem_record(const Problem& p, const std::vector<std::string>& completions,
                    const std::vector<SandboxResult>& results) {
  json statuses = json::array();
  json failure = nullptr;
  int64_t correct = 0;
  for (const auto& r : results) {
    statuses.push_back(r.status);
    if (r.passed) {
      ++correct;
    } else if (failure.is_null()) {
      failure = r.output_tail;
    }
  }
  return json{{"task_id", p.task_id},      {"n", static_cast<int64_t>(results.size())},
              {"correct", correct},        {"statuses", statuses},
              {"failure_output", failure}, {"completions", completions}};
}

// EvalPlus problems: base and plus verdicts per completion, the headline count being base + plus.
std::vector<json> plus_records(const std::vector<const Problem*>& chunk,
                               const std::vector<std::vector<std::string>>& completions,
                               const std::vector<std::vector<std::string>>& solutions,
                               const std::map<std::string, GroundTruth>& truth, const EvalOptions& o) {
  ScoreOptions so;
  so.plus = o.plus;
  so.plus.limits = o.limits;
  so.plus.parallelism = o.parallelism;
  const auto scores = score_tasks(chunk, solutions, truth, so);
  std::vector<json> records;
  for (size_t i = 0; i < chunk.size(); ++i) {
    const auto& t = scores[i];
    records.push_back(json{{"task_id", t.task_id},
                           {"n", t.n()},
                           {"correct", t.plus_correct()},
                           {"base_correct", t.base_correct()},
                           {"base_status", t.base_status},
                           {"plus_status", t.plus_status},
                           {"completions", completions[i]},
                           {"solutions", solutions[i]}});
  }
  return records;
}

// Generates and runs one chunk of problems; returns their records in order.
std::vector<json> run_chunk(const std::vector<const Problem*>& chunk, const GenerateFn& generate, const EvalOptions& o,
                            const std::map<std::string, GroundTruth>& truth) {
  const std::vector<std::string> prompts = model_inputs(chunk, o.prompt);
  const auto completions = generate(prompts, o.samples);
  XFT_CHECK(completions.size() == prompts.size(), "eval: the generator returned completions for ", completions.size(),
            " prompts, expected ", prompts.size());
  std::vector<std::vector<std::string>> solutions(chunk.size());
  for (size_t i = 0; i < chunk.size(); ++i) {
    XFT_CHECK(static_cast<int64_t>(completions[i].size()) == o.samples, "eval: the generator returned ",
              completions[i].size(), " completions for ", chunk[i]->task_id, ", expected ", o.samples);
    for (const auto& c : completions[i]) solutions[i].push_back(solution_of(*chunk[i], c, o.prompt.mode));
  }
  if (!chunk.empty() && is_evalplus(*chunk.front())) return plus_records(chunk, completions, solutions, truth, o);
  const std::string marker = new_test_marker();
  std::vector<std::string> programs;
  for (size_t i = 0; i < chunk.size(); ++i) {
    for (const auto& code : solutions[i]) programs.push_back(test_program(*chunk[i], code, marker));
  }
  auto results = run_many(programs, test_limits_for(chunk, o.limits), o.parallelism);
  require_test_marker(results, marker);
  std::vector<json> records;
  for (size_t i = 0; i < chunk.size(); ++i) {
    const auto first = results.begin() + static_cast<std::ptrdiff_t>(i * static_cast<size_t>(o.samples));
    records.push_back(problem_record(*chunk[i], completions[i], {first, first + o.samples}));
    records.back()["solutions"] = solutions[i];
  }
  return records;
}

}  // namespace

std::string EvalReport::summary() const {
  std::ostringstream os;
  os << std::fixed << std::setprecision(4);
  if (!base_pass_at_k.empty()) {
    ScoreReport r;
    r.problems = problems;
    r.plus = true;
    r.base_pass_at_k = base_pass_at_k;
    r.plus_pass_at_k = pass_at_k;
    return r.summary();
  }
  bool first = true;
  for (const auto& [k, v] : pass_at_k) {
    os << (first ? "" : ", ") << "pass@" << k << " = " << v;
    first = false;
  }
  os << " (" << problems << " problems)";
  for (const auto& [group, g] : group_pass_at_1)
    os << "\n  " << group << ": pass@1 " << g.second << " (" << g.first << " problems)";
  for (const auto& [group, c] : skipped) os << "\n  " << group << ": skipped (" << c << " problems)";
  return os.str();
}

namespace {

// The options a run uses: checked, with an interpreter the sandbox runs and that has what
// scoring `problems` imports (every problem would otherwise quietly score 0).
EvalOptions resolve(const EvalOptions& options, const std::vector<Problem>& problems) {
  check_options(options);
  EvalOptions o = options;
  o.limits = interpreter_with(o.limits, required_modules(problems));
  o.prompt.limits = o.limits;
  o.plus.limits = o.limits;
  o.plus.parallelism = o.parallelism;
  if (o.plus.cache_dir.empty() && !o.results_path.empty()) {
    const fs::path parent = fs::path(o.results_path).parent_path();
    o.plus.cache_dir = parent.empty() ? "." : parent.string();
  }
  return o;
}

EvalReport report_of(const std::vector<json>& records, const EvalOptions& o, bool plus) {
  EvalReport report;
  report.problems = static_cast<int64_t>(records.size());
  std::vector<int64_t> n, c, base;
  for (const auto& r : records) {
    n.push_back(r["n"].get<int64_t>());
    c.push_back(r["correct"].get<int64_t>());
    report.tasks.push_back({r["task_id"].get<std::string>(), n.back(), c.back()});
    if (plus) base.push_back(r.value("base_correct", int64_t{0}));
  }
  for (int64_t k : o.ks) {
    report.pass_at_k[k] = mean_pass_at_k(n, c, k);
    if (plus) report.base_pass_at_k[k] = mean_pass_at_k(n, base, k);
  }
  return report;
}

// The generations in EvalPlus' samples format (records resumed from an older run without
// solutions contribute none).
void write_generations(const std::string& path, const std::vector<json>& records) {
  std::vector<Sample> samples;
  for (const auto& r : records) {
    for (const auto& s : r.value("solutions", json::array()))
      samples.push_back({r["task_id"].get<std::string>(), s.get<std::string>()});
  }
  write_samples(path, samples);
}

}  // namespace

EvalReport evaluate_problems(const std::vector<Problem>& all_problems, const GenerateFn& generate,
                             const EvalOptions& options) {
  check_options(options);
  XFT_CHECK(static_cast<bool>(generate), "eval: no generate function given");
  size_t count = all_problems.size();
  if (options.limit > 0) count = std::min(count, static_cast<size_t>(options.limit));
  XFT_CHECK(count > 0, "eval: no problems to evaluate");
  std::vector<Problem> problems(all_problems.begin(), all_problems.begin() + static_cast<std::ptrdiff_t>(count));
  const EvalOptions o = resolve(options, problems);
  const auto skipped = drop_unavailable_frameworks(problems, o.limits);
  count = problems.size();
  XFT_CHECK(count > 0, "eval: every problem was skipped");
  const bool plus = is_evalplus(problems.front());
  for (size_t i = 0; i < count; ++i) {
    XFT_CHECK(is_evalplus(problems[i]) == plus, "eval: ", problems[i].task_id, " is a ", problems[i].kind,
              " problem among ", problems.front().kind, " ones (one benchmark per run)");
  }
  // Before generating: a dataset whose canonical solutions do not run fails now, not hours later.
  const auto truth = plus ? ground_truth(problems, o.plus) : std::map<std::string, GroundTruth>{};

  const std::string partial = o.results_path.empty() ? "" : o.results_path + ".partial";
  std::map<std::string, json> done;
  std::ofstream partial_out;
  if (!partial.empty()) {
    const fs::path parent = fs::path(o.results_path).parent_path();
    if (!parent.empty()) fs::create_directories(parent);
    if (o.resume) done = read_partial(partial, o.samples);
    // Rewritten from the reusable records, which also drops a line a crash cut short.
    partial_out.open(partial, std::ios::trunc);
    XFT_CHECK(partial_out.good(), partial, ": cannot open for writing");
  }

  std::vector<json> records(count);
  std::vector<size_t> pending;
  for (size_t i = 0; i < count; ++i) {
    auto it = done.find(problems[i].task_id);
    if (it == done.end() || (plus && !it->second.contains("base_correct"))) {
      pending.push_back(i);
    } else {
      records[i] = it->second;
      partial_out << json_line(records[i]);
    }
  }
  partial_out.flush();

  const size_t step = o.chunk > 0 ? static_cast<size_t>(o.chunk) : pending.size();
  for (size_t b = 0; b < pending.size(); b += step) {
    std::vector<const Problem*> chunk;
    for (size_t j = b; j < std::min(pending.size(), b + step); ++j) chunk.push_back(&problems[pending[j]]);
    auto chunk_records = run_chunk(chunk, generate, o, truth);
    for (size_t j = 0; j < chunk.size(); ++j) {
      records[pending[b + j]] = std::move(chunk_records[j]);
      if (partial_out.is_open()) partial_out << json_line(records[pending[b + j]]);
    }
    partial_out.flush();
    XFT_CHECK(!partial_out.is_open() || partial_out.good(), partial, ": write failed");
  }

  if (!o.samples_path.empty()) write_generations(o.samples_path, records);
  if (!o.results_path.empty()) {
    std::string text;
    for (const auto& r : records) text += json_line(r);
    write_file_atomic(o.results_path, text);
    partial_out.close();
    std::error_code ec;
    fs::remove(partial, ec);  // the full file is in place; a leftover partial would only mislead
  }
  EvalReport report = report_of(records, o, plus);
  std::vector<const Problem*> tasks;
  std::vector<int64_t> n, correct;
  for (size_t i = 0; i < count; ++i) {
    tasks.push_back(&problems[i]);
    n.push_back(report.tasks[i].n);
    correct.push_back(report.tasks[i].correct);
  }
  report.group_pass_at_1 = group_pass_at_1(tasks, n, correct);
  report.skipped = skipped;
  return report;
}

}  // namespace xft
