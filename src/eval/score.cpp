#include "xft/eval/score.h"

#include <algorithm>
#include <filesystem>
#include <iomanip>
#include <sstream>

#include <nlohmann/json.hpp>

#include "xft/core/error.h"
#include "xft/core/files.h"
#include "xft/eval/interpreter.h"
#include "xft/eval/pass_at_k.h"

namespace xft {

namespace {

// Plain HumanEval / MBPP: one test program per solution, its sandbox status as EvalPlus words.
std::vector<std::string> run_tests(const std::vector<const Problem*>& tasks, const std::vector<std::string>& solutions,
                                   const ScoreOptions& o) {
  const std::string marker = new_test_marker();
  std::vector<std::string> programs;
  for (size_t i = 0; i < tasks.size(); ++i) programs.push_back(test_program(*tasks[i], solutions[i], marker));
  SandboxLimits limits = o.plus.limits;
  limits.timeout_s = o.timeout_s;
  limits = test_limits_for(tasks, limits);
  std::vector<std::string> statuses;
  auto results = run_many(programs, limits, o.plus.parallelism);
  require_test_marker(results, marker);
  for (const auto& r : results) {
    XFT_CHECK(r.status != "error", "score: cannot run a test program: ", r.output_tail);
    statuses.push_back(r.passed ? "pass" : r.status == "timeout" ? "timeout" : "fail");
  }
  return statuses;
}

}  // namespace

int64_t TaskScore::base_correct() const { return std::count(base_status.begin(), base_status.end(), "pass"); }

int64_t TaskScore::plus_correct() const {
  int64_t c = 0;
  for (size_t i = 0; i < base_status.size() && i < plus_status.size(); ++i)
    c += base_status[i] == "pass" && plus_status[i] == "pass";
  return c;
}

std::string ScoreReport::summary() const {
  std::ostringstream os;
  os << std::fixed << std::setprecision(4);
  for (const auto& [k, v] : base_pass_at_k) {
    if (k != base_pass_at_k.begin()->first) os << ", ";
    os << "pass@" << k << " base " << v;
    if (plus) os << " plus " << plus_pass_at_k.at(k);
  }
  os << " (" << problems << " problems)";
  for (const auto& [group, g] : group_pass_at_1)
    os << "\n  " << group << ": pass@1 " << g.second << " (" << g.first << " problems)";
  for (const auto& [group, count] : skipped)
    os << "\n  " << group << ": skipped (" << count << " problems; see above why)";
  return os.str();
}

std::map<std::string, std::pair<int64_t, double>> group_pass_at_1(const std::vector<const Problem*>& tasks,
                                                                  const std::vector<int64_t>& n,
                                                                  const std::vector<int64_t>& correct) {
  std::map<std::string, std::pair<int64_t, double>> sums;
  for (size_t i = 0; i < tasks.size(); ++i) {
    if (tasks[i]->group.empty() || n[i] == 0) continue;
    auto& g = sums[tasks[i]->group];
    ++g.first;
    g.second += static_cast<double>(correct[i]) / static_cast<double>(n[i]);
  }
  for (auto& [group, g] : sums) g.second /= static_cast<double>(g.first);
  return sums;
}

std::vector<TaskScore> score_tasks(const std::vector<const Problem*>& tasks,
                                   const std::vector<std::vector<std::string>>& solutions,
                                   const std::map<std::string, GroundTruth>& truth, const ScoreOptions& o) {
  XFT_CHECK(tasks.size() == solutions.size(), "score: ", tasks.size(), " tasks for ", solutions.size(),
            " solution lists");
  // One flat batch, so that the sandbox keeps all its workers busy across tasks.
  std::vector<const Problem*> plus_tasks, plain_tasks;
  std::vector<std::string> plus_solutions, plain_solutions;
  for (size_t i = 0; i < tasks.size(); ++i) {
    for (const auto& s : solutions[i]) {
      (is_evalplus(*tasks[i]) ? plus_tasks : plain_tasks).push_back(tasks[i]);
      (is_evalplus(*tasks[i]) ? plus_solutions : plain_solutions).push_back(s);
    }
  }
  const auto verdicts =
      plus_tasks.empty() ? std::vector<PlusVerdict>{} : check_solutions(plus_tasks, plus_solutions, truth, o.plus);
  const auto statuses = plain_tasks.empty() ? std::vector<std::string>{} : run_tests(plain_tasks, plain_solutions, o);
  std::vector<TaskScore> scores;
  size_t next_plus = 0, next_plain = 0;
  for (size_t i = 0; i < tasks.size(); ++i) {
    TaskScore t;
    t.task_id = tasks[i]->task_id;
    for (size_t s = 0; s < solutions[i].size(); ++s) {
      if (is_evalplus(*tasks[i])) {
        t.base_status.push_back(verdicts[next_plus].base);
        t.plus_status.push_back(verdicts[next_plus++].plus);
      } else {
        t.base_status.push_back(statuses[next_plain++]);
      }
    }
    scores.push_back(std::move(t));
  }
  return scores;
}

ScoreReport report_scores(const std::vector<TaskScore>& scores, bool plus) {
  XFT_CHECK(!scores.empty(), "score: no tasks to report on");
  ScoreReport report;
  report.problems = static_cast<int64_t>(scores.size());
  report.plus = plus;
  std::vector<int64_t> n, base, both;
  for (const auto& t : scores) {
    n.push_back(t.n());
    base.push_back(t.base_correct());
    both.push_back(t.plus_correct());
  }
  const int64_t fewest = *std::min_element(n.begin(), n.end());
  for (int64_t k : {1, 10, 100}) {
    if (fewest < k) continue;
    report.base_pass_at_k[k] = mean_pass_at_k(n, base, k);
    if (plus) report.plus_pass_at_k[k] = mean_pass_at_k(n, both, k);
  }
  return report;
}

ScoreReport score_samples(const std::vector<Problem>& all_problems, const std::vector<Sample>& samples,
                          const ScoreOptions& o) {
  ScoreOptions so = o;
  so.plus.limits = interpreter_with(o.plus.limits, required_modules(all_problems));
  std::vector<Problem> problems = all_problems;
  const auto skipped = drop_unavailable_frameworks(problems, so.plus.limits);
  std::map<std::string, std::vector<std::string>> by_task;
  for (const auto& s : samples) by_task[s.task_id].push_back(s.solution);
  std::vector<const Problem*> tasks;
  std::vector<std::vector<std::string>> solutions;
  bool plus = false;
  for (const auto& p : problems) {
    auto it = by_task.find(p.task_id);
    if (it == by_task.end()) continue;
    tasks.push_back(&p);
    solutions.push_back(std::move(it->second));
    plus = plus || is_evalplus(p);
  }
  XFT_CHECK(!tasks.empty(), "score: no sample names a task of the problems file");
  const auto truth = plus ? ground_truth(problems, so.plus) : std::map<std::string, GroundTruth>{};
  const auto scores = score_tasks(tasks, solutions, truth, so);
  if (!o.results_path.empty()) {
    std::string text;
    for (const auto& t : scores) {
      nlohmann::json j{
          {"task_id", t.task_id}, {"n", t.n()}, {"base_correct", t.base_correct()}, {"base_status", t.base_status}};
      if (plus) {
        j["plus_correct"] = t.plus_correct();
        j["plus_status"] = t.plus_status;
      }
      text += j.dump() + "\n";
    }
    const auto parent = std::filesystem::path(o.results_path).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent);
    write_file_atomic(o.results_path, text);
  }
  auto report = report_scores(scores, plus);
  std::vector<int64_t> n, correct;
  for (const auto& t : scores) {
    n.push_back(t.n());
    correct.push_back(t.base_correct());
  }
  report.group_pass_at_1 = group_pass_at_1(tasks, n, correct);
  report.skipped = skipped;
  return report;
}

}  // namespace xft
