// Tests for the prompt modes (xft/eval/prompt.h) and the chat template renderer
// (xft/eval/chat_template.h): renderings equal transformers' apply_chat_template on three real
// templates, chat prompts equal EvalPlus' own (tests/python/chat_template_reference.py, a CTest
// fixture step), and each mode's inputs, programs and stops, end to end through evaluate_problems.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_util.h"
#include "xft/eval/chat_template.h"
#include "xft/eval/code_eval.h"
#include "xft/eval/problems.h"
#include "xft/eval/prompt.h"

using nlohmann::json;
using xft::test::expect_error;

namespace {

json read_json(const std::string& path) { return json::parse(xft::test::read_all(path)); }

const std::vector<xft::Problem>& humaneval() {
  static const auto problems = xft::load_problems(xft::test::fixture("humaneval") + "/HumanEval.jsonl.gz");
  return problems;
}

std::vector<xft::ChatMessage> messages_of(const json& j) {
  std::vector<xft::ChatMessage> out;
  for (const auto& m : j) out.push_back({m["role"], m["content"]});
  return out;
}

}  // namespace

TEST(ChatTemplate, RendersAsTransformersOnThreeRealTemplates) {
  int compared = 0, refused = 0;
  for (const std::string name : {"smollm2", "tinyllama-chat", "mistral-instruct"}) {
    const std::string dir = xft::test::fixture("chat") + "/" + name;
    const auto tmpl = xft::load_chat_template(dir);
    EXPECT_NE(tmpl.source.find("chat_template.jinja"), std::string::npos) << tmpl.source;
    for (const auto& e : read_json(dir + "/expected.json")) {
      const auto messages = messages_of(e["messages"]);
      const bool gen = e["add_generation_prompt"];
      if (e["rendered"].is_null()) {  // the template refuses it (raise_exception): so must xft
        expect_error([&] { xft::render_chat(tmpl, {messages}, gen, xft::test::test_limits()); },
                     {tmpl.source, e["error"].get<std::string>()});
        ++refused;
        continue;
      }
      const auto got = xft::render_chat(tmpl, {messages}, gen, xft::test::test_limits());
      ASSERT_EQ(got.size(), 1u);
      EXPECT_EQ(got[0], e["rendered"].get<std::string>()) << name << ": " << e["messages"].dump();
      ++compared;
    }
  }
  EXPECT_GE(compared, 20);
  EXPECT_GE(refused, 1);  // Mistral's template refuses a system message
}

TEST(ChatTemplate, AMissingOrBrokenTemplateIsAnErrorNamingTheFile) {
  const auto scratch = xft::test::scratch_dir("tmpl");
  std::ofstream(scratch + "/tokenizer_config.json") << R"({"bos_token": "<s>"})";
  expect_error([&] { xft::load_chat_template(scratch); },
               {"has no chat template", "tokenizer_config.json", "--prompt completion"});
  std::ofstream(scratch + "/tokenizer_config.json") << R"({"chat_template": [{"name": "tool_use", "template": "x"}]})";
  expect_error([&] { xft::load_chat_template(scratch); }, {"tokenizer_config.json", "without one named 'default'"});
  std::ofstream(scratch + "/tokenizer_config.json")
      << R"({"chat_template": [{"name": "default", "template": "{% for m in messages %}{{ m['content'] }}"}]})";
  const auto broken = xft::load_chat_template(scratch);  // an unclosed for: Jinja refuses it at compile time
  expect_error(
      [&] {
        xft::render_chat(broken, {{{"user", "hi"}}}, true, xft::test::test_limits());
      },
      {"tokenizer_config.json (chat_template)", "does not compile"});
}

TEST(Prompt, ChatPromptsEqualEvalPlusOwnOnSmolLM2) {
  const auto expected = read_json(xft::test::fixture("chat") + "/evalplus_prompts.json");
  const auto style = xft::prompt_style(xft::PromptMode::kChat, xft::test::fixture("smollm2"), xft::test::test_limits());
  std::vector<const xft::Problem*> problems;
  for (const auto& e : expected["chat"]) {
    const auto it = std::find_if(humaneval().begin(), humaneval().end(),
                                 [&](const xft::Problem& p) { return p.task_id == e["task_id"]; });
    ASSERT_NE(it, humaneval().end());
    problems.push_back(&*it);
  }
  const auto inputs = xft::model_inputs(problems, style);
  ASSERT_EQ(inputs.size(), expected["chat"].size());
  for (size_t i = 0; i < inputs.size(); ++i) EXPECT_EQ(inputs[i], expected["chat"][i]["prompt"].get<std::string>());
  // Every stop EvalPlus uses for direct completion is one of ours.
  const auto stops = xft::stop_sequences(xft::PromptMode::kCompletion);
  for (const auto& s : expected["completion_stops"])
    EXPECT_NE(std::find(stops.begin(), stops.end(), s.get<std::string>()), stops.end()) << s;
}

TEST(Prompt, ModesNameTheirInputsProgramsAndStops) {
  const xft::Problem& p = humaneval().front();
  EXPECT_EQ(xft::parse_prompt_mode("completion", "x"), xft::PromptMode::kCompletion);
  expect_error([] { xft::parse_prompt_mode("plain", "--prompt"); },
               {"--prompt", "'plain'", "instruction, completion or chat"});
  for (auto mode : {xft::PromptMode::kInstruction, xft::PromptMode::kCompletion, xft::PromptMode::kChat})
    EXPECT_EQ(xft::parse_prompt_mode(xft::prompt_mode_name(mode), "x"), mode);
  const xft::PromptStyle completion{xft::PromptMode::kCompletion, {}, {}};
  EXPECT_EQ(xft::model_inputs({&p}, completion), std::vector<std::string>{p.prompt});
  EXPECT_EQ(xft::solution_of(p, "    return 1\n", xft::PromptMode::kCompletion), p.prompt + "    return 1\n");
  const xft::PromptStyle instruction;
  EXPECT_EQ(xft::model_inputs({&p}, instruction), std::vector<std::string>{xft::instruction_prompt(p)});
  EXPECT_EQ(xft::solution_of(p, "def f():\n    pass\n```\nprose", xft::PromptMode::kChat), "def f():\n    pass\n");
  EXPECT_EQ(xft::stop_sequences(xft::PromptMode::kInstruction), std::vector<std::string>{"\n```"});
  // Plain MBPP has no code prompt: its text and first test become a docstring, as EvalPlus' MBPP+ prompts.
  xft::Problem mbpp;
  mbpp.kind = "mbpp";
  mbpp.prompt = "Write a function to add two numbers. ";
  mbpp.test_list = {"assert add(1, 2) == 3", "assert add(0, 0) == 0"};
  EXPECT_EQ(xft::model_inputs({&mbpp}, completion)[0],
            "\"\"\"\nWrite a function to add two numbers.\nassert add(1, 2) == 3\n\"\"\"\n");
}

// The modes end to end: a generator answering each task with its canonical solution, in the form
// the mode expects, passes every task; an empty answer passes none.
TEST(Prompt, EachModeScoresCanonicalAnswersThroughEvaluateProblems) {
  XFT_REQUIRE_ISOLATION();
  const std::vector<xft::Problem> problems(humaneval().begin(), humaneval().begin() + 4);
  for (auto mode : {xft::PromptMode::kInstruction, xft::PromptMode::kCompletion, xft::PromptMode::kChat}) {
    xft::EvalOptions o;
    o.limits = xft::test::test_limits();
    o.prompt = xft::prompt_style(mode, xft::test::fixture("smollm2"), o.limits);
    std::vector<std::string> seen;
    auto answer = [&](bool right) {
      return [&, right](const std::vector<std::string>& prompts, int64_t n) {
        std::vector<std::vector<std::string>> out;
        for (size_t i = 0; i < prompts.size(); ++i) {
          seen.push_back(prompts[i]);
          const auto& p = problems[out.size()];
          const std::string body = right ? p.canonical_solution : "    pass\n";
          // instruction: the response prefix holds the prompt; chat: a whole script; completion: the body.
          const std::string text = mode == xft::PromptMode::kChat          ? p.prompt + body + "```\n"
                                   : mode == xft::PromptMode::kInstruction ? "\n" + body + "```"
                                                                           : body;
          out.push_back(std::vector<std::string>(static_cast<size_t>(n), text));
        }
        return out;
      };
    };
    const auto good = xft::evaluate_problems(problems, answer(true), o);
    EXPECT_DOUBLE_EQ(good.pass_at_k.at(1), 1.0) << xft::prompt_mode_name(mode);
    const auto bad = xft::evaluate_problems(problems, answer(false), o);
    EXPECT_DOUBLE_EQ(bad.pass_at_k.at(1), 0.0) << xft::prompt_mode_name(mode);
    ASSERT_FALSE(seen.empty());
    if (mode == xft::PromptMode::kCompletion) EXPECT_EQ(seen.front(), problems.front().prompt);
    if (mode == xft::PromptMode::kChat) EXPECT_NE(seen.front().find("<|im_start|>assistant\n"), std::string::npos);
  }
}
