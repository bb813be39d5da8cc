// The bodies of the libFuzzer targets for untrusted text inputs, shared by the fuzzers
// (tests/fuzz/fuzz_<name>.cpp, run by scripts/fuzz.sh) and by the suite's replay of the committed
// corpora (tests/test_fuzz_corpus.cpp). Each feeds arbitrary bytes to one parser; every input must
// end in a result or an xft::Error: any other exception escapes (libFuzzer reports it as a
// crash; the replay test fails), as does a crash or a sanitizer report.
//   tokenizer   the bytes as tokenizer.json; when it loads, encode texts (the input itself among
//               them) and decode the ids back
//   data        the first byte picks the layout (jsonl, json array, auto, pretokenized) and
//               strictness, the rest is the instruction-data file, read with a byte-level tokenizer
//   experiment  an experiment config, then after a line "--" one --set assignment a line
//   problems    a problems file (HumanEval, MBPP, EvalPlus; plain or gzip), then after a line
//               "--" a samples file read against it; prompts and code extraction of each problem
#pragma once
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "xft/core/error.h"
#include "xft/data/instruction_data.h"
#include "xft/data/tokenizer.h"
#include "xft/eval/problems.h"
#include "xft/eval/samples.h"
#include "xft/pipelines/experiment.h"

namespace xft::fuzz {

// A per-process scratch file (fuzzers run several processes with -jobs).
inline std::string scratch(const std::string& name) {
  return "/tmp/xft-fuzz-" + std::to_string(::getpid()) + "-" + name;
}

inline std::string write_scratch(const std::string& name, const uint8_t* data, size_t size) {
  const auto path = scratch(name);
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

inline void tokenizer_input(const uint8_t* data, size_t size) {
  const auto path = write_scratch("tokenizer.json", data, size);
  std::unique_ptr<Tokenizer> tok;
  try {
    tok = Tokenizer::load(path);
  } catch (const Error&) {
    return;  // a clear rejection
  }
  const std::string input(reinterpret_cast<const char*>(data), size);
  for (const std::string& text : {std::string("def f(x):\n    return x + 1\n"), std::string("\xff\xfe\xc3"),
                                  std::string(), input.substr(0, 512)}) {
    try {
      const auto ids = tok->encode(text);
      for (int64_t id : ids)
        if (id < 0 || id >= tok->vocab_size()) throw std::logic_error("encode gave an id outside the vocabulary");
      (void)tok->decode(ids);
    } catch (const Error&) {
    }
  }
}

// A byte-level BPE tokenizer.json with the 256 byte tokens and no merges: every text encodes.
inline const Tokenizer& byte_tokenizer() {
  static const std::unique_ptr<Tokenizer> tok = [] {
    nlohmann::json vocab = nlohmann::json::object();
    // GPT-2's byte -> printable character table.
    std::vector<int> bytes;
    for (int b = '!'; b <= '~'; ++b) bytes.push_back(b);
    for (int b = 0xA1; b <= 0xAC; ++b) bytes.push_back(b);
    for (int b = 0xAE; b <= 0xFF; ++b) bytes.push_back(b);
    std::vector<int> chars = bytes;
    for (int b = 0, n = 0; b < 256; ++b)
      if (std::find(bytes.begin(), bytes.end(), b) == bytes.end()) {
        bytes.push_back(b);
        chars.push_back(256 + n++);
      }
    for (size_t i = 0; i < bytes.size(); ++i) {
      std::string utf8;
      const int c = chars[i];
      if (c < 0x80)
        utf8 += static_cast<char>(c);
      else {
        utf8 += static_cast<char>(0xC0 | (c >> 6));
        utf8 += static_cast<char>(0x80 | (c & 0x3F));
      }
      vocab[utf8] = bytes[i];
    }
    vocab["<eos>"] = 256;
    const nlohmann::json j = {
        {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}},
        {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
        {"decoder", {{"type", "ByteLevel"}}},
        {"added_tokens", {{{"id", 256}, {"content", "<eos>"}, {"special", true}}}}};
    const auto path = scratch("byte-tokenizer.json");
    std::ofstream(path) << j.dump();
    return Tokenizer::load(path);
  }();
  return *tok;
}

inline void data_input(const uint8_t* data, size_t size) {
  if (size == 0) return;
  static const DataFormat formats[] = {DataFormat::kJsonl, DataFormat::kJson, DataFormat::kAuto,
                                       DataFormat::kPretokenized};
  DataConfig c;
  c.format = formats[data[0] % 4];
  c.strict = (data[0] / 4) % 2 == 1;
  c.max_length = 8 + data[0] / 8;
  c.bos_id = 256;
  c.eos_id = 256;
  c.path = write_scratch(c.format == DataFormat::kJson ? "data.json" : "data.jsonl", data + 1, size - 1);
  try {
    const auto set = InstructionDataset::load(c, c.format == DataFormat::kPretokenized ? nullptr : &byte_tokenizer());
    for (size_t i = 0; i < set.size(); ++i) {
      const auto& e = set[i];
      if (e.input_ids.size() != e.labels.size() || static_cast<int64_t>(e.input_ids.size()) > c.max_length)
        throw std::logic_error("an example breaks the dataset's invariants");
    }
  } catch (const Error&) {
  }
}

// The bytes before the first "\n--\n" (all of them when there is none), and those after it.
inline std::pair<std::string, std::string> split_at_marker(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto cut = text.find("\n--\n");
  if (cut == std::string::npos) return {text, ""};
  return {text.substr(0, cut), text.substr(cut + 4)};
}

inline void experiment_input(const uint8_t* data, size_t size) {
  const auto [config, rest] = split_at_marker(data, size);
  std::vector<std::string> sets;
  if (config.size() < size) {  // a marker: one assignment a line after it
    for (size_t start = 0;;) {
      const size_t end = rest.find('\n', start);
      sets.push_back(rest.substr(start, end == std::string::npos ? std::string::npos : end - start));
      if (end == std::string::npos) break;
      start = end + 1;
    }
  }
  const auto path = write_scratch("experiment.json", reinterpret_cast<const uint8_t*>(config.data()), config.size());
  try {
    const auto c = ExperimentConfig::load(path, sets);
    (void)ExperimentConfig::from_json(c.to_json(), "round trip");  // what it writes, it reads
  } catch (const Error&) {
  }
}

inline void problems_input(const uint8_t* data, size_t size) {
  const auto [problems_text, samples_text] = split_at_marker(data, size);
  const auto path =
      write_scratch("problems.jsonl", reinterpret_cast<const uint8_t*>(problems_text.data()), problems_text.size());
  try {
    const auto problems = load_problems(path);
    for (const auto& p : problems) {
      (void)instruction_prompt(p);
      (void)extract_code(response_prefix(p) + p.canonical_solution);
    }
    const auto samples =
        write_scratch("samples.jsonl", reinterpret_cast<const uint8_t*>(samples_text.data()), samples_text.size());
    (void)read_samples(samples, problems);
  } catch (const Error&) {
  }
}

}  // namespace xft::fuzz
