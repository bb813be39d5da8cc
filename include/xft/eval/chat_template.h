// defines: ChatTemplate, load_chat_template, render_chat, chat_renderer
//
// A model's own chat template (Jinja, from its Hugging Face directory), rendered by a real Jinja
// implementation: Jinja2 in a Python step (chat_template.py), with the environment transformers'
// apply_chat_template uses, so the text equals transformers'. Used by the evaluation's chat prompt
// mode; all conversations of a call render in one process.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "xft/data/conversation.h"
#include "xft/eval/sandbox.h"

namespace xft {

struct ChatTemplate {
  std::string source;  // the file it came from (for errors)
  std::string text;    // the Jinja source
  // Passed to the template as variables, as transformers passes its special tokens map:
  // bos_token, eos_token, unk_token, pad_token where tokenizer_config.json names them.
  std::map<std::string, std::string> special_tokens;
};

// The template of the model in `model_dir`: chat_template.jinja when present (newer
// transformers write it there), otherwise tokenizer_config.json's "chat_template" (a string, or a
// list of {"name", "template"} from which "default" is taken). Errors name the file and what is
// missing: no template at all, a list without "default", a malformed file.
ChatTemplate load_chat_template(const std::string& model_dir);

// Each conversation rendered by the template, ending with the assistant's turn opened when
// add_generation_prompt. `limits`: the sandbox the template runs in (its interpreter must have
// jinja2; interpreter_with picks one that does). Errors: a template that does not compile or
// raises (its own raise_exception message), naming the template's file and the conversation.
std::vector<std::string> render_chat(const ChatTemplate& chat_template,
                                     const std::vector<std::vector<ChatMessage>>& conversations,
                                     bool add_generation_prompt, const SandboxLimits& limits = {});

// render_chat bound to `chat_template` and `limits`: what chat-format data (data.format
// "messages") renders its conversations with.
ConversationRenderer chat_renderer(ChatTemplate chat_template, SandboxLimits limits = {});

}  // namespace xft
