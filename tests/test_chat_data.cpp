// Chat-format data (data.format "messages"): SmolLM2's own chat template renders the
// conversations, the ids equal transformers' apply_chat_template and the labels its assistant
// mask; the records that cannot be used are skipped by reason. And data.path as a weighted list.
#include <gtest/gtest.h>

#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "test_util.h"
#include "xft/data/instruction_data.h"
#include "xft/data/tokenizer.h"
#include "xft/eval/chat_template.h"

using nlohmann::json;
using namespace xft;

namespace {

std::string smollm2() { return test::fixture("smollm2"); }
std::string reference(const std::string& file) { return test::fixture("chat_data/" + file); }

DataConfig messages_config(const std::string& path, int64_t max_length = 1024) {
  DataConfig c;
  c.path = path;
  c.format = DataFormat::kMessages;
  c.max_length = max_length;
  return c;
}

const Tokenizer& smollm2_tokenizer() {
  static const auto tok = Tokenizer::load(smollm2());
  return *tok;
}

const ConversationRenderer& smollm2_renderer() {
  static const ConversationRenderer render = chat_renderer(load_chat_template(smollm2()));
  return render;
}

void write_lines(const std::string& path, const std::vector<json>& records) {
  std::ofstream out(path);
  for (const auto& r : records) out << r.dump() << "\n";
}

}  // namespace

TEST(ChatData, IdsAndAssistantLabelsEqualTransformers) {
  const json expected = json::parse(test::read_all(reference("expected.json")));
  for (const char* file : {"messages.jsonl", "sharegpt.jsonl"}) {
    const auto data =
        InstructionDataset::load(messages_config(reference(file)), &smollm2_tokenizer(), smollm2_renderer());
    ASSERT_EQ(data.size(), expected.size()) << file << "\n" << data.report().summary();
    for (size_t i = 0; i < data.size(); ++i) {
      const auto ids = expected[i]["ids"].get<std::vector<int64_t>>();
      const auto mask = expected[i]["assistant_mask"].get<std::vector<int64_t>>();
      EXPECT_EQ(data[i].input_ids, ids) << file << " conversation " << i;
      std::vector<int64_t> want(ids.size(), kIgnoreLabel);
      for (size_t t = 0; t < ids.size(); ++t)
        if (mask[t]) want[t] = ids[t];
      EXPECT_EQ(data[i].labels, want) << file << " conversation " << i;
    }
  }
}

TEST(ChatData, UnusableConversationsAreSkippedByReason) {
  const auto dir = test::scratch_dir("chat_data");
  const json answer = {{"role", "assistant"}, {"content", "return 1"}};
  std::string long_prompt;
  for (int i = 0; i < 40; ++i) long_prompt += "x" + std::to_string(i) + " = " + std::to_string(i * 7) + "\n";
  write_lines(dir + "/d.jsonl",
              {{{"messages", {{{"role", "user"}, {"content", "hi"}}, answer}}},
               {{"messages", {{{"role", "user"}, {"content", "no answer"}}}}},
               {{"messages", {{{"role", 3}, {"content", "x"}}, answer}}},
               {{"conversations", {{{"from", "human"}, {"value", "hi"}}, {{"from", "gpt"}, {"value", "  "}}}}},
               {{"instruction", "not a conversation"}, {"response", "x"}},
               {{"messages", {{{"role", "user"}, {"content", long_prompt}}, answer}}}});
  const auto data =
      InstructionDataset::load(messages_config(dir + "/d.jsonl", 64), &smollm2_tokenizer(), smollm2_renderer());
  ASSERT_EQ(data.size(), 1u);
  const auto summary = data.report().summary();
  for (const char* want :
       {"d.jsonl:2: no assistant turn", "d.jsonl:3: messages[0].role is number", "d.jsonl:4: no assistant turn",
        "d.jsonl:5: missing field 'messages'", "d.jsonl:6: prompt too long"})
    EXPECT_NE(summary.find(want), std::string::npos) << want << "\n" << summary;
  // Longer than max_length: cut at the end, like instruction records.
  EXPECT_LE(data[0].input_ids.size(), 64u);

  // strict: the first unusable record is an error naming its line.
  auto strict = messages_config(dir + "/d.jsonl", 64);
  strict.strict = true;
  test::expect_error([&] { InstructionDataset::load(strict, &smollm2_tokenizer(), smollm2_renderer()); },
                     {"d.jsonl:2", "no assistant turn", "strict"});
  // Without a chat template there is no way to render the conversations.
  test::expect_error([&] { InstructionDataset::load(messages_config(dir + "/d.jsonl"), &smollm2_tokenizer()); },
                     {"d.jsonl", "messages", "chat template"});
  // A template whose rendering of a turn is not a prefix of the whole conversation (this one
  // puts the turns in reverse order) cannot place the loss: said per record.
  const ConversationRenderer reversed = [](const std::vector<Conversation>& convs, bool) {
    std::vector<std::string> out;
    for (const auto& c : convs) {
      std::string text;
      for (auto it = c.rbegin(); it != c.rend(); ++it) text += it->role + ": " + it->content + "\n";
      out.push_back(text);
    }
    return out;
  };
  write_lines(dir + "/two.jsonl",
              {{{"messages", {{{"role", "user"}, {"content", "a"}}, answer, {{"role", "user"}, {"content", "b"}}}}},
               {{"messages", {{{"role", "user"}, {"content", "a"}}, answer}}}});
  test::expect_error(
      [&] { InstructionDataset::load(messages_config(dir + "/two.jsonl"), &smollm2_tokenizer(), reversed); },
      {"two.jsonl", "no usable record", "not render message 1 (assistant) as a prefix"});
}

// data.path as a list of files with weights: each file's examples `weight` times an epoch.
TEST(DataMix, WeightsRepeatOrSubsampleEachFilesExamples) {
  const auto dir = test::scratch_dir("data_mix");
  auto write = [&](const std::string& name, int n, int64_t first_id) {
    std::vector<json> records;
    for (int i = 0; i < n; ++i)
      records.push_back({{"prompt_ids", {first_id + i}}, {"response_ids", {first_id + i, 7}}});
    write_lines(dir + "/" + name, records);
  };
  write("a.jsonl", 4, 100);
  write("b.jsonl", 10, 200);
  const json j = {
      {"path", {{{"path", dir + "/a.jsonl"}, {"weight", 2}}, {{"path", dir + "/b.jsonl"}, {"weight", 0.5}}}},
      {"format", "pretokenized"},
      {"bos_id", 1},
      {"eos_id", 2}};
  const auto c = DataConfig::from_json(j, "cfg.json");
  ASSERT_EQ(c.files.size(), 2u);
  EXPECT_TRUE(c.path.empty());
  EXPECT_EQ(DataConfig::from_json(c.to_json(), "again").to_json(), c.to_json());
  const auto data = InstructionDataset::load(c, nullptr);
  // a: 4 examples twice; b: a seeded half of 10.
  ASSERT_EQ(data.size(), 8u + 5u);
  std::map<int64_t, int> seen;
  for (size_t i = 0; i < data.size(); ++i) ++seen[data[i].input_ids[1]];  // after BOS: the record's own id
  for (int64_t id = 100; id < 104; ++id) EXPECT_EQ(seen[id], 2) << id;
  int from_b = 0;
  for (int64_t id = 200; id < 210; ++id) {
    EXPECT_LE(seen[id], 1) << id;
    from_b += seen[id];
  }
  EXPECT_EQ(from_b, 5);
  // The same config gives the same mix.
  const auto again = InstructionDataset::load(c, nullptr);
  for (size_t i = 0; i < data.size(); ++i) EXPECT_EQ(again[i].input_ids, data[i].input_ids);
  const auto summary = data.report().summary();
  EXPECT_NE(summary.find("a.jsonl: 4 records"), std::string::npos) << summary;
  EXPECT_NE(summary.find("-> 5 examples"), std::string::npos) << summary;
  // A plain name in the list weighs 1; bad entries are named by their place.
  EXPECT_EQ(DataConfig::from_json({{"path", {dir + "/a.jsonl"}}}, "cfg.json").files.at(0).weight, 1.0);
  test::expect_error(
      [&] {
        DataConfig::from_json({{"path", {dir + "/a.jsonl", {{"path", "b"}, {"weight", -1}}}}}, "cfg.json");
      },
      {"cfg.json", "data.path[1]", "weight -1", "> 0"});
  test::expect_error(
      [&] {
        DataConfig::from_json({{"path", {{{"path", "b"}, {"wieght", 2}}}}}, "cfg.json");
      },
      {"cfg.json", "data.path[0]", "unknown field 'wieght'"});
  test::expect_error([&] { DataConfig::from_json({{"path", 3}}, "cfg.json"); }, {"cfg.json", "data.path", "list"});
}
