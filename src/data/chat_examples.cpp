#include "data/chat_examples.h"

#include <algorithm>
#include <cctype>

#include "xft/core/error.h"
#include "xft/data/tokenizer.h"

using nlohmann::json;

namespace xft {

namespace {

bool has_text(const std::string& s) {
  return std::any_of(s.begin(), s.end(), [](unsigned char ch) { return std::isspace(ch) == 0; });
}

// ShareGPT's speaker names as the chat roles templates know (FastChat's and LLaMA-Factory's reading).
std::string sharegpt_role(const std::string& from) {
  if (from == "human") return "user";
  if (from == "gpt") return "assistant";
  return from;
}

size_t common_prefix(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  return static_cast<size_t>(
      std::mismatch(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(std::min(a.size(), b.size())), b.begin()).first -
      a.begin());
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

}  // namespace

std::string parse_conversation(const json& record, Conversation* out) {
  const bool messages = record.contains("messages");
  const char* list = messages ? "messages" : "conversations";
  const char* role_key = messages ? "role" : "from";
  const char* content_key = messages ? "content" : "value";
  if (!record.contains(list)) return "missing field 'messages' (or ShareGPT's 'conversations')";
  const json& turns = record.at(list);
  if (!turns.is_array()) return std::string("field '") + list + "' is " + turns.type_name() + "; expected an array";
  bool assistant = false;
  for (size_t i = 0; i < turns.size(); ++i) {
    const json& t = turns[i];
    const std::string at = std::string(list) + "[" + std::to_string(i) + "]";
    if (!t.is_object()) return at + " is " + t.type_name() + "; expected an object";
    for (const char* key : {role_key, content_key}) {
      if (!t.contains(key)) return at + " has no '" + key + "'";
      if (!t.at(key).is_string()) return at + "." + key + " is " + t.at(key).type_name() + "; expected a string";
    }
    ChatMessage m{t.at(role_key).get<std::string>(), t.at(content_key).get<std::string>()};
    if (!messages) m.role = sharegpt_role(m.role);
    if (m.role.empty()) return at + "." + role_key + " is empty";
    assistant = assistant || (m.role == "assistant" && has_text(m.content));
    out->push_back(std::move(m));
  }
  if (!assistant) return std::string("no assistant turn with text in '") + list + "' (nothing to learn)";
  return "";
}

std::vector<std::string> make_chat_examples(const std::vector<Conversation>& conversations,
                                            const ConversationRenderer& render, const Tokenizer& tokenizer,
                                            int64_t max_length, std::vector<Example>* examples) {
  // Every text is rendered by the template itself: the whole conversation, and per assistant turn
  // the conversation before it with the turn opened (add_generation_prompt) and through it.
  std::vector<Conversation> closed = conversations, opened;
  std::vector<std::vector<size_t>> turns(conversations.size());
  for (size_t c = 0; c < conversations.size(); ++c) {
    const auto& conv = conversations[c];
    for (size_t i = 0; i < conv.size(); ++i) {
      if (conv[i].role != "assistant") continue;
      turns[c].push_back(i);
      opened.emplace_back(conv.begin(), conv.begin() + static_cast<std::ptrdiff_t>(i));
      closed.emplace_back(conv.begin(), conv.begin() + static_cast<std::ptrdiff_t>(i) + 1);
    }
  }
  const auto closed_text = render(closed, false);
  const auto opened_text = render(opened, true);
  XFT_CHECK(closed_text.size() == closed.size() && opened_text.size() == opened.size(),
            "chat data: the renderer returned ", closed_text.size(), " + ", opened_text.size(), " texts for ",
            closed.size(), " + ", opened.size(), " conversations");

  std::vector<std::string> reasons(conversations.size());
  size_t next = 0;  // the turn renderings of conversation c follow those of conversations before it
  for (size_t c = 0; c < conversations.size(); ++c) {
    const std::string& whole = closed_text[c];
    Example ex;
    ex.input_ids = tokenizer.encode(whole);
    ex.labels.assign(ex.input_ids.size(), kIgnoreLabel);
    std::string reason;
    for (size_t k = 0; k < turns[c].size(); ++k, ++next) {
      const std::string& before = opened_text[next];
      const std::string& through = closed_text[conversations.size() + next];
      if (reason.empty() && !(starts_with(whole, before) && starts_with(whole, through))) {
        reason = "the chat template does not render message " + std::to_string(turns[c][k]) +
                 " (assistant) as a prefix of the whole conversation; its loss cannot be placed";
      }
      if (!reason.empty()) continue;
      // The turn's tokens: from the first one the opened prefix's own tokenisation does not have,
      // to the end of what the prefix through the turn shares with the whole. A token that
      // straddles the boundary (a newline merged with the answer's indent) counts as the answer's.
      const size_t begin = common_prefix(tokenizer.encode(before), ex.input_ids);
      const size_t end = common_prefix(tokenizer.encode(through), ex.input_ids);
      for (size_t t = begin; t < end; ++t) ex.labels[t] = ex.input_ids[t];
    }
    if (reason.empty()) {
      const auto first = std::find_if(ex.labels.begin(), ex.labels.end(), [](int64_t l) { return l != kIgnoreLabel; });
      const auto before_first = first - ex.labels.begin();
      if (first == ex.labels.end()) {
        reason = "empty response (the assistant turns render to no token of their own)";
      } else if (before_first >= max_length) {
        reason = "prompt too long (" + std::to_string(before_first) + " tokens before the first assistant token; " +
                 "max_length " + std::to_string(max_length) + " leaves no room for the response)";
      }
    }
    if (reason.empty()) {
      if (static_cast<int64_t>(ex.input_ids.size()) > max_length) {
        ex.input_ids.resize(static_cast<size_t>(max_length));
        ex.labels.resize(static_cast<size_t>(max_length));
      }
      examples->push_back(std::move(ex));
    }
    reasons[c] = reason;
  }
  return reasons;
}

}  // namespace xft
