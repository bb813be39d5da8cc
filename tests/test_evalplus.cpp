// Tests for HumanEval+ / MBPP+ scoring (xft/eval/evalplus.h, score.h, samples.h): every verdict on
// the fixture samples of tests/data/evalplus must equal the one EvalPlus' own checker gives
// (tests/python/evalplus_verdicts.py runs evalplus 0.3.1 as a CTest fixture step).
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_util.h"
#include "xft/core/error.h"
#include "xft/eval/code_eval.h"
#include "xft/eval/evalplus.h"
#include "xft/eval/interpreter.h"
#include "xft/eval/pass_at_k.h"
#include "xft/eval/problems.h"
#include "xft/eval/samples.h"
#include "xft/eval/score.h"

using nlohmann::json;
using xft::test::expect_error;
namespace fs = std::filesystem;

namespace {

std::string data(const std::string& name) {
  return xft::test::env_or_empty("XFT_SOURCE_DIR") + "/tests/data/evalplus/" + name;
}

using xft::test::read_json_lines;

// EvalPlus' verdicts on a samples file, grouped by task in file order: task -> [(base, plus)].
std::map<std::string, std::vector<std::pair<std::string, std::string>>> evalplus_verdicts(const std::string& samples) {
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> by_task;
  for (const auto& v : read_json_lines(xft::test::fixture("evalplus") + "/" + samples + ".verdicts.jsonl")) {
    by_task[v["task_id"]].emplace_back(v["base_status"], v["plus_status"]);
  }
  return by_task;
}

xft::ScoreOptions score_options(const std::string& scratch, const std::string& python = "") {
  xft::ScoreOptions o;
  o.plus.limits = xft::test::test_limits();
  if (!python.empty()) o.plus.limits.python = python;
  o.plus.cache_dir = scratch;
  o.results_path = scratch + "/results.jsonl";
  return o;
}

// Scores `samples` for `dataset` with xft and checks every per-sample verdict against EvalPlus'.
// `python`: the interpreter asked for (empty: the tests' own).
void expect_parity(const std::string& dataset, const std::string& samples, const std::string& python = "") {
  const auto scratch = xft::test::scratch_dir("parity");
  const auto problems = xft::load_problems(data(dataset));
  const auto options = score_options(scratch, python);
  xft::score_samples(problems, xft::read_samples(data(samples), problems), options);
  const auto expected = evalplus_verdicts(samples);
  const auto results = read_json_lines(options.results_path);
  size_t compared = 0;
  ASSERT_EQ(results.size(), expected.size());
  for (const auto& r : results) {
    const auto& want = expected.at(r["task_id"]);
    ASSERT_EQ(r["base_status"].size(), want.size()) << r.dump();
    for (size_t i = 0; i < want.size(); ++i, ++compared) {
      EXPECT_EQ(r["base_status"][i], want[i].first) << r["task_id"] << " sample " << i << " (base)";
      EXPECT_EQ(r["plus_status"][i], want[i].second) << r["task_id"] << " sample " << i << " (plus)";
    }
  }
  EXPECT_GE(compared, 16u);
}

// A Python with the standard library and nothing else (no numpy): a venv made from the tests'
// interpreter without its site-packages, as a fresh Debian's python3 is.
std::string python_without_numpy(const std::string& scratch) {
  const std::string venv = scratch + "/bare-venv";
  EXPECT_EQ(xft::test::run(xft::test::env_or_empty("XFT_PYTHON") + " -m venv --without-pip " + venv), 0);
  EXPECT_NE(xft::test::run(venv + "/bin/python -c 'import numpy' 2>/dev/null"), 0) << "the bare venv has numpy";
  return venv + "/bin/python";
}

// `xft-tool score` on the MBPP+ fixture prints EvalPlus' own pass@1 (base and plus).
void expect_tool_prints_evalplus_numbers(const std::string& scratch, const std::string& python) {
  const std::string out = scratch + "/results.jsonl", log = scratch + "/log.txt";
  const int rc =
      xft::test::run(xft::test::env_or_empty("XFT_TOOL") + " score --problems " + data("MbppPlus-fixture.jsonl") +
                     " --samples " + data("MbppPlus-fixture-samples.jsonl") + " --out " + out +
                     (xft::test::test_limits().unsafe_no_isolation ? " --unsafe-no-isolation" : "") + " --python " +
                     python + " > " + log + " 2>&1");
  const std::string printed = xft::test::read_all(log);
  ASSERT_EQ(rc, 0) << printed;
  // pass@1 from EvalPlus' verdicts: per task the fraction of samples passing, averaged.
  double base = 0, plus = 0;
  const auto verdicts = evalplus_verdicts("MbppPlus-fixture-samples.jsonl");
  for (const auto& [task, v] : verdicts) {
    double b = 0, p = 0;
    for (const auto& [bs, ps] : v) {
      b += bs == "pass";
      p += bs == "pass" && ps == "pass";
    }
    base += b / static_cast<double>(v.size()) / static_cast<double>(verdicts.size());
    plus += p / static_cast<double>(v.size()) / static_cast<double>(verdicts.size());
  }
  char want[128];
  std::snprintf(want, sizeof want, "pass@1 base %.4f plus %.4f (%zu problems)", base, plus, verdicts.size());
  EXPECT_NE(printed.find(want), std::string::npos) << "expected '" << want << "' in: " << printed;
  EXPECT_EQ(read_json_lines(out).size(), verdicts.size());
}

}  // namespace

TEST(EvalPlus, HumanEvalPlusVerdictsEqualEvalPlus) {
  expect_parity("HumanEvalPlus-fixture.jsonl", "HumanEvalPlus-fixture-samples.jsonl");
}

TEST(EvalPlus, MbppPlusVerdictsEqualEvalPlus) {
  expect_parity("MbppPlus-fixture.jsonl", "MbppPlus-fixture-samples.jsonl");
}

TEST(EvalPlus, ExpectedOutputsAreCachedPerDataset) {
  const auto scratch = xft::test::scratch_dir("cache");
  auto problems = xft::load_problems(data("MbppPlus-fixture.jsonl"));
  xft::PlusOptions o;
  o.limits = xft::test::test_limits();
  o.cache_dir = scratch;
  const auto first = xft::ground_truth(problems, o);
  ASSERT_EQ(first.size(), problems.size());
  EXPECT_EQ(first.at("Mbpp/903").base_time.size(), 2u);
  const std::string cache = scratch + "/evalplus-expected-" + xft::dataset_key(problems) + ".jsonl";
  ASSERT_TRUE(fs::exists(cache));
  // A cache entry edited by hand is what the next run uses: it is read, not recomputed.
  auto lines = read_json_lines(cache);
  std::string text;
  for (auto& l : lines) {
    if (l["task_id"] == "Mbpp/903") l["base_time"] = {7.0, 7.0};
    text += l.dump() + "\n";
  }
  std::ofstream(cache) << text;
  EXPECT_EQ(xft::ground_truth(problems, o).at("Mbpp/903").base_time, (std::vector<double>{7.0, 7.0}));
  // Another dataset (one record changed) has another key.
  problems[0].record += " ";
  EXPECT_NE(xft::dataset_key(problems), xft::dataset_key(xft::load_problems(data("MbppPlus-fixture.jsonl"))));
}

TEST(EvalPlus, XftToolScorePrintsBaseAndPlusPassAt1) {
  expect_tool_prints_evalplus_numbers(xft::test::scratch_dir("tool"), xft::test::test_limits().python);
}

// A fresh machine's python3 has no numpy: scoring must not count every float task as failed.
// Asked for an interpreter without numpy, scoring falls back to one that has it (the project's
// venv) and gives EvalPlus' verdicts; with no fallback it stops with an error naming numpy.
TEST(EvalPlus, InterpreterWithoutNumpyFallsBackOrStopsNamingNumpy) {
  const auto scratch = xft::test::scratch_dir("bare");
  const std::string bare = python_without_numpy(scratch);
  xft::SandboxLimits limits = xft::test::test_limits();
  limits.python = bare;
  expect_error(
      [&] { xft::interpreter_with(limits, {"numpy"}, {}); },
      {"the interpreter '" + bare + "'", "cannot import numpy", "No module named 'numpy'", "pip install numpy"});
  // Plain HumanEval needs nothing beyond the standard library: the bare interpreter is kept.
  EXPECT_EQ(xft::interpreter_with(limits, {}, {}).python, bare);
  // The fallback is taken, and its verdicts are EvalPlus' (the HumanEval+ fixture has float tasks).
  const auto chosen = xft::interpreter_with(limits, {"numpy"}, {xft::test::env_or_empty("XFT_PYTHON")});
  EXPECT_NE(chosen.python, bare);
  expect_parity("HumanEvalPlus-fixture.jsonl", "HumanEvalPlus-fixture-samples.jsonl", bare);
  expect_tool_prints_evalplus_numbers(scratch, bare);
}

// A harness that fails before it can run the sample (here: expected outputs that do not decode,
// as a damaged cache would give) is an error of the evaluation, never a "fail" or "timeout".
TEST(EvalPlus, AHarnessFailureStopsTheEvaluationInsteadOfScoring) {
  const auto problems = xft::load_problems(data("HumanEvalPlus-fixture.jsonl"));
  xft::PlusOptions o;
  o.limits = xft::test::test_limits();
  auto truth = xft::ground_truth(problems, o);
  const xft::Problem& p = problems.front();
  const std::string solution = p.prompt + "    pass\n";
  // Untouched, the same call scores (a wrong solution: a verdict, no error).
  const auto verdicts = xft::check_solutions({&p}, {solution}, truth, o);
  EXPECT_NE(verdicts[0].base, "pass");
  truth.at(p.task_id).base = "not base64 of a pickle";
  expect_error([&] { xft::check_solutions({&p}, {solution}, truth, o); },
               {"evaluator failed on " + p.task_id, "base check", "preparing the check failed", "not a verdict"});
  // Time limits that do not match the inputs: the harness refuses rather than guessing.
  truth = xft::ground_truth(problems, o);
  truth.at(p.task_id).plus_time.push_back(1.0);
  expect_error([&] { xft::check_solutions({&p}, {solution}, truth, o); },
               {"evaluator failed on " + p.task_id, "plus check"});
}

TEST(Problems, EvalPlusRecordsGetTheAuthorsPrompts) {
  const auto mbpp = xft::load_problems(data("MbppPlus-fixture.jsonl"));
  ASSERT_EQ(mbpp[0].kind, "mbpp+");
  EXPECT_TRUE(xft::is_evalplus(mbpp[0]));
  const std::string prompt = xft::instruction_prompt(mbpp[0]);
  // The XFT authors' text2code: the docstring's task with a full stop, its assert, and a response
  // that opens the code block without a newline.
  const std::string tail =
      "@@ Instruction\nWrite a function to append the given list to the given tuple. Your code should "
      "satisfy the following assertion:\n```python\nassert add_lists([5, 6, 7], (9, 10)) == (9, 10, 5, 6, 7)"
      "\n```\n\n@@ Response\n```python";
  ASSERT_GE(prompt.size(), tail.size());
  EXPECT_EQ(prompt.substr(prompt.size() - tail.size()), tail) << prompt;
  EXPECT_EQ(xft::extract_code(xft::response_prefix(mbpp[0]) + "\ndef f():\n    pass\n```\n"), "def f():\n    pass\n");
  expect_error([&] { xft::test_program(mbpp[0], ""); }, {"Mbpp/106", "EvalPlus"});

  const auto he = xft::load_problems(data("HumanEvalPlus-fixture.jsonl"));
  EXPECT_EQ(he[0].kind, "humaneval+");
  const std::string stripped = he[0].prompt.substr(0, he[0].prompt.find_last_not_of(" \n") + 1);
  EXPECT_EQ(xft::response_prefix(he[0]), "```python\n" + stripped);

  const auto dir = xft::test::scratch_dir("bad");
  std::ofstream(dir + "/atol.jsonl")
      << "{\"task_id\": \"Mbpp/1\", \"prompt\": \"\\\"\\\"\\\"\\nx\\nassert f()\\n\\\"\\\"\\\"\", "
         "\"entry_point\": \"f\", \"canonical_solution\": \"\", \"base_input\": [], \"plus_input\": []}\n";
  expect_error([&] { xft::load_problems(dir + "/atol.jsonl"); }, {dir + "/atol.jsonl:1", "'atol'"});
  // Python's JSON spellings of non-finite floats load (the inputs are read by Python).
  std::ofstream(dir + "/inf.jsonl")
      << "{\"task_id\": \"HumanEval/9\", \"prompt\": \"\", \"entry_point\": \"f\", "
         "\"canonical_solution\": \"\", \"base_input\": [[Infinity], [NaN]], \"plus_input\": "
         "[[-Infinity, \"NaN\"]], \"atol\": 0}\n";
  EXPECT_EQ(xft::load_problems(dir + "/inf.jsonl")[0].record.find("[[Infinity], [NaN]]") != std::string::npos, true);
}

TEST(Samples, CompletionsFollowThePromptAndErrorsNameTheLine) {
  const auto problems = xft::load_problems(data("HumanEvalPlus-fixture.jsonl"));
  const auto samples = xft::read_samples(data("HumanEvalPlus-fixture-samples.jsonl"), problems);
  ASSERT_EQ(samples.size(), 18u);
  EXPECT_EQ(samples[0].solution, problems[0].prompt + problems[0].canonical_solution);
  const auto dir = xft::test::scratch_dir("samples");
  xft::write_samples(dir + "/out.jsonl", samples);
  const auto again = xft::read_samples(dir + "/out.jsonl", problems);
  ASSERT_EQ(again.size(), samples.size());
  EXPECT_EQ(again[5].solution, samples[5].solution);
  std::ofstream(dir + "/bad.jsonl")
      << "{\"task_id\": \"HumanEval/0\", \"solution\": \"x\"}\n{\"task_id\": \"HumanEval/0\"}\n";
  expect_error([&] { xft::read_samples(dir + "/bad.jsonl", problems); },
               {dir + "/bad.jsonl:2", "'solution'", "'completion'"});
  std::ofstream(dir + "/task.jsonl") << "{\"task_id\": \"HumanEval/77\", \"solution\": \"x\"}\n";
  expect_error([&] { xft::read_samples(dir + "/task.jsonl", problems); }, {dir + "/task.jsonl:1", "HumanEval/77"});
}

TEST(Eval, EvalPlusProblemsReportBaseAndPlusAndWriteSamples) {
  const auto problems = xft::load_problems(data("HumanEvalPlus-fixture.jsonl"));
  const auto scratch = xft::test::scratch_dir("evalplus");
  xft::EvalOptions options;
  options.limits = xft::test::test_limits();
  options.results_path = scratch + "/results.jsonl";
  options.samples_path = scratch + "/samples.jsonl";
  // Canonical answers: every task passes base and plus, except where EvalPlus says otherwise
  // for the canonical sample of the fixture (find_zero under evalplus 0.3.1).
  const auto report = xft::evaluate_problems(
      problems,
      [&](const std::vector<std::string>& prompts, int64_t n) {
        std::vector<std::vector<std::string>> out;
        for (const auto& prompt : prompts) {
          for (const auto& p : problems) {
            if (xft::instruction_prompt(p) == prompt)
              out.emplace_back(static_cast<size_t>(n), "\n" + p.canonical_solution + "```\n");
          }
        }
        return out;
      },
      options);
  const auto verdicts = evalplus_verdicts("HumanEvalPlus-fixture-samples.jsonl");
  const auto& find_zero = verdicts.at("HumanEval/5").front();
  const double expected = (5.0 + (find_zero.first == "pass" && find_zero.second == "pass")) / 6.0;
  EXPECT_NEAR(report.pass_at_k.at(1), expected, 1e-12);
  EXPECT_NEAR(report.base_pass_at_k.at(1), (5.0 + (find_zero.first == "pass")) / 6.0, 1e-12);
  EXPECT_NE(report.summary().find("pass@1 base "), std::string::npos) << report.summary();
  const auto records = read_json_lines(options.results_path);
  ASSERT_EQ(records.size(), 6u);
  EXPECT_EQ(records[5]["base_status"][0], find_zero.first);
  EXPECT_EQ(records[5]["plus_status"][0], find_zero.second);
  // The generations, in EvalPlus' samples format, score the same way again.
  const auto samples = xft::read_samples(options.samples_path, problems);
  ASSERT_EQ(samples.size(), 6u);
  const auto again = xft::score_samples(problems, samples, score_options(scratch));
  EXPECT_NEAR(again.plus_pass_at_k.at(1), expected, 1e-12);
}
