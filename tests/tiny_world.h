// A tiny world for end-to-end runs: a sentencepiece tokenizer, a tiny Llama base model and
// instruction data, all made here; and running the drivers on it.
#pragma once
#include <filesystem>
#include <fstream>
#include <string>

#include "test_util.h"
#include "xft/data/tokenizer.h"
#include "xft/model/llama.h"
#include "xft/model/model_io.h"

namespace xft::test {

// A tiny base model with a sentencepiece tokenizer in `dir`/base, instruction data in `dir`.
inline void make_tiny_world(const std::string& dir) {
  std::ofstream text(dir + "/text.txt");
  std::ofstream data(dir + "/data.jsonl");
  for (int i = 0; i < 60; ++i) {
    const std::string body = "return x * " + std::to_string(i) + " + " + std::to_string(i % 7);
    text << "def scale_" << i << "(x):\n    " << body << "\n\n";
    data << nlohmann::json({{"instruction", "Write scale_" + std::to_string(i) + "(x)."}, {"response", body}}).dump()
         << "\n";
  }
  data << "{not json}\n";  // a malformed record: skipped and reported, not fatal
  text.close();
  data.close();
  train_sentencepiece(dir + "/text.txt", dir + "/tokenizer", 300);
  auto tok = Tokenizer::load(dir + "/tokenizer.model");
  auto cfg = ModelConfig::from_json({{"model_type", "llama"},
                                     {"vocab_size", tok->vocab_size()},
                                     {"hidden_size", 32},
                                     {"intermediate_size", 48},
                                     {"num_hidden_layers", 2},
                                     {"num_attention_heads", 4},
                                     {"num_key_value_heads", 2},
                                     {"bos_token_id", tok->bos_id()},
                                     {"eos_token_id", tok->eos_id()}},
                                    "tiny");
  CausalLM model(cfg);
  model->init_weights(0.05, 1);
  save_model(*model, dir + "/base");  // replaces the directory whole: the tokenizer goes in after
  std::filesystem::copy_file(dir + "/tokenizer.model", dir + "/base/tokenizer.model");
}

inline int driver(const std::string& name, const std::string& args, const std::string& log) {
  return xft::test::run(xft::test::env_or_empty("XFT_BIN_DIR") + "/" + name + " " + args + " > " + log + " 2>&1");
}

}  // namespace xft::test
