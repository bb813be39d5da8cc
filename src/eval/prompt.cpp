#include "xft/eval/prompt.h"

#include "xft/core/error.h"

namespace xft {

namespace {

// EvalPlus' chat prompt (evalplus/provider/utility.py, make_raw_chat_prompt): the instruction
// and the assistant's opening, the code block's first line being where generation starts.
constexpr const char* kChatInstruction =
    "Please provide a self-contained Python script that solves the following problem in a markdown code block:";
constexpr const char* kChatResponse =
    "Below is a Python script with a self-contained function that solves the problem and passes corresponding tests:";
// Splits the rendered conversation where the assistant's code begins.
constexpr const char* kSplitter = "-[[]]-this-is-really-our-highest-priority-[[]]-";

std::string strip(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

// The completion prompt: the task's own prompt; plain MBPP has none in code, so its text and
// first test become a docstring, as in EvalPlus' MBPP+ prompts.
std::string completion_prompt(const Problem& p) {
  if (p.kind != "mbpp") return p.prompt;
  const std::string first_test = p.test_list.empty() ? std::string() : strip(p.test_list.front());
  return "\"\"\"\n" + strip(p.prompt) + "\n" + first_test + "\n\"\"\"\n";
}

}  // namespace

PromptMode parse_prompt_mode(const std::string& name, const std::string& where) {
  if (name == "instruction") return PromptMode::kInstruction;
  if (name == "completion") return PromptMode::kCompletion;
  if (name == "chat") return PromptMode::kChat;
  fail(where, ": unknown prompt mode '", name, "' (expected instruction, completion or chat)");
}

std::string prompt_mode_name(PromptMode mode) {
  switch (mode) {
    case PromptMode::kInstruction: return "instruction";
    case PromptMode::kCompletion: return "completion";
    case PromptMode::kChat: return "chat";
  }
  fail("prompt mode ", static_cast<int>(mode), " has no name");
}

PromptStyle prompt_style(PromptMode mode, const std::string& model_dir, const SandboxLimits& limits) {
  PromptStyle style;
  style.mode = mode;
  style.limits = limits;
  if (mode == PromptMode::kChat) style.chat = load_chat_template(model_dir);
  return style;
}

std::vector<std::string> model_inputs(const std::vector<const Problem*>& problems, const PromptStyle& style) {
  std::vector<std::string> inputs;
  for (const Problem* p : problems) {
    XFT_CHECK(p->kind != "multipl-e" || style.mode == PromptMode::kCompletion, p->task_id,
              ": MultiPL-E problems are asked by completion of their prompt (--prompt completion), as MultiPL-E does");
  }
  switch (style.mode) {
    case PromptMode::kInstruction:
      for (const Problem* p : problems) inputs.push_back(instruction_prompt(*p));
      return inputs;
    case PromptMode::kCompletion:
      for (const Problem* p : problems) inputs.push_back(completion_prompt(*p));
      return inputs;
    case PromptMode::kChat: {
      std::vector<std::vector<ChatMessage>> conversations;
      for (const Problem* p : problems) {
        conversations.push_back(
            {{"user", std::string(kChatInstruction) + "\n```\n" + strip(completion_prompt(*p)) + "\n```\n"},
             {"assistant", std::string(kChatResponse) + "\n```python\n" + kSplitter + "\n```\n"}});
      }
      for (auto& text : render_chat(style.chat, conversations, false, style.limits)) {
        const size_t at = text.find(kSplitter);
        XFT_CHECK(at != std::string::npos, "chat prompt: ", style.chat.source,
                  " dropped the assistant's message (its text is not in the rendering)");
        inputs.push_back(text.substr(0, at));
      }
      return inputs;
    }
  }
  fail("prompt mode ", static_cast<int>(style.mode), " is not handled");
}

std::string solution_of(const Problem& p, const std::string& completion, PromptMode mode) {
  switch (mode) {
    case PromptMode::kInstruction: return extract_code(response_prefix(p) + completion);
    // DS-1000: the completion is the code its context runs, on its own.
    case PromptMode::kCompletion: return p.kind == "ds1000" ? completion : completion_prompt(p) + completion;
    case PromptMode::kChat: return extract_code("```python\n" + completion);
  }
  fail("prompt mode ", static_cast<int>(mode), " is not handled");
}

std::vector<std::string> stop_sequences(PromptMode mode) {
  switch (mode) {
    case PromptMode::kInstruction:
    case PromptMode::kChat: return {"\n```"};
    // EvalPlus 0.3.1's direct-completion stops (provider/utility.py: EOS and
    // extra_eos_for_direct_completion), then bigcode-evaluation-harness' "\n#" and "\n```", and
    // the ends of DS-1000's completion prompts ("</code>", "# SOLUTION END").
    case PromptMode::kCompletion:
      return {"<|endoftext|>", "<|endofmask|>", "</s>",     "\nif __name__", "\ndef main(",
              "\nprint(",      "\ndef ",        "\nclass ", "\nimport ",     "\nfrom ",
              "\nassert ",     "\n#",           "\n```",    "</code>",       "# SOLUTION END"};
  }
  fail("prompt mode ", static_cast<int>(mode), " is not handled");
}

}  // namespace xft
