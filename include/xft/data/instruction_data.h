// defines: DataConfig, DataFormat, DataFile, Example, SkippedRecord, DataReport, InstructionDataset
//
// Instruction records (Magicoder / evol-codealpaca / Alpaca JSONL or JSON) and chat conversations
// ({"messages": [...]} or ShareGPT's {"conversations": [...]}) -> token examples whose labels mask
// what the model is not taught to write. Real datasets hold a few broken records; those are skipped
// and reported (file:line: reason) instead of aborting a long run, unless `strict` asks otherwise.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "xft/data/conversation.h"

namespace xft {

class Tokenizer;

// Label of tokens that carry no loss (the prompt, padding); PyTorch's cross-entropy default.
constexpr int64_t kIgnoreLabel = -100;

// auto: '[' as the first non-space character means a JSON array, '{' JSONL (the extension only
// decides when neither); jsonl | json force the layout; pretokenized reads prompt_ids/response_ids;
// messages reads conversations (either layout), rendered by the model's own chat template, with
// the loss on the assistant turns only.
enum class DataFormat { kAuto, kJsonl, kJson, kPretokenized, kMessages };
const char* to_string(DataFormat format);  // "auto", "jsonl", "json", "pretokenized", "messages"

// One file of a weighted mix: each epoch sees its examples `weight` times (2: twice; 0.5: a fixed,
// seeded half of them).
struct DataFile {
  std::string path;
  double weight = 1.0;
};

struct DataConfig {
  // "path": a file (.jsonl, one JSON object a line, or .json, an array of objects), or a list of
  // files, each a path or {"path", "weight"}: then `files` holds them and `path` is empty.
  std::string path;
  std::vector<DataFile> files;
  DataFormat format = DataFormat::kAuto;
  std::string instruction_field = "instruction";
  std::string input_field = "input";        // Alpaca: appended to the instruction when present and non-empty
  std::string response_field = "response";  // "output" for evol-codealpaca / Alpaca
  std::string input_template = "{instruction}\n\n{input}";
  // The Magicoder template (default). {instruction} is replaced. BOS goes before it, EOS after the response.
  std::string prompt_template =
      "You are an exceptionally intelligent coding assistant that consistently delivers accurate and reliable "
      "responses to user instructions.\n\n@@ Instruction\n{instruction}\n\n@@ Response\n";
  int64_t max_length = 1024;  // tokens, BOS and EOS included; longer examples are truncated at the end
  bool strict = false;        // true: the first record that cannot be used is a fatal xft::Error
  // Training batches pack several examples into each row of at most max_length tokens
  // (data/packing.h): per-document causal attention and positions, less padding.
  bool packing = false;
  // Pretokenized format only (required >= 0 there): the ids placed around each record.
  int64_t bos_id = -1;
  int64_t eos_id = -1;

  void validate(const std::string& source) const;  // throws xft::Error naming source
  nlohmann::json to_json() const;
  // Unknown keys are an error naming them; the result is validated.
  static DataConfig from_json(const nlohmann::json& j, const std::string& source);
};

struct Example {
  std::vector<int64_t> input_ids;
  std::vector<int64_t> labels;  // kIgnoreLabel on BOS + prompt tokens, the ids themselves after
};

// A record of the data file left out of training, and why (malformed JSON, a missing field, a
// prompt longer than max_length, an empty response).
struct SkippedRecord {
  int64_t line;  // 1-based line (JSONL) or 1-based array element (JSON array)
  std::string reason;
};

struct DataReport {
  std::string path;
  bool array_elements = false;  // skipped records' `line` counts array elements (JSON array), not lines
  int64_t records = 0, used = 0, skipped = 0;
  std::vector<SkippedRecord> skipped_records;
  // A weighted mix: each file's own report (records, used, skipped above are their sums; `used`
  // counts examples before weighting) and the examples each contributed after weighting.
  std::vector<DataReport> files;
  std::vector<int64_t> mixed;
  // Counts, the skipped records counted by reason, then "path:line: reason" for the first few
  // (a mix: one such block per file, then what each file contributed).
  std::string summary() const;
};

// The kind of a skip reason, without its particulars: "prompt too long", "missing field 'response'".
std::string skip_kind(const std::string& reason);

class InstructionDataset {
 public:
  InstructionDataset() = default;
  // Reads, validates and tokenises `config.path` (or each of `config.files`, mixed by weight).
  // Malformed records (invalid JSON line, not an object, missing field, non-string field, empty or
  // whitespace-only response, a prompt that alone fills max_length) are skipped and reported; with
  // strict the first one throws. A file without any usable record throws. Blank JSONL lines are
  // ignored. `tokenizer` may be null for the pretokenized format. The messages format needs
  // `render` (the model's chat template; eval/chat_template.h chat_renderer).
  static InstructionDataset load(const DataConfig& config, const Tokenizer* tokenizer,
                                 const ConversationRenderer& render = nullptr);

  size_t size() const { return examples_.size(); }
  const Example& operator[](size_t i) const;  // throws xft::Error when out of range
  const DataReport& report() const { return report_; }
  std::vector<int64_t> lengths() const;  // input_ids sizes, for BatchSampler

  // Deterministic held-out split: the last n_heldout indices of a seeded shuffle are held out. Both
  // parts keep file order; both carry this dataset's report.
  std::pair<InstructionDataset, InstructionDataset> split(size_t n_heldout, uint64_t seed) const;

 private:
  std::vector<Example> examples_;
  DataReport report_;
};

}  // namespace xft
