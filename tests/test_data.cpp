// Tests for the data pipeline: xft/tokenizer.h, xft/instruction_data.h, xft/batcher.h.
// A tiny sentencepiece model is trained from generated code-like text, so no fixture is needed.
#include <ftw.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <numeric>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "xft/core/error.h"
#include "xft/data/batcher.h"
#include "xft/data/instruction_data.h"
#include "xft/data/tokenizer.h"

using nlohmann::json;
using xft::BatchSampler;
using xft::DataConfig;
using xft::InstructionDataset;
using xft::kIgnoreLabel;
using xft::Tokenizer;
using xft::test::expect_error;

namespace {

// Scratch directories via mkdtemp and nftw: test_util.h's scratch_dir goes through std::filesystem,
// whose copy exported by libtorch crashes in remove_all when a directory is reused (--gtest_repeat).
std::vector<std::string>& scratch_dirs() {
  static std::vector<std::string> dirs;
  return dirs;
}

std::string scratch_dir(const std::string& tag) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string pattern =
      "/tmp/xft-test-" + std::string(info->test_suite_name()) + "-" + info->name() + "-" + tag + "-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed for " << pattern;
  scratch_dirs().push_back(pattern);
  return pattern;
}

class RemoveScratchDirs : public ::testing::Environment {
 public:
  void TearDown() override {
    for (const auto& dir : scratch_dirs()) {
      ::nftw(
          dir.c_str(), [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }, 16,
          FTW_DEPTH | FTW_PHYS);
    }
    scratch_dirs().clear();
  }
};
[[maybe_unused]] ::testing::Environment* const kCleanup = ::testing::AddGlobalTestEnvironment(new RemoveScratchDirs);

const char* const kMagicoder =
    "You are an exceptionally intelligent coding assistant that consistently delivers accurate and reliable "
    "responses to user instructions.\n\n@@ Instruction\n";

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  ASSERT_TRUE(out.good()) << path;
  out << text;
}

// A few KB of Python-like lines from a fixed LCG: identical on every run, so training is too.
std::string corpus() {
  const char* words[] = {"value", "total", "index", "count", "items", "result", "name", "data", "limit", "key"};
  const char* ops[] = {"+", "-", "*", "//", "%"};
  uint64_t s = 12345;
  auto pick = [&](size_t n) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<size_t>((s >> 33) % n);
  };
  std::ostringstream os;
  for (int f = 0; f < 40; ++f) {
    const std::string a = words[pick(10)], b = words[pick(10)];
    os << "def compute_" << a << "(" << a << ", " << b << "=" << pick(100) << "):\n";
    os << "    " << b << " = [" << a << " " << ops[pick(5)] << " " << pick(1000) << " for _ in range(" << pick(50)
       << ")]\n";
    os << "    if " << a << " > " << b << ":\n";
    os << "        return " << a << "  # the " << b << " wins\n";
    os << "    return {\"" << a << "\": " << b << "}\n\n";
  }
  return os.str();
}

// Writes the corpus into dir and trains dir/tokenizer.model (vocab 400: byte fallback alone needs 260).
std::string train_tiny(const std::string& dir) {
  write_file(dir + "/corpus.txt", corpus());
  xft::train_sentencepiece(dir + "/corpus.txt", dir + "/tokenizer", 400);
  return dir + "/tokenizer.model";
}

// Trained once per process (each ctest entry is its own process, so this stays cheap).
const Tokenizer& tiny_tokenizer() {
  static const std::unique_ptr<Tokenizer> tok = Tokenizer::load(train_tiny(scratch_dir("spm")));
  return *tok;
}

std::vector<int64_t> slice(const std::vector<int64_t>& v, size_t begin, size_t end) {
  return std::vector<int64_t>(v.begin() + static_cast<std::ptrdiff_t>(begin),
                              v.begin() + static_cast<std::ptrdiff_t>(end));
}

std::string magicoder_prompt(const std::string& instruction) {
  return std::string(kMagicoder) + instruction + "\n\n@@ Response\n";
}

// Decodes the prompt part of an example (BOS excluded).
std::string prompt_text(const InstructionDataset& d, size_t i, const Tokenizer& tok) {
  const auto& ex = d[i];
  size_t n = 0;
  while (n < ex.labels.size() && ex.labels[n] == kIgnoreLabel) ++n;
  return tok.decode(slice(ex.input_ids, 1, n));
}

std::string jsonl(const std::vector<json>& records) {
  std::string out;
  for (const auto& r : records) out += r.dump() + "\n";
  return out;
}

DataConfig config_for(const std::string& path) {
  DataConfig c;
  c.path = path;
  return c;
}

DataConfig pretokenized(const std::string& path) {
  DataConfig c = config_for(path);
  c.format = xft::DataFormat::kPretokenized;
  c.bos_id = 1;
  c.eos_id = 2;
  return c;
}

std::vector<std::vector<int64_t>> take(BatchSampler& s, int64_t n) {
  std::vector<std::vector<int64_t>> out;
  for (int64_t i = 0; i < n; ++i) out.push_back(s.next());
  return out;
}

std::vector<int64_t> flat(const std::vector<std::vector<int64_t>>& batches) {
  std::vector<int64_t> out;
  for (const auto& b : batches) out.insert(out.end(), b.begin(), b.end());
  return out;
}

std::vector<int64_t> random_lengths(int64_t n) {
  std::vector<int64_t> out;
  for (int64_t i = 0; i < n; ++i) out.push_back(1 + (i * 7919 + 13) % 997);
  return out;
}

}  // namespace

// ------------------------------------------------------------------------------------------ tokenizer

TEST(Tokenizer, LoadsDirectoryAndRoundTripsCode) {
  const std::string dir = scratch_dir("tok");
  train_tiny(dir);
  auto tok = Tokenizer::load(dir);  // a directory holding tokenizer.model
  EXPECT_EQ(tok->vocab_size(), 400);
  EXPECT_EQ(tok->pad_id(), 0);
  EXPECT_EQ(tok->bos_id(), 2);
  EXPECT_EQ(tok->eos_id(), 3);

  const std::string code =
      "def compute_total(items, limit=10):\n\tif items > 1234567:\n        return [x // 3 for x in items]  "
      "# deep   spaces\n\n    return None  \r\nna\u00efve \u2192 \U0001F600\n";
  const auto ids = tok->encode(code);
  EXPECT_FALSE(ids.empty());
  EXPECT_EQ(std::count(ids.begin(), ids.end(), tok->bos_id()), 0) << "encode must not add BOS";
  EXPECT_EQ(std::count(ids.begin(), ids.end(), tok->eos_id()), 0) << "encode must not add EOS";
  EXPECT_EQ(tok->decode(ids), code);
  // Prompt and response are encoded apart: their ids must decode to the concatenation.
  auto both = tok->encode("    x = 1\n");
  const auto more = tok->encode("  y = 22\n");
  both.insert(both.end(), more.begin(), more.end());
  EXPECT_EQ(tok->decode(both), "    x = 1\n  y = 22\n");
  expect_error([&] { tok->decode({0, 400}); }, {"400", "[0, 400)"});
}

TEST(Tokenizer, TrainingIsDeterministic) {
  const std::string dir = scratch_dir("det");
  write_file(dir + "/corpus.txt", corpus());
  auto slurp = [](const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  // Same prefix both times: the .model embeds the training options, paths included.
  xft::train_sentencepiece(dir + "/corpus.txt", dir + "/m", 400);
  const std::string model = slurp(dir + "/m.model"), vocab = slurp(dir + "/m.vocab");
  xft::train_sentencepiece(dir + "/corpus.txt", dir + "/m", 400);
  EXPECT_FALSE(model.empty());
  EXPECT_TRUE(slurp(dir + "/m.model") == model && slurp(dir + "/m.vocab") == vocab) << "retraining changed the model";
  expect_error([&] { xft::train_sentencepiece(dir + "/missing.txt", dir + "/c", 400); }, {"missing.txt"});
}

TEST(Tokenizer, TokenizerJsonOnlyIsAClearError) {
  const std::string dir = scratch_dir("hf");
  write_file(dir + "/tokenizer.json", "{}");
  expect_error([&] { Tokenizer::load(dir); }, {dir, "tokenizer.json", "not supported yet", "pretokenized"});
  expect_error([&] { Tokenizer::load(dir + "/tokenizer.json"); }, {"tokenizer.json", "not supported yet"});
  expect_error([&] { Tokenizer::load(dir + "/nothing"); }, {dir + "/nothing", "tokenizer.model"});
  const std::string empty = scratch_dir("empty");
  expect_error([&] { Tokenizer::load(empty); }, {empty, "tokenizer.model"});
  write_file(empty + "/bad.model", "not a model");
  expect_error([&] { Tokenizer::load(empty + "/bad.model"); }, {"bad.model", "sentencepiece"});
}

// ---------------------------------------------------------------------------------------- data config

TEST(DataConfig, FromJsonDefaultsTypesAndUnknownKeys) {
  const auto c =
      DataConfig::from_json(json{{"path", "d.jsonl"}, {"response_field", "output"}, {"max_length", 64}}, "t.json");
  EXPECT_EQ(c.path, "d.jsonl");
  EXPECT_EQ(c.response_field, "output");
  EXPECT_EQ(c.max_length, 64);
  EXPECT_EQ(c.instruction_field, "instruction");
  EXPECT_EQ(c.prompt_template, magicoder_prompt("{instruction}"));
  EXPECT_FALSE(c.strict);
  EXPECT_EQ(DataConfig::from_json(c.to_json(), "again").to_json(), c.to_json());

  expect_error(
      [] {
        DataConfig::from_json(json{{"path", "d"}, {"max_lenght", 3}, {"colour", 1}}, "t.json");
      },
      {"t.json", "'max_lenght'", "'colour'", "max_length"});
  expect_error(
      [] {
        DataConfig::from_json(json{{"path", "d"}, {"max_length", "long"}}, "t.json");
      },
      {"t.json", "max_length", "integer"});
  expect_error([] { DataConfig::from_json(json{{"path", "d"}, {"format", "csv"}}, "t.json"); }, {"t.json", "csv"});
  expect_error(
      [] {
        DataConfig::from_json(json{{"path", "d"}, {"prompt_template", "no slot"}}, "t.json");
      },
      {"t.json", "{instruction}"});
  expect_error(
      [] {
        DataConfig::from_json(json{{"path", "d"}, {"format", "pretokenized"}}, "t.json");
      },
      {"t.json", "bos_id", "eos_id"});
}

// -------------------------------------------------------------------------------- instruction records

TEST(InstructionData, PromptMaskedAndMagicoderTemplateFilled) {
  const auto& tok = tiny_tokenizer();
  const std::string dir = scratch_dir("mask");
  const std::string response = "def add(a, b):\n    return a + b\n";
  write_file(dir + "/d.jsonl", jsonl({{{"instruction", "Write add."}, {"response", response}}}));
  const auto data = InstructionDataset::load(config_for(dir + "/d.jsonl"), &tok);
  ASSERT_EQ(data.size(), 1u);
  const auto& ex = data[0];
  const auto prompt_ids = tok.encode(magicoder_prompt("Write add."));
  const auto response_ids = tok.encode(response);
  const size_t p = 1 + prompt_ids.size();
  ASSERT_EQ(ex.input_ids.size(), p + response_ids.size() + 1);
  ASSERT_EQ(ex.labels.size(), ex.input_ids.size());
  EXPECT_EQ(ex.input_ids.front(), tok.bos_id());
  EXPECT_EQ(ex.input_ids.back(), tok.eos_id());
  EXPECT_EQ(slice(ex.input_ids, 1, p), prompt_ids);
  EXPECT_EQ(slice(ex.input_ids, p, ex.input_ids.size() - 1), response_ids);
  for (size_t t = 0; t < ex.labels.size(); ++t) {
    if (t < p)
      EXPECT_EQ(ex.labels[t], kIgnoreLabel) << t;
    else
      EXPECT_EQ(ex.labels[t], ex.input_ids[t]) << t;
  }
  EXPECT_EQ(prompt_text(data, 0, tok), magicoder_prompt("Write add."));
  EXPECT_EQ(tok.decode(slice(ex.input_ids, p, ex.input_ids.size() - 1)), response);
  EXPECT_EQ(data.report().records, 1);
  EXPECT_EQ(data.report().used, 1);
  EXPECT_EQ(data.report().skipped, 0);
}

TEST(InstructionData, AlpacaInputOnlyWhenPresentAndFieldNames) {
  const auto& tok = tiny_tokenizer();
  const std::string dir = scratch_dir("alpaca");
  write_file(dir + "/d.jsonl", jsonl({{{"instruction", "Sort it."}, {"input", "[3, 1, 2]"}, {"output", "sorted(x)"}},
                                      {{"instruction", "Sort it."}, {"input", ""}, {"output", "sorted(x)"}},
                                      {{"instruction", "Sort it."}, {"input", "  \n"}, {"output", "sorted(x)"}},
                                      {{"instruction", "Sort it."}, {"input", nullptr}, {"output", "sorted(x)"}},
                                      {{"instruction", "Sort it."}, {"output", "sorted(x)"}},
                                      {{"instruction", "Sort it."}, {"input", 7}, {"output", "sorted(x)"}}}));
  auto c = config_for(dir + "/d.jsonl");
  c.response_field = "output";
  const auto data = InstructionDataset::load(c, &tok);
  ASSERT_EQ(data.size(), 5u);
  EXPECT_EQ(prompt_text(data, 0, tok), magicoder_prompt("Sort it.\n\n[3, 1, 2]"));
  for (size_t i = 1; i < 5; ++i) EXPECT_EQ(prompt_text(data, i, tok), magicoder_prompt("Sort it.")) << i;
  ASSERT_EQ(data.report().skipped_records.size(), 1u);
  EXPECT_EQ(data.report().skipped_records[0].line, 6);
  EXPECT_NE(data.report().skipped_records[0].reason.find("'input'"), std::string::npos);

  // With the default response field, every record lacks 'response'.
  expect_error([&] { InstructionDataset::load(config_for(dir + "/d.jsonl"), &tok); },
               {dir + "/d.jsonl", "no usable record", "6 skipped", "missing field 'response'"});
}

TEST(InstructionData, TruncatesAtMaxLengthAndSkipsTooLongPrompts) {
  const auto& tok = tiny_tokenizer();
  const std::string dir = scratch_dir("trunc");
  std::string long_response;
  for (int i = 0; i < 40; ++i) long_response += "    total = total + " + std::to_string(i) + "\n";
  const std::string long_instruction(4000, 'x');
  write_file(dir + "/d.jsonl", jsonl({{{"instruction", "Sum."}, {"response", long_response}},
                                      {{"instruction", long_instruction}, {"response", "ok"}}}));
  const size_t p = 1 + tok.encode(magicoder_prompt("Sum.")).size();
  auto c = config_for(dir + "/d.jsonl");
  c.max_length = static_cast<int64_t>(p) + 10;
  const auto data = InstructionDataset::load(c, &tok);
  ASSERT_EQ(data.size(), 1u);
  const auto& ex = data[0];
  EXPECT_EQ(ex.input_ids.size(), p + 10);
  EXPECT_EQ(slice(ex.input_ids, p, p + 10), slice(tok.encode(long_response), 0, 10));
  EXPECT_NE(ex.input_ids.back(), tok.eos_id()) << "the cut falls before EOS";
  EXPECT_EQ(std::count(ex.labels.begin(), ex.labels.end(), kIgnoreLabel), static_cast<long>(p));
  ASSERT_EQ(data.report().skipped_records.size(), 1u);
  EXPECT_EQ(data.report().skipped_records[0].line, 2);
  EXPECT_NE(data.report().skipped_records[0].reason.find("prompt too long"), std::string::npos);

  // A prompt exactly one short of max_length still keeps one response token.
  c.max_length = static_cast<int64_t>(p) + 1;
  const auto tight = InstructionDataset::load(c, &tok);
  ASSERT_EQ(tight.size(), 1u);
  EXPECT_EQ(tight[0].input_ids.size(), p + 1);
  c.max_length = static_cast<int64_t>(p);
  expect_error([&] { InstructionDataset::load(c, &tok); }, {"no usable record", "prompt too long"});
}

TEST(InstructionData, MalformedRecordsSkippedAndReportedByLine) {
  const auto& tok = tiny_tokenizer();
  const std::string dir = scratch_dir("bad");
  const std::string path = dir + "/d.jsonl";
  write_file(path,
             "\xEF\xBB\xBF{\"instruction\": \"a\", \"response\": \"b = 1\"}\n"  // 1 ok, after a BOM
             "{\"instruction\": \"a\", \"response\": \n"                        // 2 invalid JSON
             "\n"                                                               // 3 blank: ignored
             "[1, 2]\n"                                                         // 4 not an object
             "{\"instruction\": \"a\"}\n"                                       // 5 missing response
             "   \t\r\n"                                                        // 6 blank: ignored
             "{\"instruction\": 5, \"response\": \"x\"}\n"                      // 7 wrong type
             "{\"instruction\": \"a\", \"response\": \" \\n \"}\r\n"            // 8 empty response
             "{\"instruction\": \"c\", \"response\": \"d = 2\"}");              // 9 ok, no final newline
  const auto data = InstructionDataset::load(config_for(path), &tok);
  EXPECT_EQ(data.size(), 2u);
  const auto& r = data.report();
  EXPECT_EQ(r.path, path);
  EXPECT_EQ(r.records, 7);
  EXPECT_EQ(r.used, 2);
  EXPECT_EQ(r.skipped, 5);
  EXPECT_FALSE(r.array_elements);
  const std::vector<std::pair<int64_t, std::string>> expected = {
      {2, "invalid JSON"},
      {4, "not a JSON object"},
      {5, "missing field 'response'"},
      {7, "field 'instruction' is number; expected a string"},
      {8, "empty response"}};
  ASSERT_EQ(r.skipped_records.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(r.skipped_records[i].line, expected[i].first);
    EXPECT_NE(r.skipped_records[i].reason.find(expected[i].second), std::string::npos) << r.skipped_records[i].reason;
  }
  const std::string s = r.summary();
  for (const char* part :
       {"7 records", "2 used", "5 skipped", "line numbers", ":2: invalid JSON", ":8: empty response"}) {
    EXPECT_NE(s.find(part), std::string::npos) << "summary lacks '" << part << "':\n" << s;
  }
  EXPECT_NE(s.find(path + ":4: not a JSON object"), std::string::npos) << s;
}

TEST(InstructionData, StrictModeThrowsAtTheFirstProblem) {
  const auto& tok = tiny_tokenizer();
  const std::string dir = scratch_dir("strict");
  const std::string path = dir + "/d.jsonl";
  write_file(path, "{\"instruction\": \"a\", \"response\": \"b\"}\n\n{\"instruction\": \"a\"}\n{oops\n");
  auto c = config_for(path);
  c.strict = true;
  expect_error([&] { InstructionDataset::load(c, &tok); }, {path + ":3:", "missing field 'response'", "strict"});
}

TEST(InstructionData, FileWithoutUsableRecordThrows) {
  const auto& tok = tiny_tokenizer();
  const std::string dir = scratch_dir("none");
  write_file(dir + "/bad.jsonl", "not json\n{\"instruction\": \"a\", \"response\": \"\"}\n");
  expect_error([&] { InstructionDataset::load(config_for(dir + "/bad.jsonl"), &tok); },
               {dir + "/bad.jsonl", "no usable record", "2 skipped", ":1: invalid JSON", ":2: empty response"});
  write_file(dir + "/empty.jsonl", "\n\n");
  expect_error([&] { InstructionDataset::load(config_for(dir + "/empty.jsonl"), &tok); },
               {dir + "/empty.jsonl", "no usable record", "0 records"});
  expect_error([&] { InstructionDataset::load(config_for(dir + "/absent.jsonl"), &tok); }, {dir + "/absent.jsonl"});
  expect_error([&] { InstructionDataset::load(config_for(dir + "/bad.jsonl"), nullptr); }, {"tokenizer"});
}

TEST(InstructionData, SummaryListIsCapped) {
  const auto& tok = tiny_tokenizer();
  const std::string dir = scratch_dir("cap");
  std::string text = "{\"instruction\": \"a\", \"response\": \"b\"}\n";
  for (int i = 0; i < 25; ++i) text += "{\"instruction\": \"a\"}\n";
  write_file(dir + "/d.jsonl", text);
  const std::string s = InstructionDataset::load(config_for(dir + "/d.jsonl"), &tok).report().summary();
  // Counted by reason, then the first five listed.
  EXPECT_NE(s.find("25 skipped (25 missing field 'response')"), std::string::npos) << s;
  EXPECT_NE(s.find(":6: missing"), std::string::npos) << s;
  EXPECT_EQ(s.find(":7: missing"), std::string::npos) << s;
  EXPECT_NE(s.find("... and 20 more"), std::string::npos) << s;
}

TEST(InstructionData, JsonArrayReportsElementIndices) {
  const auto& tok = tiny_tokenizer();
  const std::string dir = scratch_dir("array");
  const json records = json::array({json{{"instruction", "a"}, {"output", "b = 1"}}, json{{"instruction", "a"}},
                                    json{{"instruction", "c"}, {"output", "d = 2"}}, json("text")});
  write_file(dir + "/d.json", records.dump(2));  // pretty-printed: elements span several lines
  auto c = config_for(dir + "/d.json");
  c.response_field = "output";
  const auto data = InstructionDataset::load(c, &tok);
  EXPECT_EQ(data.size(), 2u);
  const auto& r = data.report();
  EXPECT_TRUE(r.array_elements);
  EXPECT_EQ(r.records, 4);
  ASSERT_EQ(r.skipped_records.size(), 2u);
  EXPECT_EQ(r.skipped_records[0].line, 2);
  EXPECT_EQ(r.skipped_records[1].line, 4);
  EXPECT_NE(r.summary().find("array elements"), std::string::npos);
  c.strict = true;
  expect_error([&] { InstructionDataset::load(c, &tok); }, {dir + "/d.json: element 2:", "missing field 'output'"});
  // A JSON array under a .jsonl name is still recognised by its first character (after a BOM).
  write_file(dir + "/d.jsonl", "\xEF\xBB\xBF " + records.dump());
  c.path = dir + "/d.jsonl";
  c.strict = false;
  EXPECT_EQ(InstructionDataset::load(c, &tok).size(), 2u);
  write_file(dir + "/broken.json", "[{\"instruction\": \"a\",\n \"output\": }]");
  c.path = dir + "/broken.json";
  expect_error([&] { InstructionDataset::load(c, &tok); }, {dir + "/broken.json:2:", "invalid JSON"});
}

TEST(InstructionData, PretokenizedUsesConfigIds) {
  const std::string dir = scratch_dir("pretok");
  const std::string path = dir + "/d.jsonl";
  write_file(path, jsonl({{{"prompt_ids", {10, 11, 12}}, {"response_ids", {20, 21}}},
                          {{"prompt_ids", json::array()}, {"response_ids", {30}}},
                          {{"prompt_ids", {1}}, {"response_ids", json::array()}},
                          {{"prompt_ids", {1, "x"}}, {"response_ids", {2}}},
                          {{"prompt_ids", {1}}, {"response_ids", {-5}}},
                          {{"prompt_ids", {1}}}}));
  auto c = pretokenized(path);
  c.eos_id = -1;
  expect_error([&] { InstructionDataset::load(c, nullptr); }, {"bos_id", "eos_id"});
  c.eos_id = 2;
  const auto data = InstructionDataset::load(c, nullptr);
  ASSERT_EQ(data.size(), 2u);
  EXPECT_EQ(data[0].input_ids, (std::vector<int64_t>{1, 10, 11, 12, 20, 21, 2}));
  EXPECT_EQ(data[0].labels, (std::vector<int64_t>{-100, -100, -100, -100, 20, 21, 2}));
  EXPECT_EQ(data[1].input_ids, (std::vector<int64_t>{1, 30, 2}));
  EXPECT_EQ(data[1].labels, (std::vector<int64_t>{-100, 30, 2}));
  const auto& p = data.report().skipped_records;
  ASSERT_EQ(p.size(), 4u);
  EXPECT_EQ(p[0].line, 3);
  EXPECT_NE(p[0].reason.find("empty response"), std::string::npos);
  EXPECT_EQ(p[1].line, 4);
  EXPECT_NE(p[1].reason.find("'prompt_ids' element 1"), std::string::npos);
  EXPECT_EQ(p[2].line, 5);
  EXPECT_EQ(p[3].line, 6);
  EXPECT_NE(p[3].reason.find("missing field 'response_ids'"), std::string::npos);
  // With a tokenizer, ids are also checked against its vocabulary.
  write_file(dir + "/big.jsonl",
             jsonl({{{"prompt_ids", {1}}, {"response_ids", {400}}}, {{"prompt_ids", {1}}, {"response_ids", {399}}}}));
  c.path = dir + "/big.jsonl";
  const auto checked = InstructionDataset::load(c, &tiny_tokenizer());
  EXPECT_EQ(checked.size(), 1u);
  EXPECT_NE(checked.report().skipped_records.at(0).reason.find("[0, 400)"), std::string::npos);
}

TEST(InstructionData, SplitIsDeterministicAndDisjoint) {
  const std::string dir = scratch_dir("split");
  std::vector<json> records;
  for (int i = 0; i < 50; ++i) records.push_back({{"prompt_ids", {i}}, {"response_ids", {1000 + i}}});
  write_file(dir + "/d.jsonl", jsonl(records));
  const auto data = InstructionDataset::load(pretokenized(dir + "/d.jsonl"), nullptr);
  auto ids = [](const InstructionDataset& d) {
    std::vector<int64_t> out;
    for (size_t i = 0; i < d.size(); ++i) out.push_back(d[i].input_ids[1]);
    return out;
  };
  const auto [train, held] = data.split(10, 7);
  EXPECT_EQ(train.size(), 40u);
  EXPECT_EQ(held.size(), 10u);
  auto all = ids(train);
  const auto h = ids(held);
  EXPECT_TRUE(std::is_sorted(all.begin(), all.end()));
  EXPECT_TRUE(std::is_sorted(h.begin(), h.end()));
  all.insert(all.end(), h.begin(), h.end());
  std::sort(all.begin(), all.end());
  std::vector<int64_t> want(50);
  std::iota(want.begin(), want.end(), 0);
  EXPECT_EQ(all, want);
  EXPECT_EQ(ids(data.split(10, 7).second), h);
  EXPECT_NE(ids(data.split(10, 8).second), h);
  EXPECT_EQ(data.split(0, 7).first.size(), 50u);
  expect_error([&] { data.split(50, 7); }, {"50"});
}

// ----------------------------------------------------------------------------------------- batching

TEST(Collate, PadsRightAndMasks) {
  const std::string dir = scratch_dir("collate");
  write_file(dir + "/d.jsonl", jsonl({{{"prompt_ids", {10, 11}}, {"response_ids", {20}}},
                                      {{"prompt_ids", {12}}, {"response_ids", {21, 22, 23, 24}}}}));
  const auto data = InstructionDataset::load(pretokenized(dir + "/d.jsonl"), nullptr);
  const auto b = xft::collate(data, {0, 1, 0}, 7);
  const auto t = [](std::vector<int64_t> v) { return torch::tensor(v).view({3, -1}); };
  EXPECT_EQ(b.input_ids.sizes(), (std::vector<int64_t>{3, 7}));
  EXPECT_EQ(b.input_ids.scalar_type(), torch::kInt64);
  EXPECT_TRUE(torch::equal(b.input_ids,
                           t({1, 10, 11, 20, 2, 7, 7, /**/ 1, 12, 21, 22, 23, 24, 2, /**/ 1, 10, 11, 20, 2, 7, 7})));
  EXPECT_TRUE(
      torch::equal(b.attention_mask, t({1, 1, 1, 1, 1, 0, 0, /**/ 1, 1, 1, 1, 1, 1, 1, /**/ 1, 1, 1, 1, 1, 0, 0})));
  EXPECT_TRUE(torch::equal(b.labels, t({-100,      -100, -100, 20, 2, -100, -100, /**/ -100, -100, 21, 22, 23, 24, 2,
                                        /**/ -100, -100, -100, 20, 2, -100, -100})));
  EXPECT_EQ(b.loss_tokens, 2 + 5 + 2);
  EXPECT_EQ(b.loss_tokens, (b.labels != -100).sum().item<int64_t>());
  // What the trainer counts for a global batch without collating it.
  EXPECT_EQ(xft::count_loss_tokens(data, {0, 1, 0}), 2 + 5 + 2);
  EXPECT_EQ(xft::count_loss_tokens(data, {1}), 5);
  expect_error([&] { xft::count_loss_tokens(data, {3}); }, {"index 3"});
  expect_error([&] { xft::collate(data, {0, 2}, 0); }, {"index 2"});
  expect_error([&] { xft::collate(data, {}, 0); }, {"collate"});
}

TEST(BatchSampler, DeterministicPermutationEachEpoch) {
  for (const bool grouped : {false, true}) {
    BatchSampler a(random_lengths(103), 8, 42, grouped, false), b(random_lengths(103), 8, 42, grouped, false);
    BatchSampler other(random_lengths(103), 8, 43, grouped, false);
    EXPECT_EQ(a.batches_per_epoch(), 13);
    const auto e0 = take(a, 13), e1 = take(a, 13);
    EXPECT_EQ(e0, take(b, 13));
    EXPECT_NE(flat(e0), flat(e1)) << "epochs must be reshuffled";
    EXPECT_NE(flat(e0), flat(take(other, 13))) << "the seed must matter";
    for (const auto& epoch : {e0, e1}) {
      auto all = flat(epoch);
      std::sort(all.begin(), all.end());
      std::vector<int64_t> want(103);
      std::iota(want.begin(), want.end(), 0);
      EXPECT_EQ(all, want) << "every index exactly once per epoch";
      int partial = 0;
      for (const auto& batch : epoch) partial += batch.size() != 8;
      EXPECT_EQ(partial, 1);
    }
    EXPECT_EQ(a.epoch(), 1);
    EXPECT_EQ(a.position(), 13);
  }
}

TEST(BatchSampler, DropLast) {
  BatchSampler s(random_lengths(10), 3, 1, false, true);
  EXPECT_EQ(s.batches_per_epoch(), 3);
  const auto epoch = take(s, 3);
  std::set<int64_t> seen;
  for (const auto& b : epoch) {
    EXPECT_EQ(b.size(), 3u);
    seen.insert(b.begin(), b.end());
  }
  EXPECT_EQ(seen.size(), 9u);
  s.next();
  EXPECT_EQ(s.epoch(), 1);
  expect_error([] { BatchSampler(random_lengths(2), 3, 1, false, true); }, {"batch_size"});
  expect_error([] { BatchSampler({}, 3, 1, false, false); }, {"empty"});
}

TEST(BatchSampler, GroupByLengthLowersSpread) {
  const auto lengths = random_lengths(2000);
  auto spread = [&](bool grouped) {
    BatchSampler s(lengths, 8, 5, grouped, false);
    double total = 0;
    for (const auto& b : take(s, s.batches_per_epoch())) {
      int64_t lo = INT64_MAX, hi = 0;
      for (const int64_t i : b) lo = std::min(lo, lengths[i]), hi = std::max(hi, lengths[i]);
      total += static_cast<double>(hi - lo);
    }
    return total / static_cast<double>(s.batches_per_epoch());
  };
  const double grouped = spread(true), random = spread(false);
  EXPECT_LT(grouped, 0.1 * random) << "grouped " << grouped << " vs random " << random;
  // The batch order is still shuffled: batch lengths do not simply descend within a chunk.
  BatchSampler s(lengths, 8, 5, true, false);
  const auto batches = take(s, 50);
  int descending = 0;
  for (size_t i = 1; i < batches.size(); ++i) descending += lengths[batches[i][0]] <= lengths[batches[i - 1][0]];
  EXPECT_LT(descending, 40);
}

TEST(BatchSampler, SetPositionResumesExactlyAcrossEpochs) {
  for (const bool grouped : {false, true}) {
    BatchSampler run(random_lengths(50), 4, 9, grouped, false);  // 13 batches an epoch
    std::vector<std::pair<int64_t, int64_t>> state;
    std::vector<std::vector<int64_t>> seq;
    for (int i = 0; i < 40; ++i) {
      state.emplace_back(run.epoch(), run.position());
      seq.push_back(run.next());
    }
    for (const int k : {0, 10, 13, 25, 26}) {  // mid-epoch, epoch end (position 13), next epochs
      BatchSampler resumed(random_lengths(50), 4, 9, grouped, false);
      resumed.set_position(state[k].first, state[k].second);
      for (int i = k; i < 40; ++i) ASSERT_EQ(resumed.next(), seq[i]) << "resume at " << k << ", batch " << i;
    }
    BatchSampler fresh(random_lengths(50), 4, 9, grouped, false);
    fresh.set_position(0, 13);  // the saved state after a whole epoch
    EXPECT_EQ(fresh.next(), seq[13]);
    EXPECT_EQ(fresh.epoch(), 1);
    expect_error([&] { fresh.set_position(0, 14); }, {"position 14"});
  }
}

// A number past double's range makes the JSON parser throw out_of_range, not parse_error: that
// line is skipped and reported like any malformed record (found by scripts/fuzz.sh data; the
// input is in tests/fuzz/corpus/data), and strict mode names it.
TEST(InstructionData, NumberOutOfRangeSkipsItsRecord) {
  const auto& tok = tiny_tokenizer();
  const std::string dir = scratch_dir("overflow");
  write_file(dir + "/d.jsonl", "{\"instruction\": \"Add.\", \"response\": \"x + 1\", \"n\": 1e400}\n" +
                                   jsonl({{{"instruction", "Add."}, {"response", "x + 1"}}}));
  const auto data = InstructionDataset::load(config_for(dir + "/d.jsonl"), &tok);
  EXPECT_EQ(data.size(), 1u);
  ASSERT_EQ(data.report().skipped_records.size(), 1u);
  EXPECT_EQ(data.report().skipped_records[0].line, 1);
  EXPECT_NE(data.report().skipped_records[0].reason.find("invalid JSON"), std::string::npos);
  auto strict = config_for(dir + "/d.jsonl");
  strict.strict = true;
  expect_error([&] { InstructionDataset::load(strict, &tok); }, {dir + "/d.jsonl:1", "invalid JSON"});
}
