// defines: PromptMode, parse_prompt_mode, prompt_mode_name, PromptStyle, prompt_style,
//          model_inputs, solution_of, stop_sequences
//
// How a model is asked to solve a problem, and how its answer becomes a program. Three modes:
//   instruction: the Magicoder template (the paper's, section 4.2), the answer opened with
//                response_prefix(p); for models tuned with it, and the default.
//   completion:  the task's prompt as it is (HumanEval(+), MBPP+: the signature and docstring;
//                MBPP: a docstring of the text and its first assert; DS-1000: its own prompt, the
//                completion being the code alone), continued by the model and cut at EvalPlus' /
//                bigcode's / DS-1000's stop sequences for direct completion; for base models.
//   chat:        the model's own chat template (chat_template.h) around EvalPlus' chat prompt
//                (make_raw_chat_prompt: the task in a code block, and an assistant turn opened
//                with "Below is a Python script ...\n```python\n"); for instruct models.
#pragma once
#include <string>
#include <vector>

#include "xft/eval/chat_template.h"
#include "xft/eval/problems.h"
#include "xft/eval/sandbox.h"

namespace xft {

enum class PromptMode { kInstruction, kCompletion, kChat };

// "instruction" | "completion" | "chat"; errors name `where` and the accepted names.
PromptMode parse_prompt_mode(const std::string& name, const std::string& where);
std::string prompt_mode_name(PromptMode mode);

struct PromptStyle {
  PromptMode mode = PromptMode::kInstruction;
  ChatTemplate chat;     // kChat: the model's template (load_chat_template)
  SandboxLimits limits;  // kChat: the sandbox the template is rendered in
};

// The style for `mode`; kChat loads the template of the model in `model_dir`.
PromptStyle prompt_style(PromptMode mode, const std::string& model_dir, const SandboxLimits& limits = {});

// The model's input for each problem (chat templates render all of them in one Python step).
std::vector<std::string> model_inputs(const std::vector<const Problem*>& problems, const PromptStyle& style);

// The whole program to test for a completion (the text generated after model_inputs(p)).
std::string solution_of(const Problem& p, const std::string& completion, PromptMode mode);

// Where generation stops (the text from there on is dropped): the closing fence of the code block
// the instruction and chat prompts open; EvalPlus' and bigcode's stop sequences for completion.
std::vector<std::string> stop_sequences(PromptMode mode);

}  // namespace xft
