// defines: ChatMessage, Conversation, ConversationRenderer
//
// A conversation as chat data and chat prompts hold it ({"role", "content"} turns), and the
// renderer that turns conversations into a model's text. The data layer only calls a renderer;
// the one that runs a model's own Jinja chat template lives in eval/chat_template.h, and the
// pipelines hand it to InstructionDataset::load.
#pragma once
#include <functional>
#include <string>
#include <vector>

namespace xft {

struct ChatMessage {
  std::string role;  // "system" | "user" | "assistant" | ...
  std::string content;
};

using Conversation = std::vector<ChatMessage>;

// Every conversation's text, ending with the assistant's turn opened when add_generation_prompt
// (the semantics of transformers' apply_chat_template(tokenize=False)). All conversations of a
// call render together: one call per data file.
using ConversationRenderer =
    std::function<std::vector<std::string>(const std::vector<Conversation>& conversations, bool add_generation_prompt)>;

}  // namespace xft
