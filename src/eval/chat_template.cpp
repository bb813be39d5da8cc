#include "xft/eval/chat_template.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "eval/python_program.h"
#include "xft/core/error.h"
#include "xft/core/files.h"
#include "xft/eval/interpreter.h"

namespace fs = std::filesystem;

namespace xft {

const char* chat_template_program();  // chat_template.py, embedded at build time

namespace {

using nlohmann::json;

// tokenizer_config.json spells a special token as a string or as an AddedToken object {"content": ...}.
std::string token_text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v.at("content").is_string()) return v.at("content").get<std::string>();
  return "";
}

}  // namespace

ChatTemplate load_chat_template(const std::string& model_dir) {
  ChatTemplate t;
  const fs::path dir(model_dir);
  const fs::path config_path = dir / "tokenizer_config.json";
  json config = json::object();
  if (fs::exists(config_path)) config = read_json_file(config_path.string());
  XFT_CHECK(config.is_object(), config_path.string(), ": expected a JSON object");
  for (const char* name : {"bos_token", "eos_token", "unk_token", "pad_token"}) {
    if (config.contains(name)) {
      const std::string text = token_text(config.at(name));
      if (!text.empty()) t.special_tokens[name] = text;
    }
  }
  const fs::path jinja = dir / "chat_template.jinja";
  if (fs::exists(jinja)) {
    t.source = jinja.string();
    std::ifstream in(jinja, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    XFT_CHECK(in.good() || in.eof(), t.source, ": cannot read");
    t.text = text.str();
    XFT_CHECK(!t.text.empty(), t.source, ": the chat template is empty");
    return t;
  }
  t.source = config_path.string() + " (chat_template)";
  XFT_CHECK(config.contains("chat_template"), "chat prompt: ", model_dir, " has no chat template (neither ",
            jinja.string(), " nor a 'chat_template' field in ", config_path.string(),
            "); a base model is scored with --prompt completion");
  const json& field = config.at("chat_template");
  if (field.is_string()) {
    t.text = field.get<std::string>();
  } else if (field.is_array()) {
    for (const auto& entry : field) {
      if (entry.is_object() && entry.value("name", std::string()) == "default" && entry.contains("template") &&
          entry.at("template").is_string()) {
        t.text = entry.at("template").get<std::string>();
      }
    }
    XFT_CHECK(!t.text.empty(), t.source, ": a list of templates without one named 'default'");
  } else {
    fail(t.source, ": expected a string or a list of {\"name\", \"template\"}");
  }
  return t;
}

std::vector<std::string> render_chat(const ChatTemplate& chat_template,
                                     const std::vector<std::vector<ChatMessage>>& conversations,
                                     bool add_generation_prompt, const SandboxLimits& limits) {
  if (conversations.empty()) return {};
  json convs = json::array();
  for (const auto& conv : conversations) {
    json messages = json::array();
    for (const auto& m : conv) messages.push_back({{"role", m.role}, {"content", m.content}});
    convs.push_back(std::move(messages));
  }
  const json args{{"template", chat_template.text},
                  {"conversations", convs},
                  {"add_generation_prompt", add_generation_prompt},
                  {"special_tokens", chat_template.special_tokens}};
  SandboxLimits l = interpreter_with(limits, {"jinja2"});
  // A data file's conversations render in this one process: allow ~10 ms each beyond a minute.
  l.timeout_s = std::max({l.timeout_s, 60.0, 0.01 * static_cast<double>(conversations.size())});
  l.capture_bytes = int64_t{1} << 30;
  const SandboxResult r = run_python(python_program(args, chat_template_program()), l);
  json reply;
  std::istringstream in(r.output);
  std::string line;
  while (std::getline(in, line)) {
    reply = json::parse(line, nullptr, false);
    if (!reply.is_discarded() && reply.is_object()) break;
  }
  XFT_CHECK(reply.is_object(), "chat prompt: rendering ", chat_template.source, " failed (", r.status,
            "): ", r.output_tail);
  XFT_CHECK(!reply.contains("error"), "chat prompt: ", chat_template.source, ": ", reply.value("error", std::string()));
  const auto rendered = reply.at("rendered").get<std::vector<std::string>>();
  XFT_CHECK(rendered.size() == conversations.size(), "chat prompt: ", rendered.size(), " renderings for ",
            conversations.size(), " conversations");
  return rendered;
}

ConversationRenderer chat_renderer(ChatTemplate chat_template, SandboxLimits limits) {
  return [chat_template = std::move(chat_template), limits = std::move(limits)](
             const std::vector<Conversation>& conversations, bool add_generation_prompt) {
    return render_chat(chat_template, conversations, add_generation_prompt, limits);
  };
}

}  // namespace xft
