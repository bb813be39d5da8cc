// defines: parse_conversation, make_chat_examples (internal: data.format "messages")
//
// A conversation record -> one example: the ids are the model's chat template rendering of the
// whole conversation, tokenised as transformers' apply_chat_template(tokenize=True) tokenises it
// (no BOS/EOS of the data layer's own: the template places what it wants), and only the assistant
// turns carry loss (TRL's assistant-only loss, LLaMA-Factory's masking of the other roles).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "xft/data/conversation.h"
#include "xft/data/instruction_data.h"

namespace xft {

class Tokenizer;

// {"messages": [{"role", "content"}, ...]} or ShareGPT's {"conversations": [{"from", "value"}, ...]}
// (from: human -> user, gpt -> assistant, system, or a role name as it is). Returns why a record
// cannot be used ("" when it can): no such list, a turn without a string role or content, no
// assistant turn with text.
std::string parse_conversation(const nlohmann::json& record, Conversation* out);

// One example per conversation, in order; reasons[i] is "" or why conversation i gives none (the
// template's rendering of a turn is not a prefix of the whole, no assistant token within
// max_length). Two render calls in all (whole conversations and turns, then the turns opened by
// add_generation_prompt).
std::vector<std::string> make_chat_examples(const std::vector<Conversation>& conversations,
                                            const ConversationRenderer& render, const Tokenizer& tokenizer,
                                            int64_t max_length, std::vector<Example>* examples);

}  // namespace xft
