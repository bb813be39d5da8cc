// A tiny dense Llama, the tiny MoE upcycled from it, random pre-tokenised instruction data, a
// short training config and one step's loss and gradients: what the trainer, merge, packing and
// failure tests train on.
#pragma once
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "xft/data/batcher.h"
#include "xft/data/instruction_data.h"
#include "xft/methods/upcycle.h"
#include "xft/model/config.h"
#include "xft/model/model_io.h"
#include "xft/train/loss.h"
#include "xft/train/train_config.h"
#include "xft/train/trainer.h"

namespace xft::test {

inline ModelConfig tiny_dense(int64_t vocab = 61) {
  return ModelConfig::from_json({{"model_type", "llama"},
                                 {"vocab_size", vocab},
                                 {"hidden_size", 32},
                                 {"intermediate_size", 40},
                                 {"num_hidden_layers", 2},
                                 {"num_attention_heads", 4},
                                 {"num_key_value_heads", 2},
                                 {"rope_theta", 100000.0},
                                 {"rope_scaling", {{"type", "linear"}, {"factor", 4.0}}}},
                                "tiny");
}

// 5 experts (the shared one and 4 routed), top-3.
inline MoeConfig tiny_moe_config(bool noise = false) {
  MoeConfig m;
  m.num_experts = 5;
  m.top_k = 3;
  m.router_noise = noise;
  return m;
}

// The upcycled model with its experts drifted apart (as after MoE training), saved to `dir`
// and loaded back.
inline CausalLM drifted_moe(UpcycleResult moe, const std::string& dir) {
  torch::manual_seed(3);
  for (auto& [n, t] : moe.tensors)
    if (n.find(".experts.") != std::string::npos) t = t + 0.05 * torch::randn_like(t);
  save_model_tensors(moe.config, moe.tensors, dir);
  return load_model(dir);
}

// A tiny upcycled MoE of tiny_dense() whose experts have drifted apart.
inline CausalLM tiny_moe(const std::string& dir, bool noise = false) {
  auto dense_cfg = tiny_dense();
  CausalLM dense(dense_cfg);
  dense->init_weights(0.1, 1);
  return drifted_moe(upcycle(dense_cfg, model_tensors(*dense), tiny_moe_config(noise), 2), dir);
}

// The model saved in `model_dir`, trained for cfg's steps into `out` by a Trainer called `name`
// (its rows packed to `packed_rows` tokens when > 0; resumed from out's checkpoints with `resume`).
inline CausalLM train_saved(const std::string& model_dir, const std::string& name, const InstructionDataset& data,
                            const TrainConfig& cfg, const std::string& out, int64_t packed_rows = 0,
                            bool resume = false) {
  auto model = load_model(model_dir);
  Trainer trainer(name, model, model_tensors(*model), data, cfg, out, 0);
  if (packed_rows > 0) trainer.set_packing(packed_rows);
  trainer.run(resume);
  return model;
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

// One forward and backward of a training step's loss (token cross-entropy sum + aux) on `b`;
// returns the loss and every parameter gradient (cleared afterwards).
inline std::pair<torch::Tensor, std::vector<torch::Tensor>> loss_and_grads(CausalLMImpl& model, const Batch& b,
                                                                           bool with_mask = true) {
  auto out = model.forward(b.input_ids, with_mask ? b.attention_mask : torch::Tensor(), b.position_ids);
  auto loss = cross_entropy_sum(out.logits, b.labels);
  if (out.aux_loss.defined()) loss = loss + out.aux_loss;
  loss.backward();
  std::vector<torch::Tensor> grads;
  for (auto& p : model.parameters()) {
    if (!p.requires_grad()) continue;
    grads.push_back(p.grad().defined() ? p.grad().clone() : torch::Tensor());
    p.mutable_grad() = torch::Tensor();
  }
  return {loss.detach(), grads};
}

}  // namespace xft::test
