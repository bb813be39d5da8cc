// A tiny dense Llama, random pre-tokenised instruction data and a short training config:
// what the trainer tests (tests/test_train.cpp, tests/test_failures.cpp) train on.
#pragma once
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "xft/data/instruction_data.h"
#include "xft/model/config.h"
#include "xft/train/train_config.h"

namespace xft::test {

inline ModelConfig tiny_dense(int64_t vocab = 61) {
  return ModelConfig::from_json({{"model_type", "llama"}, {"vocab_size", vocab}, {"hidden_size", 32},
                                 {"intermediate_size", 40}, {"num_hidden_layers", 2}, {"num_attention_heads", 4},
                                 {"num_key_value_heads", 2}, {"rope_theta", 100000.0},
                                 {"rope_scaling", {{"type", "linear"}, {"factor", 4.0}}}},
                                "tiny");
}

// Pre-tokenised records with random token ids (prompt part carries no loss).
inline InstructionDataset tiny_data(const std::string& dir, int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::ofstream out(dir + "/data.jsonl");
  for (int64_t i = 0; i < n; ++i) {
    std::vector<int64_t> p(3 + rng() % 5), r(2 + rng() % 9);
    for (auto& v : p) v = 3 + static_cast<int64_t>(rng() % 58);
    for (auto& v : r) v = 3 + static_cast<int64_t>(rng() % 58);
    out << nlohmann::json({{"prompt_ids", p}, {"response_ids", r}}).dump() << "\n";
  }
  out.close();
  DataConfig dc;
  dc.path = dir + "/data.jsonl";
  dc.format = xft::DataFormat::kPretokenized;
  dc.bos_id = 1;
  dc.eos_id = 2;
  return InstructionDataset::load(dc, nullptr);
}

inline TrainConfig tiny_train(int64_t steps) {
  TrainConfig t;
  t.max_steps = steps;
  t.global_batch = 8;
  t.micro_batch = 4;
  t.optimizer = xft::OptimizerKind::kAdamW;
  t.lr = 1e-2;
  t.warmup = 2;
  t.seed = 7;
  return t;
}

}  // namespace xft::test
